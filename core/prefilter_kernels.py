"""Numba kernels of the pre-filters (see :mod:`slidewatch.core.prefilters`).

``nan_gaussian`` is the NaN-aware (normalised) Gaussian smoothing used by the Gaussian
high-pass: ``G * (x v) / G * v`` with ``v`` the validity of each pixel, zero outside the
image (scipy's ``mode="constant", cval=0``), the same truncated, normalised kernel as
``scipy.ndimage.gaussian_filter(truncate=4)``. It is separable, computed in float64 and in
parallel over rows, about 10x faster than the two scipy float64 filters it replaces (it
was ~3.5 us per correlation estimate at step 8, a quarter of the whole correlator).
"""

import math

import numpy as np
from numba import njit, prange


def gaussian_weights(sigma, truncate=4.0):
    """The 1-D kernel of ``scipy.ndimage.gaussian_filter1d`` (radius int(truncate*sigma+0.5))."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / float(sigma)) ** 2)
    return w / w.sum()


@njit(cache=True, nogil=True, parallel=True)
def _rows_pass(x, w, num, den):
    """Horizontal pass: num = w * (x where finite), den = w * finite (zero outside)."""
    h, wd = x.shape
    r = (w.shape[0] - 1) // 2
    for i in prange(h):
        xv = np.zeros(wd + 2 * r, np.float64)
        vv = np.zeros(wd + 2 * r, np.float64)
        for j in range(wd):
            a = x[i, j]
            if math.isfinite(a):
                xv[j + r] = a
                vv[j + r] = 1.0
        # tap-outer, column-inner: the same additions in the same order per pixel as a
        # tap-inner loop (so the same values), but LLVM vectorises over the columns
        s = num[i]
        t = den[i]
        for j in range(wd):
            s[j] = 0.0
            t[j] = 0.0
        for k in range(2 * r + 1):
            wk = w[k]
            xs = xv[k:k + wd]
            vs = vv[k:k + wd]
            for j in range(wd):
                s[j] += wk * xs[j]
                t[j] += wk * vs[j]


@njit(cache=True, nogil=True, parallel=True)
def _cols_pass_highpass(x, w, num, den, out):
    """Vertical pass of num and den, then out = x - num/den (NaN where x is invalid or no
    valid pixel is within reach), float32."""
    h, wd = x.shape
    r = (w.shape[0] - 1) // 2
    for i in prange(h):
        s = np.zeros(wd, np.float64)
        t = np.zeros(wd, np.float64)
        for k in range(2 * r + 1):
            ii = i + k - r
            if ii < 0 or ii >= h:
                continue
            wk = w[k]
            nrow = num[ii]
            drow = den[ii]
            for j in range(wd):
                s[j] += wk * nrow[j]
                t[j] += wk * drow[j]
        for j in range(wd):
            a = x[i, j]
            if math.isfinite(a) and t[j] > 0.0:
                out[i, j] = np.float32(a - s[j] / t[j])
            else:
                out[i, j] = np.float32(np.nan)


def gaussian_highpass(image, sigma, truncate=4.0):
    """``x - nan_gaussian(x)`` as float32 (rows, cols); NaN where ``x`` is not finite."""
    x = np.ascontiguousarray(image)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    w = gaussian_weights(sigma, truncate)
    num = np.empty(x.shape, np.float64)
    den = np.empty(x.shape, np.float64)
    _rows_pass(x, w, num, den)
    out = np.empty(x.shape, np.float32)
    _cols_pass_highpass(x, w, num, den, out)
    return out



def gaussian_highpass_rects(image, sigma, rects, truncate=4.0):
    """:func:`gaussian_highpass` computed only inside ``rects`` (int array (n, 4) of
    ``p0, p1, q0, q1``, end excluded, within the image); NaN elsewhere. Each rectangle is
    filtered with the filter's radius of context around it (clipped at the image edge,
    which the whole-image filter also sees as invalid), so every pixel gets exactly the
    value the whole-image filter gives it (same kernels, same sums in the same order)."""
    x = np.ascontiguousarray(image)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    out = np.full(x.shape, np.nan, np.float32)
    r = (gaussian_weights(sigma, truncate).size - 1) // 2
    H, W = x.shape
    for p0, p1, q0, q1 in np.asarray(rects, dtype=np.int64).reshape(-1, 4):
        if p1 <= p0 or q1 <= q0:
            continue
        a0, b0 = max(p0 - r, 0), max(q0 - r, 0)
        patch = gaussian_highpass(x[a0:min(p1 + r, H), b0:min(q1 + r, W)], sigma, truncate)
        out[p0:p1, q0:q1] = patch[p0 - a0:p1 - a0, q0 - b0:q1 - b0]
    return out
