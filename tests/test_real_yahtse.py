"""Real-data regression (issue 14): Landsat 8 pair of Yahtse glacier's fast lower tongue.

Data: tests/data/yahtse/ (cut by scripts/make_yahtse_crop.py from ../shared/data; the
full-scene figures are bench/bench_yahtse.py's). Reference: CARST's raw offsets, east
sign flipped, cleaned by a 3 x 3 median test and corrected by their median over the rock
polygons; compared on the windows where CARST is faster than 5 m/day.
"""

import os

import numpy as np
import pytest
import rasterio
from scipy import ndimage

from slidewatch.core.matching.pair_correlation import correlate_pair_rasters

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "yahtse")
REF = os.path.join(DATA, "LC08_20160718_B8.tif")
SEC = os.path.join(DATA, "LC08_20160803_B8.tif")
ROCK = os.path.join(DATA, "rock.tif")
DAYS = 16.0

pytestmark = pytest.mark.skipif(not os.path.exists(REF), reason="tests/data/yahtse missing")


def _carst_on(T, shape):
    out = []
    for name, sign in (("carst_east_m.tif", -1.0), ("carst_north_m.tif", 1.0)):
        with rasterio.open(os.path.join(DATA, name)) as src:
            a = src.read(1).astype(np.float64)
            a[a == src.nodata] = np.nan
            Tc = src.transform
        with np.errstate(invalid="ignore"):
            med = ndimage.generic_filter(a, np.nanmedian, size=3, mode="constant",
                                         cval=np.nan)
            a = np.where(np.abs(a - med) <= np.maximum(16.0, 0.2 * np.abs(med)), a, np.nan)
        rr, cc = np.mgrid[:shape[0], :shape[1]]
        ci = np.floor((T.c + (cc + 0.5) * T.a - Tc.c) / Tc.a).astype(int)
        ri = np.floor((T.f + (rr + 0.5) * T.e - Tc.f) / Tc.e).astype(int)
        ok = (ri >= 0) & (ri < a.shape[0]) & (ci >= 0) & (ci < a.shape[1])
        v = np.full(shape, np.nan)
        v[ok] = a[ri[ok], ci[ok]] * sign / DAYS
        out.append(v)
    return out


def _run(tmp_path, **kw):
    out = str(tmp_path / "pair_20160718_20160803.tif")
    correlate_pair_rasters(REF, SEC, out, **kw)
    with rasterio.open(out) as src:
        e, n, T = src.read(1) / DAYS, src.read(2) / DAYS, src.transform
    with rasterio.open(ROCK) as src:
        rock = src.read(1)[4::8, 4::8][:e.shape[0], :e.shape[1]].astype(bool)
    ce, cn = _carst_on(T, e.shape)
    ce -= np.nanmedian(ce[rock])
    cn -= np.nanmedian(cn[rock])
    cv = np.hypot(ce, cn)
    with np.errstate(invalid="ignore"):
        fast = (cv > 5) & ~rock
    v = np.hypot(e, n)
    ok = np.isfinite(v) & fast
    ang = np.degrees(np.angle(np.exp(1j * (np.arctan2(n, e) - np.arctan2(cn, ce)))))
    return dict(coverage=ok.sum() / fast.sum(), n_fast=int(fast.sum()),
                ratio=np.median(v[ok]) / np.median(cv[ok]) if ok.any() else 0.0,
                direction=np.median(np.abs(ang[ok])) if ok.any() else 180.0,
                rock=np.nanmedian(v[rock]), n_rock=int(rock.sum()))


def test_fast_tongue_needs_and_gets_the_motion_following_search(tmp_path):
    base = _run(tmp_path)
    assert base["n_fast"] > 300 and base["n_rock"] > 30
    # the fixed 8-px search cannot reach ~20 px: most of the tongue lost (what is left is
    # its slower edge: median speed low)
    assert base["coverage"] < 0.5 and base["ratio"] < 0.9
    fast = _run(tmp_path, max_velocity_m_per_day=30)
    assert fast["coverage"] >= 0.75
    assert abs(fast["ratio"] - 1) <= 0.10
    assert fast["direction"] <= 10
    # with the rock as stable mask the co-registration offset (~0.2 m/day) goes away
    corr = _run(tmp_path, max_velocity_m_per_day=30, stable="median", stable_mask=ROCK)
    assert corr["rock"] <= 0.5 * fast["rock"]
    assert abs(corr["ratio"] - 1) <= 0.10 and corr["coverage"] >= 0.75
    # and without any mask (the pipeline's default correction): the stable ground is
    # found as the tight cluster of vectors nearest zero (core/stable_offset.py), not the
    # median of a crop that the glacier fills in large part
    auto = _run(tmp_path, max_velocity_m_per_day=30, stable="median")
    assert auto["rock"] <= 0.5 * fast["rock"]
    assert abs(auto["ratio"] - 1) <= 0.10 and auto["coverage"] >= 0.75


def test_processing_dialog_fast_motion_setting(tmp_path, provider):
    """The same fast-motion setting from the Processing algorithm (as a user clicks it):
    Maximum velocity 30 m/day, median correction over the rock mask."""
    from qgis.core import (QgsApplication, QgsProcessingAlgorithm, QgsProcessingContext,
                           QgsProcessingFeedback)
    alg = QgsApplication.processingRegistry().createAlgorithmById("slidewatch:correlate_pair")
    names = [p.name() for p in alg.parameterDefinitions()]
    assert "MAX_VELOCITY" in names
    out = str(tmp_path / "pair_20160718_20160803.tif")
    feedback = QgsProcessingFeedback()
    res, ok = QgsProcessingAlgorithm.run(
        alg, {"REFERENCE": REF, "SECONDARY": SEC, "MAX_VELOCITY": 30.0, "STABLE": 1,
              "STABLE_MASK": ROCK, "OUTPUT": out}, QgsProcessingContext(), feedback, {},
        False)
    assert ok, res
    with rasterio.open(out) as src:
        e, n = src.read(1) / DAYS, src.read(2) / DAYS
        tags = src.tags()
    v = np.hypot(e, n)
    assert np.nanpercentile(v, 95) > 10          # the fast tongue is measured (m/day)
    assert "30" in tags.get("MAX_VELOCITY_M_PER_DAY", "")


def test_fast_body_is_detected_and_the_rock_is_not(tmp_path):
    """Issue 14's real-body target on the shipped crop, detection defaults: the glacier
    (CARST faster than 1 m/day off the rock polygons; 28 % of the valid windows) is
    detected over >= 80 % of its valid windows, the rock over <= 5 %. It comes from a
    single pair, so it must say so; with require_temporal_evidence=True nothing is."""
    from slidewatch.core.detect.detection import detect
    out = str(tmp_path / "pair_20160718_20160803.tif")
    correlate_pair_rasters(REF, SEC, out, max_velocity_m_per_day=30, stable="median")
    with rasterio.open(out) as src:
        e, n, T = src.read(1).astype(float), src.read(2).astype(float), src.transform
    with rasterio.open(ROCK) as src:
        rock = src.read(1)[4::8, 4::8][:e.shape[0], :e.shape[1]].astype(bool)
    ce, cn = _carst_on(T, e.shape)
    ce -= np.nanmedian(ce[rock])
    cn -= np.nanmedian(cn[rock])
    valid = np.isfinite(e) & np.isfinite(n)
    with np.errstate(invalid="ignore"):
        body = (np.hypot(ce, cn) > 1.0) & ~rock & valid
    assert 0.2 <= body.sum() / valid.sum() <= 0.4
    assert (rock & valid).sum() > 30
    zero = np.where(valid, 0.0, np.nan)
    E, N = np.stack([zero, e]), np.stack([zero, n])
    dates = ["2016-07-18", "2016-08-03"]
    res = detect(E, N, dates, T)
    det = res.labels > 0
    assert det[body].mean() >= 0.80
    assert det[rock & valid].mean() <= 0.05
    assert all(f["score_explanation"].startswith("Single pair") for f in res.features)
    assert detect(E, N, dates, T, require_temporal_evidence=True).features == []


def test_pipeline_on_the_two_real_images_detects_the_glacier(tmp_path):
    """A new user's first run on two images: the pipeline (fast-motion setting only) goes
    from the folder to detections; a single pair gives the pair's displacement as the
    series (the inversion needs every pair of a network smaller than min_obs)."""
    import shutil
    from slidewatch.core.detect import detections_store
    from slidewatch.core.run.pipeline import PipelineParams, run_pipeline
    inp = tmp_path / "images"
    inp.mkdir()
    for p in (REF, SEC):
        shutil.copy(p, inp / os.path.basename(p))
    res = run_pipeline(str(inp), str(tmp_path / "out"), PipelineParams(
        correlation_options={"max_velocity_m_per_day": 30.0}))
    from slidewatch.core.products import BAND_V, VELOCITY_BANDS
    with rasterio.open(res.paths["velocity"]) as src:
        v = src.read(VELOCITY_BANDS.index(BAND_V) + 1)
    assert np.isfinite(v).mean() > 0.5
    feats = detections_store.read_detections(res.paths["detections"])
    assert feats and max(f["area_m2"] for f in feats) > 5e6   # the tongue, ~10 km2
