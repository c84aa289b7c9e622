"""Benchmark of the correlation core (issue 3) against scikit-image and OpenCV.

Run (from the repository root):

    export PYTHONPATH=$PWD/.build/plugins NUMBA_CACHE_DIR=$PWD/.cache/numba
    .venv/bin/python bench/bench_correlation.py            # accuracy, speed, null test
    .venv/bin/python bench/bench_correlation_scale.py      # full 10980 x 10980 tile

Peers (installed in .venv-bench from bench/requirements-peers.txt) run in a child process
of .venv-bench's Python on exactly the same windows (arrays passed through an .npz):
  * skimage: ``phase_cross_correlation(upsample_factor=20)`` on each 32x32 window pair;
  * OpenCV: ``matchTemplate(search area, template, TM_CCOEFF_NORMED)`` + 3-point parabola.

Data: real Sentinel-2 texture (10 m band of ../shared/data, a fully valid crop of the
``ref_`` image). The secondary is the same crop shifted by a known sub-pixel amount with an
exact Fourier shift applied to a larger crop and then cropped (no wrap-around in the used
area), plus Gaussian noise (1 % of the image std unless said otherwise).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out")
DATA = os.path.join(os.path.dirname(ROOT), "shared", "data", "s2_pair_no_motion")
REF = os.path.join(DATA, "ref_S2A_20160608T153121_T33UUU_sub.jp2")
TGT = os.path.join(DATA, "tgt_S2A_20160529T153631_T33UUU_sub.jp2")
BENCH_PY = os.path.join(ROOT, ".venv-bench", "bin", "python")

WINDOW = 32
SEARCH = 8
STEP = 8
CROP = 384          # side of the correlated images
PAD = 64            # extra margin of the larger crop that is Fourier-shifted


# --------------------------------------------------------------------------- data
def fourier_shift(img, dy, dx):
    f = np.fft.fft2(img)
    ky = np.fft.fftfreq(img.shape[0])[:, None]
    kx = np.fft.fftfreq(img.shape[1])[None, :]
    return np.real(np.fft.ifft2(f * np.exp(-2j * np.pi * (ky * dy + kx * dx))))


def load_texture():
    import rasterio
    with rasterio.open(REF) as src:
        a = src.read(1).astype(np.float64)
    n = CROP + 2 * PAD
    # a fully valid crop (0 = nodata), searched on a coarse grid
    valid = a > 0
    for r in range(800, a.shape[0] - n, 64):
        for c in range(200, a.shape[1] - n, 64):
            if valid[r:r + n, c:c + n].all():
                return a[r:r + n, c:c + n], (r, c)
    raise RuntimeError("no fully valid crop")


def make_pair(big, dy, dx, noise, rng, contrast=1.0):
    sec = fourier_shift(big, dy, dx)
    sl = (slice(PAD, PAD + CROP), slice(PAD, PAD + CROP))
    ref = big[sl].copy()
    sec = sec[sl].copy()
    sd = ref.std()
    if contrast != 1.0:
        m = sec.mean()
        sec = m + contrast * (sec - m)
    ref += rng.normal(0, noise * sd, ref.shape)
    sec += rng.normal(0, noise * sd, sec.shape)
    return ref.astype(np.float32), sec.astype(np.float32)


def centres(step):
    lo = WINDOW // 2 + SEARCH + 2
    hi = CROP - WINDOW // 2 - SEARCH - 2
    return np.arange(lo, hi, step)


# --------------------------------------------------------------------------- peers
def opencv_match(cv2, area, tpl, s):
    """OpenCV peer on one window: matchTemplate (TM_CCOEFF_NORMED) over ``area`` (the
    template's window grown by ``s`` px per side) + 3-point parabola per axis.
    Returns (dx, dy) in px."""
    m = cv2.matchTemplate(area, tpl, cv2.TM_CCOEFF_NORMED)
    _, _, _, (px, py) = cv2.minMaxLoc(m)
    fx = fy = 0.0
    if 0 < px < m.shape[1] - 1:
        a, b, cc = m[py, px - 1], m[py, px], m[py, px + 1]
        den = a - 2 * b + cc
        fx = 0.5 * (a - cc) / den if den < 0 else 0.0
    if 0 < py < m.shape[0] - 1:
        a, b, cc = m[py - 1, px], m[py, px], m[py + 1, px]
        den = a - 2 * b + cc
        fy = 0.5 * (a - cc) / den if den < 0 else 0.0
    return px - s + fx, py - s + fy


def peer_main(npz_path, json_path):
    """Runs in .venv-bench: loops skimage / OpenCV over the windows of every case."""
    import cv2
    from skimage.registration import phase_cross_correlation

    d = np.load(npz_path)
    rows, cols = d["rows"], d["cols"]
    # OpenCV loop timed ``repeat`` times per case, best kept (bench_textures passes 3)
    repeat = int(d["repeat"]) if "repeat" in d.files else 1
    h = w = WINDOW
    s = SEARCH
    out = {}
    for key in sorted(k[4:] for k in d.files if k.startswith("ref_")):
        ref, sec = d["ref_" + key], d["sec_" + key]
        res = {}
        # OpenCV matchTemplate + parabola
        best = np.inf
        for _ in range(repeat):
            dxs, dys = [], []
            t = time.perf_counter()
            for r in rows:
                for c in cols:
                    tpl = ref[r - h // 2:r - h // 2 + h, c - w // 2:c - w // 2 + w]
                    area = sec[r - h // 2 - s:r - h // 2 + h + s,
                               c - w // 2 - s:c - w // 2 + w + s]
                    ddx, ddy = opencv_match(cv2, area, tpl, s)
                    dxs.append(ddx)
                    dys.append(ddy)
            best = min(best, time.perf_counter() - t)
        n = len(dxs)
        res["opencv"] = dict(dx=dxs, dy=dys, us=best / n * 1e6)
        dxs, dys = [], []
        t = time.perf_counter()
        for r in rows:
            for c in cols:
                a = ref[r - h // 2:r - h // 2 + h, c - w // 2:c - w // 2 + w]
                b = sec[r - h // 2:r - h // 2 + h, c - w // 2:c - w // 2 + w]
                sh = phase_cross_correlation(a, b, upsample_factor=20)[0]
                # returned shift registers the moving (secondary) on the reference: -d
                dys.append(-float(sh[0]))
                dxs.append(-float(sh[1]))
        res["skimage"] = dict(dx=dxs, dy=dys, us=(time.perf_counter() - t) / n * 1e6)
        out[key] = res
    with open(json_path, "w") as fh:
        json.dump(dict(out, versions=dict(opencv=cv2.__version__,
                                          skimage=__import__("skimage").__version__,
                                          numpy=np.__version__,
                                          cv2_threads=cv2.getNumThreads())), fh)


def run_peers(cases, rows, cols, repeat=1):
    os.makedirs(OUT, exist_ok=True)
    npz = os.path.join(OUT, "bench_corr_cases.npz")
    js = os.path.join(OUT, "bench_corr_peers.json")
    arrays = {"rows": rows, "cols": cols, "repeat": np.int64(repeat)}
    for k, (ref, sec) in cases.items():
        arrays["ref_" + k] = ref
        arrays["sec_" + k] = sec
    np.savez(npz, **arrays)
    subprocess.run([BENCH_PY, os.path.abspath(__file__), "--peer", npz, js], check=True)
    with open(js) as fh:
        return json.load(fh)


# --------------------------------------------------------------------------- ours
def ours(ref, sec, rows, cols, **opt):
    from slidewatch.core.matching.correlation import correlate
    t = time.perf_counter()
    c = time.process_time()
    r = correlate(ref, sec, window=WINDOW, search=SEARCH, rows=rows, cols=cols, **opt)
    us = (time.perf_counter() - t) / r.status.size * 1e6
    # CPU seconds of all threads of this process (numba threads included) per estimate
    CPU_US.setdefault(opt.get("subpixel", "iterative") + opt.get("prefilter", ""),
                      []).append((time.process_time() - c) / r.status.size * 1e6)
    return r, us


CPU_US = {}


def stats(dx, dy, tdx, tdy):
    dx, dy = np.asarray(dx, float), np.asarray(dy, float)
    ok = np.isfinite(dx) & np.isfinite(dy)
    ex, ey = dx[ok] - tdx[ok], dy[ok] - tdy[ok]
    return dict(rmse_x=float(np.sqrt(np.mean(ex ** 2))), rmse_y=float(np.sqrt(np.mean(ey ** 2))),
                bias_x=float(np.mean(ex)), bias_y=float(np.mean(ey)),
                valid=float(ok.mean()), n=int(ok.sum()))


def text_hist(frac, bins=10, width=40):
    h, _ = np.histogram(frac, bins=bins, range=(0, 1))
    exp = len(frac) / bins
    chi2 = float(np.sum((h - exp) ** 2 / exp))
    maxdev = float(np.max(np.abs(h - exp)) / exp)
    lines = []
    for i, v in enumerate(h):
        lines.append("    [%.1f,%.1f) %6d %s" % (i / bins, (i + 1) / bins, v,
                                                 "#" * int(round(width * v / h.max()))))
    return "\n".join(lines), chi2, maxdev


# --------------------------------------------------------------------------- real null test
def null_test(tag, window=WINDOW, stable="median", **options):
    from slidewatch.core.matching import pair_correlation as pc
    os.makedirs(OUT, exist_ok=True)
    ongrid = os.path.join(OUT, "tgt_on_ref_grid.tif")
    if not os.path.exists(ongrid):
        pc.reproject_to_grid(TGT, REF, ongrid, resampling="cubic")
    out = os.path.join(OUT, "pairs", "pair_20160608_20160529_null_%s.tif" % tag)
    t = time.perf_counter()
    info = pc.correlate_pair_rasters(REF, ongrid, out, window=window, step=STEP,
                                     search=SEARCH, stable=stable,
                                     reference_date="2016-06-08",
                                     secondary_date="2016-05-29", **options)
    wall = time.perf_counter() - t
    import rasterio
    with rasterio.open(out) as src:
        b = src.read()
        T = src.transform
    st = b[4]
    ok = st == 0
    mag_px = np.hypot(b[0] / 10.0, b[1] / 10.0)
    p68 = float(np.percentile(mag_px[ok], 68)) if ok.any() else float("nan")
    p68_ncc = {th: (float(np.percentile(mag_px[ok & (b[2] >= th)], 68)),
                    float(np.mean(b[2][ok] >= th)))
               for th in (0.6, 0.8) if (ok & (b[2] >= th)).any()}
    # windows with nodata at their centre in either image must carry a status
    with rasterio.open(REF) as s1, rasterio.open(ongrid) as s2:
        a1 = s1.read(1)
        a2 = s2.read(1)
    rr = (np.arange(st.shape[0]) * STEP + STEP // 2).clip(0, a1.shape[0] - 1)
    cc = (np.arange(st.shape[1]) * STEP + STEP // 2).clip(0, a1.shape[1] - 1)
    nod = (a1[np.ix_(rr, cc)] == 0) | ~np.isfinite(a2[np.ix_(rr, cc)])
    # cloud around E 353308, N 5859404 (data README): windows within 600 m
    col_c, row_c = ~T * (353308, 5859404)
    yy, xx = np.mgrid[0:st.shape[0], 0:st.shape[1]]
    cloud = np.hypot(yy + 0.5 - row_c, xx + 0.5 - col_c) * STEP * 10 < 600
    return dict(info=info, wall_s=wall, p68_px=p68, p68_by_ncc=p68_ncc, n_valid=int(ok.sum()),
                n_windows=int(st.size), overlap_windows=int((~nod).sum()),
                nodata_windows=int(nod.sum()),
                nodata_with_valid_status=int((nod & ok).sum()),
                cloud_windows=int(cloud.sum()),
                cloud_nonzero_status=float(np.mean(st[cloud] != 0)) if cloud.any() else None,
                status_counts={int(k): int(v) for k, v in
                               zip(*np.unique(st[~nod], return_counts=True))})


# --------------------------------------------------------------------------- main
def main():
    import numba
    os.makedirs(OUT, exist_ok=True)
    big, where = load_texture()
    rng = np.random.default_rng(42)
    rows = centres(STEP)
    cols = centres(STEP)
    n_win = rows.size * cols.size
    print("Correlation benchmark (issue 3) -- %s, numba threads %d" %
          (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), numba.get_num_threads()))
    print("texture: %s crop at row/col %s, %d x %d px; window %d, search %d, step %d, "
          "%d windows per case" % (os.path.basename(REF), where, CROP, CROP, WINDOW, SEARCH,
                                   STEP, n_win))
    # accuracy cases: 8 random shifts (any fractional part), 1 % noise
    shifts = [(float(a), float(b)) for a, b in rng.uniform(-3, 3, size=(8, 2))]
    cases = {}
    truth = {}
    for i, (dy, dx) in enumerate(shifts):
        cases["n1_%d" % i] = make_pair(big, dy, dx, 0.01, rng)
        truth["n1_%d" % i] = (dy, dx)
    for i, (dy, dx) in enumerate(shifts[:4]):
        cases["n5c_%d" % i] = make_pair(big, dy, dx, 0.05, rng, contrast=0.8)
        truth["n5c_%d" % i] = (dy, dx)
    # pixel-locking sweep: true dx over [0, 1) (and dy = 0.5 - dx), sparser windows
    sweep = np.arange(20) / 20.0 + 0.025
    for i, t in enumerate(sweep):
        cases["sw_%02d" % i] = make_pair(big, 0.5 - t, t, 0.01, rng)
        truth["sw_%02d" % i] = (0.5 - t, t)

    print("running peers in %s ..." % BENCH_PY)
    peers = run_peers(cases, rows, cols)
    print("peer versions: %s" % peers["versions"])

    methods = ["slidewatch", "slidewatch_raw", "slidewatch_parabola", "opencv", "skimage"]
    agg = {m: {"n1": [], "n5c": [], "sw": []} for m in methods}
    us = {m: [] for m in methods}
    correlate_warm = ours(*cases["n1_0"], rows, cols)  # compile / load the numba cache
    del correlate_warm
    for key, (ref, sec) in cases.items():
        dy, dx = truth[key]
        grp = key.split("_")[0]
        tdy = np.full(n_win, dy)
        tdx = np.full(n_win, dx)
        r, t_us = ours(ref, sec, rows, cols)
        agg["slidewatch"][grp].append((r.dx.ravel(), r.dy.ravel(), tdx, tdy))
        us["slidewatch"].append(t_us)
        r, t_us = ours(ref, sec, rows, cols, prefilter="none")
        agg["slidewatch_raw"][grp].append((r.dx.ravel(), r.dy.ravel(), tdx, tdy))
        us["slidewatch_raw"].append(t_us)
        r, t_us = ours(ref, sec, rows, cols, subpixel="parabola")
        agg["slidewatch_parabola"][grp].append((r.dx.ravel(), r.dy.ravel(), tdx, tdy))
        us["slidewatch_parabola"].append(t_us)
        for m in ("opencv", "skimage"):
            p = peers[key][m]
            agg[m][grp].append((np.array(p["dx"]), np.array(p["dy"]), tdx, tdy))
            us[m].append(p["us"])

    def cat(lst):
        return [np.concatenate([x[i] for x in lst]) for i in range(4)]

    print("\n1) accuracy, 1 %% noise, 8 random shifts in [-3, 3] px (%d estimates/method)"
          % (8 * n_win))
    print("%-20s %9s %9s %9s %9s %7s %10s" % ("method", "rmse_x", "rmse_y", "bias_x",
                                             "bias_y", "valid", "us/est"))
    summary = {}
    for m in methods:
        s = stats(*cat(agg[m]["n1"]))
        s["us"] = float(np.median(us[m]))
        summary[m] = s
        print("%-20s %9.4f %9.4f %+9.4f %+9.4f %7.3f %10.1f" % (
            m, s["rmse_x"], s["rmse_y"], s["bias_x"], s["bias_y"], s["valid"], s["us"]))
    print("\n2) 5 %% noise + 20 %% contrast change (4 shifts)")
    for m in methods:
        s = stats(*cat(agg[m]["n5c"]))
        summary[m]["n5c"] = s
        print("%-20s %9.4f %9.4f %+9.4f %+9.4f %7.3f" % (
            m, s["rmse_x"], s["rmse_y"], s["bias_x"], s["bias_y"], s["valid"]))
    print("\n3) pixel locking: fractional part of estimated dx over a sweep of 20 true dx "
          "in [0, 1) (uniform if no locking); chi2 (9 dof, 5 %% critical 16.9) and max "
          "relative deviation of a bin from uniform")
    for m in methods:
        dxs, _, tdx, _ = cat(agg[m]["sw"])
        ok = np.isfinite(dxs)
        frac = np.mod(dxs[ok], 1.0)
        text, chi2, maxdev = text_hist(frac)
        err = dxs[ok] - tdx[ok]
        summary[m]["sweep"] = dict(chi2=chi2, maxdev=maxdev,
                                   rmse=float(np.sqrt(np.mean(err ** 2))))
        print("  %s: chi2 %.1f, max deviation %.1f %%, rmse over sweep %.4f px" % (
            m, chi2, 100 * maxdev, summary[m]["sweep"]["rmse"]))
        print(text)
    print("\n4) speed (median over cases, us per estimate, same windows; slidewatch = "
          "defaults incl. gaussian_hp prefilter, slidewatch_raw = prefilter none)")
    for m in methods:
        print("  %-20s %8.1f us   (OpenCV/this %.1fx, skimage/this %.1fx)" % (
            m, summary[m]["us"], summary["opencv"]["us"] / summary[m]["us"],
            summary["skimage"]["us"] / summary[m]["us"]))
    summary["cpu_us"] = {k: float(np.median(v)) for k, v in CPU_US.items()}
    print("  CPU time (time.process_time, all threads) per estimate, median over cases: %s"
          % ", ".join("%s %.1f us" % (k, v) for k, v in summary["cpu_us"].items()))
    run_null_tests(summary, [c for c in NULL_CONFIGS
                             if not NULL_SELECTION or c[0] in NULL_SELECTION])
    with open(os.path.join(OUT, "bench_correlation.json"), "w") as fh:
        json.dump(summary, fh, indent=1)


NULL_SELECTION = []  # --configs

NULL_CONFIGS = (("raw", dict(window=WINDOW, prefilter="none")),
                ("defaults", dict(window=WINDOW)),
                ("gaussian_hp1", dict(window=WINDOW, prefilter="gaussian_hp",
                                      prefilter_options={"sigma": 1.0})),
                ("plane", dict(window=WINDOW, stable="plane")),
                ("gaussian_hp3_plane", dict(window=WINDOW, prefilter="gaussian_hp",
                                            prefilter_options={"sigma": 3.0}, stable="plane")),
                ("gaussian_hp3", dict(window=WINDOW, prefilter="gaussian_hp",
                                      prefilter_options={"sigma": 3.0})),
                ("gaussian_hp2", dict(window=WINDOW, prefilter="gaussian_hp",
                                      prefilter_options={"sigma": 2.0})),
                ("wallis_plane", dict(window=WINDOW, prefilter="wallis", stable="plane")),
                ("w64_plane", dict(window=64, stable="plane")),
                ("w64_gaussian_hp1", dict(window=64, prefilter="gaussian_hp",
                                          prefilter_options={"sigma": 1.0})),
                ("gaussian_hp1_plane", dict(window=WINDOW, prefilter="gaussian_hp",
                                            prefilter_options={"sigma": 1.0}, stable="plane")),
                ("w64_gaussian_hp1_plane", dict(window=64, prefilter="gaussian_hp",
                                                prefilter_options={"sigma": 1.0},
                                                stable="plane")))


def run_null_tests(summary, configs=NULL_CONFIGS):
    summary["null_test"] = {}
    for tag, opts in configs:
        print("\n5) real null test [%s %s] (ref grid, tgt reprojected onto it with cubic "
              "resampling, step %d, search %d, stable-ground correction)"
              % (tag, opts, STEP, SEARCH))
        nt = null_test(tag, **opts)
        i = nt["info"]
        print("  median offset over the overlap (removed): dx %.3f px, dy %.3f px "
              "(%d valid windows)" % (i["median_dx_px"], i["median_dy_px"], i["n_stable"]))
        if i.get("plane_dx_px"):
            print("  robust plane removed instead (d = c0 + c1*col + c2*row): dx %s, dy %s"
                  % (["%.4g" % v for v in i["plane_dx_px"]], ["%.4g" % v for v in i["plane_dy_px"]]))
        print("  68th percentile of |d| on valid (clear) windows after correction: %.3f px"
              % nt["p68_px"])
        for th, (v, f) in nt["p68_by_ncc"].items():
            print("    ... restricted to ncc >= %.1f (%.0f %% of valid windows): %.3f px"
                  % (th, 100 * f, v))
        print("  windows: %d total, %d with both images valid at the centre, %d valid; "
              "status counts there %s" % (nt["n_windows"], nt["overlap_windows"],
                                          nt["n_valid"], nt["status_counts"]))
        print("  nodata windows: %d, of which with status 0: %d" % (
            nt["nodata_windows"], nt["nodata_with_valid_status"]))
        print("  cloud area (600 m around E 353308 N 5859404): %d windows, %.0f %% non-zero "
              "status" % (nt["cloud_windows"], 100 * (nt["cloud_nonzero_status"] or 0)))
        print("  wall time %.1f s for %d windows" % (nt["wall_s"], nt["n_windows"]))
        d = {k: v for k, v in nt.items() if k not in ("info", "p68_by_ncc")}
        d.update(median_dx_px=i["median_dx_px"], median_dy_px=i["median_dy_px"],
                 p68_by_ncc={str(k): v for k, v in nt["p68_by_ncc"].items()})
        summary["null_test"][tag] = d


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--peer", nargs=2)
    ap.add_argument("--null-only", action="store_true",
                    help="only the real null test (all configurations)")
    ap.add_argument("--configs", default="",
                    help="comma-separated null-test configuration tags (default: all)")
    a = ap.parse_args()
    if a.peer:
        peer_main(*a.peer)
        sys.exit(0)
    NULL_SELECTION = [t for t in a.configs.split(",") if t]
    if a.null_only:
        sel = [c for c in NULL_CONFIGS if not a.configs or c[0] in a.configs.split(",")]
        run_null_tests({}, sel)
    else:
        main()
