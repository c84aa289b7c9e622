"""Tests of core.detection / noise_model / bias_removal on small synthetic series."""

import datetime as dt
import os

import numpy as np
import pytest
from affine import Affine

from slidewatch.core.detect import detections_store as store
from slidewatch.core.detect.bias_removal import remove_bias
from slidewatch.core.detect.detection import (DetectionParams, dates_to_years, detect,
                                              detect_from_folder, percentile_baseline)
from slidewatch.core.errors import InputError, ParameterError
from slidewatch.core.detect.noise_model import local_noise, robust_sigma
from slidewatch.core.raster_io import write_bands

PX = 20.0
TR = Affine(PX, 0, 400000.0, 0, -PX, 5100000.0)
CRS = "EPSG:32632"


def _dates(n, step=30):
    d0 = dt.date(2020, 1, 1)
    return [(d0 + dt.timedelta(days=step * i)).isoformat() for i in range(n)]


def make_series(shape=(90, 90), n=12, noise=0.3, seed=0, slide=None):
    """Cumulative east/north series (T, H, W): noise (+ optional planted slide).

    slide: dict(centre=(r, c), radius_px, v (m/yr), azimuth_deg, accel=(idx, v_after)).
    Returns east, north, dates, slide mask.
    """
    rng = np.random.default_rng(seed)
    dates = _dates(n)
    t = dates_to_years(dates)
    h, w = shape
    east = rng.normal(0, noise, (n, h, w))
    north = rng.normal(0, noise, (n, h, w))
    east[0] = north[0] = 0.0
    mask = np.zeros(shape, bool)
    if slide:
        rr, cc = np.mgrid[0:h, 0:w]
        r0, c0 = slide["centre"]
        mask = (rr - r0) ** 2 + (cc - c0) ** 2 <= slide["radius_px"] ** 2
        az = np.radians(slide["azimuth_deg"])
        d = slide["v"] * t
        if slide.get("accel"):
            k, v2 = slide["accel"]
            d = d + np.where(t > t[k], (v2 - slide["v"]) * (t - t[k]), 0.0)
        east[:, mask] += (d * np.sin(az))[:, None]
        north[:, mask] += (d * np.cos(az))[:, None]
    return east, north, dates, mask


def write_folder(folder, east, north, dates):
    ts = os.path.join(folder, "timeseries")
    os.makedirs(ts, exist_ok=True)
    write_bands(os.path.join(ts, "ts_east_m.tif"), east, TR, CRS, descriptions=dates)
    write_bands(os.path.join(ts, "ts_north_m.tif"), north, TR, CRS, descriptions=dates)
    return ts


SLIDE = dict(centre=(45, 45), radius_px=9, v=4.0, azimuth_deg=135.0)


def test_noise_relative_threshold_pure_noise_vs_slide():
    e, n, dates, _ = make_series(seed=1)
    res = detect(e, n, dates, TR)
    assert res.features == []
    assert (res.labels == 0).all()
    # a percentile threshold always flags the top of the distribution: here it finds
    # "objects" in pure noise once clean-up is light, which the noise threshold does not
    _, nb, thr = percentile_baseline(np.hypot(res.velocity_east, res.velocity_north), TR, 95.0,
                                     min_area_m2=0, morph_px=0)
    assert nb > 0 and thr > 0
    # the same noise plus a slide: the slide, and only it
    e2, n2, dates, mask = make_series(seed=1, slide=SLIDE)
    res2 = detect(e2, n2, dates, TR)
    assert len(res2.features) == 1
    det = res2.labels == 1
    assert (det & mask).sum() >= 0.8 * mask.sum()
    assert (det & ~mask).sum() <= 0.3 * det.sum()


def test_polygon_attributes_of_planted_slide():
    e, n, dates, mask = make_series(seed=2, slide=SLIDE, noise=0.2)
    res = detect(e, n, dates, TR)
    assert len(res.features) == 1
    f = res.features[0]
    true_area = mask.sum() * PX * PX
    assert abs(f["area_m2"] - true_area) <= 0.2 * true_area
    assert abs(f["v_mean_m_per_yr"] - 4.0) <= 0.4
    assert f["v_p95_m_per_yr"] >= f["v_mean_m_per_yr"]
    assert abs(((f["direction_deg"] - 135.0) + 180) % 360 - 180) <= 5.0
    assert f["accel_flag"] == 0 and f["accel_onset_date"] is None
    assert 0 < f["score"] <= 1
    parts = [f["ev_significance"], f["ev_coherence"], f["ev_consistency"]]
    assert abs(sum(parts) - f["score"]) < 1e-9  # contributions add up to the score
    assert f["ev_downslope"] is None  # no DEM
    assert "significance" in f["score_explanation"]
    assert f["geometry"]["type"] == "MultiPolygon"
    # polygon area (shoelace on the exterior ring) equals the pixel area
    ring = np.array(f["geometry"]["coordinates"][0][0])
    x, y = ring[:, 0], ring[:, 1]
    assert abs(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) - f["area_m2"]) < 1e-6


def test_acceleration_of_a_detection(tmp_path):
    slide = dict(SLIDE, v=3.0, accel=(6, 25.0))
    e, n, dates, mask = make_series(seed=3, slide=slide, n=14)
    res = detect(e, n, dates, TR)
    assert len(res.features) == 1
    f = res.features[0]
    assert f["accel_flag"] == 1
    onset = dt.date.fromisoformat(f["accel_onset_date"])
    idx = max(i for i, d in enumerate(dates) if dt.date.fromisoformat(d) <= onset)
    assert abs(idx - 6) <= 1
    # the onset date survives the GeoPackage round trip as ISO 8601
    store.write_detections(str(tmp_path / "a.gpkg"), res.features, CRS)
    assert store.read_detections(str(tmp_path / "a.gpkg"))[0]["accel_onset_date"] == f["accel_onset_date"]


def test_bias_removal_recovers_planted_elevation_signal():
    rng = np.random.default_rng(7)
    h, w, T = 70, 80, 4
    rr, cc = np.mgrid[0:h, 0:w]
    dem = 1500 + 400 * np.sin(rr / 9.0) * np.cos(cc / 13.0) + 3.0 * rr
    coef = np.array([0.0, 0.002, -0.0015, 0.003])  # m of apparent motion per m of elevation
    east = np.zeros((T, h, w))
    north = np.zeros((T, h, w))
    for t in range(1, T):
        east[t] = coef[t] * (dem - dem.mean()) + 0.4 + 0.01 * cc + rng.normal(0, 0.1, (h, w))
        north[t] = -0.5 * coef[t] * (dem - dem.mean()) + rng.normal(0, 0.1, (h, w))
    # a moving patch must not bias the fit (robust + excluded)
    east[:, 30:40, 30:40] += np.arange(T)[:, None, None] * 3.0
    stable = np.ones((h, w), bool)
    stable[28:42, 28:42] = False
    ec, nc, rep = remove_bias(east, north, TR, dem=dem, stable=stable)
    for t in range(1, T):
        got = rep["per_date"][t]["east"]["coefficients"]["elevation"]
        assert abs(got - coef[t]) <= 0.05 * abs(coef[t]) + 1e-4
        got_n = rep["per_date"][t]["north"]["coefficients"]["elevation"]
        assert abs(got_n + 0.5 * coef[t]) <= 0.05 * abs(coef[t]) + 1e-4
        assert rep["per_date"][t]["east"]["rms_removed_m"] > 0.3
        resid = ec[t][stable]
        assert robust_sigma(resid) < 0.13 and abs(np.median(resid)) < 0.03
    # the moving patch survives the correction
    assert np.median(ec[3, 31:39, 31:39]) > 8.0
    # without a DEM only offset/ramp terms are fitted
    _, _, rep2 = remove_bias(east, north, TR)
    assert rep2["terms"] == ["offset", "ramp_east", "ramp_north"]


def test_local_noise_follows_a_noisy_patch():
    rng = np.random.default_rng(0)
    f = rng.normal(0, 1.0, (128, 128))
    f[:, 64:] *= 4.0
    nm = local_noise(f, block=32)
    assert 0.7 < np.median(nm.sigma[:, :40]) < 1.4
    assert 3.0 < np.median(nm.sigma[:, 90:]) < 5.5


def test_traps_ramp_and_elevation_bias_do_not_create_detections():
    e, n, dates, _ = make_series(seed=4, noise=0.25)
    T, h, w = e.shape
    rr, cc = np.mgrid[0:h, 0:w]
    dem = 1200 + 15.0 * rr + 200 * np.sin(cc / 10.0)
    t = dates_to_years(dates)
    for k in range(1, T):
        # apparent motion growing with time, correlated with elevation, plus a ramp
        e[k] += 0.002 * t[k] * (dem - dem.mean()) + 0.03 * t[k] * cc
        n[k] += -0.02 * t[k] * rr
    res = detect(e, n, dates, TR, dem=dem)
    assert res.features == []
    assert res.bias_report["rms_removed_m"]["east"] > 0.3


def test_detect_from_folder_with_dem_on_other_grid_and_rerun_keeps_validation(tmp_path):
    e, n, dates, mask = make_series(seed=5, slide=SLIDE)
    ts = write_folder(str(tmp_path), e, n, dates)
    # DEM on a coarser, shifted grid: a slope facing south-east (downslope azimuth 135)
    dem_tr = Affine(30.0, 0, TR.c - 100, 0, -30.0, TR.f + 100)
    rr, cc = np.mgrid[0:80, 0:80]
    dem = 2000.0 - 6.0 * cc * 30 / 20 * 0.7 - 6.0 * rr * 30 / 20 * 0.7
    dem_path = str(tmp_path / "dem.tif")
    write_bands(dem_path, [dem], dem_tr, CRS, descriptions=["elevation"])
    gpkg = str(tmp_path / "detections.gpkg")
    ev = str(tmp_path / "evidence.tif")
    res = detect_from_folder(ts, dem_path=dem_path, out_gpkg=gpkg, evidence_path=ev)
    assert os.path.exists(ev)
    recs = store.read_detections(gpkg)
    assert len(recs) == 1
    r = recs[0]
    assert r["status"] == "unvalidated" and r["ev_downslope"] > 0.1
    assert r["downslope_agreement"] > 0.9
    assert r["accel_onset_date"] is None
    for name, _ in store.SPEC_FIELDS:
        assert name in r
    # analyst confirms it; a re-run keeps the decision
    store.record_decision(gpkg, r["id"], "confirmed", "fresh scarp seen on site", "ana",
                          "2026-11-20T08:00:00Z")
    detect_from_folder(ts, dem_path=dem_path, out_gpkg=gpkg)
    recs2 = store.read_detections(gpkg)
    assert len(recs2) == 1
    assert recs2[0]["status"] == "confirmed"
    assert recs2[0]["comment"] == "fresh scarp seen on site"
    assert recs2[0]["validated_by"] == "ana"
    assert recs2[0]["id"] == r["id"]
    assert res.store_summary["n_features"] == 1


def test_empty_result_gives_valid_empty_layer(tmp_path):
    e, n, dates, _ = make_series(seed=6)
    ts = write_folder(str(tmp_path), e, n, dates)
    gpkg = str(tmp_path / "out" / "detections.gpkg")
    res = detect_from_folder(ts, out_gpkg=gpkg)
    assert res.features == []
    assert store.read_detections(gpkg) == []
    names = store.layer_field_names(gpkg)
    for name, _ in store.SPEC_FIELDS + store.EVIDENCE_FIELDS:
        assert name in names


def test_bad_inputs_raise_actionable_errors(tmp_path):
    e, n, dates, _ = make_series(shape=(40, 40), n=5)
    with pytest.raises(ParameterError):
        detect(e, n, dates, TR, z_seed=2.0, z_grow=3.0)
    with pytest.raises(InputError):
        detect(e, n, dates[:-1], TR)
    with pytest.raises(InputError):
        detect(e, n[:, :-1], dates, TR)
    with pytest.raises(InputError, match="ts_east_m.tif"):
        detect_from_folder(str(tmp_path), out_gpkg=str(tmp_path / "d.gpkg"))
    assert DetectionParams().validate().z_seed >= DetectionParams().z_grow


def test_processing_algorithm_writes_detections(tmp_path):
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    from slidewatch.processing_provider.alg_detect import DetectAlgorithm

    e, n, dates, mask = make_series(seed=8, slide=SLIDE)
    ts = write_folder(str(tmp_path), e, n, dates)
    alg = DetectAlgorithm()
    alg.initAlgorithm()
    assert alg.name() == "detect"
    for p in alg.parameterDefinitions():
        if p.name() not in ("OUTPUT", "EVIDENCE"):
            assert p.description().split(" (")[0].split(" x")[0] in alg.HELP or p.name() in (
                "Z_SEED", "Z_GROW", "KEEP_VALIDATIONS"), p.name()
    out = str(tmp_path / "det.gpkg")
    ev = str(tmp_path / "ev.tif")
    params = {"TIMESERIES_FOLDER": ts, "DEM": None, "STABLE_MASK": None, "Z_SEED": 5.0,
              "Z_GROW": 3.0, "MIN_AREA_M2": 10000.0, "MIN_SCORE": 0.45, "SMOOTH_PX": 1.0,
              "KEEP_VALIDATIONS": True, "OUTPUT": out, "EVIDENCE": ev}
    res = alg.processAlgorithm(params, QgsProcessingContext(), QgsProcessingFeedback())
    assert res["N_DETECTIONS"] == 1 and res["OUTPUT"] == out
    assert os.path.exists(ev)
    assert len(store.read_detections(out)) == 1
    # a bad parameter becomes a QgsProcessingException with the core's message
    from qgis.core import QgsProcessingException
    params.update(Z_SEED=2.0, Z_GROW=3.0)
    with pytest.raises(QgsProcessingException, match="z_grow"):
        alg.processAlgorithm(params, QgsProcessingContext(), QgsProcessingFeedback())


def test_single_pair_detects_only_overwhelming_objects_and_says_so():
    # a large, fast slide on one pair: overwhelming evidence -> one detection, flagged
    e, n, dates, mask = make_series(seed=9, slide=dict(SLIDE, v=60.0, radius_px=16), n=2)
    res = detect(e, n, dates, TR)
    assert len(res.features) == 1
    f = res.features[0]
    assert f["independent_obs"] >= res.params.single_pair_min_independent_obs
    assert f["score_explanation"].startswith("Single pair (2 dates)")
    # require_temporal_evidence=True: a pair gives candidates only
    strict = detect(e, n, dates, TR, require_temporal_evidence=True)
    assert strict.features == []
    assert "temporal evidence" in strict.candidates_rejected[0]["reason"]
    with pytest.raises(ParameterError):
        detect(e, n, dates, TR, single_pair_min_significance=-1.0)


def test_stable_mask_raster_is_used_and_checked(tmp_path):
    e, n, dates, mask = make_series(seed=10, slide=SLIDE)
    ts = write_folder(str(tmp_path), e, n, dates)
    stable = np.ones(mask.shape, np.float32)
    stable[30:60, 30:60] = 0  # the area around the slide is not known to be stable
    mpath = str(tmp_path / "stable.tif")
    write_bands(mpath, [stable], TR, CRS, descriptions=["stable"])
    res = detect_from_folder(ts, stable_mask_path=mpath, out_gpkg=str(tmp_path / "d.gpkg"))
    assert len(res.features) == 1
    assert res.bias_report["stable_source"].startswith("stable-area mask")
    assert not res.noise.stable[40, 40]
    tiny = np.zeros(mask.shape, np.float32)
    tiny[:5, :5] = 1
    write_bands(mpath, [tiny], TR, CRS, descriptions=["stable"])
    with pytest.raises(InputError, match="stable"):
        detect_from_folder(ts, stable_mask_path=mpath, out_gpkg=str(tmp_path / "d.gpkg"))
