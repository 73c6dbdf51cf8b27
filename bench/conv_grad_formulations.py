#!/usr/bin/env python3
"""Per-layer micro-benchmark of convolution gradient formulations for the 64x64 DCGAN, on CPU, in one process:
each formulation as a one-node (or few-node) standard ONNX graph run by Python onnxruntime at the highest graph
optimisation level, beside PyTorch's own kernels for the same layer (aten.convolution_backward), median ms.

  python3 bench/conv_grad_formulations.py [--batch 64] [--threads 2] [--reps 7] [--peak]

--peak also measures the machine's fp32 peak as a large MatMul (4096^2 x 4096) through onnxruntime and torch.
Formulations (names as in onnxgrad's `ConvGradFormulation`):
  dW  dilated   : Transpose(Conv(X^T, dY^T, dilations = stride))        (onnxgrad's default)
      im2col    : Conv(X, one-hot kernels, group = C) -> columns, then one batched MatMul + ReduceSum
  dX  convt     : ConvTranspose(dY, W)                                   (onnxgrad's default)
      subpixel  : 4 stride-1 Convs (2x2 phases of the k4 s2 kernel) + DepthToSpace
"""
import argparse
import json
import statistics
import time

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper

F = TensorProto.FLOAT


def session(nodes, inputs, outputs, inits=(), threads=2):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def vi(name, shape):
    return helper.make_tensor_value_info(name, F, shape)


def timeit(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ts)


def i64(name, vals):
    return helper.make_tensor(name, TensorProto.INT64, [len(vals)], vals)


def conv_dw_dilated(n, ci, co, h, k, s, p):
    ho = (h + 2 * p - k) // s + 1
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2, 3]),
        helper.make_node("Transpose", ["dy"], ["dyt"], perm=[1, 0, 2, 3]),
        helper.make_node("Conv", ["xt", "dyt"], ["z"], strides=[1, 1], pads=[p] * 4, dilations=[s, s]),
        helper.make_node("Slice", ["z", "st", "en", "ax"], ["zc"]),
        helper.make_node("Transpose", ["zc"], ["dw"], perm=[1, 0, 2, 3]),
    ]
    inits = [i64("st", [0, 0]), i64("en", [k, k]), i64("ax", [2, 3])]
    return session(nodes, [vi("x", [n, ci, h, h]), vi("dy", [n, co, ho, ho])], [vi("dw", [co, ci, k, k])], inits)


def onehot(ci, k):
    e = np.zeros((ci * k * k, 1, k, k), np.float32)
    for c in range(ci):
        for a in range(k):
            for b in range(k):
                e[c * k * k + a * k + b, 0, a, b] = 1
    return e


def conv_dw_im2col(n, ci, co, h, k, s, p):
    ho = (h + 2 * p - k) // s + 1
    nodes = [
        helper.make_node("Conv", ["x", "eye"], ["cols"], strides=[s, s], pads=[p] * 4, group=ci),
        helper.make_node("Reshape", ["cols", "cshape"], ["cols3"]),  # [N, Ci*kk, P]
        helper.make_node("Reshape", ["dy", "yshape"], ["dy3"]),  # [N, Co, P]
        helper.make_node("Transpose", ["cols3"], ["colsT"], perm=[0, 2, 1]),  # [N, P, Ci*kk]
        helper.make_node("MatMul", ["dy3", "colsT"], ["part"]),  # [N, Co, Ci*kk]
        helper.make_node("ReduceSum", ["part", "ax0"], ["dw2"], keepdims=0),
        helper.make_node("Reshape", ["dw2", "wshape"], ["dw"]),
    ]
    inits = [
        onnx.numpy_helper.from_array(onehot(ci, k), "eye"),
        i64("cshape", [n, ci * k * k, ho * ho]),
        i64("yshape", [n, co, ho * ho]),
        i64("ax0", [0]),
        i64("wshape", [co, ci, k, k]),
    ]
    return session(nodes, [vi("x", [n, ci, h, h]), vi("dy", [n, co, ho, ho])], [vi("dw", [co, ci, k, k])], inits)


def conv_dw_im2col_gemm(n, ci, co, h, k, s, p):
    """Columns in NHWC order (one Gemm with K = N*P): Transpose(Conv(x, onehot)) to [N, P, Ci*kk]."""
    ho = (h + 2 * p - k) // s + 1
    nodes = [
        helper.make_node("Conv", ["x", "eye"], ["cols"], strides=[s, s], pads=[p] * 4, group=ci),
        helper.make_node("Transpose", ["cols"], ["colsT"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["colsT", "cshape"], ["cols2"]),  # [N*P, Ci*kk]
        helper.make_node("Transpose", ["dy"], ["dyT"], perm=[1, 0, 2, 3]),
        helper.make_node("Reshape", ["dyT", "yshape"], ["dy2"]),  # [Co, N*P]
        helper.make_node("MatMul", ["dy2", "cols2"], ["dw2"]),
        helper.make_node("Reshape", ["dw2", "wshape"], ["dw"]),
    ]
    inits = [
        onnx.numpy_helper.from_array(onehot(ci, k), "eye"),
        i64("cshape", [n * ho * ho, ci * k * k]),
        i64("yshape", [co, n * ho * ho]),
        i64("wshape", [co, ci, k, k]),
    ]
    return session(nodes, [vi("x", [n, ci, h, h]), vi("dy", [n, co, ho, ho])], [vi("dw", [co, ci, k, k])], inits)


def conv_fwd(n, ci, co, h, k, s, p):
    ho = (h + 2 * p - k) // s + 1
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], strides=[s, s], pads=[p] * 4)]
    return session(nodes, [vi("x", [n, ci, h, h]), vi("w", [co, ci, k, k])], [vi("y", [n, co, ho, ho])])


def conv_dx_convt(n, ci, co, h, k, s, p):
    ho = (h + 2 * p - k) // s + 1
    nodes = [helper.make_node("ConvTranspose", ["dy", "w"], ["dx"], strides=[s, s], pads=[p] * 4)]
    return session(nodes, [vi("dy", [n, co, ho, ho]), vi("w", [co, ci, k, k])], [vi("dx", [n, ci, h, h])])


def subpixel_nodes(inp, w, out, cin_w, cout_w, hin, prefix):
    """ConvTranspose(k4 s2 p1) of `inp` [N, cin_w, hin, hin] with w [cin_w, cout_w, 4, 4] as four stride-1
    2x2 Convs (one per output phase) + Concat + DepthToSpace(2, CRD). Phase (r, c) of the output uses kernel taps
    k = r + 1 - 2t ... (see onnxgrad's vjp docs). Returns nodes and the weight-prep nodes."""
    nodes = []
    phase_outs = []
    for r in range(2):
        for c in range(2):
            # output row 2m + r gets x[m + dr] * w[kr] for (dr, kr) in taps(r)
            # r=0: (0, 1), (-1, 3); r=1: (0, 2), (1, 0)
            name = f"{prefix}ph{r}{c}"
            # kernel for a correlation over x padded: rows ordered by increasing dr
            nodes.append(helper.make_node("Identity", [f"{prefix}wk{r}{c}"], [name + "_w"]))
            pad_b = 1 if r == 0 else 0
            pad_e = 0 if r == 0 else 1
            pad_bc = 1 if c == 0 else 0
            pad_ec = 0 if c == 0 else 1
            nodes.append(helper.make_node("Conv", [inp, name + "_w"], [name], strides=[1, 1],
                                          pads=[pad_b, pad_bc, pad_e, pad_ec]))
            phase_outs.append(name)
    nodes.append(helper.make_node("Concat", phase_outs, [prefix + "cat"], axis=1))
    return nodes


def phase_kernels(w):
    """w [Cin, Cout, 4, 4] (ConvTranspose layout) -> Conv kernels [Cout, Cin, 2, 2] per phase (r, c)."""
    taps = {0: [3, 1], 1: [2, 0]}  # kernel rows for dr = -1, 0 (r=0) and dr = 0, +1 (r=1), increasing dr
    out = {}
    for r in range(2):
        for c in range(2):
            kr, kc = taps[r], taps[c]
            sub = w[:, :, kr][:, :, :, kc]  # [Cin, Cout, 2, 2]
            out[(r, c)] = np.ascontiguousarray(sub.transpose(1, 0, 2, 3))
    return out


def convt_subpixel(n, cin, cout, hin, w):
    """ConvTranspose(k4 s2 p1): x [N, cin, hin, hin] -> [N, cout, 2hin, 2hin], as 4 Convs + interleave."""
    nodes = []
    inits = []
    ks = phase_kernels(w)
    outs = []
    for (r, c), kk in ks.items():
        inits.append(onnx.numpy_helper.from_array(kk, f"k{r}{c}"))
        pads = [1 if r == 0 else 0, 1 if c == 0 else 0, 0 if r == 0 else 1, 0 if c == 0 else 1]
        nodes.append(helper.make_node("Conv", ["x", f"k{r}{c}"], [f"p{r}{c}"], pads=pads))
        outs.append(f"p{r}{c}")
    # stack phases as [N, (r, c, cout)] -> DepthToSpace DCR expects channel = (r*2 + c)*cout + co
    nodes.append(helper.make_node("Concat", outs, ["cat"], axis=1))
    nodes.append(helper.make_node("DepthToSpace", ["cat"], ["y"], blocksize=2, mode="DCR"))
    return session(nodes, [vi("x", [n, cin, hin, hin])], [vi("y", [n, cout, 2 * hin, 2 * hin])], inits)


def convt_fwd(n, cin, cout, hin, k, s, p):
    ho = (hin - 1) * s - 2 * p + k
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[s, s], pads=[p] * 4)]
    return session(nodes, [vi("x", [n, cin, hin, hin]), vi("w", [cin, cout, k, k])], [vi("y", [n, cout, ho, ho])])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--peak", action="store_true")
    ap.add_argument("--peak-only", action="store_true")
    ap.add_argument("--check", action="store_true", help="check every formulation against torch's gradients")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    n = a.batch
    rng = np.random.default_rng(0)
    rows = []

    if a.peak:
        m = 4096
        x = rng.standard_normal((m, m), dtype=np.float32)
        s = session([helper.make_node("MatMul", ["a", "b"], ["c"])], [vi("a", [m, m]), vi("b", [m, m])],
                    [vi("c", [m, m])], threads=a.threads)
        c0 = time.process_time()
        ms = timeit(lambda: s.run(None, {"a": x, "b": x}), a.reps)
        c1 = time.process_time()
        tx = torch.from_numpy(x)
        tms = timeit(lambda: tx @ tx, a.reps)
        c2 = time.process_time()
        flop = 2 * m ** 3
        # per CPU-second (all threads): the rate one core sustains; x threads = the machine's peak when it is quiet
        ort_cpu = flop * (a.reps + 1) / (c1 - c0) / 1e9
        torch_cpu = flop * (a.reps + 1) / (c2 - c1) / 1e9
        print(json.dumps({"what": "peak_matmul", "m": m, "threads": a.threads, "ort_ms": round(ms, 2),
                          "ort_gflops": round(flop / ms / 1e6, 1), "ort_gflops_per_cpu_s": round(ort_cpu, 1),
                          "torch_ms": round(tms, 2), "torch_gflops": round(flop / tms / 1e6, 1),
                          "torch_gflops_per_cpu_s": round(torch_cpu, 1)}), flush=True)
        if a.peak_only:
            return

    # D convs (k4 s2 p1): (ci, co, h)
    for ci, co, h in [(3, 64, 64), (64, 128, 32), (128, 256, 16), (256, 512, 8)]:
        k, s, p = 4, 2, 1
        ho = h // 2
        x = rng.standard_normal((n, ci, h, h), dtype=np.float32)
        w = (0.02 * rng.standard_normal((co, ci, k, k))).astype(np.float32)
        dy = rng.standard_normal((n, co, ho, ho), dtype=np.float32)
        tx, tw, tdy = map(torch.from_numpy, (x, w, dy))
        flop = 2 * n * co * ci * k * k * ho * ho
        r = {"layer": f"conv {ci}->{co} @{h}", "gflop": round(flop / 1e9, 2)}
        f = conv_fwd(n, ci, co, h, k, s, p)
        r["fwd_ort"] = timeit(lambda: f.run(None, {"x": x, "w": w}), a.reps)
        r["fwd_torch"] = timeit(lambda: torch.conv2d(tx, tw, stride=s, padding=p), a.reps)
        bw = lambda mask: torch.ops.aten.convolution_backward(tdy, tx, tw, None, [s, s], [p, p], [1, 1], False,
                                                              [0, 0], 1, mask)
        r["dx_torch"] = timeit(lambda: bw([True, False, False]), a.reps)
        r["dw_torch"] = timeit(lambda: bw([False, True, False]), a.reps)
        ref_dx, ref_dw, _ = bw([True, True, False])
        sx = conv_dx_convt(n, ci, co, h, k, s, p)
        r["dx_convt"] = timeit(lambda: sx.run(None, {"dy": dy, "w": w}), a.reps)
        # input grad of a Conv = ConvTranspose with the Conv weight [co, ci] as [Cin=co, Cout=ci]
        sp = convt_subpixel(n, co, ci, ho, w)
        r["dx_subpixel"] = timeit(lambda: sp.run(None, {"x": dy}), a.reps)
        if a.check:
            got = sp.run(None, {"x": dy})[0]
            r["dx_subpixel_err"] = float(np.abs(got - ref_dx.numpy()).max() / np.abs(ref_dx.numpy()).max())
        for name, build in [("dw_dilated", conv_dw_dilated), ("dw_im2col", conv_dw_im2col),
                            ("dw_im2col_gemm", conv_dw_im2col_gemm)]:
            sw = build(n, ci, co, h, k, s, p)
            r[name] = timeit(lambda: sw.run(None, {"x": x, "dy": dy}), a.reps)
            if a.check:
                got = sw.run(None, {"x": x, "dy": dy})[0]
                r[name + "_err"] = float(np.abs(got - ref_dw.numpy()).max() / np.abs(ref_dw.numpy()).max())
        rows.append(r)
        print(json.dumps({k2: (round(v, 2) if isinstance(v, float) else v) for k2, v in r.items()}), flush=True)

    # G conv-transposes (k4 s2 p1): (cin, cout, hin)
    for cin, cout, hin in [(512, 256, 4), (256, 128, 8), (128, 64, 16), (64, 3, 32)]:
        k, s, p = 4, 2, 1
        x = rng.standard_normal((n, cin, hin, hin), dtype=np.float32)
        w = (0.02 * rng.standard_normal((cin, cout, k, k))).astype(np.float32)
        tx, tw = map(torch.from_numpy, (x, w))
        flop = 2 * n * cin * cout * k * k * hin * hin
        r = {"layer": f"convt {cin}->{cout} @{hin}", "gflop": round(flop / 1e9, 2)}
        f = convt_fwd(n, cin, cout, hin, k, s, p)
        r["fwd_ort"] = timeit(lambda: f.run(None, {"x": x, "w": w}), a.reps)
        r["fwd_torch"] = timeit(lambda: torch.conv_transpose2d(tx, tw, stride=s, padding=p), a.reps)
        sp = convt_subpixel(n, cin, cout, hin, w)
        r["fwd_subpixel"] = timeit(lambda: sp.run(None, {"x": x}), a.reps)
        if a.check:
            ref = torch.conv_transpose2d(tx, tw, stride=s, padding=p).numpy()
            r["fwd_subpixel_err"] = float(np.abs(sp.run(None, {"x": x})[0] - ref).max() / np.abs(ref).max())
        rows.append(r)
        print(json.dumps({k2: (round(v, 2) if isinstance(v, float) else v) for k2, v in r.items()}), flush=True)


if __name__ == "__main__":
    main()
