"""Block-wise driver: pair rasters -> timeseries/ files (core/series/timeseries_io.py)."""

import os

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from slidewatch.core.series import inversion as inv
from slidewatch.core.series import timeseries_io as tio
from slidewatch.core.errors import Cancelled, InputError
from slidewatch.core.progress import Progress

H, W = 13, 17
TRANSFORM = from_origin(500000.0, 5100000.0, 100.0, 100.0)
CRS = "EPSG:32632"


def _stack(tmp_path, n_dates=7, seed=0, outliers=True, drop=None):
    """Write pair rasters of a steady+accelerating field; returns (folder, truth, dates)."""
    rng = np.random.default_rng(seed)
    dates = np.datetime64("2021-03-01") + (np.arange(n_dates) * 15).astype("timedelta64[D]")
    t = inv.years_since_first(dates)
    yy, xx = np.mgrid[0:H, 0:W]
    ve = 0.1 * xx - 0.5
    vn = 0.05 * yy
    acc = np.where(xx > W // 2, 3.0, 0.0)
    tr_e = ve[None] * t[:, None, None] + acc[None] * (t[:, None, None] ** 2)
    tr_n = vn[None] * t[:, None, None]
    pairs = [(i, i + 1) for i in range(n_dates - 1)] + [(i, i + 2) for i in range(n_dates - 2)] \
        + [(i, i + 3) for i in range(n_dates - 3)]
    if drop is not None:
        pairs = [p for p in pairs if not drop(p)]
    folder = tmp_path / "out"
    (folder / "pairs").mkdir(parents=True)
    for (i, j) in pairs:
        e = (tr_e[j] - tr_e[i]).astype(np.float32)
        n = (tr_n[j] - tr_n[i]).astype(np.float32)
        ncc = np.full((H, W), 0.8, np.float32)
        status = np.zeros((H, W), np.uint8)
        if outliers:
            bad = rng.random((H, W)) < 0.05
            e[bad] += 30.0
        e[0, 0] = np.nan                      # one pixel always missing
        status[1, 1] = 4                      # one pixel always flagged
        name = "pair_%s_%s.tif" % (str(dates[i]).replace("-", ""), str(dates[j]).replace("-", ""))
        tio.write_pair_raster(str(folder / "pairs" / name), e, n, ncc, 10 * ncc, status,
                              TRANSFORM, CRS, dates[i], dates[j])
    return folder, tr_e, tr_n, dates, pairs


def _read(path):
    with rasterio.open(path) as src:
        return src.read(), list(src.descriptions), src.tags(), src.transform


def test_outputs_layout_dates_and_values(tmp_path):
    folder, tr_e, tr_n, dates, pairs = _stack(tmp_path)
    res = tio.invert_pair_rasters(str(folder), str(folder), lam=1.0, block_size=256)
    ts_e, desc_e, tags, transform = _read(res.ts_east)
    ts_n, desc_n, _, _ = _read(res.ts_north)
    vel, desc_v, _, _ = _read(res.velocity)
    flags, desc_f, ftags, _ = _read(res.flags)
    assert os.path.dirname(res.ts_east) == str(folder / "timeseries")
    assert desc_e == [str(d) for d in dates] == desc_n == res.dates
    assert desc_v == ["ve_m_per_yr", "vn_m_per_yr", "v_m_per_yr", "v_sigma_m_per_yr", "n_obs",
                      "rmse_m"]
    assert desc_f == ["network_flags"] and "outlier" in ftags["FLAGS"]
    assert tags["FIRST_DATE"] == str(dates[0]) and float(tags["LAMBDA"]) == 1.0
    assert transform == TRANSFORM
    assert ts_e.shape == (len(dates), H, W)
    good = np.ones((H, W), bool)
    good[0, 0] = good[1, 1] = False
    # nodata pixels: NaN outputs, flagged, n_obs 0
    assert np.all(np.isnan(ts_e[:, ~good])) and np.all(vel[4][~good] == 0)
    assert np.all(flags[0][~good] & inv.FLAG_TOO_FEW)
    assert np.all(ts_e[0][good] == 0)
    # the 5 % gross outliers are rejected: error small everywhere
    assert np.nanmax(np.abs(ts_e[:, good] - tr_e[:, good])) < 0.05
    np.testing.assert_allclose(ts_n[:, good], tr_n[:, good], atol=1e-3)
    assert np.all(vel[4][good] <= len(pairs))
    # steady columns: slope equals the true velocity
    t = inv.years_since_first(dates)
    steady = good.copy()
    steady[:, W // 2 + 1:] = False
    ve_true = (0.1 * np.mgrid[0:H, 0:W][1] - 0.5)
    np.testing.assert_allclose(vel[0][steady], ve_true[steady], atol=2e-3)
    np.testing.assert_allclose(vel[2][good], np.hypot(vel[0], vel[1])[good], rtol=1e-5)


def test_block_seams_blocked_equals_unblocked(tmp_path):
    folder, *_ = _stack(tmp_path, seed=1)
    a = tio.invert_pair_rasters(str(folder), str(tmp_path / "a"), lam=1.0, block_size=256)
    b = tio.invert_pair_rasters(str(folder), str(tmp_path / "b"), lam=1.0, block_size=5)
    for pa, pb in ((a.ts_east, b.ts_east), (a.ts_north, b.ts_north), (a.velocity, b.velocity),
                   (a.flags, b.flags)):
        xa, xb = _read(pa)[0], _read(pb)[0]
        np.testing.assert_array_equal(np.isnan(xa), np.isnan(xb))
        np.testing.assert_allclose(xa, xb, rtol=0, atol=1e-6, equal_nan=True)


def test_pairs_csv_selects_pairs_and_missing_date_is_bridged(tmp_path):
    folder, tr_e, tr_n, dates, pairs = _stack(tmp_path, outliers=False)
    rows = ["reference_date,secondary_date,reference_path,secondary_path,baseline_days,score,"
            "selected,reason"]
    # deselect every pair touching date 3: that date becomes a gap bridged by regularisation
    for (i, j) in pairs:
        sel = "0" if 3 in (i, j) else "1"
        rows.append("%s,%s,a.tif,b.tif,%d,1.0,%s," % (dates[i], dates[j], 15 * (j - i), sel))
    (folder / "pairs.csv").write_text("\n".join(rows) + "\n")
    res = tio.invert_pair_rasters(str(folder / "pairs.csv"), str(folder), lam=1.0)
    assert res.n_pairs == sum(1 for (i, j) in pairs if 3 not in (i, j))
    # date 3 is a date of the stack (in pairs.csv): it is kept, bridged by regularisation
    assert res.dates == [str(d) for d in dates]
    flags = _read(res.flags)[0][0]
    assert np.all(flags[2:, 2:] & inv.FLAG_GAP)
    ts_n = _read(res.ts_north)[0]
    # north motion is steady: the bridged date is exact
    np.testing.assert_allclose(ts_n[3, 2:, 2:], tr_n[3, 2:, 2:], atol=1e-3)


def test_cancel_leaves_no_partial_output_and_resumes(tmp_path):
    """A cancel leaves no output file (only the finished row blocks, hidden in
    timeseries/.parts/); the next run reuses them and equals an uninterrupted run."""
    from slidewatch.core.run import pipeline_tasks as pt

    import glob
    import time

    folder, *_ = _stack(tmp_path, seed=2)
    parts = str(tmp_path / "c" / "timeseries" / ".parts" / "*" / "*.npy")

    def is_cancelled():   # the user cancels once the first band is done
        return bool(glob.glob(parts))

    real, ran = pt.invert_rows_task, []

    def slow(job, cancelled=None):   # band k starts after k x 0.5 s: the first one ends first
        time.sleep(0.5 * job["rows"][0] / 4)
        res = real(job, cancelled)
        ran.append(res["reused"])
        return res

    pt.invert_rows_task = slow
    try:
        with pytest.raises(Cancelled):
            tio.invert_pair_rasters(str(folder), str(tmp_path / "c"), block_size=4,
                                    progress=Progress(is_cancelled=is_cancelled))
        ts = tmp_path / "c" / "timeseries"
        assert not ts.exists() or [f for f in os.listdir(ts) if not f.startswith(".")] == []
        done_before = ran.count(False)
        assert 0 < done_before < 4      # 13 rows in bands of 4: 4 bands
        ran.clear()
        res = tio.invert_pair_rasters(str(folder), str(tmp_path / "c"), block_size=4)
    finally:
        pt.invert_rows_task = real
    assert ran.count(True) == done_before and ran.count(False) == 4 - done_before
    assert ".parts" not in os.listdir(ts)     # assembled: the parts are gone
    ref = tio.invert_pair_rasters(str(folder), str(tmp_path / "ref"), block_size=4)
    for a, b in ((res.ts_east, ref.ts_east), (res.velocity, ref.velocity),
                 (res.flags, ref.flags)):
        np.testing.assert_array_equal(_read(a)[0], _read(b)[0])


def test_progress_reported_and_auto_lambda(tmp_path):
    folder, *_ = _stack(tmp_path, seed=3)
    seen = []
    res = tio.invert_pair_rasters(str(folder), str(folder), lam="auto", block_size=8,
                                  progress=Progress(callback=lambda p, m: seen.append(p)))
    assert res.lam in inv.LAMBDA_GRID and "lambda_gcv" in res.info
    assert seen and seen[-1] == pytest.approx(100.0)
    assert all(b >= a for a, b in zip(seen, seen[1:]))


def test_input_errors(tmp_path):
    with pytest.raises(InputError, match="No pair raster"):
        (tmp_path / "empty").mkdir()
        tio.invert_pair_rasters(str(tmp_path / "empty"), str(tmp_path))
    with pytest.raises(InputError, match="neither a folder"):
        tio.invert_pair_rasters(str(tmp_path / "nope"), str(tmp_path))
    folder, *_ = _stack(tmp_path, n_dates=4)
    # a pair on another grid
    e = np.zeros((5, 5), np.float32)
    tio.write_pair_raster(str(folder / "pairs" / "pair_20210301_20210501.tif"), e, e, e + 0.8,
                          e + 8, e, TRANSFORM, CRS, "2021-03-01", "2021-05-01")
    with pytest.raises(InputError, match="not on the grid"):
        tio.invert_pair_rasters(str(folder), str(tmp_path / "x"))


def test_processing_algorithm_writes_outputs_and_cancels_cleanly(tmp_path):
    from qgis.core import (QgsProcessingContext, QgsProcessingException,
                           QgsProcessingFeedback)

    from slidewatch.processing_provider.alg_invert import InvertTimeseriesAlgorithm

    folder, tr_e, tr_n, dates, pairs = _stack(tmp_path, seed=4)
    alg = InvertTimeseriesAlgorithm()
    alg.initAlgorithm()
    assert alg.name() == "invert_timeseries"
    for p in alg.parameterDefinitions():
        if p.name() != "OUTPUT_FOLDER":
            assert p.description().split(" (")[0] in alg.HELP, p.name()
    out = str(tmp_path / "alg")
    params = {"INPUT": str(folder), "PAIRS_CSV": None, "LAMBDA": 1.0, "AUTO_LAMBDA": False,
              "ROBUST": 0, "WEIGHTING": 0, "MIN_OBS": 3, "LAMBDA2": 0.0, "BLOCK_SIZE": 16,
              "OUTPUT_FOLDER": out}
    fb = QgsProcessingFeedback()
    res = alg.processAlgorithm(params, QgsProcessingContext(), fb)
    assert res["TS_EAST"] == os.path.join(out, "timeseries", "ts_east_m.tif")
    for key in ("TS_EAST", "TS_NORTH", "VELOCITY", "NETWORK_FLAGS"):
        assert os.path.exists(res[key])
    assert _read(res["TS_EAST"])[1] == [str(d) for d in dates]
    assert fb.progress() == pytest.approx(100.0)
    # cancelled run: a clear exception and no file in a fresh output folder
    fb2 = QgsProcessingFeedback()
    fb2.cancel()
    params["OUTPUT_FOLDER"] = str(tmp_path / "cancelled")
    with pytest.raises(QgsProcessingException, match="cancelled"):
        alg.processAlgorithm(params, QgsProcessingContext(), fb2)
    ts = tmp_path / "cancelled" / "timeseries"
    assert not ts.exists() or os.listdir(ts) == []
    # a wrong input becomes an actionable message
    params.update(INPUT=str(tmp_path / "missing"), OUTPUT_FOLDER=out)
    with pytest.raises(QgsProcessingException, match="neither a folder"):
        alg.processAlgorithm(params, QgsProcessingContext(), QgsProcessingFeedback())


def test_public_window_api_matches_the_driver(tmp_path):
    folder, tr_e, tr_n, dates, pairs = _stack(tmp_path, seed=6)
    res = tio.invert_pair_rasters(str(folder), str(tmp_path / "drv"), lam=3.0, block_size=5)
    paths = sorted(str(p) for p in (folder / "pairs").iterdir())
    prs = tio.pair_rasters_from_paths(paths[::-1])
    assert [(p.reference_date, p.secondary_date) for p in prs] == sorted(
        (p.reference_date, p.secondary_date) for p in prs)
    assert tio.pair_dates(prs[0].path) == [prs[0].reference_date, prs[0].secondary_date]
    with tio.PairStack(prs) as stack:
        d64, pi, pj = stack.network()
        lam, info = tio.select_lambda(stack, 3.0, pi, pj, d64)
        assert (lam, info["lambda_rule"]) == (3.0, "given")
        assert tio.select_lambda(stack, None, pi, pj, d64)[0] == inv.default_lambda(d64)
        Q = inv.regularisation_matrix(d64, lam)
        win = ((2, 9), (4, 15))
        ce, cn, bands = tio.invert_window(stack, win, pi, pj, d64, Q)
        auto, auto_info = tio.select_lambda(stack, "auto", pi, pj, d64, sample=50)
        assert auto in inv.LAMBDA_GRID and auto_info["lambda_rule"] == "gcv"
    assert ce.shape == (len(dates), 7, 11) and bands.shape == (7, 7, 11)
    ts_e, _, tags, _ = _read(res.ts_east)
    vel = _read(res.velocity)[0]
    flags = _read(res.flags)[0]
    np.testing.assert_array_equal(ce, ts_e[:, 2:9, 4:15])
    np.testing.assert_array_equal(bands[:6], vel[:, 2:9, 4:15])
    np.testing.assert_array_equal(bands[6].astype(np.uint8), flags[0, 2:9, 4:15])
    assert float(tags["LAMBDA"]) == 3.0


def test_timeseries_writer_is_atomic(tmp_path):
    out = tmp_path / "ts"
    dates = ["2021-01-01", "2021-01-13"]
    tags = tio.timeseries_tags(dates, dict(lam=1.0, lam2=0.0, robust="tukey",
                                           weighting="ncc", min_obs=3), ["a.tif"])
    z = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(RuntimeError):
        with tio.TimeseriesWriter(str(out), dates, 3, 4, TRANSFORM, CRS, tags) as tw:
            tw.write(0, 0, z, z, np.zeros((7, 3, 4), np.float32))
            raise RuntimeError("stop")
    assert not out.exists() or os.listdir(out) == []
    with tio.TimeseriesWriter(str(out), dates, 3, 4, TRANSFORM, CRS, tags) as tw:
        tw.write(0, 0, z + 1, z, np.full((7, 3, 4), 2, np.float32))
    arr, desc, t, _ = _read(tw.paths["ts_east"])
    assert desc == dates and t["LAMBDA"] == "1.0" and np.all(arr == 1)
    assert _read(tw.paths["flags"])[0].dtype == np.uint8


def test_processing_algorithm_default_lambda_from_sampling(tmp_path):
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    from slidewatch.processing_provider.alg_invert import InvertTimeseriesAlgorithm

    folder, tr_e, tr_n, dates, pairs = _stack(tmp_path, n_dates=5, seed=7)
    alg = InvertTimeseriesAlgorithm()
    alg.initAlgorithm()
    out = str(tmp_path / "alg_default")
    res = alg.processAlgorithm({"INPUT": str(folder), "OUTPUT_FOLDER": out, "BLOCK_SIZE": 16},
                               QgsProcessingContext(), QgsProcessingFeedback())
    tags = _read(res["VELOCITY"])[2]
    assert float(tags["LAMBDA"]) == pytest.approx(inv.default_lambda(dates))
