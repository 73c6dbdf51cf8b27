#!/usr/bin/env bash
# Peak memory and time of ingest, dedup, clean, pack and an ingest re-run, two binaries side by side on the same generated images
# (e.g. the commit before streamed manifests and after): each stage with /usr/bin/time, the two binaries alternating
# stage by stage, each in its own workdir; then `anime-pipe diff` of the two workdirs (same rows in every manifest).
#
#   bench/manifest_memory.sh BEFORE_BIN AFTER_BIN [N]    # N generated images (default 100000)
#   THREADS=2 KEEP=1 bench/manifest_memory.sh ...        # threads (default: all cores); KEEP=1 keeps the folders
#   STAGES="ingest" bench/manifest_memory.sh ...         # only these stages (default: ingest dedup clean pack)
#
# Data: bench/scale_data.py (N distinct small JPEGs, 48-96 px, as in bench/scale.sh). Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
before=$1 after=$2 n=${3:-100000}
threads=${THREADS:-$(nproc)}
root=$(mktemp -d /tmp/anime-pipe-memory.XXXXXX)
[[ -z "${KEEP:-}" ]] && trap 'rm -rf "$root"' EXIT
echo "machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GB; threads=$threads; load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

procs=$(nproc) pids=()
for ((k = 0; k < procs; k++)); do
    python3 bench/scale_data.py "$root/sample" "$((n * (k + 1) / procs - n * k / procs))" --start "$((n * k / procs))" &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done

echo "| items | stage | before: s | before: peak MB | after: s | after: peak MB |"
echo "|---|---|---|---|---|---|"
for stage in ${STAGES:-ingest dedup clean pack}; do
    row="| $n | $stage"
    for which in before after; do
        bin=${!which}
        /usr/bin/time -f "%e %M" -o "$root/time" "$bin" --json -q -j "$threads" \
            --config "$root/sample/pipeline.yaml" --workdir "$root/$which" "$stage" >/dev/null
        read -r s kb <"$root/time"
        row+=" | $s | $((kb / 1024))"
    done
    echo "$row |"
done
# Ingest again with nothing changed: every file's outcome comes from the re-run index.
row="| $n | ingest (re-run)"
for which in before after; do
    bin=${!which}
    /usr/bin/time -f "%e %M" -o "$root/time" "$bin" --json -q -j "$threads" \
        --config "$root/sample/pipeline.yaml" --workdir "$root/$which" ingest >/dev/null
    read -r s kb <"$root/time"
    row+=" | $s | $((kb / 1024))"
done
echo "$row |"
if "$after" diff "$root/before" "$root/after" >"$root/diff.txt"; then
    echo "anime-pipe diff: every manifest has the same rows" >&2
else
    echo "anime-pipe diff: the workdirs differ:" >&2
    head -20 "$root/diff.txt" >&2
    exit 1
fi
