#!/usr/bin/env bash
# Renders a run's report.html in headless Chromium (Debian's `chromium` package) and writes a PNG screenshot:
#   scripts/report-screenshot.sh runs/<name> [out.png] [width] [height]
# The flags keep Chromium off the network (the report is self-contained: images are inlined as data: URIs).
set -euo pipefail
run_dir=${1:?usage: scripts/report-screenshot.sh RUN_DIR [OUT.png] [WIDTH] [HEIGHT]}
out=${2:-$run_dir/report.png}
width=${3:-1400}
height=${4:-4000}
report=$(realpath "$run_dir/report.html")
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "no Chromium found: apt-get install chromium (Debian) or set PATH" >&2
  exit 1
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$profile" \
  --window-size="$width,$height" --screenshot="$(realpath -m "$out")" "file://$report" 2>/dev/null
echo "$out"
