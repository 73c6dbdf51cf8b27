#!/usr/bin/env bash
# Decodes per image and per-stage wall time of the default pipeline, for one anime-pipe binary:
#   bench/decode_once.sh [BINARY] [THREADS]     (default: target/release/anime-pipe, 2 threads)
# on ../shared/data/getchu64.zip (already-cropped faces: ingest, dedup, clean, pack) and on the full-size
# illustrations ../shared/data/illust (ingest, dedup, crop, clean, pack; crop needs ../shared/models). Each stage's
# `images decoded` comes from its --json summary; a binary that predates that count is measured through the
# `BASELINE-DECODES <stage> <n>` lines a counting build prints on stderr (see BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/release/anime-pipe}")
threads=${2:-2}
shared=$(realpath ../shared)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
echo "binary: $bin; machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); -j $threads"
run_set() {
  local name=$1 yaml=$2
  mkdir -p "$work/$name"
  printf '%s\n' "$yaml" > "$work/$name/pipeline.yaml"
  "$bin" --json -q -j "$threads" --config "$work/$name/pipeline.yaml" run > "$work/$name.jsonl" 2> "$work/$name.err"
  python3 - "$name" "$work/$name.jsonl" "$work/$name.err" <<'PY'
import json, sys, re
name, out, err = sys.argv[1:]
stages = [json.loads(l) for l in open(out) if l.strip()]
baseline = {m[0]: int(m[1]) for m in re.findall(r"BASELINE-DECODES (\w+) (\d+)", open(err).read())}
ingest = dict(stages[0]["counts"])
images = ingest.get("accepted", 0)
total = 0
print(f"{name}: {images} accepted images")
print(f"  {'stage':<8} {'seconds':>8} {'images decoded':>15}")
for s in stages:
    if s["stage"] == "run":
        continue
    counts = dict(s["counts"])
    decoded = counts.get("images decoded", baseline.get(s["stage"]))
    total += decoded or 0
    print(f"  {s['stage']:<8} {s['seconds']:>8.2f} {decoded:>15}")
run = next(s for s in stages if s["stage"] == "run")
print(f"  {'total':<8} {run['seconds']:>8.2f} {total:>15}   ({total / max(images, 1):.2f} decodes per accepted image)")
PY
}
run_set getchu64 "sources: [{name: getchu, path: $shared/data/getchu64.zip, already_cropped: true}]
stages: [ingest, dedup, clean, pack]"
run_set illust "sources: [{name: illust, path: $shared/data/illust}]
stages: [ingest, dedup, crop, clean, pack]
models: {face_detector: $shared/models/anime_faceboxes.onnx}"
