#!/usr/bin/env python3
"""Independent end-to-end FID, images to number, for cross-checking `anime-pipe eval` (and a real-vs-real floor).

    python3 bench/fid_end_to_end.py --workdir W --inception ../shared/models/fid_inception_v3_pool3.onnx \
        [--model G.onnx] [-n 1000] [--reference 1000] [--threads 2]

Everything here is separate from anime-pipe's code: real images are read from the packed shards with
`safetensors` (`<workdir>/shards/64/train-*.safetensors`, first `--reference` images); generated images come from
Python onnxruntime on numpy standard-normal latents (so not the same latents as anime-pipe: compare values
statistically), converted with round((x + 1) * 127.5); both are resized to 299x299 with
`torch.nn.functional.interpolate(mode="bilinear", align_corners=False)` on 0..255 floats (pytorch-fid's resize)
and embedded by the Inception ONNX model (input 0..255, see ../shared/models/FID.md); FID as pytorch-fid computes it
(scipy sqrtm). Without --model it reports the FID between the first and the second `--reference` real images: the
floor a perfect generator would reach at that sample size.
Prints one JSON object.
"""
import argparse
import glob
import json
import os
import time

import numpy as np
import onnxruntime as ort
import scipy.linalg
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file


def real_images(workdir, count, skip=0):
    paths = sorted(glob.glob(os.path.join(workdir, "shards", "64", "train-*.safetensors")))
    images = np.concatenate([load_file(p)["images"] for p in paths])
    if len(images) < skip + count:
        raise SystemExit(f"only {len(images)} packed images, asked for {skip + count}")
    return images[skip:skip + count]  # u8 NHWC


def generated_images(model, count, seed, threads):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    z_input = session.get_inputs()[0]
    shape = z_input.shape
    batch = shape[0] if isinstance(shape[0], int) else 50
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, count, batch):
        z = rng.standard_normal((batch, *shape[1:]), dtype=np.float32)
        outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, {z_input.name: z})))
        image = next(v for v in outputs.values() if v.dtype == np.float32)  # [B, 3, S, S] in [-1, 1]
        u8 = np.clip(np.floor((image + 1.0) * 127.5 + 0.5), 0, 255).astype(np.uint8)
        out.append(u8.transpose(0, 2, 3, 1))
    return np.concatenate(out)[:count]


def features(inception, images, batch=50):
    feats = []
    for start in range(0, len(images), batch):
        x = torch.from_numpy(images[start:start + batch]).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        feats.append(inception.run(None, {"image": x.numpy()})[0])
    return np.concatenate(feats).astype(np.float64)


def fid(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * 1e-6
        covmean = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", required=True)
    p.add_argument("--inception", required=True)
    p.add_argument("--model")
    p.add_argument("-n", type=int, default=1000)
    p.add_argument("--reference", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = a.threads
    inception = ort.InferenceSession(a.inception, options, providers=["CPUExecutionProvider"])
    start = time.perf_counter()
    reference = features(inception, real_images(a.workdir, a.reference))
    if a.model:
        other = features(inception, generated_images(a.model, a.n, a.seed, a.threads))
        what = os.path.basename(a.model)
    else:
        other = features(inception, real_images(a.workdir, a.n, skip=a.reference))
        what = "real (disjoint)"
    print(json.dumps({"tool": "python", "generator": what, "n": len(other), "reference": len(reference),
                      "fid": round(fid(other, reference), 3), "seconds": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
    main()
