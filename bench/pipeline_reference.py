#!/usr/bin/env python3
"""Reference implementation of anime-pipe's ingest -> dedup -> pack work in plain Python + Pillow + numpy.

Used only by bench/pipeline.sh to put anime-pipe's throughput beside a typical "glue script" doing the same job on
the same machine in the same invocation. Per stage it prints one JSON line {"stage", "images", "seconds"}.

  ingest: read every entry of a zip, blake3 the bytes, decode fully with Pillow (validation), record size.
  dedup:  exact duplicates by byte hash; pixel hash (blake3 of decoded RGB); 64-bit DCT pHash (32x32 gray ->
          8x8 low frequencies > median); near-duplicate pairs within Hamming 6 (vectorised numpy popcount,
          all pairs: fine at this size, quadratic in general).
  pack:   decode unique images, centre-crop to square, Lanczos resize to 64, stack as uint8 NHWC, write safetensors.
"""
import io
import json
import sys
import time
import zipfile

import blake3
import numpy as np
from PIL import Image
from safetensors.numpy import save_file

try:
    from scipy.fft import dct
except ImportError:  # numpy-only DCT-II via matrix product (same maths)
    def dct(a, axis=-1, norm=None):
        n = a.shape[axis]
        k = np.arange(n)[:, None]
        basis = np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n))
        return np.moveaxis(np.tensordot(basis, np.moveaxis(a, axis, 0), axes=1), 0, axis)


def stage(name, images, started):
    print(json.dumps({"tool": "python-pillow", "stage": name, "images": images,
                      "seconds": round(time.perf_counter() - started, 3)}), flush=True)


def ingest(zip_path):
    t = time.perf_counter()
    rows = []
    with zipfile.ZipFile(zip_path) as z:
        for info in z.infolist():
            if info.is_dir():
                continue
            data = z.read(info)
            digest = blake3.blake3(data).hexdigest()
            try:
                im = Image.open(io.BytesIO(data))
                im.load()
                rows.append((info.filename, digest, data, im.size, None))
            except Exception as e:  # noqa: BLE001 - a reference script records every failure
                rows.append((info.filename, digest, data, None, str(e)))
    stage("ingest", len(rows), t)
    return rows


def phash(rgb):
    gray = np.asarray(rgb.convert("L").resize((32, 32), Image.BILINEAR), dtype=np.float64)
    freq = dct(dct(gray, axis=0), axis=1)[:8, :8].ravel()
    bits = freq > np.median(freq)
    return int(np.packbits(bits).view(">u8")[0])


def dedup(rows):
    t = time.perf_counter()
    seen, unique = set(), []
    for row in rows:
        if row[4] is None and row[1] not in seen:
            seen.add(row[1])
            unique.append(row)
    pixel_seen, kept, hashes = set(), [], []
    for row in unique:
        rgb = Image.open(io.BytesIO(row[2])).convert("RGB")
        ph = blake3.blake3(rgb.tobytes()).hexdigest()
        if ph in pixel_seen:
            continue
        pixel_seen.add(ph)
        kept.append(row)
        hashes.append(phash(rgb))
    h = np.array(hashes, dtype=np.uint64)
    near = 0
    for i in range(len(h)):
        x = np.bitwise_xor(h[i + 1:], h[i])
        dist = np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
        near += int((dist <= 6).sum())
    stage("dedup", len(rows), t)
    return kept, near


def pack(kept, out_path, size=64):
    t = time.perf_counter()
    arrays = []
    for row in kept:
        im = Image.open(io.BytesIO(row[2])).convert("RGB")
        w, h = im.size
        s = min(w, h)
        im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
        arrays.append(np.asarray(im.resize((size, size), Image.LANCZOS), dtype=np.uint8))
    save_file({"images": np.stack(arrays)}, out_path)
    stage("pack", len(kept), t)


if __name__ == "__main__":
    zip_path, out = sys.argv[1], sys.argv[2]
    rows = ingest(zip_path)
    kept, near = dedup(rows)
    pack(kept, out)
