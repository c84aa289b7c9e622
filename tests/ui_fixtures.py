"""A small but complete SlideWatch output folder for the UI tests and the screenshots.

Written with the project's own writers (core.raster_io.write_bands for the rasters,
core.detections_store.write_detections for detections.gpkg), following SPEC: time series,
velocity, pair rasters for the selected pairs, pairs.csv with all candidates, and
detections with evidence fields. Two slides move south-east; the second one accelerates.
"""

import csv
import datetime as dt
import json
import os

import numpy as np

CRS = "EPSG:32633"
X0, Y0, PIX = 500000.0, 5100000.0, 10.0
DATES = ["2020-01-10", "2020-02-14", "2020-03-20", "2020-04-24", "2020-05-29", "2020-07-03",
         "2020-08-07", "2020-09-11", "2020-10-16", "2020-11-20"]


def _transform():
    from rasterio.transform import from_origin

    return from_origin(X0, Y0, PIX, PIX)


def pixel_centre(row, col):
    return X0 + (col + 0.5) * PIX, Y0 - (row + 0.5) * PIX


def _years(dates):
    d0 = dt.date.fromisoformat(dates[0])
    return np.array([(dt.date.fromisoformat(d) - d0).days / 365.25 for d in dates])


def make_output_folder(folder, shape=(60, 80), n_detections=12, seed=1, with_pairs=True):
    """Write the folder; returns a dict with the truth (arrays, detections)."""
    from slidewatch.core.detect.detections_store import write_detections
    from slidewatch.core.raster_io import write_bands

    rng = np.random.default_rng(seed)
    h, w = shape
    rows, cols = np.mgrid[0:h, 0:w]
    t = _years(DATES)
    # slide 1: steady 6 m/yr towards the south-east; slide 2: 1 m/yr then 8 m/yr after June
    s1 = np.exp(-(((rows - 22) / 9.0) ** 2 + ((cols - 25) / 12.0) ** 2))
    s2 = np.exp(-(((rows - 42) / 6.0) ** 2 + ((cols - 58) / 7.0) ** 2))
    onset = _years([DATES[0], "2020-06-01"])[1]
    east = np.empty((len(DATES), h, w), np.float32)
    north = np.empty_like(east)
    for k, tk in enumerate(t):
        d1 = 6.0 * tk * s1
        d2 = (1.0 * tk + 7.0 * max(tk - onset, 0.0)) * s2
        east[k] = 0.8 * d1 + 0.6 * d2 + rng.normal(0, 0.05, (h, w))
        north[k] = -0.6 * d1 - 0.8 * d2 + rng.normal(0, 0.05, (h, w))
    plan = plan_detections(n_detections, seed, shape)
    add_planned_motion(east, north, plan, t)
    east[0] = north[0] = 0.0
    east[:, :3, :3] = np.nan  # a nodata corner
    north[:, :3, :3] = np.nan
    ts = os.path.join(folder, "timeseries")
    os.makedirs(ts, exist_ok=True)
    tr = _transform()
    write_bands(os.path.join(ts, "ts_east_m.tif"), east, tr, CRS, descriptions=DATES)
    write_bands(os.path.join(ts, "ts_north_m.tif"), north, tr, CRS, descriptions=DATES)
    A = np.vstack([t, np.ones_like(t)]).T
    flat_e = east.reshape(len(DATES), -1)
    flat_n = north.reshape(len(DATES), -1)
    ve = np.linalg.lstsq(A, np.nan_to_num(flat_e), rcond=None)[0][0].reshape(h, w)
    vn = np.linalg.lstsq(A, np.nan_to_num(flat_n), rcond=None)[0][0].reshape(h, w)
    v = np.hypot(ve, vn)
    sigma = np.full((h, w), 0.12) + 0.05 * s2
    nobs = np.full((h, w), 2 * len(DATES) - 3, float)
    rmse = np.full((h, w), 0.06) + 0.2 * s2
    vel = np.stack([ve, vn, v, sigma, nobs, rmse]).astype(np.float32)
    vel[:, :3, :3] = np.nan
    write_bands(os.path.join(ts, "velocity.tif"), vel, tr, CRS,
                descriptions=["ve_m_per_yr", "vn_m_per_yr", "v_m_per_yr", "v_sigma_m_per_yr",
                              "n_obs", "rmse_m"])
    flags = np.zeros((h, w), np.uint8)
    flags[s1 > 0.5] |= 4  # outliers rejected on the fast slide
    write_bands(os.path.join(ts, "network_flags.tif"), [flags], tr, CRS,
                descriptions=["network_flags"], dtype="uint8", nodata=None)
    # pair network: all pairs up to 3 steps are candidates; 1- and 2-step pairs selected
    pairs_rows = []
    os.makedirs(os.path.join(folder, "pairs"), exist_ok=True)
    for i in range(len(DATES)):
        for j in range(i + 1, min(i + 4, len(DATES))):
            baseline = (dt.date.fromisoformat(DATES[j]) - dt.date.fromisoformat(DATES[i])).days
            score = float(np.clip(1.0 - 0.15 * (j - i) - rng.uniform(0, 0.3), 0, 1))
            selected = j - i <= 2 and score > 0.25
            name = "pair_%s_%s.tif" % (DATES[i].replace("-", ""), DATES[j].replace("-", ""))
            pairs_rows.append([DATES[i], DATES[j], "images/%s.tif" % DATES[i],
                               "images/%s.tif" % DATES[j], baseline, "%.3f" % score,
                               "true" if selected else "false",
                               "selected" if selected else "low score or long baseline"])
            if selected and with_pairs:
                pe = east[j] - east[i] + rng.normal(0, 0.03, (h, w))
                pn = north[j] - north[i] + rng.normal(0, 0.03, (h, w))
                ncc = np.clip(0.9 - 0.05 * (j - i) + rng.normal(0, 0.02, (h, w)), 0, 1)
                snr = 5 + rng.random((h, w))
                status = np.zeros((h, w))
                if i == 0 and j == 1:  # a rejected area in the first pair (status 2)
                    status[:, 70:] = 2
                write_bands(os.path.join(folder, "pairs", name), [pe, pn, ncc, snr, status],
                            tr, CRS, descriptions=["east_m", "north_m", "ncc", "snr", "status"],
                            tags={"REFERENCE_DATE": DATES[i], "SECONDARY_DATE": DATES[j]})
    header = ["reference_date", "secondary_date", "reference_path", "secondary_path",
              "baseline_days", "score", "selected", "reason"]
    with open(os.path.join(folder, "pairs.csv"), "w", newline="") as fh:
        csv.writer(fh).writerows([header] + pairs_rows)
    truth = make_detections(os.path.join(folder, "detections.gpkg"), n_detections, seed,
                            shape, plan=plan)
    return dict(east=east, north=north, velocity=vel, dates=DATES, detections=truth,
                pairs=pairs_rows)


def plan_detections(n, seed=1, shape=(60, 80)):
    """``n`` detections: the first two are the planted slides; the others small squares,
    real (a small moving patch is planted in the rasters under them) or false alarms, with
    evidence that separates them imperfectly."""
    rng = np.random.default_rng(seed + 100)
    h, w = shape
    boxes = [(14, 15, 30, 36), (37, 52, 47, 64)]
    while len(boxes) < n:
        r0, c0 = int(rng.integers(0, h - 5)), int(rng.integers(0, w - 5))
        size = int(rng.integers(2, 5))
        boxes.append((r0, c0, r0 + size, c0 + size))
    plan = []
    for k, box in enumerate(boxes):
        real = k < 2 or rng.random() < 0.5
        sig = rng.normal(4.0 if real else 2.0, 0.8)
        coh = np.clip(rng.normal(0.8 if real else 0.45, 0.12), 0, 1)
        cons = np.clip(rng.normal(0.7 if real else 0.5, 0.15), 0, 1)
        down = rng.normal(0.2 if real else 0.0, 0.3)  # weakly informative
        if k < 2:  # the two planted slides: strong, clear evidence
            sig, coh, cons, down = 7.0 - k, 0.92, 0.85, 0.6
        vmean = 6.0 if k == 0 else 4.5 if k == 1 else float(
            abs(rng.normal(2.5, 0.8)) + 0.5 if real else abs(rng.normal(0.8, 0.4)))
        plan.append(dict(k=k, box=box, real=bool(real), sig=float(sig), coh=float(coh),
                         cons=float(cons), down=float(down), vmean=vmean))
    return plan


def add_planned_motion(east, north, plan, years):
    """Plant a small steady south-east motion under the real small detections."""
    h, w = east.shape[1:]
    rows, cols = np.mgrid[0:h, 0:w]
    for d in plan:
        if d["k"] < 2 or not d["real"]:
            continue
        r0, c0, r1, c1 = d["box"]
        rc, cc = (r0 + r1) / 2.0, (c0 + c1) / 2.0
        bump = np.exp(-(((rows - rc) / max((r1 - r0) / 2.0, 1.0)) ** 2
                        + ((cols - cc) / max((c1 - c0) / 2.0, 1.0)) ** 2))
        for k, tk in enumerate(years):
            east[k] += 0.7 * d["vmean"] * tk * bump
            north[k] -= 0.7 * d["vmean"] * tk * bump


def make_detections(path, n, seed=1, shape=(60, 80), v=None, plan=None):
    """Write detections.gpkg from :func:`plan_detections`; returns the plan with ids."""
    from slidewatch.core.detect.detections_store import write_detections

    plan = plan if plan is not None else plan_detections(n, seed, shape)

    def square(r0, c0, r1, c1):
        x0, y0 = pixel_centre(r0, c0)
        x1, y1 = pixel_centre(r1, c1)
        return {"type": "Polygon", "coordinates": [[(x0, y0), (x1, y0), (x1, y1), (x0, y1),
                                                     (x0, y0)]]}

    feats, truth = [], []
    for d in plan:
        k, (r0, c0, r1, c1) = d["k"], d["box"]
        sig, coh, cons, down = d["sig"], d["coh"], d["cons"], d["down"]
        ev = dict(ev_significance=sig * 0.1, ev_coherence=coh * 0.3,
                  ev_consistency=cons * 0.2, ev_downslope=down * 0.1)
        score = float(sum(ev.values()))
        area = (r1 - r0) * (c1 - c0) * PIX * PIX
        vmean = d["vmean"]
        feats.append(dict(geometry=square(r0, c0, r1, c1), area_m2=area,
                          v_mean_m_per_yr=vmean, v_p95_m_per_yr=vmean * 1.4,
                          direction_deg=135.0, coherence=coh, score=score,
                          accel_flag=1 if k == 1 else 0,
                          accel_onset_date="2020-06-01" if k == 1 else None,
                          score_explanation=json.dumps({"velocity significance": round(sig, 2),
                                                        "direction coherence": round(coh, 2),
                                                        "temporal consistency": round(cons, 2),
                                                        "downslope agreement": round(down, 2)}),
                          **ev))
        truth.append(dict(real=d["real"], box=d["box"], score=score, **ev))
    info = write_detections(path, feats, crs_wkt=CRS, preserve=False)
    for rec, ident in zip(truth, info["ids"]):
        rec["id"] = ident
    return truth
