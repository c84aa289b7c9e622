#!/usr/bin/env bash
# Run every benchmark (called by `make bench`). Peers go into .venv-bench, never .venv.
# Each script prints its table; docs/benchmarks.md records the figures and these commands.
# Full-tile and scale-out runs take tens of minutes: set QUICK=1 to skip them.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export PYTHONPATH="$root/.build/plugins" NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$root/.cache/numba}"
export QT_QPA_PLATFORM=offscreen
if [ ! -x .venv-bench/bin/python ]; then
  /usr/bin/python3 -m venv --system-site-packages .venv-bench
fi
.venv-bench/bin/pip install --disable-pip-version-check -q -c constraints.txt \
  -r bench/requirements-peers.txt
py=.venv/bin/python
mkdir -p bench/out
run() { echo; echo "### $*"; "$@" 2>&1 | tee -a bench/out/run_all.log; }
run $py bench/bench_correlation.py
run $py bench/bench_seeded.py
run $py bench/bench_yahtse.py
run $py bench/bench_pairing.py --dates 40 --size 256
run $py bench/bench_inversion.py --pixels 500 --speed-pixels 20000 $([ "${QUICK:-0}" = 1 ] || echo --scale)
run $py bench/bench_inversion_dates.py
run $py bench/bench_detection.py --scenes 12
if [ "${QUICK:-0}" != 1 ]; then
  run $py bench/bench_correlation_scale.py
  run $py bench/bench_scale.py
fi
