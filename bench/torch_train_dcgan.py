#!/usr/bin/env python3
"""PyTorch reference training run for `anime-pipe eval`'s FID comparison (BENCHMARKS.md, "FID at equal epochs").

Trains the PyTorch-example DCGAN of bench/torch_dcgan.py (the architecture of anime-pipe's `dcgan64` preset) on the
same packed shards `anime-pipe train` reads (`<workdir>/shards/64/train-*.safetensors`, u8 NHWC), with the same
recipe: batch 128, Adam lr 2e-4 betas (0.5, 0.999) for both networks, BCE with logits, one D step (real batch +
detached fakes) then one G step on the same fakes, random horizontal flips, the last partial batch dropped, a fresh
shuffle every epoch. After every epoch the generator (BatchNorm in eval mode) is exported to
`<out>/epoch-NNNN.generator.onnx` with input `z` [B, 100, 1, 1] and output [B, 3, 64, 64] in [-1, 1], the
convention `anime-pipe eval --model` reads, so both tools' generators are scored by the same eval.

  python3 bench/torch_train_dcgan.py --workdir W --epochs 2 --out torch-run [--threads 1] [--seed 1]
Prints one JSON line per epoch: {"epoch", "loss_d", "loss_g", "images_per_s", "seconds", "onnx"}.
"""
import argparse
import glob
import json
import os
import time

import numpy as np
import torch
from safetensors.numpy import load_file

from torch_dcgan import discriminator, generator, init, train_step


def load_shards(workdir):
    paths = sorted(glob.glob(os.path.join(workdir, "shards", "64", "train-*.safetensors")))
    if not paths:
        raise SystemExit(f"no shards under {workdir}/shards/64: run `anime-pipe run` there first")
    return torch.from_numpy(np.concatenate([load_file(p)["images"] for p in paths]))  # u8 [N, 64, 64, 3]


def to_model_input(batch_u8, flip):
    x = batch_u8.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def export(g, path):
    g.eval()
    tmp = path + ".tmp"
    torch.onnx.export(g, torch.randn(1, 100, 1, 1), tmp, dynamo=False, input_names=["z"], output_names=["image"],
                      dynamic_axes={"z": {0: "batch"}, "image": {0: "batch"}})
    os.replace(tmp, path)
    g.train()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", required=True)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--batch", type=int, default=128)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(a.seed)
    data = load_shards(a.workdir)
    g, d = generator(), discriminator()
    g.apply(init)
    d.apply(init)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    for epoch in range(1, a.epochs + 1):
        start = time.perf_counter()
        order = torch.randperm(len(data))
        sums, steps = [0.0, 0.0], len(data) // a.batch
        for b in range(steps):
            real = to_model_input(data[order[b * a.batch:(b + 1) * a.batch]], torch.rand(a.batch) < 0.5)
            loss_d, loss_g = train_step(g, d, opt_g, opt_d, real, torch.randn(a.batch, 100, 1, 1))
            sums[0] += loss_d.item()
            sums[1] += loss_g.item()
        seconds = time.perf_counter() - start
        onnx_path = os.path.join(a.out, f"epoch-{epoch:04d}.generator.onnx")
        export(g, onnx_path)
        print(json.dumps({"epoch": epoch, "loss_d": sums[0] / steps, "loss_g": sums[1] / steps,
                          "images_per_s": steps * a.batch / seconds, "seconds": round(seconds, 1),
                          "threads": torch.get_num_threads(), "onnx": onnx_path}), flush=True)


if __name__ == "__main__":
    main()
