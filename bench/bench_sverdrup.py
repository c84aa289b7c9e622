"""Third real stack (issue 14): 8 Landsat 7 dates of Sverdrup Glacier, pipeline defaults.

Data: /work/realdata/sverdrup_l7/ (not shipped; made from github.com/yaramohajerani/
FrontLearning, commit 70f0e4c, MIT, Landsat 7 B2 summer 2000; see its README.txt): 200 x
300 px crops on one common (rotated, resampled) grid, no georeference. The glacier trunk
flows towards the top of the frame at ~0.06 px/day; bedrock strips on both sides; fjord
ice above the calving front (not scored: it moves and changes). Nothing was tuned on it.

The frames get an *assumed* georeference (40 m pixels in EPSG:3413, the source's pixel size
is unknown: ~40-50 m from the glacier's width), so areas and speeds are in those assumed
units; the score below is in windows and does not depend on it. Run: ``run_pipeline`` with
defaults (no option at all), then
  * body = the glacier trunk box (rows 130-296, columns 50-146 of the frame, by eye on the
    first/last images; about 27 % of the frame), margins = the two bedrock boxes
    (rows 100-292 / 2-42 and 140-292 / 150-198) without their windows that reach the
    ice (centre < 24 px from the glacier's edge): rows 100-292 / 2-21 and 140-292 / 174-198;
  * twice: pipeline defaults, and with the bedrock boxes as the stable-area mask (the
    documented option when the scene moves in large part);
  * share of the body's and of the margins' valid velocity pixels inside detections;
  * median glacier speed (px/day) against the stack README's phase-correlation check
    (~0.06 px/day), and median rock speed.

    .venv/bin/python bench/bench_sverdrup.py [/work/realdata/sverdrup_l7] [out]
"""

import json
import os
import sys
import time

import numpy as np

SRC = "/work/realdata/sverdrup_l7"
PX = 40.0
BODY = (slice(130, 297), slice(50, 147))
ROCK = [(slice(100, 293), slice(2, 43)), (slice(140, 293), slice(150, 199))]
#: the rock boxes without the windows that reach the ice: a window (32 px) centred less
#: than half a window plus a grid step (24 px) from the glacier's edge holds moving ice
MARGIN = [(slice(100, 293), slice(2, 22)), (slice(140, 293), slice(174, 199))]


def georeferenced_copy(src, dst):
    import rasterio
    from rasterio.transform import from_origin
    os.makedirs(dst, exist_ok=True)
    for f in sorted(os.listdir(src)):
        if not f.endswith(".tif"):
            continue
        with rasterio.open(os.path.join(src, f)) as s:
            a = s.read(1)
        prof = dict(driver="GTiff", width=a.shape[1], height=a.shape[0], count=1,
                    dtype=a.dtype, crs="EPSG:3413", nodata=0,
                    transform=from_origin(-300000.0, -1500000.0, PX, PX))
        with rasterio.open(os.path.join(dst, "LE07_%s.tif" % f[:10].replace("-", "")),
                           "w", **prof) as d:
            d.write(a, 1)
    return a.shape


def frame_mask(shape, boxes):
    m = np.zeros(shape, bool)
    for b in boxes:
        m[b] = True
    return m


def score(res, shape, sec):
    import rasterio
    from rasterio.features import rasterize
    from slidewatch.core import detections_store
    from slidewatch.core.products import BAND_VE, BAND_VN, VELOCITY_BANDS
    with rasterio.open(res.paths["velocity"]) as s:
        ve = s.read(VELOCITY_BANDS.index(BAND_VE) + 1).astype(float)
        vn = s.read(VELOCITY_BANDS.index(BAND_VN) + 1).astype(float)
        T, vshape = s.transform, s.shape
    feats = detections_store.read_detections(res.paths["detections"])
    det = np.zeros(vshape, bool)
    if feats:
        from osgeo import ogr
        det = rasterize(((json.loads(ogr.CreateGeometryFromWkt(f["geometry_wkt"]).ExportToJson()),
                          1) for f in feats), out_shape=vshape, transform=T,
                        dtype="uint8").astype(bool)
    # frame boxes -> velocity grid (pixel centres of the grid in frame pixels)
    rr = (-1500000.0 - (T.f + (np.arange(vshape[0]) + 0.5) * T.e)) / PX
    cc = (T.c + (np.arange(vshape[1]) + 0.5) * T.a + 300000.0) / PX
    R, C = np.meshgrid(rr.astype(int).clip(0, shape[0] - 1), cc.astype(int).clip(0, shape[1] - 1),
                       indexing="ij")
    body = frame_mask(shape, [BODY])[R, C]
    rock = frame_mask(shape, MARGIN)[R, C]
    valid = np.isfinite(ve) & np.isfinite(vn)
    speed = np.hypot(ve, vn) / 365.25 / PX          # px/day
    return dict(seconds=sec, n_dates=res.n_dates, n_pairs=res.n_pairs, n_detections=len(feats),
                body_share_of_valid=float((body & valid).sum() / valid.sum()),
                body_valid=int((body & valid).sum()), margin_valid=int((rock & valid).sum()),
                body_detected=float(det[body & valid].mean()) if (body & valid).any() else None,
                margin_detected=float(det[rock & valid].mean()) if (rock & valid).any() else None,
                glacier_speed_px_per_day=float(np.nanmedian(speed[body & valid])),
                glacier_p90_speed_px_per_day=float(np.nanpercentile(speed[body & valid], 90)),
                margin_speed_px_per_day=float(np.nanmedian(speed[rock & valid])))


def main(argv):
    src = argv[1] if len(argv) > 1 else SRC
    out = argv[2] if len(argv) > 2 else "/tmp/bench_sverdrup"
    if not os.path.isdir(src):
        print("Sverdrup stack not found in %s (see the module doc)" % src)
        return 1
    import rasterio
    from slidewatch.core.pipeline import PipelineParams, run_pipeline
    shape = georeferenced_copy(src, os.path.join(out, "images"))
    mask = os.path.join(out, "rock_mask.tif")
    with rasterio.open(os.path.join(out, "images", sorted(os.listdir(
            os.path.join(out, "images")))[0])) as s:
        prof = dict(s.profile, dtype="uint8", nodata=None)
    with rasterio.open(mask, "w", **prof) as d:
        d.write(frame_mask(shape, ROCK).astype("uint8"), 1)
    results = {}
    for name, kw in (("defaults", {}), ("rock boxes as stable mask", dict(stable_mask=mask))):
        t0 = time.perf_counter()
        res = run_pipeline(os.path.join(out, "images"), os.path.join(out, "run_%d" % len(results)),
                           PipelineParams(**kw))
        r = score(res, shape, time.perf_counter() - t0)
        results[name] = r
        print(name, json.dumps(r, indent=1))
    with open(os.path.join(out, "bench_sverdrup.json"), "w") as fh:
        json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
