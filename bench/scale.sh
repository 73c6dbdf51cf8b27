#!/usr/bin/env bash
# Scale of the data pipeline (ingest, dedup, clean, pack at 64) on generated datasets of growing size: per stage the
# wall time, images/s and peak RSS (/usr/bin/time -v), then the cost of a re-run after adding 1% new images.
#
#   bench/scale.sh                     # 10000 100000 1000000 items
#   bench/scale.sh 10000 100000        # chosen sizes
#   THREADS=2 KEEP=1 bench/scale.sh    # threads (default: all cores); KEEP=1 keeps the work folders
#   BIN=path/to/anime-pipe bench/scale.sh   # time that binary (no build)
#
# Data: bench/scale_data.py (N distinct small JPEGs, 48-96 px, 1,000 per folder; Python + Pillow); the 1% are N/100
# more images in new folders. Prints a Markdown table. Needs a release build (built here if missing) and about
# 20 KB of disk per item (sources, cache objects, pack's memo of 64x64 pixels, shards).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${BIN:-}" ]]; then cargo build --release -q; fi
bin=${BIN:-$PWD/target/release/anime-pipe}
threads=${THREADS:-$(nproc)}
sizes=("$@")
[[ ${#sizes[@]} -eq 0 ]] && sizes=(10000 100000 1000000)
root=$(mktemp -d /tmp/anime-pipe-scale.XXXXXX)
[[ -z "${KEEP:-}" ]] && trap 'rm -rf "$root"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem/ {print $2}') GB; threads=$threads; load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# One timed command: prints "wall_s peak_mb" and keeps the --json summary in $root/last.json.
timed() {
    /usr/bin/time -f "%e %M" -o "$root/time" "$bin" --json -q -j "$threads" "$@" >"$root/last.json"
    awk '{printf "%s %.0f\n", $1, $2 / 1024}' "$root/time"
}
# A count from the last summary.
count() { python3 -c "import json,sys; s=[json.loads(l) for l in open('$root/last.json') if l.strip()][-1]; print(dict(s['counts']).get('$1', 0))"; }

# Images start .. start + count - 1, one generator process per core (each a contiguous slice).
generate() { # DIR COUNT START
    local dir=$1 count=$2 start=$3 procs k pids=()
    procs=$(nproc)
    for ((k = 0; k < procs; k++)); do
        local from=$((start + count * k / procs)) to=$((start + count * (k + 1) / procs))
        python3 bench/scale_data.py "$dir" "$((to - from))" --start "$from" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || return 1; done
}

echo "| items | stage | first run: s | images/s | peak RSS MB | after +1%: s | computed / reused |"
echo "|---|---|---|---|---|---|---|"
for n in "${sizes[@]}"; do
    dir=$root/n$n
    /usr/bin/time -f "%e" -o "$root/gen" bash -c "$(declare -f generate); generate '$dir/sample' $n 0"
    echo "generated $n images in $(cat "$root/gen") s ($(du -sh "$dir/sample" | cut -f1))" >&2
    config=(--config "$dir/sample/pipeline.yaml" --workdir "$dir/work")
    declare -A first=() rate=() peak=()
    for stage in ingest dedup clean pack; do
        read -r s mb < <(timed "${config[@]}" "$stage")
        case $stage in ingest) items=$(count files) ;; dedup) items=$(count items) ;; clean) items=$(count input) ;;
            pack) items=$(count "input items") ;; esac
        first[$stage]=$s; peak[$stage]=$mb
        rate[$stage]=$(python3 -c "print(f'{$items / max($s, 0.01):,.0f}')")
    done
    # +1%: images n .. n + n/100 - 1, in new folders.
    generate "$dir/sample" "$((n / 100))" "$n"
    for stage in ingest dedup clean pack; do
        read -r s _ < <(timed "${config[@]}" "$stage")
        case $stage in
            ingest) work="$(count "images decoded") decoded / $(count reused) reused" ;;
            pack) work="$(count computed) computed / $(count reused) reused" ;;
            *) work="- (no decoding)" ;;
        esac
        echo "| $n | $stage | ${first[$stage]} | ${rate[$stage]} | ${peak[$stage]} | $s | $work |"
    done
    echo "disk: $(du -sh "$dir/work/cache/objects" "$dir/work/cache/memo" "$dir/work/shards" | tr '\t\n' ': ')" >&2
    [[ -z "${KEEP:-}" ]] && rm -rf "$dir"
done
