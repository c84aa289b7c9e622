"""Shared integer search of the correlation kernels (core/correlation_kernels.py).

The shared path (chunks of window rows x CHUNK_COLS window columns sharing the
integer-search products, :func:`_group_dots`) must give the same estimates as windows
computed independently (per-window dot products and summed-area tables), including
windows with invalid pixels and windows on the seams between chunks.
"""

import numba
import numpy as np
import pytest

from slidewatch.core.matching import correlation as C
from slidewatch.core.matching import correlation_kernels as K

from .test_correlation import fourier_shift, smooth_texture


def _grid(params, ref, sec, shared, rows=None, cols=None):
    """Run the kernels on the default centres, shared path on or off."""
    H, W = ref.shape
    m = C.read_margin(params)
    rs = C.prepare(C.pad_image(ref.astype(np.float32), m), params)
    ss = C.prepare(C.pad_image(sec.astype(np.float32), m), params)
    h, w = params["window"]
    pad = C.data_margin(params)
    rows = C.centres(H, params["step"]) if rows is None else rows
    cols = C.centres(W, params["step"]) if cols is None else cols
    top = rows - h // 2
    left = cols - w // 2
    pre = np.zeros((rows.size, cols.size), np.int8)
    pre[(top < 0) | (top + h > H), :] = C.STATUS_OUTSIDE
    pre[:, (left < 0) | (left + w > W)] = C.STATUS_OUTSIDE
    out = ([np.empty(pre.shape) for _ in range(4)] + [np.empty(pre.shape, np.int8)]
           + [np.empty(pre.shape)])
    K.correlate_grid(rs, ss, np.clip(top + pad, 0, None), np.clip(left + pad, 0, None), h, w,
                     params["search"], params["max_nodata"], params["min_std"] ** 2,
                     params["min_ncc"], params["min_snr"],
                     C.SUBPIXEL_MODES[params["subpixel"]], params["max_iter"], params["tol"],
                     C.noise_gradient_gain(params["prefilter"], params["prefilter_options"],
                                           C.INTERPOLATIONS[params["interpolation"]]),
                     params["max_sigma"],
                     C.INTERPOLATIONS[params["interpolation"]], numba.get_num_threads(),
                     shared, C.row_groups(rows, h), pre, *out)
    return out  # dy, dx, ncc, snr, status, sigma


def _pair(shape, dy, dx, seed):
    base = smooth_texture((shape[0] + 32, shape[1] + 32), seed=seed)
    sec = fourier_shift(base, dy, dx)[16:-16, 16:-16]
    ref = base[16:-16, 16:-16].copy()
    rng = np.random.default_rng(seed)
    ref += rng.normal(0, 3, ref.shape)
    sec += rng.normal(0, 3, sec.shape)
    return ref, sec


@pytest.mark.parametrize("window,step,search,subpixel", [
    ((24, 32), 5, 3, "iterative"),   # rectangular, step not dividing the window
    (16, 2, 2, "parabola"),          # > CHUNK_COLS window columns: column seams
    (12, 3, 2, "none"),              # integer peaks
    (32, 8, 4, "iterative"),         # the default grid: uniform blocks (vector sums)
])
def test_shared_equals_independent_windows(window, step, search, subpixel):
    ref, sec = _pair((120, 200), 0.7, -1.35, seed=3)
    ref[40:47, 60:90] = np.nan        # nodata patch: masked windows next to shared ones
    sec[90:93, 150:152] = np.nan      # invalid pixels only in some search areas
    ref[10, 10] = np.nan
    p = C.normalize_params(window, step, search, subpixel=subpixel, prefilter="none")
    a = _grid(p, ref, sec, True)
    b = _grid(p, ref, sec, False)
    status_a, status_b = a[4], b[4]
    n_rows = status_a.shape[0]
    assert n_rows > K.ROW_GROUP   # several row chunks
    if step == 2:
        assert status_a.shape[1] > K.CHUNK_COLS
    inside = status_a != C.STATUS_OUTSIDE
    assert (status_a[inside] == C.STATUS_VALID).mean() > 0.7
    assert np.any(status_a == C.STATUS_NODATA)
    # same decisions; same numbers up to float rounding (different summation order)
    assert np.array_equal(status_a, status_b)
    for k, tol in ((0, 1e-4), (1, 1e-4), (2, 1e-5)):
        assert np.array_equal(np.isnan(a[k]), np.isnan(b[k]))
        assert np.nanmax(np.abs(a[k] - b[k])) < tol, k
    ok = np.isfinite(a[3])
    assert np.allclose(a[3][ok], b[3][ok], rtol=1e-4)
    if subpixel == "none":
        assert np.array_equal(a[0], b[0], equal_nan=True)
        assert np.array_equal(a[1], b[1], equal_nan=True)


def test_shared_rows_blocked_bit_identical():
    """A block of rows (as the raster driver reads them) gives bit-identical results to
    the same rows of the whole grid: chunks follow correlation.row_groups."""
    ref, sec = _pair((150, 120), -0.4, 0.85, seed=5)
    ref[70:75, 30:50] = np.nan
    p = C.normalize_params(20, 4, 3, prefilter="gaussian_hp")
    H, W = ref.shape
    rows = C.centres(H, 4)
    full = _grid(p, ref, sec, True)
    g = K.ROW_GROUP
    assert np.array_equal(C.row_groups(rows, 20)[:2 * g], np.repeat([0, 1], g))
    k0, k1 = g, 3 * g  # a block starting at a multiple of ROW_GROUP rows
    part = _grid(p, ref, sec, True, rows=rows[k0:k1])
    for k in range(5):
        assert np.array_equal(part[k], full[k][k0:k1], equal_nan=True), k


def test_row_groups():
    g = K.ROW_GROUP
    rows = np.arange(30) * 8 + 4
    assert np.array_equal(C.row_groups(rows, 32), rows // (8 * g))
    # windows that do not overlap vertically, uneven rows, a single row: no sharing
    assert np.array_equal(C.row_groups(rows, 8), np.arange(30))
    assert np.array_equal(C.row_groups(np.array([3, 5, 9]), 32), np.arange(3))
    assert np.array_equal(C.row_groups(np.array([7]), 32), [0])


def test_moments_residual_equals_the_normalised_residual():
    """The one-pass residual (normalisation applied algebraically) gives the sums of the
    three-pass one up to rounding."""
    rng = np.random.default_rng(3)
    h = w = 32
    tn = rng.normal(size=(1, h, w)).astype(np.float32)
    tn = ((tn - tn.mean()) / tn.std()).astype(np.float32)
    gx = rng.normal(size=(1, h, w)).astype(np.float32)
    gy = rng.normal(size=(1, h, w)).astype(np.float32)
    b2 = (3.0 + 0.5 * tn + 0.1 * rng.normal(size=tn.shape)).astype(np.float32)
    ks = np.zeros(5)
    K._template_sums(tn, gx, gy, ks)
    a = K._moments_residual(b2, tn, gx, gy, ks)
    b = K._normalized_residual(b2, tn, gx, gy)
    assert a[0] == b[0] == 1
    np.testing.assert_allclose(a[1:], b[1:], rtol=1e-4, atol=1e-3)
    flat = np.full_like(b2, 2.0)
    assert K._moments_residual(flat, tn, gx, gy, ks)[0] == 0
    nan = b2.copy()
    nan[0, 3, 4] = np.nan
    assert K._moments_residual(nan, tn, gx, gy, ks)[0] == -1


def test_refine_windows_matches_the_main_kernel_and_checks_bounds():
    """Refinement only, started near the answer, converges where the main kernel's
    integer search + refinement does; a window whose refinement would read outside the
    stacks is ST_OUTSIDE, not an out-of-bounds read."""
    params = C.normalize_params(32, 8, 6)
    ref = smooth_texture((160, 160), seed=5)
    sec = fourier_shift(ref, 0.37, -1.62)
    m = C.read_margin(params)
    rs = C.prepare(C.pad_image(ref.astype(np.float32), m), params)
    ss = C.prepare(C.pad_image(sec.astype(np.float32), m), params)
    pad = C.data_margin(params)
    tops = np.array([40, 60, 0], np.int64) + pad
    lefts = np.array([50, 70, 0], np.int64) + pad
    tops[2] = lefts[2] = 1                       # touches the stacks' edge
    dy0 = np.array([0.30, 0.45, 0.3])
    dx0 = np.array([-1.55, -1.70, -1.6])
    out = [np.empty(3) for _ in range(3)] + [np.empty(3, np.int8), np.empty(3)]
    kappa = C.noise_gradient_gain(params["prefilter"], params["prefilter_options"],
                                  C.INTERPOLATIONS[params["interpolation"]])
    K.refine_windows(rs, ss, tops, lefts, 32, 32, dy0, dx0, params["max_nodata"],
                     params["min_std"] ** 2, params["min_ncc"], params["max_iter"],
                     params["tol"], kappa, 0.0, C.INTERPOLATIONS[params["interpolation"]],
                     numba.get_num_threads(), *out)
    dy, dx, ncc, status, sig = out
    assert list(status[:2]) == [K.ST_VALID, K.ST_VALID]
    np.testing.assert_allclose(dy[:2], 0.37, atol=0.01)
    np.testing.assert_allclose(dx[:2], -1.62, atol=0.01)
    assert (ncc[:2] > 0.99).all() and (sig[:2] > 0).all()
    assert status[2] == K.ST_OUTSIDE and np.isnan(dy[2])


def test_uniform_blocks_detects_the_default_grid_only():
    """The vector path of the window sums is taken for power-of-two blocks evenly used,
    and refused otherwise (step not dividing the window, gaps left by skipped columns)."""
    def blocks(lefts, w):
        lefts = np.asarray(lefts, np.int64)
        cbnd = K._edges(lefts, w)
        return K._uniform_blocks(cbnd, np.searchsorted(cbnd, lefts),
                                 np.searchsorted(cbnd, lefts + w))
    assert blocks(np.arange(10) * 8, 32) == (True, 3, 4, 1)
    assert blocks(np.arange(10) * 16, 32) == (True, 4, 2, 1)
    assert blocks(np.arange(10) * 10, 32)[0] is False     # blocks of 10 and 2 px
    assert blocks(np.arange(10) * 12, 24)[0] is False     # 12 px: not a power of two
    assert blocks([0, 8, 16, 40, 48], 32)[0] is False     # a column skipped
    # and the sums it gives are those of the scalar path
    rng = np.random.default_rng(0)
    lefts = np.arange(12) * 8
    cbnd = K._edges(lefts, 32)
    cseg0 = np.searchsorted(cbnd, lefts)
    cs = rng.normal(size=lefts[-1] + 32).astype(np.float32)
    out = np.empty(lefts.size)
    n = cs.size
    K._window_sums_uniform(cs, cbnd, cseg0, 3, 4, 1, np.empty(n), np.empty(n),
                           np.empty(cbnd.size), out)
    want = [cs[a:a + 32].astype(np.float64).sum() for a in lefts]
    np.testing.assert_allclose(out, want, rtol=1e-12)


def test_gradient_images_give_the_per_window_template():
    """The template built from the image's gradients (computed once) equals the one
    computed per window; the gradient images are NaN at the edge and next to an invalid
    pixel; the normalisation pass also returns the sums of _template_sums."""
    rng = np.random.default_rng(4)
    ref = rng.normal(size=(1, 80, 90)).astype(np.float32)
    ref[0, 60, 70] = np.nan
    a, h, w = 4, 32, 32
    wd = np.empty(8)
    nk = K._deriv_weights(a, wd)
    assert nk == 3
    GX, GY = K.gradient_images(ref, a)
    assert np.isnan(GX[0, :, :nk]).all() and np.isnan(GY[0, :nk]).all()
    near = [-3, -2, -1, 1, 2, 3]     # the taps around a pixel, not the pixel itself
    assert np.isnan(GX[0, 60, [70 + k for k in near]]).all()
    assert np.isnan(GY[0, [60 + k for k in near], 70]).all()
    assert np.isfinite(GX[0, 60, 66]) and np.isfinite(GY[0, 56, 70])
    bufs = [np.empty((1, h, w), np.float32) for _ in range(6)]
    ks1, ks2 = np.zeros(5), np.zeros(5)
    r1 = K._template_clean(ref, 10, 12, h, w, nk, wd, *bufs[:3], ks1)
    r2 = K._template_from_images(ref, GX, GY, 10, 12, h, w, *bufs[3:], ks2)
    assert r1[3] and r2[3]
    np.testing.assert_allclose(r1[:3], r2[:3], rtol=1e-5)
    for u, v in zip(bufs[:3], bufs[3:]):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
    ks = np.zeros(5)
    K._template_sums(*bufs[:3], ks)
    np.testing.assert_allclose(ks1, ks, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ks2, ks, rtol=1e-5, atol=1e-4)
