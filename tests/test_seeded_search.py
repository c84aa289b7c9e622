"""Search range that follows the motion (core/seeded_search.py, issue 14)."""

import os

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from slidewatch.core.matching import correlation as C
from slidewatch.core.matching import seeded_search as S
from slidewatch.core.matching.correlation import correlate
from slidewatch.core.errors import ParameterError
from slidewatch.core.matching.pair_correlation import correlate_pair_rasters

from .test_correlation import REF, fourier_shift, smooth_texture


def _texture(row, col, size):
    if os.path.exists(REF):
        with rasterio.open(REF) as src:
            a = src.read(1, window=rasterio.windows.Window(col, row, size, size))
        a = a.astype(np.float64)
        if (a > 0).all():
            return a
    return smooth_texture((size, size), seed=row + col, sigma=1.5)


def _glacier_pair(dy, dx, size=544, noise=0.01):
    """A body with its own (real) texture advected by (dy, dx) under a fixed outline
    (an ellipse, ~20 % of the scene), stable real texture around it; small noise."""
    stable = _texture(1600, 1600, size)
    body_tex = _texture(2400, 1600, size)
    yy, xx = np.mgrid[:size, :size]
    body = ((yy - 0.45 * size) / (0.28 * size)) ** 2 + ((xx - 0.45 * size) / (0.23 * size)) ** 2 < 1
    ref = np.where(body, body_tex, stable)
    sec = np.where(body, fourier_shift(body_tex, dy, dx), stable)
    rng = np.random.default_rng(1)
    sd = ref.std()
    return (ref + rng.normal(0, noise * sd, ref.shape), sec + rng.normal(0, noise * sd, ref.shape),
            body)


def _zones(res, body, reach):
    from scipy import ndimage
    R, Cc = np.meshgrid(np.clip(res.rows, 0, body.shape[0] - 1),
                        np.clip(res.cols, 0, body.shape[1] - 1), indexing="ij")
    inner = ndimage.distance_transform_edt(body)[R, Cc] > reach
    outer = ndimage.distance_transform_edt(~body)[R, Cc] > 24
    return inner, outer


@pytest.mark.parametrize("dy,dx", [(-22.4, 31.7), (14.6, -35.3), (-12.2, 9.7)])
def test_large_motion_recovered_stable_untouched(dy, dx):
    """Issue 14 target: a body moving 20-40 px per pair within 0.1 px RMSE; the stable
    ground around it keeps its plain-search accuracy (no seed pushes it off)."""
    ref, sec, body = _glacier_pair(dy, dx)
    res = correlate(ref, sec, max_displacement=45)
    assert "coarse level 1/4" in res.params["seeds"]
    inner, outer = _zones(res, body, 24 + np.hypot(dy, dx))
    ok = res.status == C.STATUS_VALID
    assert (ok & inner).sum() >= 0.95 * inner.sum()
    err = np.hypot(res.dy - dy, res.dx - dx)[ok & inner]
    assert np.sqrt(np.mean(err ** 2)) < 0.1
    plain = correlate(ref, sec)                  # search 8: misses the body entirely
    assert (plain.status[inner] == C.STATUS_VALID).mean() < 0.2
    st = ok & outer
    assert st.sum() >= (plain.valid & outer).sum() * 0.98
    assert np.abs(res.dx[st]).max() < 0.1 and np.abs(res.dy[st]).max() < 0.1


def test_small_motion_same_as_plain_search():
    """Below ``search`` the coarse level changes nothing: same statuses, estimates equal
    to float32 rounding (the fine level prefilters tile crops)."""
    ref, sec, body = _glacier_pair(0.3, -0.4, size=320)
    a = correlate(ref, sec)
    b = correlate(ref, sec, max_displacement=30)
    assert np.array_equal(a.status, b.status)
    np.testing.assert_allclose(b.dx[a.valid], a.dx[a.valid], atol=1e-5)   # float32 crops
    off = correlate(ref, sec, max_displacement=6)       # <= search: plain path
    assert "seeds" not in off.params


def test_no_pixel_locking_on_large_shifts():
    """Fractional parts of seeded estimates are uniform (the fine level is the plain
    iterative estimator): mean |error| does not depend on the fractional shift."""
    base = smooth_texture((320, 320), seed=21)
    errs = []
    for frac in np.linspace(0, 0.9, 7):
        sh = fourier_shift(base, 0.0, 25.0 + frac)
        res = correlate(base[24:-24, 24:-64], sh[24:-24, 24:-64], max_displacement=32)
        v = res.valid
        errs.append(np.median(np.abs(res.dx[v] - (25.0 + frac))))
    assert max(errs) < 0.02


def test_driver_blocks_equal_in_memory_and_velocity_option(tmp_path):
    ref, sec, body = _glacier_pair(-18.3, 24.6, size=400)
    T = from_origin(500000, 6000000, 10, 10)
    paths = []
    for name, a in (("r.tif", ref), ("s.tif", sec)):
        p = str(tmp_path / name)
        with rasterio.open(p, "w", driver="GTiff", width=a.shape[1], height=a.shape[0],
                           count=1, dtype="float32", crs="EPSG:32632", transform=T) as dst:
            dst.write(a.astype(np.float32), 1)
        paths.append(p)
    mem = correlate(ref.astype(np.float32), sec.astype(np.float32), max_displacement=40)
    out = str(tmp_path / "pair_20200101_20200111.tif")
    # 40 px in 10 days at 10 m = 40 m/day
    info = correlate_pair_rasters(paths[0], paths[1], out, block_rows=16,
                                  max_velocity_m_per_day=40.0)
    with rasterio.open(out) as src:
        east, north, status = src.read(1), src.read(2), src.read(5)
    assert np.array_equal(status, mem.status)
    np.testing.assert_allclose(east[mem.valid], 10 * mem.dx[mem.valid], atol=1e-3)
    np.testing.assert_allclose(north[mem.valid], -10 * mem.dy[mem.valid], atol=1e-3)
    assert info["n_valid"] == int(mem.valid.sum())


def test_parameter_checks():
    a = smooth_texture((64, 64))
    with pytest.raises(ParameterError, match="max_displacement"):
        correlate(a, a, max_displacement=-1)
    with pytest.raises(ParameterError, match="max_displacement"):
        correlate(a, a, max_displacement="far")
    assert S.reduction_factor(30, 8) == 4 and S.reduction_factor(100, 8) == 8
    m = S.block_mean(np.array([[1, 2, np.nan], [3, 4, 5]], np.float32), 2)
    np.testing.assert_allclose(m, [[2.5, 5.0]])
