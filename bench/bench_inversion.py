"""Benchmark of the time-series inversion (issue 5) against TICOI and plain least squares.

Usage (from the repository root):

    export PYTHONPATH=$PWD/.build/plugins NUMBA_CACHE_DIR=$PWD/.cache/numba
    .venv/bin/python bench/bench_inversion.py [--pixels 600] [--speed-pixels 20000]
                                              [--scale] [--scale-size 1098]

Synthetic network with truth (observation level, numpy): 40 dates at irregular 5-20 day
intervals, 120 pairs (all 39 consecutive pairs + 81 random pairs spanning 2-8 dates),
per pixel a landslide-like history (steady motion in a random direction, then an
acceleration phase starting at a random date in the second half). Pair observations =
truth differences + Gaussian noise (+ 10 % gross outlier pairs, +-0.5..5 m in both
components). Two noise models: "equal quality" (sigma 0.1 m for all pairs, ncc 0.8) and
"ncc-dependent" (ncc uniform 0.3..0.95, sigma = 0.05 * sqrt((1 - ncc^2) / ncc^2) m).

Ours with its defaults (lam=None: (150 days / mean interval)^2, 147 on this network),
with lam="auto" (GCV once per call on a 400-pixel sample) and with fixed lam = 30 (the
earlier default) and 100, for comparison.

Peers, same pixels and pairs, same run:
* TICOI 0.1.2 ``inversion_core`` with its documented defaults (solver LSMR, IRLS Tukey
  iterations, detect_temporal_decorrelation, no a-priori weights), regu "1", coef 100,
  run in a subprocess of this script with ``.venv-bench/bin/python`` (``--ticoi-worker``);
* unweighted, unregularised least squares (our kernel with lam=0, robust="none",
  weighting="none").

``--scale`` also writes (once) 120 pair GeoTIFFs of a 1098 x 1098 grid into
bench/out/inversion_scale/ and inverts them from the files in a child process, reporting
wall time and the child's peak RSS.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
BENCH_PY = os.path.join(ROOT, ".venv-bench", "bin", "python")


# ---------------------------------------------------------------------- synthetic
def make_network(n_dates=40, n_pairs=120, seed=0):
    rng = np.random.default_rng(seed)
    steps = np.r_[0, rng.integers(5, 21, n_dates - 1)]
    dates = np.datetime64("2020-03-01") + np.cumsum(steps).astype("timedelta64[D]")
    pairs = {(k, k + 1) for k in range(n_dates - 1)}
    while len(pairs) < n_pairs:
        i = int(rng.integers(0, n_dates - 2))
        j = min(n_dates - 1, i + int(rng.integers(2, 9)))
        pairs.add((i, j))
    pairs = sorted(pairs)
    return dates, np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def make_truth(dates, n_pix, seed=1):
    """(2, n_dates, n_pix) cumulative east/north: steady + acceleration phase."""
    rng = np.random.default_rng(seed)
    t = (dates - dates[0]).astype(float) / 365.25
    v0 = rng.uniform(0.2, 3.0, n_pix)                 # m/yr before the acceleration
    az = rng.uniform(0, 2 * np.pi, n_pix)
    t0 = rng.uniform(0.45, 0.85, n_pix) * t[-1]         # onset
    a = rng.uniform(2.0, 15.0, n_pix)                   # m/yr^2
    mag = v0[None] * t[:, None] + 0.5 * a[None] * np.clip(t[:, None] - t0[None], 0, None) ** 2
    return np.stack([mag * np.sin(az)[None], mag * np.cos(az)[None]])


def make_observations(truth, pi, pj, noise_model, outlier_frac, seed=2):
    rng = np.random.default_rng(seed)
    e = truth[0][pj] - truth[0][pi]
    n = truth[1][pj] - truth[1][pi]
    if noise_model == "equal":
        ncc = np.full(e.shape, 0.8)
        sigma = np.full(e.shape, 0.1)
    else:
        ncc = rng.uniform(0.3, 0.95, e.shape)
        sigma = 0.05 * np.sqrt((1 - ncc ** 2) / ncc ** 2)
    e = e + sigma * rng.standard_normal(e.shape)
    n = n + sigma * rng.standard_normal(e.shape)
    bad = rng.random(e.shape) < outlier_frac
    for comp in (e, n):
        comp += bad * rng.choice([-1.0, 1.0], e.shape) * rng.uniform(0.5, 5.0, e.shape)
    return e.astype(np.float32), n.astype(np.float32), ncc.astype(np.float32), bad


def rmse(est, truth):
    d = np.concatenate([(est[0] - truth[0]).ravel(), (est[1] - truth[1]).ravel()])
    return float(np.sqrt(np.nanmean(d ** 2)))


# -------------------------------------------------------------------------- TICOI
def ticoi_worker(inp, out):
    """Runs inside .venv-bench: TICOI inversion_core for every pixel of inp."""
    import warnings
    warnings.filterwarnings("ignore")
    from ticoi.core import inversion_core
    z = np.load(inp)
    dates = z["dates"].astype("datetime64[D]")
    pi, pj = z["pi"], z["pj"]
    e, n = z["east"], z["north"]
    n_pix = e.shape[1]
    data_dates = np.stack([dates[pi], dates[pj]], axis=1)
    baseline = (dates[pj] - dates[pi]).astype(float)
    cum = np.full((2, len(dates), n_pix), np.nan)
    t0 = time.perf_counter()
    for p in range(n_pix):
        values = np.stack([e[:, p], n[:, p], np.ones(len(pi)), np.ones(len(pi)), baseline],
                          axis=1).astype(np.float64)
        _, result, _ = inversion_core([data_dates, values], 0, 0, regu="1", coef=100)
        if result is None:
            continue
        # dates_range = all dates (every date is in a pair); X = displacement per interval
        cum[0, 1:, p] = np.cumsum(result["result_dx"].to_numpy())
        cum[1, 1:, p] = np.cumsum(result["result_dy"].to_numpy())
        cum[:, 0, p] = 0.0
    dt = time.perf_counter() - t0
    np.savez(out, cum=cum, seconds=dt)


def run_ticoi(dates, pi, pj, e, n, tag):
    os.makedirs(OUT, exist_ok=True)
    inp = os.path.join(OUT, "inversion_ticoi_in_%s.npz" % tag)
    out = os.path.join(OUT, "inversion_ticoi_out_%s.npz" % tag)
    np.savez(inp, dates=dates.astype("datetime64[D]"),
             pi=pi, pj=pj, east=e, north=n)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)
    subprocess.run([BENCH_PY, os.path.abspath(__file__), "--ticoi-worker", inp, out],
                   check=True, env=env)
    z = np.load(out)
    return z["cum"], float(z["seconds"])


# ------------------------------------------------------------------------ ours
def run_ours(dates, pi, pj, e, n, ncc, **kw):
    from slidewatch.core.series.inversion import invert_network
    t0 = time.perf_counter()
    r = invert_network(e, n, dates[pi], dates[pj], ncc=ncc, **kw)
    dt = time.perf_counter() - t0
    return np.stack([r.cum_east, r.cum_north]), dt, r


# ------------------------------------------------------------------------ scale
def write_scale_stack(folder, size, seed=5):
    """120 pair rasters of a size x size grid (written once)."""
    from rasterio.transform import from_origin
    from slidewatch.core.series.timeseries_io import write_pair_raster
    pairs_dir = os.path.join(folder, "pairs")
    dates, pi, pj = make_network()
    done = os.path.join(folder, "DONE_%d" % size)
    if os.path.exists(done):
        return dates, pi, pj
    os.makedirs(pairs_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = (dates - dates[0]).astype(float) / 365.25
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    # two landslide bodies (Gaussian footprints) with steady + accelerating motion
    body1 = np.exp(-((yy - 0.3) ** 2 + (xx - 0.35) ** 2) / 0.01).astype(np.float32)
    body2 = np.exp(-((yy - 0.7) ** 2 + (xx - 0.65) ** 2) / 0.02).astype(np.float32)
    transform = from_origin(600000.0, 5200000.0, 100.0, 100.0)
    for k, (i, j) in enumerate(zip(pi, pj)):
        def cum(tt):
            acc = 0.5 * 8.0 * max(tt - 0.6 * t[-1], 0.0) ** 2
            return body1 * (2.0 * tt) + body2 * (1.0 * tt + acc)
        d = cum(t[j]) - cum(t[i])
        ncc = rng.uniform(0.4, 0.95, (size, size)).astype(np.float32)
        sigma = 0.05 * np.sqrt((1 - ncc ** 2) / ncc ** 2)
        e = (0.8 * d + sigma * rng.standard_normal((size, size), np.float32)).astype(np.float32)
        n = (-0.6 * d + sigma * rng.standard_normal((size, size), np.float32)).astype(np.float32)
        bad = rng.random((size, size), np.float32) < 0.05
        e[bad] += 3.0
        status = (rng.random((size, size), np.float32) < 0.03).astype(np.uint8) * 2
        e[status != 0] = np.nan
        n[status != 0] = np.nan
        name = "pair_%s_%s.tif" % (str(dates[i]).replace("-", ""), str(dates[j]).replace("-", ""))
        write_pair_raster(os.path.join(pairs_dir, name), e, n, ncc, 10 * ncc, status,
                          transform, "EPSG:32632", dates[i], dates[j])
        print("  wrote pair %d/%d" % (k + 1, len(pi)), flush=True)
    open(done, "w").close()
    return dates, pi, pj


def scale_child(folder, out_folder, block):
    from slidewatch.core.series.timeseries_io import invert_pair_rasters
    t0 = time.perf_counter()
    res = invert_pair_rasters(folder, out_folder, block_size=block)
    dt = time.perf_counter() - t0
    print(json.dumps(dict(seconds=dt, n_pairs=res.n_pairs, n_dates=len(res.dates),
                          lam=res.lam,
                          self_peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                          / 1024.0,
                          cpu_s=resource.getrusage(resource.RUSAGE_SELF).ru_utime
                          + resource.getrusage(resource.RUSAGE_SELF).ru_stime)))


def run_scale(size, block):
    folder = os.path.join(OUT, "inversion_scale")
    t0 = time.perf_counter()
    write_scale_stack(folder, size)
    print("pair rasters ready (%.0f s)" % (time.perf_counter() - t0), flush=True)
    # warm the numba cache in a separate tiny call so the timed child only loads it
    subprocess.run([sys.executable, "-c", "import numpy as np; "
                    "from slidewatch.core.series.inversion import invert_network; "
                    "invert_network(np.zeros((2,3)), np.zeros((2,3)), "
                    "['2020-01-01','2020-01-02'], ['2020-01-02','2020-01-03'])"], check=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--scale-child", folder,
                           os.path.join(folder, "result"), str(block)],
                          check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    return dict(wall_s=wall, inner_s=info["seconds"], peak_rss_mb=info["self_peak_rss_mb"],
                cpu_s=info["cpu_s"],
                children_max_rss_mb=peak_kb / 1024.0,
                rss_before_mb=before / 1024.0, n_pairs=info["n_pairs"], n_dates=info["n_dates"],
                size=size, block=block)


# ------------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pixels", type=int, default=600, help="pixels per accuracy scenario")
    ap.add_argument("--speed-pixels", type=int, default=20000)
    ap.add_argument("--no-ticoi", action="store_true")
    ap.add_argument("--scale", action="store_true")
    ap.add_argument("--scale-size", type=int, default=1098)
    ap.add_argument("--block", type=int, default=256)
    ap.add_argument("--ticoi-worker", nargs=2)
    ap.add_argument("--scale-child", nargs=3)
    a = ap.parse_args()
    if a.ticoi_worker:
        return ticoi_worker(*a.ticoi_worker)
    if a.scale_child:
        return scale_child(a.scale_child[0], a.scale_child[1], int(a.scale_child[2]))

    from slidewatch.core.series import inversion as inv
    import numba
    print("numba threads: %d, cores: %d, load avg: %s" % (numba.get_num_threads(),
                                                          os.cpu_count(), os.getloadavg()))
    dates, pi, pj = make_network()
    print("network: %d dates (%s .. %s), %d pairs" % (len(dates), dates[0], dates[-1], len(pi)))
    # warm-up (numba compile / cache load) outside the timings
    run_ours(dates, pi, pj, np.zeros((len(pi), 4), np.float32), np.zeros((len(pi), 4),
             np.float32), None)
    rows = []
    truth = make_truth(dates, a.pixels)
    for noise_model, frac in (("equal", 0.10), ("ncc", 0.10), ("equal", 0.0)):
        tag = "%s_%02d" % (noise_model, int(frac * 100))
        e, n, ncc, bad = make_observations(truth, pi, pj, noise_model, frac)
        res = {}
        cum, dt, r = run_ours(dates, pi, pj, e, n, ncc)
        res["ours, defaults (lam=%s -> %.3g, tukey, ncc)" % (inv.DEFAULT_LAM, r.lam)] = (
            rmse(cum, truth), dt)
        cum, dt, r = run_ours(dates, pi, pj, e, n, ncc, lam="auto")
        res["ours, lam=auto (GCV -> %.3g)" % r.lam] = (rmse(cum, truth), dt)
        for lam in (30.0, 100.0):
            cum, dt, r = run_ours(dates, pi, pj, e, n, ncc, lam=lam)
            res["ours, fixed lam=%g" % lam] = (rmse(cum, truth), dt)
        cum, dt, _ = run_ours(dates, pi, pj, e, n, ncc, lam=0.0, robust="none",
                              weighting="none")
        res["least squares (unweighted, unregularised)"] = (rmse(cum, truth), dt)
        if not a.no_ticoi:
            cum, dt = run_ticoi(dates, pi, pj, e, n, tag)
            res["TICOI 0.1.2 inversion_core (regu 1, coef 100)"] = (rmse(cum, truth), dt)
        for name, (err, dt) in res.items():
            rows.append((tag, name, err, a.pixels / dt))
    print()
    print("accuracy on %d pixels (RMSE vs true cumulative displacement, east+north, m)" % a.pixels)
    print("%-10s %-48s %10s %12s" % ("scenario", "method", "RMSE_m", "pixels/s"))
    for tag, name, err, pps in rows:
        print("%-10s %-48s %10.4f %12.1f" % (tag, name, err, pps))
    tic = {r[0]: r[2] for r in rows if r[1].startswith("TICOI")}
    for tag, name, err, _ in rows:
        if name.startswith("ours, defaults") and tag in tic:
            print("  %-10s ours default vs TICOI: %.4f vs %.4f m (%+.1f %%)"
                  % (tag, err, tic[tag], 100.0 * (err / tic[tag] - 1.0)))
    # speed on more pixels, default settings (ncc scenario with outliers)
    truth_s = make_truth(dates, a.speed_pixels, seed=11)
    e, n, ncc, _ = make_observations(truth_s, pi, pj, "ncc", 0.10, seed=12)
    best = []
    cpu = []
    for _ in range(3):
        c0 = time.process_time()
        _, dt, _ = run_ours(dates, pi, pj, e, n, ncc)
        best.append(dt)
        cpu.append(time.process_time() - c0)
    pps = a.speed_pixels / min(best)
    print()
    print("speed, ours default (lam from the sampling) on %d pixels "
          "(40 dates / 120 pairs): %.0f pixels/s "
          "(best of 3: %.2f s; runs %s)" % (a.speed_pixels, pps, min(best),
                                             ", ".join("%.2f" % b for b in best)))
    print("  CPU time of the fastest run: %.2f s (%.0f pixels per CPU-second); load avg %s"
          % (cpu[int(np.argmin(best))], a.speed_pixels / cpu[int(np.argmin(best))],
             os.getloadavg()))
    tic = [r for r in rows if r[1].startswith("TICOI")]
    if tic:
        tp = np.mean([r[3] for r in tic])
        print("TICOI mean pixels/s over scenarios: %.1f -> speed ratio %.0fx" % (tp, pps / tp))
    if a.scale:
        print()
        s = run_scale(a.scale_size, a.block)
        print("scale: %dx%d grid x %d pairs (%d dates) from GeoTIFFs, block %d: wall %.1f s "
              "(inside %.1f s), child CPU time %.1f s (user+sys), child peak RSS %.0f MB, load "
              "avg after %s" % (s["size"], s["size"], s["n_pairs"], s["n_dates"], s["block"],
                                s["wall_s"], s["inner_s"], s["cpu_s"], s["peak_rss_mb"],
                                os.getloadavg()))


if __name__ == "__main__":
    main()
