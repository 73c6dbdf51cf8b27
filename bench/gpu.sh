#!/usr/bin/env bash
# GPU benchmark of the DCGAN training step, prepared on a CPU machine and run in one command on the GPU machine
# (../shared/docs/gpu.md: x86-64 + H100/H200, CUDA 13 driver, PyTorch with its NVIDIA wheels, no Rust, no network).
#
#   bench/gpu.sh prepare     # HERE (CPU machine): release binary, ONNX Runtime CUDA build as chunks, a small shard
#                            # set; everything lands in git-ignored .gpubench/ and .ortgpu/ (what has to travel)
#   bench/gpu.sh chunk       # GPU machine, one call per .ortgpu/providers_cuda.zst.partNN carried: appends it to
#                            # $ORTGPU (default /opt/ortgpu); parts must arrive in order while the machine is warm
#   bench/gpu.sh run         # GPU machine: set up ONNX Runtime CUDA (unpacks once all parts are in), then
#                            #  1. anime-pipe bench-step on CUDA per formulation x CUDA graph off/on x TF32 off/on
#                            #  2. PyTorch eager and torch.compile, TF32 off/on, same model/batch/optimiser/GPU
#                            #  3. anime-pipe train: TRAIN_STEPS/2 real steps with a checkpoint, then --resume to
#                            #     TRAIN_STEPS, from .gpubench/work/shards
#                            #  4. a table of images/s and anime-pipe / PyTorch ratios (also .gpubench/out/table.md)
#   bench/gpu.sh dry-run     # HERE: every step of `run` on the CPU with tiny sizes (DEVICE=cpu), plus the chunk
#                            # append/unpack logic on a dummy library: tests the script without a GPU
#
# Settings (environment): BATCHES ("64 128"), STEPS (20), WARMUP (5), FORMULATIONS ("native subpixel:64 subpixel"),
# TRAIN_STEPS (300), TRAIN_BATCH (128), DEVICE (cuda), ORTGPU (/opt/ortgpu), OUT (.gpubench/out).
# One failing configuration (e.g. CUDA graph capture refused) is recorded as "failed" in the table and the rest go on.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
mode=${1:-run}
BATCHES=${BATCHES:-"64 128"}
STEPS=${STEPS:-20}
WARMUP=${WARMUP:-5}
FORMULATIONS=${FORMULATIONS:-"native subpixel:64 subpixel"}
TRAIN_STEPS=${TRAIN_STEPS:-300}
TRAIN_BATCH=${TRAIN_BATCH:-128}
DEVICE=${DEVICE:-cuda}
ORTGPU=${ORTGPU:-/opt/ortgpu}
OUT=${OUT:-$root/.gpubench/out}
SHARD_IMAGES=${SHARD_IMAGES:-4096}

say() { echo "== $*" >&2; }
exclude() { grep -qx "$1" .git/info/exclude 2>/dev/null || echo "$1" >> .git/info/exclude; }

find_bin() {
    for b in .gpubench/anime-pipe target/release/anime-pipe; do
        if [[ -x $b ]]; then echo "$root/$b"; return 0; fi
    done
    if [[ -f .gpubench/anime-pipe.zst ]]; then
        zstd -q -d -f .gpubench/anime-pipe.zst -o /tmp/anime-pipe && chmod +x /tmp/anime-pipe && echo /tmp/anime-pipe && return 0
    fi
    echo "no anime-pipe binary: run bench/gpu.sh prepare on the CPU machine and carry .gpubench/" >&2
    return 1
}

# --- prepare (CPU machine) -------------------------------------------------------------------------------------
make_shards() { # $1 = workdir, $2 = number of images, $3 = binary
    local work=$1 n=$2 bin=$3
    rm -rf "$work" && mkdir -p "$work/src"
    python3 - "$root/../shared/data/getchu64.zip" "$work/src" "$n" <<'EOF'
import sys, zipfile
zf = zipfile.ZipFile(sys.argv[1])
names = sorted(n for n in zf.namelist() if n.endswith(".jpg"))[: int(sys.argv[3])]
for n in names:
    with open(f"{sys.argv[2]}/{n.rsplit('/', 1)[-1]}", "wb") as f:
        f.write(zf.read(n))
print(f"{len(names)} images", file=sys.stderr)
EOF
    cat > "$work/pipeline.yaml" <<'EOF'
sources:
  - name: getchu
    path: src
    already_cropped: true
stages: [ingest, dedup, clean, pack]
EOF
    "$bin" -q --config "$work/pipeline.yaml" run >&2 || return 1
    rm -rf "$work/src" "$work/cache"
    du -sh "$work" >&2
}

prepare() {
    exclude '/.gpubench/'
    mkdir -p .gpubench
    cargo build --release --quiet || exit 2
    # The release binary carries debug info (~700 MB): strip it (45 MB), then compress (10 MB): 64 MiB per call.
    strip target/release/anime-pipe -o .gpubench/anime-pipe.stripped
    zstd -q -f -19 .gpubench/anime-pipe.stripped -o .gpubench/anime-pipe.zst && rm .gpubench/anime-pipe.stripped
    say "binary: $(du -h .gpubench/anime-pipe.zst | cut -f1) compressed"
    make_shards "$root/.gpubench/work" "$SHARD_IMAGES" "$root/target/release/anime-pipe" || exit 2
    if ! ls .ortgpu/libonnxruntime.so.* >/dev/null 2>&1; then
        ../shared/tools/ort-gpu-chunks.sh || exit 2
    fi
    say "carry: .gpubench (binary + shards) and .ortgpu/libonnxruntime* in the first call, then one"
    say "       .ortgpu/providers_cuda.zst.partNN per call with 'bench/gpu.sh chunk', then 'bench/gpu.sh run'"
    du -sh .gpubench .ortgpu/* >&2
}

# --- ONNX Runtime CUDA on the GPU machine ---------------------------------------------------------------------
chunk() { # appends each carried part not yet appended, in order
    mkdir -p "$ORTGPU" && touch "$ORTGPU/parts.done"
    cp -n .ortgpu/libonnxruntime.so.* .ortgpu/libonnxruntime_providers_shared.so "$ORTGPU"/ 2>/dev/null || true
    for part in .ortgpu/providers_cuda.zst.part*; do
        [[ -f $part ]] || continue
        local name=${part##*/}
        if grep -qx "$name" "$ORTGPU/parts.done" 2>/dev/null; then continue; fi
        local want
        want=$(printf 'providers_cuda.zst.part%02d' "$(wc -l < "$ORTGPU/parts.done")")
        if [[ $name != "$want" ]]; then
            echo "chunk: got $name but $want is next (the machine went cold? start again from part00)" >&2
            return 1
        fi
        cat "$part" >> "$ORTGPU/providers_cuda.zst" && echo "$name" >> "$ORTGPU/parts.done"
        say "appended $name ($(wc -l < "$ORTGPU/parts.done") parts in $ORTGPU)"
    done
}

setup_ort() { # unpacks the CUDA provider once, sets ORT_DYLIB_PATH and LD_LIBRARY_PATH
    chunk || return 1
    if [[ ! -f $ORTGPU/libonnxruntime_providers_cuda.so ]]; then
        [[ -f $ORTGPU/providers_cuda.zst ]] || { echo "no CUDA provider chunks in $ORTGPU" >&2; return 1; }
        zstd -q -d --long=27 "$ORTGPU/providers_cuda.zst" -o "$ORTGPU/libonnxruntime_providers_cuda.so" || {
            echo "unpacking failed: a part is missing or out of order (see $ORTGPU/parts.done)" >&2
            rm -f "$ORTGPU/libonnxruntime_providers_cuda.so"
            return 1
        }
    fi
    ORT_DYLIB_PATH=$(ls "$ORTGPU"/libonnxruntime.so.* | head -1)
    export ORT_DYLIB_PATH
    local nv
    nv=$(python3 -c "import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))" 2>/dev/null)/nvidia
    local libs
    libs=$(ls -d "$nv"/*/lib 2>/dev/null | tr '\n' ':')
    export LD_LIBRARY_PATH="$ORTGPU:${libs}${LD_LIBRARY_PATH:-}"
    say "ONNX Runtime: $ORT_DYLIB_PATH; CUDA libraries from $nv"
}

# --- the benchmark --------------------------------------------------------------------------------------------
bench_all() { # $1 = binary
    local bin=$1 rows=$OUT/rows.jsonl
    mkdir -p "$OUT" && : > "$rows"
    say "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
    local graphs=("") tf32s=("")
    if [[ $DEVICE == cuda* ]]; then graphs=("" "--cuda-graph"); tf32s=(off on); fi
    for f in $FORMULATIONS; do
        for cg in "${graphs[@]}"; do
            for tf in "${tf32s[@]}"; do
                local args=(--device "$DEVICE" bench-step --arch dcgan64 --batch $BATCHES --steps "$STEPS"
                    --warmup "$WARMUP" --mode fused --formulation "$f" $cg ${tf:+--tf32 $tf})
                say "anime-pipe ${args[*]}"
                if ! "$bin" "${args[@]}" > "$OUT/step.out" 2> "$OUT/step.err"; then
                    local why
                    why=$(grep -v '^note:' "$OUT/step.err" | tail -1 | tr '"' "'" | cut -c1-160)
                    echo "{\"tool\": \"anime-pipe\", \"formulation\": \"$f\", \"tuning\": \"${cg:+cuda_graph=true} ${tf:+tf32=$tf}\", \"failed\": \"$why\"}" >> "$rows"
                    echo "   failed: $why" >&2
                fi
                grep '^{' "$OUT/step.out" >> "$rows"
            done
        done
    done
    local torch_dev=cpu
    [[ $DEVICE == cuda* ]] && torch_dev=cuda
    for tf in "${tf32s[@]}"; do
        for c in "" "--compile"; do
            say "pytorch --device $torch_dev ${tf:+--tf32 $tf} $c"
            python3 bench/torch_dcgan.py --batch $BATCHES --steps "$STEPS" --warmup "$WARMUP" --device "$torch_dev" \
                ${tf:+--tf32 $tf} $c >> "$rows" 2> "$OUT/torch.err" ||
                echo "{\"tool\": \"pytorch\", \"mode\": \"${c:+compile}\", \"failed\": \"$(tail -1 "$OUT/torch.err" | tr '"' "'" | cut -c1-160)\"}" >> "$rows"
        done
    done
}

train_real() { # $1 = binary: TRAIN_STEPS/2 steps, checkpoint, resume to TRAIN_STEPS; times both halves
    local bin=$1 work=$OUT/train-work half=$((TRAIN_STEPS / 2))
    rm -rf "$work" && cp -a .gpubench/work "$work" || return 1
    local t0 t1 t2
    t0=$(date +%s.%N)
    "$bin" -q --workdir "$work" --config "$work/pipeline.yaml" --device "$DEVICE" train --preset dcgan64 \
        --batch-size "$TRAIN_BATCH" --steps "$half" --checkpoint-every 1 --sample-every 1000 --name gpu >&2 || return 1
    t1=$(date +%s.%N)
    "$bin" -q --workdir "$work" --config "$work/pipeline.yaml" --device "$DEVICE" train --resume "$work/runs/gpu" \
        --steps "$TRAIN_STEPS" >&2 || return 1
    t2=$(date +%s.%N)
    ls "$work/runs/gpu/checkpoints" >&2
    python3 - "$t0" "$t1" "$t2" "$half" "$TRAIN_STEPS" "$TRAIN_BATCH" "$DEVICE" >> "$OUT/rows.jsonl" <<'EOF'
import json, sys
t0, t1, t2 = map(float, sys.argv[1:4]); half, total, batch = map(int, sys.argv[4:7])
print(json.dumps({"tool": "anime-pipe train", "device": sys.argv[7], "batch": batch, "steps": total,
                  "first_half_s": round(t1 - t0, 1), "resumed_half_s": round(t2 - t1, 1),
                  "images_per_s_incl_startup": round((total * batch) / (t2 - t0), 1)}))
EOF
}

table() {
    python3 - "$OUT/rows.jsonl" <<'EOF' | tee "$OUT/table.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ok = [r for r in rows if "failed" not in r]
def best_torch(b, mode):
    ts = [r for r in ok if r["tool"] == "pytorch" and r.get("batch") == b and r.get("mode", "eager") == mode]
    return min(ts, key=lambda r: r["ms_per_step"]) if ts else None
print("| tool | formulation / mode | settings | batch | ms/iteration | images/s | vs PyTorch eager | vs torch.compile |")
print("|---|---|---|---|---|---|---|---|")
for r in ok:
    if "ms_per_step" not in r:
        continue
    b = r["batch"]
    ips = b / r["ms_per_step"] * 1000
    e, c = best_torch(b, "eager"), best_torch(b, "compile")
    ratio = lambda t: f"{t['ms_per_step'] / r['ms_per_step']:.2f}" if t else "-"
    what = r.get("formulation", r.get("mode", ""))
    settings = r.get("tuning", "") if r["tool"] == "anime-pipe" else ("tf32=" + str(r["tf32"]).lower() if "tf32" in r else "")
    print(f"| {r['tool']} | {what} | {settings} | {b} | {r['ms_per_step']:.1f} | {ips:.0f} | {ratio(e)} | {ratio(c)} |")
for r in rows:
    if "failed" in r:
        print(f"| {r['tool']} | {r.get('formulation', r.get('mode', ''))} | {r.get('tuning', '')} | - | failed: {r['failed']} | | | |")
for r in rows:
    if r["tool"] == "anime-pipe train":
        print(f"\ntrain: {r['steps']} steps at batch {r['batch']} on {r['device']} ({r['steps'] // 2} + resumed "
              f"{r['steps'] - r['steps'] // 2}): {r['first_half_s']} s + {r['resumed_half_s']} s, "
              f"{r['images_per_s_incl_startup']} images/s including start-up")
print("\n(ratios: PyTorch ms / anime-pipe ms, against PyTorch's fastest TF32 setting of that mode; > 1 = anime-pipe faster)")
EOF
}

run() {
    local bin
    bin=$(find_bin) || exit 2
    if [[ $DEVICE == cuda* ]]; then setup_ort || exit 2; fi
    bench_all "$bin"
    say "training $TRAIN_STEPS real steps with checkpoint + resume"
    train_real "$bin" || echo '{"tool": "anime-pipe train", "failed": "see stderr"}' >> "$OUT/rows.jsonl"
    table
}

dry_run() { # the CPU side of everything, tiny
    local bin
    bin=$(find_bin) || exit 2
    say "dry run: chunk assembly on a dummy library"
    local fake
    fake=$(mktemp -d)
    (
        set -e
        cd "$fake" && mkdir -p .ortgpu && git init -q .
        head -c 3000000 /dev/urandom > lib.so
        zstd -q -19 --long=27 lib.so -o cuda.zst && split -b 1M -d cuda.zst .ortgpu/providers_cuda.zst.part
        touch .ortgpu/libonnxruntime.so.1.31.1 .ortgpu/libonnxruntime_providers_shared.so
    ) || exit 1
    local parts=("$fake"/.ortgpu/providers_cuda.zst.part*)
    mkdir -p "$fake/stage/.ortgpu"
    for p in "${parts[@]}"; do # one call per part, as on the GPU machine
        rm -f "$fake"/stage/.ortgpu/providers_cuda.zst.part*
        cp "$p" "$fake"/.ortgpu/lib* "$fake/stage/.ortgpu/"
        (cd "$fake/stage" && ORTGPU=$fake/opt chunk) || exit 1
    done
    zstd -q -d --long=27 "$fake/opt/providers_cuda.zst" -o "$fake/opt/lib.so"
    cmp "$fake/lib.so" "$fake/opt/lib.so" || { echo "dry run: reassembled library differs" >&2; exit 1; }
    say "dry run: ${#parts[@]} parts appended and unpacked identically"
    rm -rf "$fake"
    if [[ ! -d .gpubench/work/shards ]]; then
        say "dry run: a 512-image shard set"
        make_shards "$root/.gpubench/work" 512 "$bin" || exit 1
    fi
    BATCHES=${DRY_BATCHES:-8} STEPS=2 WARMUP=1 TRAIN_STEPS=6 TRAIN_BATCH=16 DEVICE=cpu OUT=$OUT run_cpu "$bin"
}

run_cpu() {
    bench_all "$1"
    train_real "$1" || echo '{"tool": "anime-pipe train", "failed": "see stderr"}' >> "$OUT/rows.jsonl"
    table
}

case $mode in
    prepare) prepare ;;
    chunk) chunk ;;
    run) run ;;
    dry-run) dry_run ;;
    *) echo "usage: bench/gpu.sh prepare|chunk|run|dry-run" >&2; exit 2 ;;
esac
