#!/usr/bin/env bash
# Screenshots of the SlideWatch docks in real QGIS desktop under Xvfb -> docs/screenshots/.
# Usage: scripts/screenshots.sh [output folder [only]]   (default: demo_output/results from
# `make demo`; when it has no time series yet, a small demo folder is generated from fixture
# data). only = "accuracy": just docs/screenshots/accuracy_sample_dock.png. The PNGs go to
# $SLIDEWATCH_SCREENSHOTS_OUT (default docs/screenshots).
# Works on a copy of the folder (the validation step writes decisions), in a private QGIS
# profile with the plugin enabled, so the user's profile and data are left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
src="${1:-$root/demo_output}"
only="${2:-}"
out="${SLIDEWATCH_SCREENSHOTS_OUT:-$root/docs/screenshots}"
work="$root/.build/screenshots"
profiles="$work/qgis"
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$root/.cache/numba}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/runtime-$(id -u)}"
mkdir -p "$out" "$work" "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
rm -rf "$work/data" "$work/images" "$work/fixture" "$work/log.txt" "$work/log1.txt"

# `make demo` writes its outputs into demo_output/results
if [ ! -f "$src/timeseries/ts_east_m.tif" ] && [ -f "$src/results/timeseries/ts_east_m.tif" ]; then
  src="$src/results"
fi
make_fixture() {  # $1: folder -> a small demo folder from the test fixtures (+ truth)
  PYTHONPATH="$root/.build/plugins:$root/tests" "$root/.venv/bin/python" - "$1" <<'PY'
import json, sys
from ui_fixtures import make_output_folder
truth = make_output_folder(sys.argv[1], shape=(120, 160), n_detections=40, seed=3)
json.dump({str(d["id"]): bool(d["real"]) for d in truth["detections"]},
          open(sys.argv[1] + "/screenshot_truth.json", "w"))
PY
}

if [ -f "$src/timeseries/ts_east_m.tif" ] && [ -f "$src/detections.gpkg" ]; then
  echo "Using the outputs in $src (copied to $work/data)"
  cp -r "$src" "$work/data"
  # the project written by the pipeline refers to ../images (the inputs): link them
  if [ -d "$src/../images" ]; then ln -sfn "$(cd "$src/../images" && pwd)" "$work/images"; fi
else
  echo "No SlideWatch outputs in $src: generating a small demo folder from fixture data"
  make_fixture "$work/data"
fi

# private profile: plugin linked and enabled, no tips / first-run dialogs
profile="$profiles/profiles/default"
mkdir -p "$profile/python/plugins" "$profile/QGIS"
ln -sfn "$root" "$profile/python/plugins/slidewatch"
"$root/.venv/bin/python" scripts/enable_plugin.py "$profile"
/usr/bin/python3 - "$profile/QGIS/QGIS3.ini" <<'PY'
import configparser, sys
path = sys.argv[1]
cfg = configparser.RawConfigParser()
cfg.optionxform = str
cfg.read(path)
for section, key, value in (("qgis", "showTips322", "false"), ("qgis", "showTips", "false"),
                            ("qgis", "checkVersion", "false"),
                            ("core", "News\\disabled", "true"),
                            ("app", "projects\\lastSaveVersion", "")):
    if not cfg.has_section(section):
        cfg.add_section(section)
    cfg.set(section, key, value)
with open(path, "w") as fh:
    cfg.write(fh, space_around_delimiters=False)
PY

display=":$(( 90 + RANDOM % 9 ))"
Xvfb "$display" -screen 0 1600x1000x24 -nolisten tcp >/dev/null 2>&1 &
xvfb_pid=$!
trap 'kill $xvfb_pid 2>/dev/null || true' EXIT
sleep 2
site=$("$root/.venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
# run_qgis <folder> [only]: real QGIS desktop runs scripts/screenshots.py on <folder>
run_qgis() {
  env -u QT_QPA_PLATFORM DISPLAY="$display" \
    PYTHONPATH="$root/.build/plugins:$site" \
    SLIDEWATCH_SHOT_FOLDER="$1" SLIDEWATCH_SHOT_ONLY="${2:-}" SLIDEWATCH_SHOT_OUT="$out" \
    SLIDEWATCH_SHOT_LOG="$work/log.txt" \
    timeout 300 /usr/bin/qgis --nologo --noversioncheck \
    --profiles-path "$profiles" --profile default --code "$root/scripts/screenshots.py" \
    >>"$work/qgis_stdout.txt" 2>>"$work/qgis_stderr.txt"
}
fail() {
  cat "$work/log.txt" 2>/dev/null || true
  echo "QGIS did not finish the screenshots ($1); see $work/qgis_stderr.txt" >&2
  tail -20 "$work/qgis_stderr.txt" >&2 || true
  exit 1
}
: >"$work/qgis_stdout.txt"; : >"$work/qgis_stderr.txt"
run_qgis "$work/data" "$only" || fail "exit $?"
grep -q "\] done" "$work/log.txt" 2>/dev/null || fail "no 'done' in the log"
# the learned ranking needs >= 20 validated detections: the fixture folder has 40
if [ -z "$only" ] && ! grep -q "validation_learning.png" "$work/log.txt"; then
  echo "Learning picture: from the fixture folder (the outputs have too few detections)"
  rm -rf "$work/fixture" && make_fixture "$work/fixture"
  : >"$work/log2.txt"; mv "$work/log.txt" "$work/log1.txt"
  run_qgis "$work/fixture" learning || fail "learning pass, exit $?"
  grep -q "\] done" "$work/log.txt" 2>/dev/null || fail "learning pass: no 'done' in the log"
  cat "$work/log1.txt" "$work/log.txt" >"$work/log2.txt" && mv "$work/log2.txt" "$work/log.txt"
fi
cat "$work/log.txt"
echo "Screenshots in $out:"
ls -1 "$out"/*.png
