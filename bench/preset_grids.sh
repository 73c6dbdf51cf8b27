#!/usr/bin/env bash
# Issue #14: every training preset for the same short run on the same data, one sample grid each (the trainer's
# fixed 8x4 latent batch at the last step), copied to docs/grids/<preset>.png for BENCHMARKS.md. The data is a
# 3,000-image subset of getchu64 packed at 64 and 128 px (dcgan128 trains at 128).
#
#   bench/preset_grids.sh [STEPS]              # default 50 steps per preset
#   PRESETS="dcgan64 faces64" bench/preset_grids.sh
#   BIN=path/to/anime-pipe WORK=DIR bench/preset_grids.sh
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-50}
work=${WORK:-target/preset-grids}
if [[ -z ${BIN:-} ]]; then
    cargo build --release --quiet
    BIN=$PWD/target/release/anime-pipe
fi
mkdir -p "$work" docs/grids
source=$PWD/$work/getchu3k.zip
[[ -f $source ]] || python3 - "$(realpath ../shared/data/getchu64.zip)" "$source" <<'PY'
import os, sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(src) as z:
    names = sorted(n for n in z.namelist() if not n.endswith("/"))[:3000]
    with zipfile.ZipFile(dst + ".tmp", "w", zipfile.ZIP_STORED) as out:
        for n in names:
            out.writestr(n, z.read(n))
os.replace(dst + ".tmp", dst)
PY
cat > "$work/pipeline.yaml" <<YAML
sources:
  - name: getchu
    path: $source
    already_cropped: true
pack:
  sizes: [64, 128]
stages: [ingest, dedup, clean, pack]
YAML
"$BIN" -q --workdir "$work" --config "$work/pipeline.yaml" run
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for preset in ${PRESETS:-dcgan64 lightning1000 anime300 getchu dcgan128 faces64}; do
    rm -rf "$work/runs/$preset"
    start=$(date +%s.%N)
    "$BIN" -q --workdir "$work" --config "$work/pipeline.yaml" train --preset "$preset" --steps "$steps" \
        --seed 7 --name "$preset"
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    cp "$work/runs/$preset/samples/step-$(printf %08d "$steps").png" "docs/grids/$preset.png"
    printf '%-14s %6.1f s  %s\n' "$preset" "$seconds" "docs/grids/$preset.png"
done
