#!/usr/bin/env bash
# Run the SlideWatch test suite in real QGIS (pytest + pytest-qgis), headless.
# Usage: scripts/run_tests.sh [pytest arguments]   (default: the whole tests/ folder)
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PYTHONPATH="$root/.build/plugins${PYTHONPATH:+:$PYTHONPATH}"
export QGIS_PLUGINPATH="$root/.build/plugins"
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$root/.cache/numba}"
export QT_QPA_PLATFORM="${QT_QPA_PLATFORM:-offscreen}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/runtime-$(id -u)}"
export SLIDEWATCH_QGIS_PROCESS="${SLIDEWATCH_QGIS_PROCESS:-/usr/bin/qgis_process.bin}"
mkdir -p "$NUMBA_CACHE_DIR" "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
if [ ! -e "$root/.build/plugins/slidewatch" ]; then
  echo "The plugin is not linked yet: run 'make test' (it installs everything first)." >&2
  exit 2
fi
if [ $# -eq 0 ]; then set -- tests; fi
"$root/.venv/bin/python" -m pytest "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "pytest collected no test: that is a failure for SlideWatch's CI." >&2
  exit 1
fi
exit $rc
