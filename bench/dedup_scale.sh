#!/usr/bin/env bash
# Dedup at scale, release build, peak RSS from /usr/bin/time -v:
#   bench/dedup_scale.sh [NEAR_HASHES] [QUERY_ITEMS] [DEDUP_ITEMS]     (default 10000000, 1000000, 1000000)
# 1. the near-duplicate search alone over NEAR_HASHES synthetic hashes (whole-image pairs at 6 bits, then the 16
#    window hashes of QUERY_ITEMS of them queried against all at 8 bits; see bench/dedup_scale.rs);
# 2. `anime-pipe dedup` end to end over DEDUP_ITEMS generated pictures with real measures (an ingest.parquet
#    written by `dedup_scale ingest`; the generation itself is not timed as dedup).
set -euo pipefail
cd "$(dirname "$0")/.."
hashes=${1:-10000000}
query_items=${2:-1000000}
items=${3:-1000000}
cargo build --release --bin anime-pipe --example dedup_scale
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GB"
peak() { grep -E 'Maximum resident|Elapsed \(wall' "$1" | sed 's/^\s*/  /'; }
/usr/bin/time -v target/release/examples/dedup_scale near "$hashes" "$query_items" 2> "$work/near.time"
peak "$work/near.time"
target/release/examples/dedup_scale ingest "$work/w" "$items"
/usr/bin/time -v target/release/anime-pipe --json -q --config "$work/w/pipeline.yaml" dedup > "$work/dedup.json" 2> "$work/dedup.time"
python3 -c "import json,sys; s=json.loads(open(sys.argv[1]).readline()); print('dedup:', dict(s['counts']), s.get('seconds', ''))" "$work/dedup.json" || cat "$work/dedup.json"
peak "$work/dedup.time"
