"""Real multi-date stack (issue 14): GIV's Perito Moreno example, pipeline defaults.

Data (not shipped: GPL-3.0 and no georeference): 23 dates of 8-bit JPEGs from
github.com/MaxVWDV/glacier-image-velocimetry, converted by scripts/make_giv_stack.py
(assumed 10 m pixel; black outside the glacier = nodata, so the glacier fills the valid
area). Nothing of SlideWatch was tuned on this stack.

    python3 scripts/make_giv_stack.py <GIV git dir or work tree> /work/realdata/giv_tif
    .venv/bin/python bench/bench_giv.py /work/realdata/giv_tif /work/realdata/giv_bench

Runs ``qgis_process.bin run slidewatch:pipeline`` with the defaults (the headless entry
point of SPEC) into OUT (reused when OUT already holds a finished run; delete it to
re-run), then reports:
  * pairs selected, and how many touch a date fully clouded by eye (FULLY_CLOUDED, from a
    contact sheet: 2020-01-06, 01-08, 02-15 overcast, 01-16 and 03-11 more than 80 %);
    whether every clear date is in a selected pair;
  * preview time against correlation time (from the run log);
  * speed: per clear pair, median |displacement| / baseline of the pair raster against a
    plain OpenCV NCC loop (matchTemplate TM_CCOEFF_NORMED, window 32, search 32 px,
    peak >= 0.3, parabola) on the same window centres, in .venv-bench's Python;
  * detection: share of the valid area inside detections (the glacier is the valid
    area, so the target is "most of it").
"""

import datetime as dt
import glob
import json
import os
import re
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_PY = os.path.join(ROOT, ".venv-bench", "bin", "python")
FULLY_CLOUDED = ("2020-01-06", "2020-01-08", "2020-01-16", "2020-02-15", "2020-03-11")
CLEAR_PAIRS = (("20200131", "20200205"), ("20200131", "20200210"), ("20200205", "20200210"),
               ("20200205", "20200220"), ("20200207", "20200210"), ("20200210", "20200220"))
WINDOW, SEARCH, PIXEL_M = 32, 32, 10.0


def run_pipeline(inp, out):
    if os.path.exists(os.path.join(out, "detections.gpkg")):
        print("reusing the finished run in %s" % out)
        return
    env = dict(os.environ, QGIS_PLUGINPATH=os.path.join(ROOT, ".build", "plugins"),
               PYTHONPATH=os.path.join(ROOT, ".build", "plugins"),
               QT_QPA_PLATFORM="offscreen")
    env.setdefault("NUMBA_CACHE_DIR", os.path.join(ROOT, ".cache", "numba"))
    with open(os.path.join(os.path.dirname(out.rstrip("/")) or ".", "giv_bench_run.log"),
              "w") as log:
        subprocess.run(["/usr/bin/qgis_process.bin", "run", "slidewatch:pipeline", "--",
                        "INPUT=%s" % inp, "OUTPUT_FOLDER=%s" % out], env=env, check=True,
                       stdout=log, stderr=subprocess.STDOUT)


def pairing_report(out):
    from slidewatch.core.network.pairs_file import read_pairs
    rows = read_pairs(os.path.join(out, "pairs.csv"))
    sel = [r for r in rows if r.selected]
    dates = sorted({r.reference_date for r in rows} | {r.secondary_date for r in rows})
    used = {r.reference_date for r in sel} | {r.secondary_date for r in sel}
    bad = [r for r in sel if r.reference_date in FULLY_CLOUDED
           or r.secondary_date in FULLY_CLOUDED]
    clear_unused = [d for d in dates if d not in FULLY_CLOUDED and d not in used]
    return dict(n_selected=len(sel), n_touch_clouded=len(bad),
                share_touch_clouded=len(bad) / max(len(sel), 1),
                touching=["%s/%s" % (r.reference_date, r.secondary_date) for r in bad],
                clear_dates_unused=clear_unused)


def timings(out):
    log = open(os.path.join(out, "slidewatch.log")).read()
    prev = re.findall(r"previews_s ([0-9.]+) s", log)
    corr = re.findall(r"correlation: done \(.*?\), ([0-9.]+) s", log)
    p = float(prev[-1]) if prev else float("nan")
    c = float(corr[-1]) if corr else float("nan")
    return dict(previews_s=p, correlation_s=c, preview_share=p / c if c else float("nan"))


def speeds(inp, out):
    import rasterio
    payload = {}
    ours = {}
    for a, b in CLEAR_PAIRS:
        pr = os.path.join(out, "pairs", "pair_%s_%s.tif" % (a, b))
        if not os.path.exists(pr):
            continue
        days = (dt.date(int(b[:4]), int(b[4:6]), int(b[6:])) -
                dt.date(int(a[:4]), int(a[4:6]), int(a[6:]))).days
        with rasterio.open(pr) as src:
            e, n = src.read(1), src.read(2)
            step = int(round(abs(src.transform.a) / PIXEL_M))
        rows = np.arange(e.shape[0]) * step + step // 2
        cols = np.arange(e.shape[1]) * step + step // 2
        ref = rasterio.open(os.path.join(inp, "S2_%s.tif" % a)).read(1).astype(np.float32)
        sec = rasterio.open(os.path.join(inp, "S2_%s.tif" % b)).read(1).astype(np.float32)
        key = "%s_%s" % (a, b)
        payload[key] = dict(ref=ref, sec=sec, rows=rows, cols=cols)
        ours[key] = dict(days=days, speed=np.hypot(e, n) / days)
    if not ours:
        return {}
    npz = os.path.join(out, "giv_peer_in.npz")
    np.savez(npz, **{"%s__%s" % (k, f): v for k, d in payload.items() for f, v in d.items()})
    res = subprocess.run([PEER_PY, os.path.abspath(__file__), "--peer", npz],
                         capture_output=True, text=True, check=True)
    peer = json.loads(res.stdout.strip().splitlines()[-1])
    rep = {}
    for k, d in ours.items():
        pe = np.array(peer[k]["d"], dtype=np.float64)     # (rows, cols) px or NaN
        cv = pe * PIXEL_M / d["days"]
        both = np.isfinite(cv) & np.isfinite(d["speed"])
        rep[k] = dict(days=d["days"], slidewatch_m_per_day=float(np.median(d["speed"][both])),
                      opencv_m_per_day=float(np.median(cv[both])), n_windows=int(both.sum()),
                      opencv_version=peer["version"])
        rep[k]["ratio"] = rep[k]["slidewatch_m_per_day"] / rep[k]["opencv_m_per_day"]
    return rep


def peer_main(npz):
    import cv2
    z = np.load(npz)
    keys = sorted({f.split("__")[0] for f in z.files})
    h = WINDOW // 2
    out = {"version": cv2.__version__}
    for k in keys:
        ref, sec = z[k + "__ref"], z[k + "__sec"]
        rows, cols = z[k + "__rows"], z[k + "__cols"]
        H, W = ref.shape
        d = np.full((rows.size, cols.size), np.nan)
        for i, r0 in enumerate(rows):
            for j, c0 in enumerate(cols):
                if r0 - h - SEARCH < 0 or c0 - h - SEARCH < 0 or r0 + h + SEARCH > H \
                        or c0 + h + SEARCH > W:
                    continue
                tpl = ref[r0 - h:r0 + h, c0 - h:c0 + h]
                area = sec[r0 - h - SEARCH:r0 + h + SEARCH, c0 - h - SEARCH:c0 + h + SEARCH]
                if (tpl == 0).mean() > 0.1 or (area == 0).mean() > 0.1 or tpl.std() < 1:
                    continue
                m = cv2.matchTemplate(area, tpl, cv2.TM_CCOEFF_NORMED)
                _, mx, _, (px, py) = cv2.minMaxLoc(m)
                if mx < 0.3 or px in (0, m.shape[1] - 1) or py in (0, m.shape[0] - 1):
                    continue
                fx = fy = 0.0
                a_, b_, c_ = m[py, px - 1], m[py, px], m[py, px + 1]
                if a_ - 2 * b_ + c_ < 0:
                    fx = 0.5 * (a_ - c_) / (a_ - 2 * b_ + c_)
                a_, b_, c_ = m[py - 1, px], m[py, px], m[py + 1, px]
                if a_ - 2 * b_ + c_ < 0:
                    fy = 0.5 * (a_ - c_) / (a_ - 2 * b_ + c_)
                d[i, j] = np.hypot(px + fx - SEARCH, py + fy - SEARCH)
        out[k] = {"d": [[None if not np.isfinite(v) else float(v) for v in row] for row in d]}
    print(json.dumps(out))
    return 0


def detection_report(out):
    import rasterio
    from slidewatch.core.detect.detection import read_timeseries  # noqa: F401 (import check)
    log = open(os.path.join(out, "slidewatch.log")).read()
    lines = [l for l in log.splitlines() if "Bias removed" in l or "no stable ground" in l
             or re.search(r"\d+ detection\(s\) written", l)]
    vel = glob.glob(os.path.join(out, "timeseries", "velocity*.tif"))
    share = float("nan")
    try:
        import fiona  # noqa: F401
    except ImportError:
        pass
    try:
        from rasterio import features
        import sqlite3  # noqa: F401
        from osgeo import ogr
        ds = ogr.Open(os.path.join(out, "detections.gpkg"))
        lyr = ds.GetLayer(0)
        geoms = [json.loads(f.GetGeometryRef().ExportToJson()) for f in lyr]
        with rasterio.open(vel[0]) as src:
            valid = np.isfinite(src.read(1))
            if geoms:
                det = features.rasterize(geoms, out_shape=src.shape, transform=src.transform) > 0
            else:
                det = np.zeros(src.shape, bool)
        share = float((det & valid).sum()) / max(int(valid.sum()), 1)
    except Exception as exc:  # report, do not hide
        lines.append("detection share not measured: %s" % exc)
    return dict(log_lines=lines, detected_share_of_valid=share)


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "--peer":
        return peer_main(sys.argv[2])
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    inp, out = (os.path.abspath(p) for p in sys.argv[1:3])
    if not glob.glob(os.path.join(inp, "S2_2020*.tif")):
        print("GIV stack not found in %s: build it with scripts/make_giv_stack.py" % inp)
        return 1
    run_pipeline(inp, out)
    rep = dict(pairing=pairing_report(out), timings=timings(out), speeds=speeds(inp, out),
               detection=detection_report(out))
    print(json.dumps(rep, indent=1))
    os.makedirs(os.path.join(ROOT, "bench", "out"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "out", "bench_giv.json"), "w") as f:
        json.dump(rep, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
