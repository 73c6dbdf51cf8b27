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
    --warmup "$WARMUP" --mode both --profile-steps "$PROFILE" --profile-dir target/bench-profiles ${SPIN:+--spinning} | tee -a "$out"
# shellcheck disable=SC2086
python3 bench/torch_dcgan.py --batch $BATCHES --steps "$STEPS" --warmup "$WARMUP" | tee -a "$out"
# PyTorch's OpenMP threads also spin by default; on a busy machine that costs it as much as it cost ONNX Runtime,
# so it is timed a second time with sleeping threads (the runner's setting).
# shellcheck disable=SC2086
OMP_WAIT_POLICY=PASSIVE python3 bench/torch_dcgan.py --batch $BATCHES --steps "$STEPS" --warmup "$WARMUP" |
    sed 's/^{/{"omp_wait_policy": "passive", /' | tee -a "$out"

python3 - "$out" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print("\nDCGAN 64x64 training iteration (D + G update), CPU, median ms after warm-up")
print(f"{'batch':>5}  {'anime-pipe fused':>16}  {'anime-pipe split':>16}  {'pytorch':>8}  {'pytorch passive':>15}"
      f"  {'fused / pytorch':>15}")
def get(b, tool, mode=None, passive=False):
    return next((r["ms_per_step"] for r in rows if r["batch"] == b and r["tool"] == tool
                 and (mode is None or r.get("mode") == mode) and ("omp_wait_policy" in r) == passive), float("nan"))
for b in sorted({r["batch"] for r in rows}):
    fused, split = get(b, "anime-pipe", "fused"), get(b, "anime-pipe", "split")
    torch, passive = get(b, "pytorch"), get(b, "pytorch", passive=True)
    print(f"{b:>5}  {fused:>16.1f}  {split:>16.1f}  {torch:>8.1f}  {passive:>15.1f}  {fused / min(torch, passive):>15.2f}")
print("(fused / pytorch: against PyTorch's faster setting)")
EOF
