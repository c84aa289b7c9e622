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


@njit(cache=True, nogil=True, parallel=True)
def _highpass_rects(x, w, rects, out):
    """``out[p0:p1, q0:q1] = x - nan_gaussian(x)`` for every rectangle ``(p0, p1, q0, q1)``
    of ``rects`` only (parallel over rectangles): the same sums in the same order as
    :func:`_rows_pass` + :func:`_cols_pass_highpass` on the whole image, so the same
    float32 values. Overlapping rectangles write the same values."""
    h, wd = x.shape
    r = (w.shape[0] - 1) // 2
    for k in prange(rects.shape[0]):
        p0 = rects[k, 0]
        p1 = rects[k, 1]
        q0 = rects[k, 2]
        q1 = rects[k, 3]
        a0 = max(p0 - r, 0)
        a1 = min(p1 + r, h)
        nr = a1 - a0
        nc = q1 - q0
        if nr <= 0 or nc <= 0:
            continue
        num = np.empty((nr, nc), np.float64)
        den = np.empty((nr, nc), np.float64)
        xv = np.zeros(nc + 2 * r, np.float64)
        vv = np.zeros(nc + 2 * r, np.float64)
        for i in range(nr):
            xr = x[a0 + i]
            for j in range(nc + 2 * r):
                jj = q0 - r + j
                a = xr[jj] if 0 <= jj < wd else np.nan
                if math.isfinite(a):
                    xv[j] = a
                    vv[j] = 1.0
                else:
                    xv[j] = 0.0
                    vv[j] = 0.0
            s = num[i]
            t = den[i]
            for j in range(nc):
                s[j] = 0.0
                t[j] = 0.0
            for kk in range(2 * r + 1):
                wk = w[kk]
                xs = xv[kk:kk + nc]
                vs = vv[kk:kk + nc]
                for j in range(nc):
                    s[j] += wk * xs[j]
                    t[j] += wk * vs[j]
        s = np.zeros(nc, np.float64)
        t = np.zeros(nc, np.float64)
        for i in range(p0, p1):
            for j in range(nc):
                s[j] = 0.0
                t[j] = 0.0
            for kk in range(2 * r + 1):
                ii = i + kk - r
                if ii < 0 or ii >= h:
                    continue
                wk = w[kk]
                nrow = num[ii - a0]
                drow = den[ii - a0]
                for j in range(nc):
                    s[j] += wk * nrow[j]
                    t[j] += wk * drow[j]
            xr = x[i]
            orow = out[i]
            for j in range(nc):
                a = xr[q0 + j]
                if math.isfinite(a) and t[j] > 0.0:
                    orow[q0 + j] = np.float32(a - s[j] / t[j])
                else:
                    orow[q0 + j] = np.float32(np.nan)


def gaussian_highpass_rects(image, sigma, rects, truncate=4.0):
    """:func:`gaussian_highpass` computed only inside ``rects`` (int array (n, 4) of
    ``p0, p1, q0, q1``, end excluded, within the image); NaN elsewhere. Each pixel gets
    exactly the value the whole-image filter gives it."""
    x = np.ascontiguousarray(image)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    out = np.full(x.shape, np.nan, np.float32)
    rects = np.ascontiguousarray(rects, dtype=np.int64).reshape(-1, 4)
    if rects.shape[0]:
        _highpass_rects(x, gaussian_weights(sigma, truncate), rects, out)
    return out
