#!/usr/bin/env bash
# Submits the data pipeline to Slurm: every stage but dedup as a job array of PARTITIONS tasks, dedup as one job,
# each stage after the previous one (--dependency=afterok), then `merge` of the last stage. Each stage merges its
# partitioned upstream by itself before it starts. Run it from the directory holding pipeline.yaml, on a file
# system every node mounts (see docs/cluster.md).
#
#   examples/slurm/pipeline.sh                          # 32 partitions, 2 CPUs per task
#   PARTITIONS=8 CPUS=4 examples/slurm/pipeline.sh
#   STAGES="ingest dedup clean pack" examples/slurm/pipeline.sh   # the stages your pipeline.yaml enables
#   WAIT=1 examples/slurm/pipeline.sh                   # block until the merge ends; exit status = the chain's
#   ANIME_PIPE=/opt/anime-pipe/bin/anime-pipe examples/slurm/pipeline.sh
#
# A failed array task: the next stage says which partitions are missing; re-submit only those with the same count,
#   sbatch --array=7,19 --wrap 'anime-pipe --partitions 32 crop'
# (with --partitions N the array index is the partition number) and re-submit the rest of the chain.
set -euo pipefail
n=${PARTITIONS:-32}
cpus=${CPUS:-2}
stages=${STAGES:-"ingest dedup crop clean pack"}
ap="${ANIME_PIPE:-anime-pipe} -q -j $cpus --partitions $n --config pipeline.yaml"

submit() { sbatch --parsable -o "slurm-%x-%A_%a.out" --cpus-per-task="$cpus" "$@" | cut -d';' -f1; }

after=""
for stage in $stages; do
    args=(-J "$stage")
    [[ "$stage" != dedup ]] && args+=("--array=0-$((n - 1))")
    [[ -n "$after" ]] && args+=("--dependency=afterok:$after")
    after=$(submit "${args[@]}" --wrap "$ap $stage")
    echo "$stage: job $after" >&2
done
last=${stages##* }
merge_args=(-J merge "--dependency=afterok:$after")
[[ -n "${WAIT:-}" ]] && merge_args+=(--wait)
merge=$(submit "${merge_args[@]}" --wrap "$ap merge $last")
echo "merge $last: job $merge" >&2
