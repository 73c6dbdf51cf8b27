#!/usr/bin/env python3
"""Independent FID/KID from feature files, for cross-checking `anime-pipe eval` (numpy + scipy only).

    python3 bench/fid_reference.py GENERATED REFERENCE [--json] [--kid-subsets 100 --kid-subset-size 1000]

GENERATED / REFERENCE: `.npy` float arrays [n, d], or `.safetensors` files holding a tensor `features` [n, d]:
`anime-pipe eval --save-features DIR` writes `DIR/<generator>.safetensors`, and the reference statistics cache
`<workdir>/cache/fid/<key>.safetensors` holds the reference features (the key is in eval.parquet's `reference`).

FID follows pytorch-fid's `calculate_frechet_distance` exactly: mean/covariance in float64 (np.cov, n - 1),
`scipy.linalg.sqrtm(sigma1 @ sigma2)`, an eps*I offset when the root is not finite, the imaginary part dropped.
That is a different algorithm from anime-pipe's (symmetric eigendecompositions of S1^(1/2) S2 S1^(1/2)), so
agreement checks the maths, not a shared implementation. The script also prints the eigenvalue form computed with
numpy (`fid_eigh`) to separate method differences from sqrtm's own error on rank-deficient covariances.

KID: unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3. With `--kid-subsets 0` (default) one estimate over the full
sets (they must then have equal sizes, or the larger is cut to the smaller's size, first rows); otherwise the
subset protocol with numpy's own RNG (not the same subsets as anime-pipe, so only statistically comparable).
"""
import argparse
import json
import sys
import time

import numpy as np
import scipy.linalg


def load_features(path):
    if path.endswith(".npy"):
        return np.load(path).astype(np.float64)
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        tensors = load_file(path)
        if "features" not in tensors:
            sys.exit(f"{path}: no tensor 'features' (found {sorted(tensors)})")
        return tensors["features"].astype(np.float64)
    sys.exit(f"{path}: expected .npy or .safetensors")


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """pytorch-fid's calculate_frechet_distance (v0.3.0) in substance (sqrtm's `disp` argument is deprecated in
    SciPy 1.16+, so finiteness is checked on the result alone)."""
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def frechet_distance_eigh(mu1, sigma1, mu2, sigma2):
    """Tr((S1 S2)^(1/2)) as the sum of sqrt of the eigenvalues of S1^(1/2) S2 S1^(1/2) (numpy.linalg.eigh)."""
    w, v = np.linalg.eigh(sigma1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root @ sigma2 @ root
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    diff = mu1 - mu2
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.sqrt(np.clip(ev, 0, None)).sum())


def mmd2_unbiased(x, y):
    m = x.shape[0]
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    return float(
        (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.sum() / (m * m)
    )


def kid(x, y, subsets, subset_size, seed=0):
    if subsets == 0:
        m = min(len(x), len(y))
        return mmd2_unbiased(x[:m], y[:m]), 0.0
    rng = np.random.default_rng(seed)
    m = min(subset_size, len(x), len(y))
    values = [
        mmd2_unbiased(x[rng.choice(len(x), m, replace=False)], y[rng.choice(len(y), m, replace=False)])
        for _ in range(subsets)
    ]
    return float(np.mean(values)), float(np.std(values))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("generated")
    parser.add_argument("reference")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--kid-subsets", type=int, default=0)
    parser.add_argument("--kid-subset-size", type=int, default=1000)
    args = parser.parse_args()

    x, y = load_features(args.generated), load_features(args.reference)
    started = time.perf_counter()
    mu1, sigma1 = x.mean(axis=0), np.cov(x, rowvar=False)
    mu2, sigma2 = y.mean(axis=0), np.cov(y, rowvar=False)
    fid = frechet_distance(mu1, sigma1, mu2, sigma2)
    fid_seconds = time.perf_counter() - started
    fid_eigh = frechet_distance_eigh(mu1, sigma1, mu2, sigma2)
    kid_mean, kid_std = kid(x, y, args.kid_subsets, args.kid_subset_size)
    result = {
        "n_generated": int(x.shape[0]),
        "n_reference": int(y.shape[0]),
        "dim": int(x.shape[1]),
        "fid": fid,
        "fid_eigh": fid_eigh,
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "fid_seconds": fid_seconds,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>12}  {v}")


if __name__ == "__main__":
    main()
