#!/usr/bin/env bash
# Pipeline throughput: anime-pipe (release) vs a Python + Pillow script doing the same work, same machine, same run.
#   bench/pipeline.sh [ZIP] [THREADS]      (default: ../shared/data/getchu64.zip, all cores)
# Prints one line per stage and tool: images/s, and the speed-up. Needs: cargo, python3 with pillow numpy blake3
# safetensors (pip install pillow numpy blake3 safetensors scipy).
set -euo pipefail
cd "$(dirname "$0")/.."
zip=${1:-../shared/data/getchu64.zip}
threads=${2:-$(nproc)}
cargo build --release -q
bin=target/release/anime-pipe
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); threads=$threads"
echo "input: $zip ($(du -h "$zip" | cut -f1))"
run() { "$bin" --json -q -j "$threads" --workdir "$work/ap" "$@"; }
{
  run ingest --source "$zip" --already-cropped
  run dedup
  run clean --min-size 64
  run pack --size 64
} > "$work/anime-pipe.jsonl"
python3 bench/pipeline_reference.py "$zip" "$work/ref.safetensors" > "$work/python.jsonl"
python3 - "$work/anime-pipe.jsonl" "$work/python.jsonl" <<'PY'
import json, sys
ap = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
py = {r["stage"]: r for r in (json.loads(l) for l in open(sys.argv[2]) if l.strip())}
def images(summary):
    counts = dict((k, v) for k, v in summary["counts"])
    for key in ("files", "rows", "items", "samples", "images"):
        if key in counts:
            return counts[key]
    return max(counts.values())
print(f"{'stage':<8} {'anime-pipe img/s':>17} {'python img/s':>13} {'speed-up':>9}")
for s in ap:
    n, t = images(s), s["seconds"]
    line = f"{s['stage']:<8} {n / t:>17.0f}"
    if s["stage"] in py:
        r = py[s["stage"]]
        ref = r["images"] / r["seconds"]
        line += f" {ref:>13.0f} {n / t / ref:>8.1f}x"
    print(line + f"   ({n} images, {t:.2f} s)")
PY
