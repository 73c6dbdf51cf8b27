#!/usr/bin/env bash
# CPU benchmark of one DCGAN training iteration (D update + G update, 64x64, Adam): anime-pipe's ONNX step graphs
# run by ONNX Runtime vs the same model in PyTorch (bench/torch_dcgan.py). Prints each tool's JSON lines, then a
# table of the median ms/iteration after warm-up.
#
#   bench/train_step.sh                     # batch 64 and 128, 10 timed iterations after 2 warm-up ones
#   STEPS=20 BATCHES="64" bench/train_step.sh
#   PROFILE=3 bench/train_step.sh           # also profile 3 iterations per configuration with ONNX Runtime's
#                                           # profiler and print the top operators and the forward/backward/Adam split
#   THREADS=2 bench/train_step.sh           # intra-op threads for both tools (default: all cores)
#   SPIN=1 bench/train_step.sh              # let ONNX Runtime threads spin (its default; the runner turns it off)
#   FORMULATIONS="native auto" bench/train_step.sh  # time each formulation of the step graphs (anime-pipe
#                                           # bench-step --formulation: native, subpixel, subpixel:N, auto)
#   MODES=fused bench/train_step.sh         # fused, split or both (default)
#   TORCH_PROFILE=3 bench/train_step.sh     # also profile 3 PyTorch iterations with torch.profiler (stderr)
#   BASELINE=/tmp/anime-pipe-main bench/train_step.sh  # also time another anime-pipe binary (e.g. main's build)
#                                           # in the same invocation, shown as "baseline"
#   PRIMITIVE=1 bench/train_step.sh         # also time each formulation with batch norm's primitive backward
#
# anime-pipe runs two variants: "fused" (one graph per iteration: G forward once, as PyTorch does) and "split"
# (a D-step graph then a G-step graph, which recomputes G's forward). Needs a release build (built here if
# missing; the first one takes ~15 min on 2 cores) and python3 with torch (CPU).
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-10}
WARMUP=${WARMUP:-2}
BATCHES=${BATCHES:-"64 128"}
PROFILE=${PROFILE:-0}
THREADS=${THREADS:-}
FORMULATIONS=${FORMULATIONS:-auto}
MODES=${MODES:-both}
TORCH_PROFILE=${TORCH_PROFILE:-0}
BASELINE=${BASELINE:-}
PRIMITIVE=${PRIMITIVE:-}

cargo build --release --quiet
bin=target/release/anime-pipe
out=$(mktemp)
trap 'rm -f "$out"' EXIT

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
thread_args=()
if [[ -n "$THREADS" ]]; then
    thread_args=(-j "$THREADS")
    export OMP_NUM_THREADS=$THREADS # torch's intra-op threads
fi
# shellcheck disable=SC2086
"$bin" "${thread_args[@]}" --device cpu bench-step --arch dcgan64 --batch $BATCHES --steps "$STEPS" \
    --warmup "$WARMUP" --mode "$MODES" --formulation $FORMULATIONS --profile-steps "$PROFILE" \
    --profile-dir target/bench-profiles ${SPIN:+--spinning} | tee -a "$out"
if [[ -n "$PRIMITIVE" ]]; then
    # shellcheck disable=SC2086
    "$bin" "${thread_args[@]}" --device cpu bench-step --arch dcgan64 --batch $BATCHES --steps "$STEPS" \
        --warmup "$WARMUP" --mode "$MODES" --formulation $FORMULATIONS --primitive-backward ${SPIN:+--spinning} |
        tee -a "$out"
fi
if [[ -n "$BASELINE" ]]; then
    # shellcheck disable=SC2086
    "$BASELINE" "${thread_args[@]}" --device cpu bench-step --arch dcgan64 --batch $BATCHES --steps "$STEPS" \
        --warmup "$WARMUP" --mode "$MODES" ${SPIN:+--spinning} | sed 's/^{/{"build": "baseline", /' | tee -a "$out"
fi
# shellcheck disable=SC2086
python3 bench/torch_dcgan.py --batch $BATCHES --steps "$STEPS" --warmup "$WARMUP" --profile "$TORCH_PROFILE" | tee -a "$out"
# PyTorch's OpenMP threads also spin by default; on a busy machine that costs it as much as it cost ONNX Runtime,
# so it is timed a second time with sleeping threads (the runner's setting).
# shellcheck disable=SC2086
OMP_WAIT_POLICY=PASSIVE python3 bench/torch_dcgan.py --batch $BATCHES --steps "$STEPS" --warmup "$WARMUP" |
    sed 's/^{/{"omp_wait_policy": "passive", /' | tee -a "$out"

python3 - "$out" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print("\nDCGAN 64x64 training iteration (D + G update), CPU, median ms after warm-up")
print(f"{'batch':>5}  {'anime-pipe':>26}  {'ms':>8}  {'pytorch':>8}  {'pytorch passive':>15}  {'pytorch / anime-pipe':>20}")
def get(b, tool, passive=False):
    return next((r["ms_per_step"] for r in rows if r["batch"] == b and r["tool"] == tool
                 and ("omp_wait_policy" in r) == passive), float("nan"))
for b in sorted({r["batch"] for r in rows}):
    torch, passive = get(b, "pytorch"), get(b, "pytorch", passive=True)
    for r in (r for r in rows if r["batch"] == b and r["tool"] == "anime-pipe"):
        what = f"{r.get('build', '')} {r['mode']} {r.get('formulation', '')}"
        if "primitive_backward" in r.get("tuning", ""):
            what += " prim-bn"
        ms = r["ms_per_step"]
        print(f"{b:>5}  {what:>26}  {ms:>8.1f}  {torch:>8.1f}  {passive:>15.1f}  {min(torch, passive) / ms:>20.2f}")
print("\nCPU time per iteration (all threads, median; less sensitive to other jobs than wall time)")
for b in sorted({r["batch"] for r in rows}):
    cpu = {("pytorch passive" if "omp_wait_policy" in r else "pytorch") if r["tool"] == "pytorch" else
           f"{r.get('build', '')} {r['mode']} {r.get('formulation', '')}"
           + (" prim-bn" if "primitive_backward" in r.get("tuning", "") else ""): r.get("cpu_ms_per_step")
           for r in rows if r["batch"] == b}
    ref = min((v for k, v in cpu.items() if k.startswith("pytorch") and v), default=None)
    for k, v in cpu.items():
        if v and not k.startswith("pytorch"):
            print(f"{b:>5}  {k:>26}  {v:>8.1f} cpu-ms  pytorch {ref:>8.1f} cpu-ms  ratio {ref / v:.2f}" if ref else f"{b:>5}  {k:>26}  {v:>8.1f} cpu-ms")
print("(pytorch / anime-pipe: speed ratio against PyTorch's faster OpenMP setting; > 1 = anime-pipe faster)")
EOF
