#!/usr/bin/env python3
"""PyTorch reference for anime-pipe's DCGAN training step: the same 64x64 DCGAN (PyTorch-example / Radford form),
the same losses (BCE with logits) and optimiser (Adam lr 2e-4, betas 0.5/0.999), one D step + one G step per
iteration, as bench/train_step.sh times anime-pipe. Prints one JSON line per batch size:
{"tool": "pytorch", "batch": B, "ms_per_step": median, "steps": n, "threads": t, "device": ...}.

  python3 bench/torch_dcgan.py --batch 64 128 --steps 20 [--device cuda]
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


def bench(batch, steps, warmup, device):
    torch.manual_seed(0)
    g, d = generator().to(device), discriminator().to(device)
    g.apply(init)
    d.apply(init)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = torch.rand(batch, 3, 64, 64, device=device) * 2 - 1
    times = []
    for i in range(warmup + steps):
        t = time.perf_counter()
        train_step(g, d, opt_g, opt_d, real, torch.randn(batch, 100, 1, 1, device=device))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= warmup:
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, nargs="+", default=[64, 128])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    for b in a.batch:
        ms = bench(b, a.steps, a.warmup, a.device)
        print(json.dumps({"tool": "pytorch", "torch": torch.__version__, "batch": b, "ms_per_step": round(ms, 2),
                          "steps": a.steps, "threads": torch.get_num_threads(), "device": a.device}), flush=True)
