#!/usr/bin/env bash
# GPU benchmark of anime-pipe, prepared on a CPU machine and run in one command on the GPU machine
# (../shared/docs/gpu.md: x86-64 + H100/H200, CUDA 13 driver, PyTorch with its NVIDIA wheels, no Rust, no network).
#
#   bench/gpu.sh prepare     # HERE (CPU machine): one payload of everything the GPU machine lacks (stripped release
#                            # binary, ONNX Runtime's CUDA build, a small shard set of real faces, a few
#                            # illustrations for crop, the face detector, the FID Inception last), as an xz stream
#                            # split into ~59 MiB parts in the git-ignored .ortgpu/ (a call carries 64 MiB at most)
#   bench/gpu.sh chunk       # GPU machine, one call per carried .ortgpu/stream.xz.partNN: appends it to $ORTGPU
#                            # (default /opt/ortgpu); parts must arrive in order while the machine stays warm
#   bench/gpu.sh run         # GPU machine, after the last part: unpacks the payload, checks its SHA-256 sums, then
#                            #  1. anime-pipe bench-step on CUDA per formulation x CUDA graph off/on x TF32 off/on
#                            #  2. PyTorch eager (TF32 off/on) and torch.compile (TF32 on): same model/batch/optimiser
#                            #  3. anime-pipe train: TRAIN_STEPS/2 real steps with checkpoints, then --resume to
#                            #     TRAIN_STEPS; the last sample grid and the loss curve come back
#                            #  4. crop (FaceBoxes) on CUDA and on the machine's CPU cores, images/s
#                            #  5. eval (FID Inception) on CUDA with the trained generator, images/s (only when the
#                            #     payload's last parts, the Inception, arrived)
#                            #  6. a table (also $OUT/table.md); every step's JSON line in $OUT/rows.jsonl
#   bench/gpu.sh dry-run     # HERE: the real payload's parts appended one at a time as on the GPU machine, unpacked
#                            # and checked, then every step of `run` on the CPU with tiny sizes (DEVICE=cpu)
#
# Settings (environment): BATCHES ("64 128"), STEPS (20), WARMUP (5), FORMULATIONS ("native subpixel:64"),
# TRAIN_STEPS (192), TRAIN_BATCH (128), SHARD_IMAGES (1024), CROP_IMAGES (40), EVAL_SAMPLES (2048), DEVICE (cuda),
# ORTGPU (/opt/ortgpu), OUT (.gpubench/out; the device tool sets its own), STEP_TIMEOUT (90 s per configuration).
# One failing configuration (e.g. CUDA graph capture refused) is recorded as "failed" and the rest go on.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
mode=${1:-run}
BATCHES=${BATCHES:-"64 128"}
STEPS=${STEPS:-20}
WARMUP=${WARMUP:-5}
FORMULATIONS=${FORMULATIONS:-"native subpixel:64"}
TRAIN_STEPS=${TRAIN_STEPS:-192}
TRAIN_BATCH=${TRAIN_BATCH:-128}
SHARD_IMAGES=${SHARD_IMAGES:-1024}
CROP_IMAGES=${CROP_IMAGES:-40}
EVAL_SAMPLES=${EVAL_SAMPLES:-2048}
DEVICE=${DEVICE:-cuda}
ORTGPU=${ORTGPU:-/opt/ortgpu}
OUT=${OUT:-$root/.gpubench/out}
STEP_TIMEOUT=${STEP_TIMEOUT:-90}
PART_SIZE=${PART_SIZE:-59M}
ORT_GPU_VERSION=${ORT_GPU_VERSION:-1.31.1}

say() { echo "== $*" >&2; }
exclude() { grep -qx "$1" .git/info/exclude 2>/dev/null || echo "$1" >> .git/info/exclude; }
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 2))" "$1" "$2"; }

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
}

make_crop_set() { # $1 = folder: the first N illustrations and a pipeline that crops them with the payload's detector
    local dir=$1
    rm -rf "$dir" && mkdir -p "$dir/src"
    find "$root/../shared/data/illust" -maxdepth 1 -type f | sort | head -n "$CROP_IMAGES" | xargs -I{} cp {} "$dir/src/"
    cat > "$dir/pipeline.yaml" <<'EOF'
sources:
  - name: illust
    path: src
stages: [ingest, dedup, crop]
models:
  face_detector: ../models/anime_faceboxes.onnx
EOF
}

ort_libraries() { # $1 = folder: ONNX Runtime's CUDA build from the onnxruntime-gpu wheel
    local tmp
    tmp=$(mktemp -d)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        -d "$tmp" "onnxruntime-gpu==$ORT_GPU_VERSION" || return 1
    unzip -q -o "$tmp"/onnxruntime_gpu-*.whl 'onnxruntime/capi/libonnxruntime*' -d "$tmp/x" || return 1
    cp "$tmp"/x/onnxruntime/capi/libonnxruntime.so.* "$tmp"/x/onnxruntime/capi/libonnxruntime_providers_shared.so \
        "$tmp"/x/onnxruntime/capi/libonnxruntime_providers_cuda.so "$1"/
    rm -rf "$tmp"
}

prepare() {
    exclude '/.gpubench/'
    exclude '/.ortgpu/'
    local stage=$root/.gpubench/payload
    mkdir -p "$stage/models"
    cargo build --release --quiet --bin anime-pipe || exit 2
    # The release binary carries debug info (~700 MB); stripped it is ~45 MB, ~10 MB compressed.
    strip target/release/anime-pipe -o "$stage/anime-pipe"
    [[ -f $stage/libonnxruntime_providers_cuda.so ]] || ort_libraries "$stage" || exit 2
    make_shards "$stage/work" "$SHARD_IMAGES" "$root/target/release/anime-pipe" || exit 2
    make_crop_set "$stage/crop"
    cp ../shared/models/anime_faceboxes.onnx ../shared/models/fid_inception_v3_pool3.onnx "$stage/models/"
    local first=(anime-pipe libonnxruntime.so."$ORT_GPU_VERSION" libonnxruntime_providers_shared.so
        libonnxruntime_providers_cuda.so work crop models/anime_faceboxes.onnx)
    (cd "$stage" && find "${first[@]}" models/fid_inception_v3_pool3.onnx -type f -print0 | sort -z |
        xargs -0 sha256sum > SHA256SUMS) || exit 2
    # Two xz streams, one file: everything but the Inception first, so a payload cut after its first parts still
    # unpacks the rest (tar -i reads on past the first archive's end); eval is then skipped. xz, not zstd: the GPU
    # machine's image may have no zstd command, and Python's own lzma module reads concatenated xz streams.
    rm -rf .ortgpu && mkdir -p .ortgpu
    tar -C "$stage" -cf - SHA256SUMS "${first[@]}" | xz -9 -T2 -c > .gpubench/stream-a.xz || exit 2
    tar -C "$stage" -cf - models/fid_inception_v3_pool3.onnx | xz -9 -T2 -c > .gpubench/stream-b.xz || exit 2
    cat .gpubench/stream-a.xz .gpubench/stream-b.xz | split -b "$PART_SIZE" -d -a 2 - .ortgpu/stream.xz.part
    local a_bytes parts part_bytes essential
    a_bytes=$(stat -c %s .gpubench/stream-a.xz)
    parts=$(ls .ortgpu/stream.xz.part* | wc -l)
    part_bytes=$(stat -c %s .ortgpu/stream.xz.part00)
    essential=$(((a_bytes + part_bytes - 1) / part_bytes))
    rm .gpubench/stream-a.xz .gpubench/stream-b.xz
    du -sh "$stage"/* .ortgpu/* >&2
    say "$parts parts; the first $essential hold everything but the Inception (eval needs all $parts)"
    say "on the GPU machine, one call per part, in order, each within the machine's warm window:"
    say "  carry [.ortgpu/stream.xz.partNN]  command: bash bench/gpu.sh chunk"
    say "  the last call: bash bench/gpu.sh chunk && bash bench/gpu.sh run"
}

# --- the payload on the GPU machine ---------------------------------------------------------------------------
chunk() { # appends each carried part not yet appended, in order
    mkdir -p "$ORTGPU" && touch "$ORTGPU/parts.done"
    local part
    for part in .ortgpu/stream.xz.part*; do
        [[ -f $part ]] || continue
        local name=${part##*/} want
        if grep -qx "$name" "$ORTGPU/parts.done"; then continue; fi
        want=$(printf 'stream.xz.part%02d' "$(wc -l < "$ORTGPU/parts.done")")
        if [[ $name != "$want" ]]; then
            echo "chunk: got $name but $want is next (the machine went cold? start again from part00)" >&2
            return 1
        fi
        cat "$part" >> "$ORTGPU/stream.xz" && echo "$name" >> "$ORTGPU/parts.done"
        say "appended $name ($(wc -l < "$ORTGPU/parts.done") parts, $(du -h "$ORTGPU/stream.xz" | cut -f1) in $ORTGPU)"
    done
}

unpack() { # the payload into $ORTGPU/x once; sets BIN, DATA and HAVE_INCEPTION; essential files must check out
    DATA=$ORTGPU/x
    if [[ ! -f $DATA/.unpacked ]]; then
        rm -rf "$DATA" && mkdir -p "$DATA"
        python3 -c 'import lzma, shutil, sys
try:
    shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer, 1 << 20)
except (EOFError, lzma.LZMAError):  # a payload cut after its essential parts: what came is unpacked, the sums say what is missing
    pass' "$ORTGPU/stream.xz" | tar -xi -C "$DATA" 2>/dev/null
        touch "$DATA/.unpacked"
    fi
    local failed
    failed=$(cd "$DATA" && sha256sum -c SHA256SUMS 2>/dev/null | grep -v ': OK$' | cut -d: -f1)
    HAVE_INCEPTION=1
    if [[ -n $failed ]]; then
        if [[ $failed != models/fid_inception_v3_pool3.onnx ]]; then
            echo "payload incomplete or damaged: $(echo "$failed" | head -3 | tr '\n' ' ')(parts: $(wc -l < "$ORTGPU/parts.done"))" >&2
            return 1
        fi
        say "the Inception did not arrive (payload cut after its essential parts): eval is skipped"
        HAVE_INCEPTION=
    fi
    BIN=$DATA/anime-pipe
    chmod +x "$BIN"
}

setup_ort() { # ORT_DYLIB_PATH at the payload's ONNX Runtime, LD_LIBRARY_PATH at PyTorch's NVIDIA wheels
    export ORT_DYLIB_PATH=$DATA/libonnxruntime.so.$ORT_GPU_VERSION
    local nv libs
    nv=$(python3 -c "import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))" 2>/dev/null)/nvidia
    libs=$(ls -d "$nv"/*/lib 2>/dev/null | tr '\n' ':')
    export LD_LIBRARY_PATH="$DATA:${libs}${LD_LIBRARY_PATH:-}"
    say "ONNX Runtime: $ORT_DYLIB_PATH; CUDA libraries from $nv"
}

# --- the benchmark --------------------------------------------------------------------------------------------
record_failure() { # $1 = tool, $2 = what, $3 = stderr file
    local why
    why=$(grep -v '^note:' "$3" | tail -1 | tr '"\\' "' " | cut -c1-200)
    echo "{\"tool\": \"$1\", \"formulation\": \"$2\", \"failed\": \"$why\"}" >> "$OUT/rows.jsonl"
    echo "   failed: $why" >&2
}

bench_steps() {
    local graphs=("") tf32s=("")
    if [[ $DEVICE == cuda* ]]; then graphs=("" "--cuda-graph"); tf32s=(off on); fi
    local f cg tf
    for f in $FORMULATIONS; do
        for cg in "${graphs[@]}"; do
            for tf in "${tf32s[@]}"; do
                local args=(--device "$DEVICE" bench-step --arch dcgan64 --batch $BATCHES --steps "$STEPS"
                    --warmup "$WARMUP" --mode fused --formulation "$f" $cg ${tf:+--tf32 $tf})
                say "anime-pipe ${args[*]}"
                if ! timeout "$STEP_TIMEOUT" "$BIN" "${args[@]}" > "$OUT/step.out" 2> "$OUT/step.err"; then
                    record_failure anime-pipe "$f ${cg:+cuda_graph} ${tf:+tf32=$tf}" "$OUT/step.err"
                fi
                grep '^{' "$OUT/step.out" >> "$OUT/rows.jsonl"
            done
        done
    done
    rm -f "$OUT/step.out" "$OUT/step.err"
}

bench_torch() {
    local torch_dev=cpu runs=("")
    [[ $DEVICE == cuda* ]] && torch_dev=cuda && runs=("--tf32 off" "--tf32 on" "--tf32 on --compile")
    local r
    for r in "${runs[@]}"; do
        say "pytorch --device $torch_dev $r"
        timeout $((STEP_TIMEOUT * 2)) python3 bench/torch_dcgan.py --batch $BATCHES --steps "$STEPS" \
            --warmup "$WARMUP" --device "$torch_dev" $r >> "$OUT/rows.jsonl" 2> "$OUT/torch.err" ||
            record_failure pytorch "$r" "$OUT/torch.err"
    done
    rm -f "$OUT/torch.err"
}

train_real() { # TRAIN_STEPS/2 steps with checkpoints, resume to TRAIN_STEPS; times both halves
    local work=$TMP_WORK/train half=$((TRAIN_STEPS / 2)) t0 t1 t2
    rm -rf "$work" && cp -a "$DATA/work" "$work" || return 1
    local common=(-q --workdir "$work" --config "$work/pipeline.yaml" --device "$DEVICE")
    t0=$(now)
    timeout 240 "$BIN" "${common[@]}" train --preset dcgan64 --batch-size "$TRAIN_BATCH" --steps "$half" \
        --checkpoint-every 1 --sample-every 4 --name gpu >&2 || return 1
    t1=$(now)
    timeout 240 "$BIN" "${common[@]}" train --resume "$work/runs/gpu" --steps "$TRAIN_STEPS" >&2 || return 1
    t2=$(now)
    ls "$work/runs/gpu/checkpoints" | tail -4 >&2
    cp "$(ls "$work"/runs/gpu/samples/*.png | sort | tail -1)" "$OUT/samples-last.png" 2>/dev/null
    cp "$work/runs/gpu/loss.png" "$OUT/loss.png" 2>/dev/null
    python3 - "$t0" "$t1" "$t2" "$half" "$TRAIN_STEPS" "$TRAIN_BATCH" "$DEVICE" "$work/runs/gpu" >> "$OUT/rows.jsonl" <<'EOF'
import json, math, os, sys
t0, t1, t2 = map(float, sys.argv[1:4]); half, total, batch = map(int, sys.argv[4:7])
row = {"tool": "anime-pipe train", "device": sys.argv[7], "batch": batch, "steps": total,
       "first_half_s": round(t1 - t0, 1), "resumed_half_s": round(t2 - t1, 1),
       "images_per_s_incl_startup": round((total * batch) / (t2 - t0), 1)}
try:
    import pyarrow.parquet as pq
    m = pq.read_table(os.path.join(sys.argv[8], "metrics.parquet")).to_pydict()
    losses = [v for k in ("loss_d", "loss_g") for v in m.get(k, [])]
    row["last_step"] = max(m.get("step", [0]))
    row["losses_finite"] = all(math.isfinite(v) for v in losses) and bool(losses)
    row["last_loss_d"], row["last_loss_g"] = m["loss_d"][-1], m["loss_g"][-1]
except Exception as e:  # the timing still counts; say why the metrics were not read
    row["metrics"] = f"not read: {e}"
print(json.dumps(row))
EOF
}

bench_crop() { # crop of CROP_IMAGES illustrations on $DEVICE, then on the machine's CPU cores, separate workdirs
    local devices=("$DEVICE")
    [[ $DEVICE != cpu ]] && devices+=(cpu)
    local d
    for d in "${devices[@]}"; do
        local work=$TMP_WORK/crop-$d t0 t1
        rm -rf "$work" && cp -a "$DATA/crop" "$work" && ln -sfn "$DATA/models" "$TMP_WORK/models"
        "$BIN" -q --workdir "$work" --config "$work/pipeline.yaml" ingest >&2 &&
            "$BIN" -q --workdir "$work" --config "$work/pipeline.yaml" dedup >&2 || { echo "crop setup failed" >&2; return 1; }
        say "anime-pipe --device $d crop ($(ls "$work/src" | wc -l) illustrations)"
        t0=$(now)
        timeout 180 "$BIN" --json -q --workdir "$work" --config "$work/pipeline.yaml" --device "$d" crop \
            > "$OUT/crop-$d.json" 2> "$OUT/crop.err" || { record_failure "anime-pipe crop" "$d" "$OUT/crop.err"; continue; }
        t1=$(now)
        python3 - "$OUT/crop-$d.json" "$d" "$(elapsed "$t0" "$t1")" "$(nproc)" >> "$OUT/rows.jsonl" <<'EOF'
import json, sys
counts = dict(json.load(open(sys.argv[1]))["counts"])
n, secs = counts.get("input images"), float(sys.argv[3])
print(json.dumps({"tool": "anime-pipe crop", "device": sys.argv[2], "cores": int(sys.argv[4]), "images": n,
                  "seconds": secs, "images_per_s": round(n / secs, 2) if n else None, "counts": counts}))
EOF
        rm -f "$OUT/crop-$d.json"
    done
    rm -f "$OUT/crop.err"
}

bench_eval() { # FID of the trained generator: EVAL_SAMPLES generated + the shard set's reference images
    [[ -n ${HAVE_INCEPTION:-} ]] || return 0
    local work=$TMP_WORK/train gen
    gen=$(ls "$work"/runs/gpu/checkpoints/*generator.onnx 2>/dev/null | sort | tail -1)
    [[ -n $gen ]] || { echo "eval: no generator from training" >&2; return 1; }
    say "anime-pipe --device $DEVICE eval -n $EVAL_SAMPLES ($gen)"
    local t0 t1
    t0=$(now)
    timeout 240 "$BIN" --json -q --workdir "$work" --config "$work/pipeline.yaml" --device "$DEVICE" eval \
        --model "$gen" -n "$EVAL_SAMPLES" --inception "$DATA/models/fid_inception_v3_pool3.onnx" \
        > "$OUT/eval.json" 2> "$OUT/eval.err" || { record_failure "anime-pipe eval" "$DEVICE" "$OUT/eval.err"; return 1; }
    t1=$(now)
    python3 - "$OUT/eval.json" "$DEVICE" "$(elapsed "$t0" "$t1")" >> "$OUT/rows.jsonl" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
said = dict(s["counts"]) | dict(s["facts"])
images = said.get("generated images embedded", 0) + said.get("reference images embedded", 0)
net = str(said.get("time: Inception network (all images)", "")).split(" ")[0]
row = {"tool": "anime-pipe eval", "device": sys.argv[2], "seconds": float(sys.argv[3]), "images": images,
       "inception_s": float(net) if net else None}
if row["inception_s"]:
    row["inception_images_per_s"] = round(images / row["inception_s"], 1)
rows = s.get("rows") or []
if rows:
    row["fid"] = rows[-1].get("fid")
print(json.dumps(row))
EOF
    rm -f "$OUT/eval.err"
}

table() {
    python3 - "$OUT/rows.jsonl" <<'EOF' | tee "$OUT/table.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ok = [r for r in rows if "failed" not in r]
def best_torch(b, compiled):
    ts = [r for r in ok if r["tool"] == "pytorch" and r.get("batch") == b and (r.get("mode") == "compile") == compiled]
    return min(ts, key=lambda r: r["ms_per_step"]) if ts else None
print("| tool | formulation / mode | settings | batch | ms/iteration | images/s | vs PyTorch eager | vs torch.compile |")
print("|---|---|---|---|---|---|---|---|")
for r in ok:
    if "ms_per_step" not in r:
        continue
    b = r["batch"]
    ips = b / r["ms_per_step"] * 1000
    e, c = best_torch(b, False), best_torch(b, True)
    ratio = lambda t: f"{t['ms_per_step'] / r['ms_per_step']:.2f}" if t else "-"
    what = r.get("formulation", r.get("mode", ""))
    settings = r.get("tuning", "") if r["tool"] == "anime-pipe" else ("tf32=" + str(r.get("tf32")).lower())
    print(f"| {r['tool']} | {what} | {settings} | {b} | {r['ms_per_step']:.2f} | {ips:.0f} | {ratio(e)} | {ratio(c)} |")
for r in rows:
    if "failed" in r:
        print(f"| {r['tool']} | {r.get('formulation', '')} | | - | failed: {r['failed']} | | | |")
print("\n(ratios: fastest PyTorch ms of that mode / anime-pipe ms; > 1 = anime-pipe faster)\n")
for r in ok:
    if r["tool"] == "anime-pipe train":
        print(f"train: {r['steps']} steps at batch {r['batch']} on {r['device']} ({r['steps'] // 2} + resumed "
              f"{r['steps'] - r['steps'] // 2}): {r['first_half_s']} s + {r['resumed_half_s']} s, "
              f"{r['images_per_s_incl_startup']} images/s including start-up; last step {r.get('last_step')}, "
              f"losses finite {r.get('losses_finite')}, last D/G {r.get('last_loss_d')}/{r.get('last_loss_g')}")
    elif r["tool"] == "anime-pipe crop":
        print(f"crop on {r['device']} ({r['cores']} cores): {r['images']} illustrations in {r['seconds']} s = "
              f"{r['images_per_s']} images/s; {r['counts']}")
    elif r["tool"] == "anime-pipe eval":
        print(f"eval on {r['device']}: {r['images']} images through the Inception in {r['inception_s']} s = "
              f"{r.get('inception_images_per_s')} images/s (whole command {r['seconds']} s); FID {r.get('fid')}")
EOF
}

benchmark() {
    mkdir -p "$OUT" && : > "$OUT/rows.jsonl"
    TMP_WORK=$(mktemp -d /tmp/gpubench.XXXXXX)
    say "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $(nvidia-smi --query-gpu=name,driver_version,clocks.sm,memory.used --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi'); $(date -u +%FT%TZ)"
    say "$("$BIN" --version 2>&1 | tr '\n' ' ')"
    bench_steps
    bench_torch
    say "training $TRAIN_STEPS real steps with checkpoints + resume"
    train_real || echo '{"tool": "anime-pipe train", "failed": "see the log"}' >> "$OUT/rows.jsonl"
    bench_crop
    bench_eval
    table
}

run() {
    unpack || exit 2
    [[ $DEVICE == cuda* ]] && setup_ort
    benchmark 2> >(tee "$OUT/run.log" >&2)
}

dry_run() { # the real parts, appended one call at a time as on the GPU machine; then tiny CPU runs
    local parts=(.ortgpu/stream.xz.part*) stage
    [[ -f ${parts[0]} ]] || { echo "no .ortgpu/stream.xz.part*: run bench/gpu.sh prepare first" >&2; exit 2; }
    stage=$(mktemp -d)
    local opt=$stage/opt p
    for p in "${parts[@]}"; do # each call's tree holds only its own part
        rm -rf "$stage/tree" && mkdir -p "$stage/tree/.ortgpu" && cp "$p" "$stage/tree/.ortgpu/"
        (cd "$stage/tree" && ORTGPU=$opt chunk) || exit 1
    done
    ORTGPU=$opt
    unpack || exit 1
    say "dry run: ${#parts[@]} parts appended, unpacked and checked (Inception: ${HAVE_INCEPTION:-no})"
    BATCHES=${DRY_BATCHES:-8} STEPS=2 WARMUP=1 TRAIN_STEPS=16 TRAIN_BATCH=16 CROP_IMAGES=3 EVAL_SAMPLES=64 \
        DEVICE=cpu benchmark
    rm -rf "$stage"
}

case $mode in
    prepare) prepare ;;
    chunk) chunk ;;
    run) run ;;
    dry-run) dry_run ;;
    table) table ;; # the table again from $OUT/rows.jsonl (e.g. after a run cut by its time limit)
    *) echo "usage: bench/gpu.sh prepare|chunk|run|dry-run|table" >&2; exit 2 ;;
esac
