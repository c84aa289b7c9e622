"""Single-thread CPU time per estimate of the correlator (issue 3), by estimator stage.

    export PYTHONPATH=$PWD/.build/plugins NUMBA_CACHE_DIR=$PWD/.cache/numba
    NUMBA_NUM_THREADS=1 .venv/bin/python bench/bench_correlation_cpu.py

Same texture, windows and noise as bench_correlation.py (window 32, search 8, step 8, 1764
windows, shift (dy, dx) = (-0.61, 1.37), 1 % noise). ``time.process_time`` (CPU seconds
of this process) and wall time, best of 3, per estimate, for the integer stage alone
(``subpixel="none"``), the parabola and the iterative refinement, with and without the
default gaussian_hp prefilter.
"""

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_correlation as B  # noqa: E402


def main():
    import numba
    from slidewatch.core.matching.correlation import correlate
    big, _ = B.load_texture()
    rng = np.random.default_rng(1)
    rows = B.centres(B.STEP)
    cols = B.centres(B.STEP)
    tdx, tdy = 1.37, -0.61
    ref, sec = B.make_pair(big, tdy, tdx, 0.01, rng)
    print("numba threads %d" % numba.get_num_threads())
    for pf in ("none", "gaussian_hp"):
        for mode in ("none", "parabola", "iterative"):
            opt = dict(rows=rows, cols=cols, subpixel=mode, prefilter=pf)
            correlate(ref, sec, **opt)
            cpu = wall = 1e9
            for _ in range(3):
                c = time.process_time()
                t = time.perf_counter()
                r = correlate(ref, sec, **opt)
                cpu = min(cpu, time.process_time() - c)
                wall = min(wall, time.perf_counter() - t)
            n = r.status.size
            ok = r.status == 0
            print("prefilter %-12s subpixel %-10s CPU %6.1f us/est  wall %6.1f us/est  "
                  "rmse x %.4f y %.4f  valid %.3f" % (
                      pf, mode, cpu / n * 1e6, wall / n * 1e6,
                      np.sqrt(np.mean((r.dx[ok] - tdx) ** 2)),
                      np.sqrt(np.mean((r.dy[ok] - tdy) ** 2)), ok.mean()))


if __name__ == "__main__":
    main()
