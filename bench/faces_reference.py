#!/usr/bin/env python3
"""Reference for anime-pipe's crop and upscale work: the same models run through Python onnxruntime + numpy.

Used to put `anime-pipe crop` / `anime-pipe upscale` throughput beside a typical Python script on the same machine.
Prints one JSON line per task: {"tool", "task", "images", "faces"/"pixels", "seconds", "images_per_s"}.

  detect:  FaceBoxes exactly as anime-pipe runs it (src/faces/detector.rs): longer side capped at --max-side with
           PIL BILINEAR (antialiased), one pass per scale (default 1 and 2), BGR minus mean (104, 117, 123), padded to
           multiples of 32, priors and variance decoding per shared/README.md, candidates >= 0.3, one greedy NMS at
           IoU 0.3 over all scales, faces >= 0.5 counted. Decoding the JPEG/PNG is included (as in the crop stage).
  upscale: waifu2x upconv_7 2x of every image given (edge-pad 7 px, clip 0..1, round), untiled; decoding included.

  python3 bench/faces_reference.py detect ../shared/data/illust
  python3 bench/faces_reference.py upscale ../shared/data/holoen256 --limit 50 --size 128

Threads: onnxruntime's default intra-op thread count (all cores), like anime-pipe without -j.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image

MODELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "models")
MAPS = [(32, [32, 64, 128]), (64, [256]), (128, [512])]
OFFSETS = {32: [0.0, 0.25, 0.5, 0.75], 64: [0.0, 0.5]}


def priors(h, w):
    out = []
    for step, sizes in MAPS:
        rows, cols = -(-h // step), -(-w // step)
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        per_cell = []
        for s in sizes:
            offs = OFFSETS.get(s, [0.5])
            for oy in offs:
                for ox in offs:
                    per_cell.append(np.stack([(xs + ox) * step / w, (ys + oy) * step / h,
                                              np.full(xs.shape, s / w), np.full(xs.shape, s / h)], -1))
        out.append(np.stack(per_cell, 2).reshape(-1, 4))  # cells row-major, anchors in order within a cell
    return np.concatenate(out).astype(np.float32)


def nms(boxes, scores, iou):
    order = np.lexsort((boxes[:, 0], boxes[:, 1], -scores))
    keep = []
    for i in order:
        if keep:
            k = boxes[keep]
            ix = np.clip(np.minimum(k[:, 2], boxes[i, 2]) - np.maximum(k[:, 0], boxes[i, 0]), 0, None)
            iy = np.clip(np.minimum(k[:, 3], boxes[i, 3]) - np.maximum(k[:, 1], boxes[i, 1]), 0, None)
            inter = ix * iy
            area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
            if np.any(inter / (area(k) + area(boxes[i]) - inter) > iou):
                continue
        keep.append(i)
    return keep


def detect(session, img, scales, max_side, floor=0.3):
    w, h = img.size
    cap = min(1.0, max_side / max(w, h))
    boxes, scores = [], []
    for s in scales:
        iw, ih = max(1, round(w * cap * s)), max(1, round(h * cap * s))
        im = img if (iw, ih) == (w, h) else img.resize((iw, ih), Image.BILINEAR)
        ph, pw = -(-ih // 32) * 32, -(-iw // 32) * 32
        x = np.zeros((1, 3, ph, pw), np.float32)
        x[0, :, :ih, :iw] = (np.asarray(im, np.float32)[:, :, ::-1] - [104, 117, 123]).transpose(2, 0, 1)
        loc, conf = session.run(None, {"input": x})
        p = priors(ph, pw)
        sc = conf[0, :, 1]
        k = sc >= floor
        l, p = loc[0][k], p[k]
        c = p[:, :2] + l[:, :2] * 0.1 * p[:, 2:]
        wh = p[:, 2:] * np.exp(l[:, 2:] * 0.2)
        b = np.concatenate([c - wh / 2, c + wh / 2], 1) * [pw, ph, pw, ph]
        boxes.append(b * [w / iw, h / ih, w / iw, h / ih])
        scores.append(sc[k])
    boxes, scores = np.concatenate(boxes), np.concatenate(scores)
    keep = nms(boxes, scores, 0.3)
    return int(np.sum(scores[keep] >= 0.5))


def files(folder, limit):
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith((".jpg", ".jpeg", ".png", ".webp")))
    return [os.path.join(folder, n) for n in names[:limit]]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("task", choices=["detect", "upscale"])
    ap.add_argument("folder")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--scales", default="1,2")
    ap.add_argument("--max-side", type=int, default=2048)
    ap.add_argument("--size", type=int, default=None, help="upscale: resize inputs to SIZE x SIZE first (untimed)")
    ap.add_argument("--models", default=MODELS)
    a = ap.parse_args()
    paths = files(a.folder, a.limit)
    if a.task == "detect":
        session = ort.InferenceSession(os.path.join(a.models, "anime_faceboxes.onnx"),
                                       providers=["CPUExecutionProvider"])
        scales = [float(s) for s in a.scales.split(",")]
        t = time.perf_counter()
        faces = sum(detect(session, Image.open(p).convert("RGB"), scales, a.max_side) for p in paths)
        secs = time.perf_counter() - t
        print(json.dumps({"tool": "python-onnxruntime", "task": "detect", "images": len(paths), "faces": faces,
                          "seconds": round(secs, 3), "images_per_s": round(len(paths) / secs, 3)}))
    else:
        session = ort.InferenceSession(os.path.join(a.models, "waifu2x_upconv7_anime_scale2x.onnx"),
                                       providers=["CPUExecutionProvider"])
        images = [Image.open(p).convert("RGB") for p in paths]
        if a.size:
            images = [im.resize((a.size, a.size), Image.LANCZOS) for im in images]
        t = time.perf_counter()
        pixels = 0
        for im in images:
            x = np.asarray(im, np.float32).transpose(2, 0, 1)[None] / 255.0
            x = np.pad(x, ((0, 0), (0, 0), (7, 7), (7, 7)), mode="edge")
            y = session.run(None, {"input": x})[0]
            out = (np.clip(y[0], 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0)
            pixels += out.shape[0] * out.shape[1]
        secs = time.perf_counter() - t
        print(json.dumps({"tool": "python-onnxruntime", "task": "upscale", "images": len(images),
                          "output_pixels": pixels, "seconds": round(secs, 3),
                          "images_per_s": round(len(images) / secs, 3)}))


if __name__ == "__main__":
    sys.exit(main())
