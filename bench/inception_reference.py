#!/usr/bin/env python3
"""Python onnxruntime reference for `anime-pipe eval`'s Inception throughput: the same model
(`../shared/models/fid_inception_v3_pool3.onnx`), the same batch (eval.batch_size, 50) and threads, under each
session setting worth trying, timed on random 299x299 inputs (the cost does not depend on pixel values).
Prints one JSON line per setting: {"tool", "setting", "batch", "threads", "images_per_s", "ms_per_batch"}.

  python3 bench/inception_reference.py [--model PATH] [--batch 50] [--threads 2] [--batches 4]

Settings: "default" (optimisation level all, spinning threads: onnxruntime's defaults, what anime-pipe's eval
session uses), "no_spin" (idle threads sleep), "extended" (level 2: no NCHWc layout transformation),
"sequential" vs "parallel" executor.
"""
import argparse
import json
import statistics
import time

import numpy as np
import onnxruntime as ort


def session(model, threads, level, spin, parallel=False):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.graph_optimization_level = level
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if parallel:
        so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        so.inter_op_num_threads = threads
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="../shared/models/fid_inception_v3_pool3.onnx")
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", type=int, default=4)
    a = p.parse_args()
    all_ = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    settings = {
        "default": (all_, True, False),
        "no_spin": (all_, False, False),
        "extended": (ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, True, False),
        "parallel": (all_, True, True),
    }
    for name, (level, spin, parallel) in settings.items():
        s = session(a.model, a.threads, level, spin, parallel)
        inp = s.get_inputs()[0]
        shape = [a.batch] + [d if isinstance(d, int) else 299 for d in inp.shape[1:]]
        x = np.random.default_rng(0).random(shape, dtype=np.float32)
        s.run(None, {inp.name: x})
        ts = []
        for _ in range(a.batches):
            t = time.perf_counter()
            s.run(None, {inp.name: x})
            ts.append(time.perf_counter() - t)
        ms = statistics.median(ts) * 1e3
        print(json.dumps({"tool": "python-onnxruntime", "setting": name, "batch": a.batch, "threads": a.threads,
                          "input": shape, "images_per_s": round(a.batch / ms * 1e3, 1),
                          "ms_per_batch": round(ms, 1)}), flush=True)


if __name__ == "__main__":
    main()
