"""Third real stack (issue 14): 8 Landsat 7 dates of Sverdrup Glacier, pipeline defaults.

Data: tests/data/sverdrup/ (shipped, 8 x 45 kB; made by scripts/make_sverdrup_stack.py
from github.com/yaramohajerani/FrontLearning, commit 70f0e4c, MIT, Landsat 7 B2 summer
2000; see its README.txt): 200 x 300 px crops on one common (rotated, resampled) grid
with an *assumed* georeference (40 m pixels in EPSG:3413: the source's is unknown, ~40-50 m
from the glacier's width), so areas and speeds are in those assumed units; the score below
is in windows and does not depend on it. The glacier trunk flows towards the top of the
frame at ~0.06 px/day; bedrock strips on both sides; fjord ice above the calving front (not
scored: it moves and changes). Nothing was tuned on it. Run: ``run_pipeline`` with
defaults (no option at all), then
  * body, rock and margins: the boxes of tests/data/sverdrup/regions.json (drawn by eye on
    the first and last images: the trunk, about 27 % of the frame; the two bedrock strips;
    the bedrock without the windows that reach the ice);
  * twice: pipeline defaults, and with the rock boxes as the stable-area mask (the
    documented option when the scene moves in large part);
  * share of the body's and of the margins' valid velocity pixels inside detections;
  * median glacier speed (px/day) against the stack README's phase-correlation check
    (~0.06 px/day), and median rock speed.

    .venv/bin/python bench/bench_sverdrup.py [tests/data/sverdrup] [out]

The scoring (:func:`score`) is shared with tests/test_real_sverdrup.py.
"""

import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "tests", "data", "sverdrup")
with open(os.path.join(SRC, "regions.json")) as _f:
    REGIONS = json.load(_f)
GRID = REGIONS["assumed_grid"]
PX = GRID["pixel_m"]


def _boxes(name):
    return [(slice(*r), slice(*c)) for r, c in REGIONS[name]]


BODY, ROCK, MARGIN = _boxes("body"), _boxes("rock"), _boxes("margins")
SHAPE = tuple(REGIONS["frame_shape"])


def frame_mask(shape, boxes):
    m = np.zeros(shape, bool)
    for b in boxes:
        m[b] = True
    return m


def score(res, shape, sec):
    import rasterio
    from rasterio.features import rasterize
    from slidewatch.core.detect import detections_store
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
    rr = (GRID["origin_y"] - (T.f + (np.arange(vshape[0]) + 0.5) * T.e)) / PX
    cc = (T.c + (np.arange(vshape[1]) + 0.5) * T.a - GRID["origin_x"]) / PX
    R, C = np.meshgrid(rr.astype(int).clip(0, shape[0] - 1), cc.astype(int).clip(0, shape[1] - 1),
                       indexing="ij")
    body = frame_mask(shape, BODY)[R, C]
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


def rock_mask(images, out_path):
    """The rock boxes as a stable-area mask raster on the images' grid."""
    import rasterio
    first = sorted(f for f in os.listdir(images) if f.endswith(".tif"))[0]
    with rasterio.open(os.path.join(images, first)) as s:
        prof = dict(s.profile, dtype="uint8", nodata=None)
    with rasterio.open(out_path, "w", **prof) as d:
        d.write(frame_mask(SHAPE, ROCK).astype("uint8"), 1)
    return out_path


def main(argv):
    src = argv[1] if len(argv) > 1 else SRC
    out = argv[2] if len(argv) > 2 else "/tmp/bench_sverdrup"
    if not os.path.isdir(src):
        print("Sverdrup stack not found in %s (see the module doc)" % src)
        return 1
    from slidewatch.core.run.pipeline import PipelineParams, run_pipeline
    os.makedirs(out, exist_ok=True)
    mask = rock_mask(src, os.path.join(out, "rock_mask.tif"))
    results = {}
    for name, kw in (("defaults", {}), ("rock boxes as stable mask", dict(stable_mask=mask))):
        t0 = time.perf_counter()
        res = run_pipeline(src, os.path.join(out, "run_%d" % len(results)), PipelineParams(**kw))
        r = score(res, SHAPE, time.perf_counter() - t0)
        results[name] = r
        print(name, json.dumps(r, indent=1))
    with open(os.path.join(out, "bench_sverdrup.json"), "w") as fh:
        json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
