#!/usr/bin/env python
"""Inversion cost against the number of dates (for the regional projection in docs/scaling.md).

Kernel-level timing of ``core.inversion.invert_arrays`` (defaults: lambda from the
sampling, Tukey IRLS) on synthetic in-memory networks where every date is paired with its
next ``--per-date`` dates (Sentinel-2-like 5-15 day intervals), so the cost of the banded
solve can be compared between 40 and 150 dates at the same pairs-per-date budget. File
reading and writing are not included (see ``bench_inversion.py --scale`` for a whole tile
from GeoTIFFs).

Usage::

    .venv/bin/python bench/bench_inversion_dates.py [--dates 40,150] [--per-date 3] [--pixels 20000,5000]
"""

import argparse
import os
import time

import numpy as np


def run(n_dates, per_date, n_pix, seed=0):
    from slidewatch.core.series import inversion as inv
    rng = np.random.default_rng(seed)
    days = np.cumsum(np.r_[0, rng.choice([5, 10, 15], n_dates - 1)])
    dates64 = np.datetime64("2020-01-01") + days.astype("timedelta64[D]")
    pi, pj = [], []
    for i in range(n_dates):
        for g in range(1, per_date + 1):
            if i + g < n_dates:
                pi.append(i)
                pj.append(i + g)
    pi, pj = np.array(pi), np.array(pj)
    v = rng.uniform(0.2, 3.0, n_pix)
    cum = (days[:, None] / 365.25) * v[None, :]
    east = (cum[pj] - cum[pi] + rng.normal(0, 0.1, (pi.size, n_pix))).astype(np.float32)
    north = (cum[pj] - cum[pi] + rng.normal(0, 0.1, (pi.size, n_pix))).astype(np.float32)
    w = np.ones_like(east)
    inv.invert_arrays(east[:, :10], north[:, :10], w[:, :10], pi, pj, dates64)  # warm-up
    best, cpu = np.inf, np.nan
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        inv.invert_arrays(east, north, w, pi, pj, dates64)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        if dt < best:
            best, cpu = dt, dc
    print("| %d | %d | %d | %.2f | %.2f | %.0f | %.2e |" % (
        n_dates, pi.size, n_pix, best, cpu, n_pix / best, cpu / (n_pix * pi.size)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dates", default="40,150")
    ap.add_argument("--per-date", type=int, default=3)
    ap.add_argument("--pixels", default="20000,5000")
    args = ap.parse_args()
    dates = [int(x) for x in args.dates.split(",")]
    pixels = [int(x) for x in args.pixels.split(",")]
    pixels += [pixels[-1]] * (len(dates) - len(pixels))
    print("load average %.2f, numba threads %s" % (os.getloadavg()[0],
                                                   os.environ.get("NUMBA_NUM_THREADS", "all")))
    print("| dates | pairs | pixels | wall s (best of 3) | CPU s | pixels/s | core-s per pixel and pair |")
    print("|---|---|---|---|---|---|---|")
    for n, p in zip(dates, pixels):
        run(n, args.per_date, p)


if __name__ == "__main__":
    main()
