#!/usr/bin/env bash
# Issue #13's check that the faster graphs train the same: a short getchu64 run per way of writing the step graphs,
# same seed, config and data; each generator scored by `anime-pipe eval` against the same reference. Prints each
# run's images/s and FID / KID, then a table. The configurations:
#   before    the graphs as they were before the formulation work: every ConvTranspose native, batch norm's
#             backward as the derivative of its primitives (`--formulation native --primitive-backward`)
#   default   today's default: every ConvTranspose native, closed-form batch norm backward (no flag)
#   subpixel  sub-pixel ConvTranspose on maps of <= 8x8 and the closed form (`--formulation subpixel:64`)
#
#   bench/fid_formulations.sh [STEPS] [SAMPLES]     # default 300 steps (preset dcgan64 at batch 64), 2000 samples
#   CONFIGS="before default" bench/fid_formulations.sh   # a subset (default: before default subpixel)
#   SEED=8 bench/fid_formulations.sh              # training seed (default 7): rerun to see seed-to-seed spread
#   REFERENCE=5000 bench/fid_formulations.sh        # reference images (eval --max-reference; default 5000)
#   WORK=DIR bench/fid_formulations.sh              # workdir (default target/fid-formulations; kept, so the
#                                                   # packed data and the reference statistics are reused)
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-300}
samples=${2:-2000}
reference=${REFERENCE:-5000}
work=${WORK:-target/fid-formulations}
seed=${SEED:-7}
cargo build --release --quiet
bin=$PWD/target/release/anime-pipe
mkdir -p "$work"
zip=$(realpath ../shared/data/getchu64.zip)
cat > "$work/pipeline.yaml" <<YAML
sources:
  - name: getchu
    path: $zip
    already_cropped: true
stages: [ingest, dedup, clean, pack]
YAML
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$bin" -q --workdir "$work" --config "$work/pipeline.yaml" run
out="$work/results.jsonl"
: > "$out"
for form in ${CONFIGS:-before default subpixel}; do
    case $form in
        before) flags=(--formulation native --primitive-backward) ;;
        default) flags=() ;;
        subpixel) flags=(--formulation subpixel:64) ;;
        *) echo "unknown configuration $form (before, default, subpixel)" >&2; exit 2 ;;
    esac
    rm -rf "$work/runs/$form"
    start=$(date +%s.%N)
    "$bin" -q --workdir "$work" --config "$work/pipeline.yaml" train --preset dcgan64 --batch-size 64 \
        --steps "$steps" --seed "$seed" --sample-every 1000 --checkpoint-every 1000 --name "$form" ${flags[@]+"${flags[@]}"}
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    "$bin" -q --json --workdir "$work" --config "$work/pipeline.yaml" eval \
        --model "$work/runs/$form/generator.onnx" -n "$samples" --max-reference "$reference" --seed 3 \
        --inception ../shared/models/fid_inception_v3_pool3.onnx > "$work/eval-$form.json"
    python3 - "$form" "$seconds" "$steps" "$work/eval-$form.json" "$seed" >> "$out" <<'PY'
import json, sys
form, seconds, steps, path, seed = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
row = json.loads(open(path).read().strip().splitlines()[-1])["rows"][0]
print(json.dumps({"graphs": form, "seed": seed, "train_seconds": seconds, "images_per_s": steps * 64 / seconds,
                  "fid": row["fid"], "kid": row["kid_mean"], "eval": row}))
PY
done
python3 - "$out" "$steps" "$samples" "$reference" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"\ndcgan64 at batch 64, {sys.argv[2]} steps; FID/KID of {sys.argv[3]} samples vs {sys.argv[4]} train images")
print(f"{'graphs':>8} {'seed':>5} {'train s':>9} {'images/s':>9} {'FID':>8} {'KID':>9}")
for r in rows:
    print(f"{r['graphs']:>8} {r.get('seed', 7):>5} {r['train_seconds']:>9.1f} {r['images_per_s']:>9.1f} {r['fid']:>8.2f} {r['kid']:>9.5f}")
PY
