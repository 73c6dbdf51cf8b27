#!/usr/bin/env bash
# Issue #14's table: FID at equal steps for the dcgan64 preset (at batch 64) and each training addition, on getchu64
# and on a 3,000-image subset of it (the low-data regime). Every run carries the moving average of G (--ema 0.999):
# the average is a side computation that never feeds back into training, so each run's raw generator *is* the run
# without EMA (same seed, same iterations) and "EMA vs raw" comes from one run. Each run is then scored with
# `anime-pipe eval --run`, which measures both generators of every checkpoint.
#
#   bench/fid_quality.sh [STEPS] [SAMPLES]      # default 300 steps, 1000 samples per generator
#   CONFIGS="baseline diffaug" bench/fid_quality.sh   # a subset of: baseline hinge diffaug sn combined
#   DATASETS="3k" bench/fid_quality.sh          # full, 3k or both (default: full 3k)
#   STAGE=train|eval bench/fid_quality.sh       # only train, or only score existing runs (default: both)
#   SEED=8 bench/fid_quality.sh                 # training seed (default 7)
#   BIN=path/to/anime-pipe bench/fid_quality.sh # a prebuilt binary instead of `cargo build --release`
#   WORK=DIR bench/fid_quality.sh               # work root (default target/fid-quality; kept between runs)
#   ALL_CHECKPOINTS="3k:baseline" bench/fid_quality.sh   # runs scored at every checkpoint (`eval --run`: EMA and
#                                               # raw of each); the others at their final generators only
#   CHECKPOINTS=2,4,6 bench/fid_quality.sh      # only these epochs' checkpoints of those runs
#
# The reference is the training split itself (at most REFERENCE images, default 5000, first in pack order), cached
# under each workdir's cache/fid/. Prints one row per (dataset, config, checkpoint, weights).
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-300}
samples=${2:-1000}
reference=${REFERENCE:-5000}
root=${WORK:-target/fid-quality}
seed=${SEED:-7}
stage=${STAGE:-all}
if [[ -z ${BIN:-} ]]; then
    cargo build --release --quiet
    BIN=$PWD/target/release/anime-pipe
fi
zip=$(realpath ../shared/data/getchu64.zip)
mkdir -p "$root"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# A workdir per dataset, packed once.
prepare() {
    local name=$1 work=$root/$1 source=$zip
    mkdir -p "$work"
    if [[ $name == 3k ]]; then
        source=$PWD/$work/getchu3k.zip
        [[ -f $source ]] || python3 - "$zip" "$source" <<'PY'
import sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(src) as z:
    names = sorted(n for n in z.namelist() if not n.endswith("/"))[:3000]
    with zipfile.ZipFile(dst + ".tmp", "w", zipfile.ZIP_STORED) as out:
        for n in names:
            out.writestr(n, z.read(n))
import os; os.replace(dst + ".tmp", dst)
PY
    fi
    cat > "$work/pipeline.yaml" <<YAML
sources:
  - name: getchu
    path: $source
    already_cropped: true
stages: [ingest, dedup, clean, pack]
YAML
    "$BIN" -q --workdir "$work" --config "$work/pipeline.yaml" run
}

flags_of() {
    case $1 in
        baseline) echo "" ;;
        hinge) echo "--loss hinge" ;;
        diffaug) echo "--diffaugment color,translation,cutout" ;;
        sn) echo "--spectral-norm" ;;
        combined) echo "--diffaugment color,translation,cutout --loss hinge --spectral-norm" ;;
        *) echo "unknown configuration $1 (baseline hinge diffaug sn combined)" >&2; exit 2 ;;
    esac
}

for data in ${DATASETS:-full 3k}; do
    work=$root/$data
    prepare "$data"
    # Checkpoints: every epoch on the subset (47 steps), only the final one on the full set (313 steps an epoch).
    every=1
    for config in ${CONFIGS:-baseline hinge diffaug sn combined}; do
        read -r -a flags <<< "$(flags_of "$config")"
        if [[ $stage != eval ]]; then
            rm -rf "$work/runs/$config"
            start=$(date +%s.%N)
            "$BIN" -q --workdir "$work" --config "$work/pipeline.yaml" train --preset dcgan64 --batch-size 64 \
                --steps "$steps" --seed "$seed" --ema 0.999 --sample-every "$every" --checkpoint-every "$every" \
                --name "$config" ${flags[@]+"${flags[@]}"}
            echo "$(echo "$(date +%s.%N) - $start" | bc)" > "$work/runs/$config/train_seconds"
        fi
        if [[ $stage != train ]]; then
            scoring=(-n "$samples" --max-reference "$reference" --seed 3 --inception ../shared/models/fid_inception_v3_pool3.onnx)
            if [[ " ${ALL_CHECKPOINTS:-3k:baseline} " == *" $data:$config "* ]]; then
                filter=()
                [[ -n ${CHECKPOINTS:-} ]] && filter=(--checkpoints "$CHECKPOINTS")
                "$BIN" -q --json --workdir "$work" --config "$work/pipeline.yaml" eval --run "$config" "${scoring[@]}" \
                    ${filter[@]+"${filter[@]}"} > "$work/runs/$config/eval.json"
            else
                : > "$work/runs/$config/eval.json"
                for weights in ema raw; do
                    model=$work/runs/$config/generator.onnx
                    [[ $weights == raw ]] && model=$work/runs/$config/generator.raw.onnx
                    "$BIN" -q --json --workdir "$work" --config "$work/pipeline.yaml" eval --model "$model" "${scoring[@]}" \
                        | python3 -c "import json,sys; v=json.loads(sys.stdin.read().strip().splitlines()[-1]); [r.update(weights='$weights', label='final', step=$steps) for r in v['rows']]; print(json.dumps(v))" \
                        >> "$work/runs/$config/eval.json"
                done
            fi
        fi
    done
done

[[ $stage == train ]] && exit 0
python3 - "$root" "$steps" "$samples" "$reference" "$seed" <<'PY'
import json, pathlib, sys
root, steps, samples, reference, seed = pathlib.Path(sys.argv[1]), *sys.argv[2:]
print(f"\ndcgan64 at batch 64, {steps} steps, seed {seed}; FID / KID of {samples} samples vs <= {reference} train images")
print(f"{'data':>5} {'config':>9} {'checkpoint':>12} {'step':>5} {'FID raw':>8} {'FID EMA':>8} {'KID raw':>8} {'KID EMA':>8}")
for data in sorted(p for p in root.iterdir() if p.is_dir()):
    for run in sorted((data / "runs").glob("*/eval.json")):
        rows = [r for line in run.read_text().strip().splitlines() for r in json.loads(line)["rows"]]
        by = {}
        for r in rows:
            by.setdefault(r["label"].replace(".raw", ""), {})["raw" if r.get("weights") == "raw" else "ema"] = r
        for label, pair in by.items():
            raw, ema = pair.get("raw", {}), pair.get("ema", {})
            step = (ema or raw).get("step")
            f = lambda r, k: f"{r[k]:8.2f}" if k in r else f"{'-':>8}"
            g = lambda r, k: f"{r[k]:8.4f}" if k in r else f"{'-':>8}"
            print(f"{data.name:>5} {run.parent.name:>9} {label:>12} {str(step):>5} {f(raw,'fid')} {f(ema,'fid')} "
                  f"{g(raw,'kid_mean')} {g(ema,'kid_mean')}")
PY
