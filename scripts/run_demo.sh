#!/usr/bin/env bash
# SlideWatch main job, headless: the whole pipeline on the bundled sample stack.
#
# Usage: scripts/run_demo.sh [OUTPUT_FOLDER]      (called by `make demo`; default demo_output)
#
# 1. If OUTPUT_FOLDER/images is absent, generate the sample stack there: 26 Sentinel-2-like
#    dates of 384 x 384 px (10 m) made from real Sentinel-2 texture with known landslides
#    (one accelerating), clouds, shadows, illumination changes, noise, nodata and
#    co-registration offsets (core/synth/synthetic.py, seed 0: always the same stack).
# 2. Run `qgis_process run slidewatch:pipeline -- INPUT=... OUTPUT_FOLDER=...` (SPEC's
#    headless entry point) into OUTPUT_FOLDER/results. A second run reuses everything.
# 3. Print where the outputs, the QGIS project and the overview picture are.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out="${1:-$root/demo_output}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
images="$out/images"
results="$out/results"

export PYTHONPATH="$root/.build/plugins${PYTHONPATH:+:$PYTHONPATH}"
export QGIS_PLUGINPATH="$root/.build/plugins"
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$root/.cache/numba}"
export QT_QPA_PLATFORM=offscreen
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/runtime-$(id -u)}"
QGIS_PROCESS="${SLIDEWATCH_QGIS_PROCESS:-/usr/bin/qgis_process.bin}"
# QGIS 3.22's own Python start-up calls sip.setapi(), which Debian 12's sip reports as a
# DeprecationWarning on every qgis_process run; it is not SlideWatch's and would read as
# a problem with the demo, so that one message (only) is silenced.
export PYTHONWARNINGS="${PYTHONWARNINGS:+$PYTHONWARNINGS,}ignore:setapi() is deprecated:DeprecationWarning"
mkdir -p "$NUMBA_CACHE_DIR" "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"

if [ ! -e "$root/.build/plugins/slidewatch" ]; then
  echo "The plugin is not linked yet: run 'make demo' (it installs everything first)." >&2
  exit 2
fi
if [ ! -x "$QGIS_PROCESS" ]; then
  echo "$QGIS_PROCESS not found: run 'make install' (Debian package qgis)." >&2
  exit 2
fi

t0=$(date +%s)
if [ -f "$images/truth.json" ]; then
  echo "Sample stack already in $images (delete the folder to regenerate it)."
else
  echo "Generating the sample stack (26 dates, 384 x 384 px, real Sentinel-2 texture) in $images ..."
  "$root/.venv/bin/python" - "$images" <<'EOF'
import sys
from slidewatch.core.synth.synthetic import generate_stack
from slidewatch.core.progress import Progress

stack = generate_stack(sys.argv[1], n_dates=26, shape=(384, 384), seed=0,
                       progress=Progress(log=print))
print("  %d images from %s to %s" % (len(stack.paths), stack.dates[0], stack.dates[-1]))
EOF
fi

echo "Running: qgis_process run slidewatch:pipeline -- INPUT=$images OUTPUT_FOLDER=$results"
"$QGIS_PROCESS" run slidewatch:pipeline -- INPUT="$images" OUTPUT_FOLDER="$results"
t1=$(date +%s)

cat <<EOF

SlideWatch demo finished in $((t1 - t0)) s.
  input images      : $images  (ground truth: truth.json, truth.npz)
  outputs           : $results
    catalog.csv, pairs.csv, pairs/ (pair rasters), timeseries/ (ts_east_m.tif,
    ts_north_m.tif, velocity.tif), detections.gpkg
  QGIS project      : $results/slidewatch.qgz   (open it in QGIS: qgis "$results/slidewatch.qgz")
  overview picture  : $results/overview.png
  run log           : $results/slidewatch.log
EOF
