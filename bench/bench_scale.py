#!/usr/bin/env python
"""Scale-out benchmark: pair correlation + inversion, local threads vs a Dask LocalCluster.

Target configuration (issue 8): 12 synthetic 10980 x 10980 dates (a Sentinel-2 tile at
10 m), 30 pairs, correlation step 10 px, then the inversion of the 30 pair rasters in
row blocks. For each mode the script reports wall times and the peak resident memory
(RSS) of every process: the driver, and for the cluster each worker process.

Images are made cheaply: one real Sentinel-2 texture patch (``core.texture``), mirrored to
the tile size, and for each date a crop at a small integer offset (a co-registration shift)
plus sensor noise, written as uint16 GeoTIFFs (0 = nodata) -- the correlator does the same
work as on real images.

Pairs: every date with its next 1, 2 and 3 dates (11 + 10 + 9 = 30 pairs for 12 dates).

Each mode runs in a fresh subprocess (so that peak RSS figures do not mix), writing into
its own output folder; the images are shared (read from paths, as on shared storage).

Usage::

    .venv/bin/python bench/bench_scale.py --size 10980            # the full target
    .venv/bin/python bench/bench_scale.py --size 2745             # 1/16 of the area
    .venv/bin/python bench/bench_scale.py --single-pair 10980     # one full-tile pair only

Options: --dates 12 --pairs 30 --step 10 --window 32 --search 8 --workers 2
--modes local,cluster --folder /tmp/slidewatch_bench_scale --keep
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [os.path.join(ROOT, ".build", "plugins"),
                                                     env.get("PYTHONPATH", "")] if p)
    env.setdefault("NUMBA_CACHE_DIR", os.path.join(ROOT, ".cache", "numba"))
    return env


def peak_rss_mb():
    """Peak resident set size of this process (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ------------------------------------------------------------------------------ images
def make_images(folder, n_dates, size, seed=0):
    """Write ``n_dates`` uint16 GeoTIFFs of size x size; return their paths (by date)."""
    import datetime as dt

    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    from slidewatch.core.synth.texture import sentinel2_texture

    os.makedirs(folder, exist_ok=True)
    start = dt.date(2020, 5, 1)
    names = [os.path.join(folder, "T32TLR_%sT103021_B08.tif" % (
        start + dt.timedelta(days=10 * k)).strftime("%Y%m%d")) for k in range(n_dates)]
    if all(os.path.exists(p) for p in names):
        return names
    pad = 4
    base_patch = sentinel2_texture((min(size + 2 * pad, 2048),) * 2, seed=seed)
    reps = -(-(size + 2 * pad) // base_patch.shape[0])
    # mirror tiling: continuous texture without seams
    row = np.concatenate([base_patch if k % 2 == 0 else base_patch[:, ::-1]
                          for k in range(reps)], axis=1)
    big = np.concatenate([row if k % 2 == 0 else row[::-1] for k in range(reps)], axis=0)
    big = big[:size + 2 * pad, :size + 2 * pad].astype(np.float32)
    rng = np.random.default_rng(seed)
    profile = dict(driver="GTiff", height=size, width=size, count=1, dtype="uint16",
                   crs="EPSG:32632", transform=from_origin(300000, 5200000, 10, 10), nodata=0,
                   tiled=True, blockxsize=512, blockysize=512)
    for k, path in enumerate(names):
        if os.path.exists(path):
            continue
        dy, dx = int(rng.integers(-2, 3)), int(rng.integers(-2, 3))
        img = big[pad + dy:pad + dy + size, pad + dx:pad + dx + size].copy()
        img += rng.normal(0, 0.01 * float(img.mean()), img.shape).astype(np.float32)
        np.clip(img, 1, 65535, out=img)
        tmp = path + ".partial.tif"
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(img.astype(np.uint16), 1)
        os.replace(tmp, path)
        del img
    return names


def pair_list(n_dates, n_pairs):
    pairs = []
    gap = 1
    while len(pairs) < n_pairs and gap < n_dates:
        for i in range(n_dates - gap):
            if len(pairs) < n_pairs:
                pairs.append((i, i + gap))
        gap += 1
    return pairs


# ------------------------------------------------------------------------------ one mode
def warmup():
    """Compile (or load from the Numba cache) the kernels, so timings exclude JIT."""
    import numpy as np

    from slidewatch.core.series import inversion as inv
    from slidewatch.core.matching.correlation import correlate

    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    a = rng.random((96, 96)).astype(np.float32)
    correlate(a, np.roll(a, 1, axis=1), window=32, step=16, search=4)
    dates = np.array(["2020-01-01", "2020-01-11", "2020-01-21"], dtype="datetime64[D]")
    e = rng.normal(0, 1, (3, 10)).astype(np.float32)
    inv.invert_arrays(e, e, np.ones_like(e), np.array([0, 1, 0]), np.array([1, 2, 2]), dates)
    return time.perf_counter() - t0


def run_mode(args):
    """Run correlation + inversion in this process; print a JSON line of figures."""
    from slidewatch.core.run.executor import get_executor
    from slidewatch.core.run.pipeline_tasks import correlate_pair_task, invert_pairs_over_executor

    images = make_images(os.path.join(args.folder, "images_%d" % args.size), args.dates,
                         args.size)
    if args.mode == "generate":
        return
    out = os.path.join(args.folder, "out_%s_%d" % (args.mode, args.size))
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(os.path.join(out, "pairs"))
    import re
    dates = [re.search(r"_(\d{8})T", os.path.basename(p)).group(1) for p in images]
    params = dict(window=args.window, step=args.step, search=args.search)
    jobs = [dict(reference_path=images[i], secondary_path=images[j],
                 reference_date=dates[i], secondary_date=dates[j],
                 out_path=os.path.join(out, "pairs", "pair_%s_%s.tif" % (dates[i], dates[j])),
                 params=params) for i, j in pair_list(args.dates, args.pairs)]
    scheduler = None if args.mode == "local" else "local:%d" % args.workers
    t0 = time.perf_counter()
    with get_executor(scheduler, max_workers=args.workers) as ex:
        t_start = time.perf_counter() - t0
        tw = time.perf_counter()
        if ex.kind == "dask":
            ex.client.run(warmup)
        else:
            warmup()
        t_warm = time.perf_counter() - tw
        t1 = time.perf_counter()
        res = ex.map(correlate_pair_task, jobs, pass_cancel=True)
        t_corr = time.perf_counter() - t1
        t2 = time.perf_counter()
        inv = invert_pairs_over_executor(
            [r["path"] for r in res], out, ex,
            dict(lam=1.0, lam2=0.0, robust="tukey", weighting="ncc", min_obs=3, min_ncc=None,
                 min_snr=None, max_iter=12), block_rows=args.block_rows)
        t_inv = time.perf_counter() - t2
        workers_rss = []
        if ex.kind == "dask":
            rss = ex.client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
            workers_rss = sorted(v / 1024.0 for v in rss.values())
    total = time.perf_counter() - t0 - t_warm
    print("RESULT " + json.dumps(dict(
        mode=args.mode, size=args.size, dates=args.dates, pairs=len(jobs), step=args.step,
        workers=args.workers, startup_s=t_start, jit_warmup_s=t_warm, correlation_s=t_corr,
        per_pair_s=t_corr / len(jobs), inversion_s=t_inv, total_s=total,
        driver_rss_mb=peak_rss_mb(), workers_rss_mb=workers_rss,
        windows_per_pair=int(-(-args.size // args.step)) ** 2,
        inversion_blocks=inv["n_blocks"],
        valid_fraction=sum(r["valid_fraction"] for r in res) / len(res))), flush=True)
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=10980)
    ap.add_argument("--dates", type=int, default=12)
    ap.add_argument("--pairs", type=int, default=30)
    ap.add_argument("--step", type=int, default=10)
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--search", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--block-rows", type=int, default=64)
    ap.add_argument("--modes", default="local,cluster")
    ap.add_argument("--mode", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--single-pair", type=int, default=0,
                    help="only correlate one pair of this size (per-pair cost and memory)")
    ap.add_argument("--folder", default="/tmp/slidewatch_bench_scale")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if args.mode:
        return run_mode(args)
    if args.single_pair:
        args.size, args.dates, args.pairs = args.single_pair, 2, 1
    results = []
    # the images are made in a process of their own, so that the peak RSS of the measured
    # processes is not that of the image generation
    for mode in ["generate"] + args.modes.split(","):
        cmd = [sys.executable, os.path.abspath(__file__), "--mode", mode]
        for k in ("size", "dates", "pairs", "step", "window", "search", "workers", "folder"):
            cmd += ["--%s" % k, str(getattr(args, k))]
        cmd += ["--block-rows", str(args.block_rows)] + (["--keep"] if args.keep else [])
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or (not lines and mode != "generate"):
            print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
            raise SystemExit("mode %s failed" % mode)
        if mode == "generate":
            continue
        r = json.loads(lines[-1][7:])
        r["process_s"] = time.perf_counter() - t0
        results.append(r)
    print("\nSlideWatch scale-out benchmark: %d dates of %d x %d px, %d pairs, window %d, step "
          "%d, search %d; %d workers; load average at start %.1f" % (
              args.dates, args.size, args.size, results[0]["pairs"], args.window, args.step,
              args.search, args.workers, os.getloadavg()[0]))
    print("| mode | correlation s | s/pair | inversion s | total s | driver peak RSS MB | "
          "worker peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print("| %s | %.1f | %.1f | %.1f | %.1f | %.0f | %s |" % (
            "local threads (%d)" % r["workers"] if r["mode"] == "local" else
            "LocalCluster (%d x 1 thread)" % r["workers"], r["correlation_s"],
            r["per_pair_s"], r["inversion_s"], r["total_s"], r["driver_rss_mb"],
            ", ".join("%.0f" % v for v in r["workers_rss_mb"]) or "-"))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
