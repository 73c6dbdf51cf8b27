#!/usr/bin/env bash
# Installs the ONNX Runtime shared library that anime-pipe loads at run time (ort's `load-dynamic`).
# It comes from the official `onnxruntime` wheel on PyPI (no Python is needed to *use* it, only pip to fetch it)
# and lands in ./.ort/lib/ (git-ignored), where anime-pipe looks after $ORT_DYLIB_PATH.
#   scripts/install-ort.sh          # CPU build  (onnxruntime==1.31.1)
#   scripts/install-ort.sh --gpu    # CUDA 13 build (onnxruntime-gpu==1.31.1, ~300 MB)
set -euo pipefail
version=${ORT_VERSION:-1.31.1}
package=onnxruntime
[ "${1:-}" = "--gpu" ] && package=onnxruntime-gpu
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.ort/lib"
if compgen -G "$dest/libonnxruntime.so.$version" >/dev/null && [ "${1:-}" != "--gpu" ]; then
  echo "ONNX Runtime $version already in $dest"; exit 0
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "$package==$version"
python3 - "$tmp" "$dest" <<'PY'
import pathlib, sys, zipfile
tmp, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
dest.mkdir(parents=True, exist_ok=True)
wheel = next(tmp.glob("*.whl"))
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = name.rsplit("/", 1)[-1]
        if name.startswith("onnxruntime/capi/") and base.startswith("libonnxruntime") and ".so" in base:
            (dest / base).write_bytes(z.read(name))
            print("installed", dest / base)
PY
