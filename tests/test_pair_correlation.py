"""Tests of the block-wise pair raster driver (core/pair_correlation.py)."""

import glob
import json
import os

import numpy as np
import pytest
import rasterio
from affine import Affine

from slidewatch.core.matching import correlation as C
from slidewatch.core.matching import pair_correlation as pc
from slidewatch.core.matching.correlation import correlate
from slidewatch.core.errors import Cancelled, InputError
from slidewatch.core.progress import Progress

from .test_correlation import fourier_shift, smooth_texture

CRS = "EPSG:32633"
T = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5200000.0)


def write(path, arr, transform=T):
    with rasterio.open(path, "w", driver="GTiff", height=arr.shape[0], width=arr.shape[1],
                       count=1, dtype="float32", crs=CRS, transform=transform,
                       nodata=np.nan) as dst:
        dst.write(arr.astype(np.float32), 1)
    return str(path)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("pair")
    base = smooth_texture((232, 264), seed=21)
    dy, dx = 0.6, -1.3
    sec = fourier_shift(base, dy, dx)[16:-16, 16:-16]
    ref = base[16:-16, 16:-16].copy()
    ref[150:170, 40:80] = np.nan  # a nodata patch
    r = write(d / "ref_20200101.tif", ref)
    s = write(d / "sec_20200111.tif", sec)
    return dict(dir=d, ref=r, sec=s, ref_arr=ref, sec_arr=sec, dy=dy, dx=dx)


class Meta:
    def __init__(self, src):
        self.descriptions = src.descriptions
        self._tags = {0: src.tags(), 5: src.tags(5)}
        self.transform = src.transform
        self.shape = src.shape
        self.height, self.width = src.shape

    def tags(self, band=0):
        return self._tags[band]


def read_pair(path):
    with rasterio.open(path) as src:
        return {d: src.read(i) for i, d in enumerate(src.descriptions, start=1)}, Meta(src)


def test_sign_convention_east_north(pair, tmp_path):
    out = str(tmp_path / "pairs" / "pair_20200101_20200111.tif")
    info = pc.correlate_pair_rasters(pair["ref"], pair["sec"], out, window=32, step=8,
                                     search=4)
    bands, src = read_pair(out)
    assert tuple(src.descriptions) == pc.BANDS
    ok = bands["status"] == 0
    # the footprint of each valid window (1 or 4, NaN elsewhere) in pairs/footprint/
    foot = np.load(str(tmp_path / "pairs" / "footprint" / "pair_20200101_20200111.npy"))
    assert foot.shape == src.shape and foot.dtype == np.float32
    assert set(np.unique(foot[ok])) <= {1.0, 4.0}
    assert np.isnan(foot[~ok]).all()
    assert ok.mean() > 0.6 and info["n_valid"] == ok.sum()
    # feature moves +dy rows (south) and dx columns (west): east = dx*10, north = -dy*10
    assert np.median(bands["east_m"][ok]) == pytest.approx(pair["dx"] * 10, abs=0.1)
    assert np.median(bands["north_m"][ok]) == pytest.approx(-pair["dy"] * 10, abs=0.1)
    tags = src.tags()
    assert tags["REFERENCE_DATE"] == "2020-01-01" and tags["SECONDARY_DATE"] == "2020-01-11"
    assert json.loads(tags["SLIDEWATCH_PARAMS"])["params"]["window"] == [32, 32]
    assert tags["SEARCH"] == "4" and tags["SUBPIXEL"] == "iterative"
    assert src.transform == T * Affine.scale(8)
    assert src.shape == (-(-200 // 8), -(-232 // 8))
    assert "STATUS_2" in src.tags(5)
    # nodata patch carries a status, never numbers
    r = (np.arange(src.height) * 8 + 4)
    c = (np.arange(src.width) * 8 + 4)
    patch = ((r[:, None] >= 150) & (r[:, None] < 170) & (c[None] >= 40) & (c[None] < 80))
    assert np.all(bands["status"][patch] != 0)
    assert np.all(np.isnan(bands["east_m"][patch]))
    assert not np.any(np.isnan(bands["status"]))


def test_tiled_equals_untiled(pair, tmp_path):
    opts = dict(window=(24, 32), step=7, search=3, prefilter="gaussian_hp")
    res = correlate(pair["ref_arr"], pair["sec_arr"], **opts)
    for block_rows in (1, 5, 1000):
        out = str(tmp_path / ("b%d" % block_rows) / "pair_20200101_20200111.tif")
        pc.correlate_pair_rasters(pair["ref"], pair["sec"], out, block_rows=block_rows, **opts)
        bands, _ = read_pair(out)
        assert np.array_equal(bands["status"], res.status.astype(np.float32))
        assert np.array_equal(bands["east_m"], (res.dx * 10).astype(np.float32),
                              equal_nan=True)
        assert np.array_equal(bands["ncc"], res.ncc.astype(np.float32), equal_nan=True)


def test_stable_median_correction(pair, tmp_path):
    out = str(tmp_path / "pair_20200101_20200111.tif")
    info = pc.correlate_pair_rasters(pair["ref"], pair["sec"], out, window=32, step=8,
                                     search=4, stable="median")
    assert info["median_dx_px"] == pytest.approx(pair["dx"], abs=0.02)
    bands, src = read_pair(out)
    ok = bands["status"] == 0
    assert abs(np.median(bands["east_m"][ok])) < 0.05
    assert float(src.tags()["STABLE_MEDIAN_DY_PX"]) == pytest.approx(pair["dy"], abs=0.02)
    # a user mask: only the left half is stable ground
    mask = np.zeros(pair["ref_arr"].shape, np.float32)
    mask[:, :100] = 1
    mpath = write(tmp_path / "stable.tif", mask)
    info2 = pc.correlate_pair_rasters(pair["ref"], pair["sec"], out, window=32, step=8,
                                      search=4, stable="median", stable_mask=mpath)
    assert 0 < info2["n_stable"] < info["n_stable"]
    assert not glob.glob(str(tmp_path / ".*partial*"))
    # a step that does not divide the size: the last centres lie past the last pixel
    step = 7
    assert pair["ref_arr"].shape[1] % step and pair["ref_arr"].shape[0] % step
    for m in (mpath, mask):
        info3 = pc.correlate_pair_rasters(pair["ref"], pair["sec"], out, window=32, step=step,
                                          search=4, stable="median", stable_mask=m)
        assert 0 < info3["n_stable"] and info3["median_dx_px"] == pytest.approx(pair["dx"],
                                                                               abs=0.02)


def test_stable_correction_of_a_pair_without_any_valid_window(pair, tmp_path):
    """A fully clouded date: the pair is written all-NaN with non-zero status, not an error
    (only a stable mask that excludes every valid window is an error)."""
    cloud = write(tmp_path / "cloud_20200121.tif", np.full(pair["ref_arr"].shape, 9000.0))
    out = str(tmp_path / "pair_20200101_20200121.tif")
    for stable in ("median", "plane"):
        info = pc.correlate_pair_rasters(pair["ref"], cloud, out, window=32, step=8,
                                         search=4, stable=stable)
        assert info["n_valid"] == 0 and info["n_stable"] == 0
        bands, _src = read_pair(out)
        assert not np.isfinite(bands["east_m"]).any() and (bands["status"] != 0).all()
    nowhere = write(tmp_path / "stable_none.tif", np.zeros(pair["ref_arr"].shape))
    with pytest.raises(InputError, match="stable"):
        pc.correlate_pair_rasters(pair["ref"], pair["sec"], str(tmp_path / "p2.tif"),
                                  window=32, step=8, search=4, stable="median",
                                  stable_mask=nowhere)


def test_resumability(pair, tmp_path):
    out = str(tmp_path / "pair_20200101_20200111.tif")
    params = dict(window=32, step=10, search=4)
    assert not pc.pair_output_is_current(out, params)
    pc.correlate_pair_rasters(pair["ref"], pair["sec"], out, **params)
    assert pc.pair_output_is_current(out, params)
    assert pc.pair_output_is_current(out, dict(params, subpixel="iterative"))  # a default
    assert not pc.pair_output_is_current(out, dict(params, search=5))
    assert not pc.pair_output_is_current(out, dict(params, prefilter="wallis"))


def test_cancel_leaves_nothing(pair, tmp_path):
    out = tmp_path / "pairs" / "pair_20200101_20200111.tif"
    calls = {"n": 0}

    def cancelled():
        calls["n"] += 1
        return calls["n"] > 2

    with pytest.raises(Cancelled):
        pc.correlate_pair_rasters(pair["ref"], pair["sec"], str(out), block_rows=2,
                                  progress=Progress(is_cancelled=cancelled), window=32,
                                  step=8, search=4, stable="median")
    assert calls["n"] > 2
    assert not out.exists()
    assert os.listdir(out.parent) == []


def test_different_grids_rejected_and_reprojected(pair, tmp_path):
    other = write(tmp_path / "other.tif", pair["sec_arr"][:, 5:],
                  transform=T * Affine.translation(5, 0))
    with pytest.raises(InputError, match="same grid"):
        pc.correlate_pair_rasters(pair["ref"], other, str(tmp_path / "p.tif"))
    on_grid = pc.reproject_to_grid(other, pair["ref"], str(tmp_path / "ongrid.tif"),
                                   resampling="nearest")
    out = str(tmp_path / "pair_20200101_20200111.tif")
    pc.correlate_pair_rasters(pair["ref"], on_grid, out, window=32, step=16, search=4)
    bands, _ = read_pair(out)
    ok = bands["status"] == 0
    assert ok.sum() > 20
    assert np.median(bands["east_m"][ok]) == pytest.approx(pair["dx"] * 10, abs=0.2)


def test_zero_is_nodata(pair, tmp_path):
    z = np.nan_to_num(pair["ref_arr"], nan=0.0)
    z[:40, :] = 0
    zp = write(tmp_path / "z.tif", z)
    out = str(tmp_path / "pair_20200101_20200111.tif")
    pc.correlate_pair_rasters(zp, pair["sec"], out, window=16, step=8, search=3)
    bands, _ = read_pair(out)
    top = (np.arange(bands["status"].shape[0]) * 8 + 4 + 8) <= 40
    assert np.all(bands["status"][top] != 0)


def test_fit_stable_plane_robust():
    rng = np.random.default_rng(3)
    rows = rng.uniform(0, 3000, 2000)
    cols = rng.uniform(0, 4000, 2000)
    dx = 0.2 + 1e-4 * cols - 5e-5 * rows + rng.normal(0, 0.02, rows.size)
    dy = -0.1 + 3e-5 * rows + rng.normal(0, 0.02, rows.size)
    dx[:150] += 3.0  # a moving slope / mismatches: rejected as outliers
    ncc = np.full(rows.size, 0.9)
    p = pc.fit_stable_plane(dx, dy, rows, cols, ncc)
    tol = np.array([0.01, 5e-6, 5e-6])
    assert np.all(np.abs(np.array(p["dx"]) - [0.2, 1e-4, -5e-5]) < tol)
    assert np.all(np.abs(np.array(p["dy"]) - [-0.1, 0.0, 3e-5]) < tol)
    assert p["n_inliers"][0] < rows.size - 140


def test_stable_plane_correction(pair, tmp_path):
    raw = str(tmp_path / "raw" / "pair_20200101_20200111.tif")
    out = str(tmp_path / "pair_20200101_20200111.tif")
    os.makedirs(os.path.dirname(raw))
    pc.correlate_pair_rasters(pair["ref"], pair["sec"], raw, window=32, step=8, search=4)
    info = pc.correlate_pair_rasters(pair["ref"], pair["sec"], out, window=32, step=8,
                                     search=4, stable="plane")
    cx, cy = info["plane_dx_px"], info["plane_dy_px"]
    assert cx[0] + cx[1] * 100 + cx[2] * 100 == pytest.approx(pair["dx"], abs=0.02)
    b0, _ = read_pair(raw)
    b1, src = read_pair(out)
    ok = b1["status"] == 0
    assert abs(np.median(b1["east_m"][ok])) < 0.05 and abs(np.median(b1["north_m"][ok])) < 0.05
    k, q = np.mgrid[0:b0["status"].shape[0], 0:b0["status"].shape[1]]
    r, c = k * 8 + 4, q * 8 + 4
    exp_e = b0["east_m"] - 10.0 * (cx[0] + cx[1] * c + cx[2] * r)
    exp_n = b0["north_m"] + 10.0 * (cy[0] + cy[1] * c + cy[2] * r)
    assert np.allclose(b1["east_m"][ok], exp_e[ok], atol=1e-4)
    assert np.allclose(b1["north_m"][ok], exp_n[ok], atol=1e-4)
    assert json.loads(src.tags()["STABLE_PLANE_DX_PX"]) == pytest.approx(cx)
    with pytest.raises(Exception):
        pc.pair_params(stable="quadric")


def test_tiled_equals_untiled_with_ambiguous_peaks(pair, tmp_path):
    """The coherence decision of the low-ratio windows needs the rows of windows around a
    block: tiled rasters still equal the in-memory result (min_snr raised so that many
    windows are judged by it)."""
    opts = dict(window=16, step=6, search=3, min_snr=3.0, min_snr_coherent=1.0)
    res = correlate(pair["ref_arr"], pair["sec_arr"], **opts)
    strict = correlate(pair["ref_arr"], pair["sec_arr"], **dict(opts, min_snr_coherent=3.0))
    assert (res.status == 0).sum() > (strict.status == 0).sum()
    for block_rows in (1, 3, 64):
        out = str(tmp_path / ("b%d" % block_rows) / "pair_20200101_20200111.tif")
        pc.correlate_pair_rasters(pair["ref"], pair["sec"], out, block_rows=block_rows, **opts)
        bands, _ = read_pair(out)
        assert np.array_equal(bands["status"], res.status.astype(np.float32))
        assert np.array_equal(bands["east_m"], (res.dx * 10).astype(np.float32),
                              equal_nan=True)
