"""Correlator accuracy and speed on many real textures (issue 18), peers in the same run.

Textures: 512 x 512 crops of real imagery of different landscapes and sensors (table
TEXTURES; fully valid, taken from the two real datasets of ../shared/data). For each:
  * a sweep of 10 known shifts whose fractional parts cover [0, 1) on both axes (integer
    parts in [-3, 3]), 1 % noise: RMSE, bias, pixel-locking chi2 of the estimates'
    fractional parts (10 bins; ~9 expected without locking, > 30 is locking);
  * 4 shifts with 5 % noise and a 20 % contrast change: RMSE;
  * us per estimate (wall, median over cases of the best of REPEAT = 3 runs of a case, for
    SlideWatch and for the OpenCV loop alike; skimage once).
Methods on the very same windows (window 32, search 8, step 8, 1764 windows per case):
SlideWatch defaults, OpenCV matchTemplate + parabola and skimage phase_cross_correlation
(upsample 20) in .venv-bench (bench_correlation.peer_main). Secondary = exact Fourier
shift of the larger crop (bench_correlation.make_pair). The worst texture is reported.

    .venv/bin/python bench/bench_textures.py [--only NAME,...] [--max-sigma PX] [--wide-sigma PX]
"""

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_correlation as BC  # noqa: E402

SHARED = os.path.join(os.path.dirname(os.path.dirname(HERE)), "shared", "data")
S2 = os.path.join(SHARED, "s2_pair_no_motion", "ref_S2A_20160608T153121_T33UUU_sub.jp2")
L8 = os.path.join(SHARED, "landsat8_pair_yahtse_glacier", "LC80630182016200LGN00_B8_yahtse.TIF")

#: name -> (file, row, col, landscape); crops of BC.CROP + 2 * BC.PAD = 512 px
TEXTURES = {
    "s2_fields": (S2, 800, 904, "Sentinel-2 10 m, agricultural fields (the issue-3 crop)"),
    "s2_fields_north": (S2, 200, 1700, "Sentinel-2 10 m, fields and villages"),
    "s2_forest": (S2, 1240, 1180, "Sentinel-2 10 m, forest blocks among fields"),
    "l8_glacier": (L8, 40, 150, "Landsat 8 15 m pan, crevassed glacier ice"),
    "l8_snow": (L8, 60, 1150, "Landsat 8 15 m pan, snow-covered mountains"),
    "l8_rock": (L8, 560, 1180, "Landsat 8 15 m pan, rock and shadowed mountains"),
}


#: timed runs per case (best kept), ours and the OpenCV loop alike
REPEAT = 3


def load(path, row, col):
    import rasterio
    n = BC.CROP + 2 * BC.PAD
    with rasterio.open(path) as src:
        a = src.read(1, window=rasterio.windows.Window(col, row, n, n)).astype(np.float64)
    if a.shape != (n, n) or not (a > 0).all():
        raise RuntimeError("crop %s at %d/%d is not fully valid" % (path, row, col))
    return a


def shifts(seed=0):
    rng = np.random.default_rng(seed)
    k = np.arange(10)
    fx = (k + 0.5) / 10
    fy = ((3 * k) % 10 + 0.5) / 10
    ix = rng.integers(-3, 3, 10)
    iy = rng.integers(-3, 3, 10)
    return list(zip(iy + fy, ix + fx))


def chi2(frac, bins=10):
    h, _ = np.histogram(np.mod(frac, 1.0), bins=bins, range=(0, 1))
    e = len(frac) / bins
    return float(np.sum((h - e) ** 2 / e))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="")
    ap.add_argument("--max-sigma", type=float, default=None,
                    help="SlideWatch with this max_sigma (px) instead of the default")
    ap.add_argument("--wide-sigma", type=float, default=None,
                    help="SlideWatch with this wide_sigma (px; 0 = wide-window pass off)")
    a = ap.parse_args()
    opt = {} if a.max_sigma is None else dict(max_sigma=a.max_sigma)
    if a.wide_sigma is not None:
        opt["wide_sigma"] = a.wide_sigma
    names = [n for n in TEXTURES if not a.only or n in a.only.split(",")]
    rows = cols = BC.centres(BC.STEP)
    sweep = shifts()
    hard = sweep[:4]
    cases, truth = {}, {}
    for name in names:
        path, r, c, _ = TEXTURES[name]
        if not os.path.exists(path):
            print("skip %s: %s missing" % (name, path))
            continue
        big = load(path, r, c)
        rng = np.random.default_rng(7)
        for k, (dy, dx) in enumerate(sweep):
            cases["%s_s%d" % (name, k)] = BC.make_pair(big, dy, dx, 0.01, rng)
            truth["%s_s%d" % (name, k)] = (dy, dx)
        for k, (dy, dx) in enumerate(hard):
            cases["%s_h%d" % (name, k)] = BC.make_pair(big, dy, dx, 0.05, rng, contrast=0.8)
            truth["%s_h%d" % (name, k)] = (dy, dx)
    BC.ours(*cases[next(iter(cases))], rows, cols, **opt)     # compile outside the timing
    print("running peers in %s ..." % BC.BENCH_PY)
    peers = BC.run_peers(cases, rows, cols, repeat=REPEAT)
    out = {}
    n_win = rows.size * cols.size
    for name in names:
        res = {}
        for method in ("slidewatch", "opencv", "skimage"):
            est = {"s": ([], [], [], []), "h": ([], [], [], [])}
            sig = {"s": [], "h": []}
            us = []
            for key in [k for k in cases if k.rsplit("_", 1)[0] == name]:
                kind = key.rsplit("_", 1)[1][0]
                dy, dx = truth[key]
                if method == "slidewatch":
                    runs = [BC.ours(*cases[key], rows, cols, **opt) for _ in range(REPEAT)]
                    r, t = runs[0][0], min(u for _, u in runs)
                    ex, ey = r.dx.ravel(), r.dy.ravel()
                    sig[kind].append(r.sigma.ravel())
                else:
                    p = peers[key][method]
                    ex, ey, t = np.asarray(p["dx"], float), np.asarray(p["dy"], float), p["us"]
                us.append(t)
                lst = est[kind]
                lst[0].append(ex)
                lst[1].append(ey)
                lst[2].append(np.full(ex.size, dx))
                lst[3].append(np.full(ex.size, dy))
            s = {}
            for kind in ("s", "h"):
                ex, ey, tx, ty = (np.concatenate(v) for v in est[kind])
                st = BC.stats(ex, ey, tx, ty)
                ok = np.isfinite(ex) & np.isfinite(ey)
                s[kind] = dict(st, rmse=float(np.hypot(st["rmse_x"], st["rmse_y"]) / np.sqrt(2)),
                               chi2=0.5 * (chi2(ex[ok]) + chi2(ey[ok])) if kind == "s" else None)
                if sig[kind]:
                    # predicted error (kernel's sigma) against the actual one, valid windows
                    sg = np.concatenate(sig[kind])[ok]
                    s[kind]["sigma_rms"] = float(np.sqrt(np.mean(sg[np.isfinite(sg)] ** 2)))
            res[method] = dict(sweep=s["s"], hard=s["h"], us=float(np.median(us)))
        out[name] = res
    print("\nSlideWatch options: %s" % (opt or "defaults"))
    print("\n| texture | method | RMSE 1 % px | bias x, y px | locking chi2 | valid | RMSE 5 % + "
          "contrast px (OpenCV/this) | valid 5 % | us/estimate | OpenCV/this |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, res in out.items():
        for m, v in res.items():
            print("| %s | %s | %.4f | %+.4f, %+.4f | %.1f | %.3f | %.4f (%.1fx) | %.3f | %.1f | %.2f |"
                  % (name, m, v["sweep"]["rmse"], v["sweep"]["bias_x"], v["sweep"]["bias_y"],
                     v["sweep"]["chi2"], v["sweep"]["valid"], v["hard"]["rmse"],
                     res["opencv"]["hard"]["rmse"] / v["hard"]["rmse"], v["hard"]["valid"],
                     v["us"], res["opencv"]["us"] / v["us"]))
    print("\npredicted error (rms of sigma, valid windows) vs actual RMSE, SlideWatch:")
    for name, res in out.items():
        v = res["slidewatch"]
        print("  %-16s 1 %%: %.4f vs %.4f   5 %% + contrast: %.4f vs %.4f" % (
            name, v["sweep"].get("sigma_rms", np.nan), v["sweep"]["rmse"],
            v["hard"].get("sigma_rms", np.nan), v["hard"]["rmse"]))
    worst = max(out, key=lambda n: out[n]["slidewatch"]["sweep"]["rmse"])
    slow = min(out, key=lambda n: out[n]["opencv"]["us"] / out[n]["slidewatch"]["us"])
    hard_ratio = min(out[n]["opencv"]["hard"]["rmse"] / out[n]["slidewatch"]["hard"]["rmse"]
                     for n in out)
    print("\nworst texture (RMSE 1 %%): %s %.4f px; lowest speed-up: %s %.2fx; lowest "
          "OpenCV/SlideWatch RMSE ratio at 5 %% + contrast: %.1fx" % (
              worst, out[worst]["slidewatch"]["sweep"]["rmse"], slow,
              out[slow]["opencv"]["us"] / out[slow]["slidewatch"]["us"], hard_ratio))
    os.makedirs(BC.OUT, exist_ok=True)
    tag = "" if a.max_sigma is None else "_max_sigma_%g" % a.max_sigma
    with open(os.path.join(BC.OUT, "bench_textures%s.json" % tag), "w") as fh:
        json.dump(dict(results=out, textures={k: TEXTURES[k][1:] for k in out}), fh, indent=1)


if __name__ == "__main__":
    main()
