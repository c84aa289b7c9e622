"""Pre-filters: the numba Gaussian high-pass equals the scipy reference, NaN-aware and local."""

import numpy as np
import pytest

from slidewatch.core.matching import prefilters as pf
from slidewatch.core.matching.prefilter_kernels import gaussian_highpass, gaussian_weights


def _nan_gauss(x, valid, sigma):
    """Reference: NaN-aware Gaussian smoothing with scipy (normalised convolution)."""
    from scipy import ndimage
    xf = np.where(valid, x, 0.0).astype(np.float64)
    num = ndimage.gaussian_filter(xf, sigma, mode="constant", cval=0.0, truncate=4.0)
    den = ndimage.gaussian_filter(valid.astype(np.float64), sigma, mode="constant",
                                  cval=0.0, truncate=4.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def _image(seed=0, shape=(90, 120)):
    rng = np.random.default_rng(seed)
    x = (rng.random(shape) * 3000 + 500).astype(np.float32)
    x[20:31, 40:70] = np.nan          # a cloud
    x[:2, :] = np.nan                 # a nodata border
    x[:, -1] = np.inf                 # any non-finite value is invalid
    return x


@pytest.mark.parametrize("sigma", [0.6, 1.0, 2.3])
def test_gaussian_highpass_equals_scipy_reference(sigma):
    x = _image()
    xd = x.astype(np.float64)
    valid = np.isfinite(xd)
    ref = (xd - _nan_gauss(np.where(valid, xd, np.nan), valid, sigma))
    ref[~valid] = np.nan
    out = pf.apply_prefilter(x, "gaussian_hp", {"sigma": sigma})
    assert out.shape == (1,) + x.shape and out.dtype == np.float32
    assert np.array_equal(np.isnan(out[0]), ~valid)
    np.testing.assert_allclose(out[0][valid], ref[valid].astype(np.float32), rtol=0,
                               atol=1e-3)


def test_gaussian_weights_match_scipy_kernel():
    from scipy import ndimage
    impulse = np.zeros(41)
    impulse[20] = 1.0
    for sigma in (1.0, 2.5):
        w = gaussian_weights(sigma)
        k = ndimage.gaussian_filter1d(impulse, sigma, truncate=4.0)
        r = (len(w) - 1) // 2
        np.testing.assert_allclose(k[20 - r:21 + r], w, atol=1e-15)
        assert abs(k.sum() - 1.0) < 1e-12 and np.count_nonzero(k) == len(w)


def test_gaussian_highpass_is_local_block_equals_whole():
    """A block read with the filter's halo gives exactly the whole image's pixels."""
    x = _image(1, (120, 80))
    whole = gaussian_highpass(x, 1.0)
    halo = pf.halo("gaussian_hp")
    r0, r1 = 40, 75
    block = gaussian_highpass(x[r0 - halo:r1 + halo], 1.0)[halo:-halo]
    assert np.array_equal(block, whole[r0:r1], equal_nan=True)


def test_gaussian_highpass_of_a_constant_is_zero_and_integer_input():
    x = np.full((30, 40), 1234, np.uint16)
    out = pf.apply_prefilter(x, "gaussian_hp")
    assert np.all(np.abs(out) < 1e-9)


@pytest.mark.parametrize("sigma", [1.0, 3.0])
def test_highpass_rects_equal_whole_image(sigma):
    """The second pass filters only around its windows: same float32 values bit for bit."""
    from slidewatch.core.matching.prefilter_kernels import gaussian_highpass_rects
    x = _image(seed=5)
    whole = gaussian_highpass(x, sigma)
    rects = np.array([[0, 30, 0, 50], [25, 60, 45, 120], [40, 41, 3, 4], [70, 90, 90, 120]])
    out = gaussian_highpass_rects(x, sigma, rects)
    inside = np.zeros(x.shape, bool)
    for p0, p1, q0, q1 in rects:
        inside[p0:p1, q0:q1] = True
    assert np.array_equal(out[inside], whole[inside], equal_nan=True)
    assert np.isnan(out[~inside]).all()
