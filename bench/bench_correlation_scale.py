"""Full Sentinel-2 tile benchmark of the correlation raster driver (issue 3).

    export PYTHONPATH=$PWD/.build/plugins NUMBA_CACHE_DIR=$PWD/.cache/numba
    .venv/bin/python bench/bench_correlation_scale.py [--size 10980]

Generates once (cached in bench/out/scale/) a synthetic 10980 x 10980 UInt16 pair from real
Sentinel-2 texture: a fully valid 1024 x 1024 crop of the ``ref_`` image is mirrored into
a seamless 2048 x 2048 periodic tile, the secondary tile is the same tile shifted by an
exact (periodic) Fourier shift of (dy, dx) = (0.3, -0.45) px, both are repeated over the
tile, 1 % Gaussian noise is added, and both are written as tiled deflate GeoTIFFs.

Then runs ``correlate_pair_rasters`` (window 32, step 10, search 8, defaults otherwise) in
a child process under ``/usr/bin/time -v`` and reports the wall time, the peak RSS of the
child, the valid fraction and the error of the median displacement against the truth.
"""

import argparse
import os
import re
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out", "scale")
DY, DX = 0.3, -0.45


def generate(size, ref_path, sec_path):
    import rasterio
    from affine import Affine
    sys.path.insert(0, HERE)
    from bench_correlation import REF, fourier_shift

    with rasterio.open(REF) as src:
        a = src.read(1).astype(np.float64)
    n = 1024
    crop = None
    for r in range(0, a.shape[0] - n, 64):
        for c in range(0, a.shape[1] - n, 64):
            if (a[r:r + n, c:c + n] > 0).all():
                crop = a[r:r + n, c:c + n]
                break
        if crop is not None:
            break
    if crop is None:
        raise RuntimeError("no fully valid 1024 x 1024 crop in %s" % REF)
    per = np.block([[crop, crop[:, ::-1]], [crop[::-1], crop[::-1, ::-1]]])
    shifted = fourier_shift(per, DY, DX)
    sd = per.std()
    T = Affine(10.0, 0.0, 300000.0, 0.0, -10.0, 5000040.0)
    prof = dict(driver="GTiff", height=size, width=size, count=1, dtype="uint16",
                crs="EPSG:32633", transform=T, tiled=True, blockxsize=256, blockysize=256,
                compress="deflate", predictor=2, bigtiff="if_safer")
    rng = np.random.default_rng(0)
    P = per.shape[0]
    for path, tile in ((ref_path, per), (sec_path, shifted)):
        tmp = path + ".partial.tif"
        with rasterio.open(tmp, "w", **prof) as dst:
            for r0 in range(0, size, 1024):
                r1 = min(size, r0 + 1024)
                rows = np.arange(r0, r1) % P
                cols = np.arange(size) % P
                blk = tile[np.ix_(rows, cols)] + rng.normal(0, 0.01 * sd, (r1 - r0, size))
                dst.write(np.clip(np.round(blk), 1, 65535).astype(np.uint16), 1,
                          window=rasterio.windows.Window(0, r0, size, r1 - r0))
        os.replace(tmp, path)


def child(ref_path, sec_path, out_path):
    from slidewatch.core.matching.pair_correlation import correlate_pair_rasters
    t = time.perf_counter()
    info = correlate_pair_rasters(ref_path, sec_path, out_path, window=32, step=10, search=8,
                                  reference_date="2020-01-01", secondary_date="2020-01-11")
    print("CHILD wall %.1f s, %d windows, valid %.4f" % (time.perf_counter() - t,
                                                        info["n_windows"],
                                                        info["valid_fraction"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=10980)
    ap.add_argument("--child", nargs=3)
    a = ap.parse_args()
    if a.child:
        child(*a.child)
        return
    os.makedirs(OUT, exist_ok=True)
    ref_path = os.path.join(OUT, "ref_20200101_%d.tif" % a.size)
    sec_path = os.path.join(OUT, "sec_20200111_%d.tif" % a.size)
    if not (os.path.exists(ref_path) and os.path.exists(sec_path)):
        t = time.perf_counter()
        generate(a.size, ref_path, sec_path)
        print("generated the synthetic pair in %.0f s" % (time.perf_counter() - t))
    out_path = os.path.join(OUT, "pairs", "pair_20200101_20200111.tif")
    if os.path.exists(out_path):
        os.remove(out_path)
    cmd = ["/usr/bin/time", "-v", sys.executable, os.path.abspath(__file__), "--child",
           ref_path, sec_path, out_path]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        print(p.stdout, p.stderr)
        raise SystemExit("child failed")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    el = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", p.stderr).group(1)
    cpu = re.search(r"Percent of CPU this job got: (\S+)", p.stderr).group(1)
    print(p.stdout.strip())
    import rasterio
    with rasterio.open(out_path) as src:
        e = src.read(1)
        nn = src.read(2)
        st = src.read(5)
        shape = src.shape
    ok = st == 0
    dx = e[ok] / 10.0
    dy = -nn[ok] / 10.0
    print("full tile %d x %d, window 32, step 10, search 8 -> %s windows" % (
        a.size, a.size, shape))
    print("wall (time -v) %s = %.1f s incl. interpreter start; CPU %s; peak RSS %.0f MB" % (
        el, wall, cpu, rss_kb / 1024.0))
    print("valid %.4f; median dx %.4f (truth %.2f), median dy %.4f (truth %.2f); "
          "rmse dx %.4f dy %.4f px" % (ok.mean(), np.median(dx), DX, np.median(dy), DY,
                                       np.sqrt(np.mean((dx - DX) ** 2)),
                                       np.sqrt(np.mean((dy - DY) ** 2))))
    print("load average at end: %s" % (open("/proc/loadavg").read().strip()))


if __name__ == "__main__":
    main()
