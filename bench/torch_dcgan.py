#!/usr/bin/env python3
"""PyTorch reference for anime-pipe's DCGAN training step: the same 64x64 DCGAN (PyTorch-example / Radford form),
the same losses (BCE with logits) and optimiser (Adam lr 2e-4, betas 0.5/0.999), one D step + one G step per
iteration, as bench/train_step.sh times anime-pipe. Prints one JSON line per batch size:
{"tool": "pytorch", "batch": B, "ms_per_step": median, "steps": n, "threads": t, "device": ...}.

  python3 bench/torch_dcgan.py --batch 64 128 --steps 20 [--device cuda] [--tf32 on|off] [--compile]

--tf32 sets torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32 (CUDA; PyTorch's defaults are
cuDNN on, matmul off); --compile times `torch.compile`d networks (mode "default"; compilation happens in warm-up).
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn


def generator(nz=100, ngf=64):
    return nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, 3, 4, 2, 1, bias=False), nn.Tanh())


def discriminator(ndf=64):
    return nn.Sequential(
        nn.Conv2d(3, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, True),
        nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Flatten())


def init(m):
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def train_step(g, d, opt_g, opt_d, real, z):
    """One D step (reals + detached fakes) then one G step on the same fakes (the PyTorch DCGAN example's
    iteration); returns (loss_d, loss_g) as tensors."""
    bce = nn.functional.binary_cross_entropy_with_logits
    ones = torch.ones(real.shape[0], 1, device=real.device)
    fake = g(z)
    opt_d.zero_grad(set_to_none=True)
    loss_d = bce(d(real), ones) + bce(d(fake.detach()), torch.zeros_like(ones))
    loss_d.backward()
    opt_d.step()
    opt_g.zero_grad(set_to_none=True)
    loss_g = bce(d(fake), ones)
    loss_g.backward()
    opt_g.step()
    return loss_d, loss_g


def bench(batch, steps, warmup, device, compile_=False):
    torch.manual_seed(0)
    g, d = generator().to(device), discriminator().to(device)
    g.apply(init)
    d.apply(init)
    if compile_:
        g, d = torch.compile(g), torch.compile(d)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = torch.rand(batch, 3, 64, 64, device=device) * 2 - 1
    times, cpu = [], []
    for i in range(warmup + steps):
        t, c = time.perf_counter(), time.process_time()
        train_step(g, d, opt_g, opt_d, real, torch.randn(batch, 100, 1, 1, device=device))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1000)
            cpu.append((time.process_time() - c) * 1000)
    return statistics.median(times), statistics.median(cpu)


def profile(batch, iterations, device):
    """torch.profiler over `iterations` steps after one warm-up: self CPU time per aten operator, per iteration."""
    import sys
    from torch.profiler import ProfilerActivity, profile as prof
    torch.manual_seed(0)
    g, d = generator().to(device), discriminator().to(device)
    g.apply(init)
    d.apply(init)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = torch.rand(batch, 3, 64, 64, device=device) * 2 - 1
    train_step(g, d, opt_g, opt_d, real, torch.randn(batch, 100, 1, 1, device=device))
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    with prof(activities=acts) as p:
        for _ in range(iterations):
            train_step(g, d, opt_g, opt_d, real, torch.randn(batch, 100, 1, 1, device=device))
    events = p.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    print(f"torch.profiler: batch {batch}, {total / 1e3 / iterations:.1f} ms/iteration self CPU time "
          f"({iterations} iterations)", file=sys.stderr)
    print(f"  {'operator':<44} {'ms/iter':>9} {'share':>7} {'calls':>6}", file=sys.stderr)
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:18]:
        print(f"  {e.key[:44]:<44} {e.self_cpu_time_total / 1e3 / iterations:>9.2f} "
              f"{100 * e.self_cpu_time_total / total:>6.1f}% {e.count // iterations:>6}", file=sys.stderr)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, nargs="+", default=[64, 128])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--tf32", choices=["on", "off"])
    p.add_argument("--compile", action="store_true")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="after timing, profile N iterations with torch.profiler and print the top operators (stderr)")
    a = p.parse_args()
    if a.tf32:
        torch.backends.cudnn.allow_tf32 = a.tf32 == "on"
        torch.backends.cuda.matmul.allow_tf32 = a.tf32 == "on"
    for b in a.batch:
        ms, cpu_ms = bench(b, a.steps, a.warmup, a.device, a.compile)
        row = {"tool": "pytorch", "torch": torch.__version__, "batch": b, "ms_per_step": round(ms, 2),
               "cpu_ms_per_step": round(cpu_ms, 2),
               "images_per_s": round(b / ms * 1000, 1), "steps": a.steps, "threads": torch.get_num_threads(),
               "device": a.device, "mode": "compile" if a.compile else "eager"}
        if a.tf32:
            row["tf32"] = a.tf32 == "on"
        print(json.dumps(row), flush=True)
        if a.profile:
            profile(b, a.profile, a.device)
