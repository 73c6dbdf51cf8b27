#!/usr/bin/env bash
# Partitioned crop on a real Slurm cluster on this machine (scripts/slurm-up.sh): the same images cropped as a job
# array of 1, 2 and 4 partitions (the machine's cores shared among the tasks), then merged. Times: the array's
# makespan (first task start to last task end, stamped by the tasks themselves: `sbatch --wait` polls, so its own
# return time is seconds late), the merge, and the crop CPU seconds summed over tasks; and a check that every run
# gives the same manifest.
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
echo "| partitions | CPUs per task | array makespan s | merge s | images/s | crop manifest sha256 |"
echo "|---|---|---|---|---|---|"
for p in 1 2 4; do
    work=$root/p$p
    cp -a "$root/base" "$work"
    cpus=$((cores / p > 0 ? cores / p : 1))
    task='date +%s.%N > t-$SLURM_ARRAY_TASK_ID.start; '"$bin -q -j $cpus --partitions $p --config pipeline.yaml crop"'; s=$?; date +%s.%N > t-$SLURM_ARRAY_TASK_ID.end; exit $s'
    (cd "$work" && sbatch --parsable --wait -o "slurm-%A_%a.out" --array=0-$((p - 1)) --cpus-per-task="$cpus" \
        --wrap "$task" >/dev/null)
    merge_start=$(date +%s.%N)
    (cd "$work" && "$bin" -q --config pipeline.yaml merge crop)
    merge_end=$(date +%s.%N)
    read -r wall rate merge < <(python3 - "$work" "$n" "$merge_start" "$merge_end" <<'PY'
import glob, sys
work, n, m0, m1 = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
start = min(float(open(f).read()) for f in glob.glob(f"{work}/t-*.start"))
end = max(float(open(f).read()) for f in glob.glob(f"{work}/t-*.end"))
print(f"{end - start:.1f} {n / (end - start):.2f} {m1 - m0:.2f}")
PY
)
    sum=$(sha256sum "$work/manifests/crop.parquet" | cut -c1-16)
    echo "| $p | $cpus | $wall | $merge | $rate | $sum |"
done
