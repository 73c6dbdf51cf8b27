#!/usr/bin/env bash
# Partitioned crop on a real Slurm cluster on this machine (scripts/slurm-up.sh): the same images cropped as a job
# array of 1, 2 and 4 partitions (the machine's cores shared among the tasks), then merged; wall time from submission
# to the merged manifest, and a check that every run gives the same manifest.
#
#   bench/scale_crop_slurm.sh [IMAGES]      # default 24 illustrations of ../shared/data/illust
#   BIN=path/to/anime-pipe bench/scale_crop_slurm.sh
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-24}
if [[ -z "${BIN:-}" ]]; then cargo build --release -q; fi
bin=${BIN:-$PWD/target/release/anime-pipe}
scripts/slurm-up.sh >/dev/null
cores=$(nproc)
root=$(mktemp -d /tmp/anime-pipe-crop-slurm.XXXXXX)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/base/images"
find ../shared/data/illust -maxdepth 1 -type f | sort | head -n "$n" | xargs -I{} cp {} "$root/base/images/"
cat >"$root/base/pipeline.yaml" <<YAML
sources: [{name: illust, path: images}]
stages: [ingest, dedup, crop]
models: {face_detector: $PWD/../shared/models/anime_faceboxes.onnx}
YAML
(cd "$root/base" && "$bin" -q -j "$cores" --config pipeline.yaml ingest && "$bin" -q --config pipeline.yaml dedup)
echo "machine: $cores cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $n images; load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "| partitions | CPUs per task | wall s (submit -> merged) | images/s | crop manifest sha256 |"
echo "|---|---|---|---|---|"
for p in 1 2 4; do
    work=$root/p$p
    cp -a "$root/base" "$work"
    cpus=$((cores / p > 0 ? cores / p : 1))
    start=$(date +%s.%N)
    (cd "$work" && sbatch --parsable --wait -o "slurm-%A_%a.out" --array=0-$((p - 1)) --cpus-per-task="$cpus" \
        --wrap "$bin -q -j $cpus --partitions $p --config pipeline.yaml crop" >/dev/null)
    (cd "$work" && "$bin" -q --config pipeline.yaml merge crop)
    end=$(date +%s.%N)
    wall=$(python3 -c "print(f'{$end - $start:.1f}')")
    rate=$(python3 -c "print(f'{$n / ($end - $start):.2f}')")
    sum=$(sha256sum "$work/manifests/crop.parquet" | cut -c1-16)
    echo "| $p | $cpus | $wall | $rate | $sum |"
done
