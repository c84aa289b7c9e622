"""Numba kernels of the pre-filters (see :mod:`slidewatch.core.matching.prefilters`).

``nan_gaussian`` is the NaN-aware (normalised) Gaussian smoothing used by the Gaussian
high-pass: ``G * (x v) / G * v`` with ``v`` the validity of each pixel, zero outside the
image (scipy's ``mode="constant", cval=0``), the same truncated, normalised kernel as
``scipy.ndimage.gaussian_filter(truncate=4)``. It is separable, computed in float64 and in
parallel over bands of rows, about 10x faster than the two scipy float64 filters it replaces (it
was ~3.5 us per correlation estimate at step 8, a quarter of the whole correlator).
"""

import math

import numpy as np
import numba
from numba import njit, prange


def gaussian_weights(sigma, truncate=4.0):
    """The 1-D kernel of ``scipy.ndimage.gaussian_filter1d`` (radius int(truncate*sigma+0.5))."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / float(sigma)) ** 2)
    return w / w.sum()


@njit(cache=True, nogil=True, inline="always")
def _taps9(w, a0, a1, a2, a3, a4, a5, a6, a7, a8, out):
    """out = the nine taps ``w`` applied to the rows ``a0 .. a8``, added in tap order
    from 0 (the same additions in the same order as the tap-outer loops: same values)."""
    w0, w1, w2, w3, w4, w5, w6, w7, w8 = w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7], w[8]
    for j in range(out.shape[0]):
        a = 0.0 + w0 * a0[j]
        a += w1 * a1[j]
        a += w2 * a2[j]
        a += w3 * a3[j]
        a += w4 * a4[j]
        a += w5 * a5[j]
        a += w6 * a6[j]
        a += w7 * a7[j]
        a += w8 * a8[j]
        out[j] = a


@njit(cache=True, nogil=True)
def _row_h(x, i, w, r, s, t, xv, vv):
    """Horizontal pass of row ``i``: s = w * (x where finite), t = w * finite (zero
    outside the row); ``xv`` / ``vv``: scratch of len(row) + 2r."""
    wd = x.shape[1]
    for j in range(r):
        xv[j] = 0.0
        vv[j] = 0.0
        xv[wd + r + j] = 0.0
        vv[wd + r + j] = 0.0
    # sliced (non-negative indices) and branch-free: vectorised
    xr = x[i]
    xo = xv[r:r + wd]
    vo = vv[r:r + wd]
    for j in range(wd):
        a = xr[j]
        ok = math.isfinite(a)
        xo[j] = a if ok else 0.0
        vo[j] = 1.0 if ok else 0.0
    if r == 4:
        # sigma 1 (the default): the nine taps in one pass, one store per sample; the
        # same additions in the same order as the loop below (same values)
        x0, x1, x2 = xv[0:wd], xv[1:wd + 1], xv[2:wd + 2]
        x3, x4, x5 = xv[3:wd + 3], xv[4:wd + 4], xv[5:wd + 5]
        x6, x7, x8 = xv[6:wd + 6], xv[7:wd + 7], xv[8:wd + 8]
        v0, v1, v2 = vv[0:wd], vv[1:wd + 1], vv[2:wd + 2]
        v3, v4, v5 = vv[3:wd + 3], vv[4:wd + 4], vv[5:wd + 5]
        v6, v7, v8 = vv[6:wd + 6], vv[7:wd + 7], vv[8:wd + 8]
        _taps9(w, x0, x1, x2, x3, x4, x5, x6, x7, x8, s[:wd])
        _taps9(w, v0, v1, v2, v3, v4, v5, v6, v7, v8, t[:wd])
        return
    # tap-outer, column-inner: the same additions in the same order per pixel as a
    # tap-inner loop (so the same values), but LLVM vectorises over the columns
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


@njit(cache=True, nogil=True)
def _row_v(i, w, r, num, den, s, t):
    """Vertical pass at row ``i`` of the horizontal sums (rows outside count as empty)."""
    h, wd = num.shape
    if r == 4 and i >= r and i + r < h:
        # sigma 1, all nine rows inside: one pass, same additions in the same order
        _taps9(w, num[i - 4], num[i - 3], num[i - 2], num[i - 1], num[i], num[i + 1],
               num[i + 2], num[i + 3], num[i + 4], s[:wd])
        _taps9(w, den[i - 4], den[i - 3], den[i - 2], den[i - 1], den[i], den[i + 1],
               den[i + 2], den[i + 3], den[i + 4], t[:wd])
        return
    for j in range(wd):
        s[j] = 0.0
        t[j] = 0.0
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


@njit(cache=True, nogil=True, inline="always")
def _highpass_value(a, s, t):
    """x - num / den as float32; NaN where x is invalid or no valid pixel is in reach."""
    if math.isfinite(a) and t > 0.0:
        return np.float32(a - s / t)
    return np.float32(np.nan)


#: output rows per band of :func:`_highpass_bands` (each band also filters the radius of
#: rows around it horizontally: 4 / 32 extra rows at sigma 1)
BAND_ROWS = 32


@njit(cache=True, nogil=True, parallel=True)
def _highpass_bands(x, w, out, nthreads):
    """out = x - nan_gaussian(x) (float32; NaN where x is invalid or no valid pixel is
    within reach), in bands of :data:`BAND_ROWS` rows: each of ``nthreads`` filters its bands
    horizontally (with the radius of rows around them) into a buffer of a band's size,
    then vertically. Full-image float64 intermediates were fresh memory at every call,
    whose page faults cost more than the filtering (2.5 ms against 0.6 ms for a 560 x
    560 image, issue 18). Every pixel gets the same sums in the same order as a
    whole-image pass (and as :func:`_highpass_rects`): the same values."""
    h, wd = x.shape
    r = (w.shape[0] - 1) // 2
    B = BAND_ROWS
    nband = -(-h // B)
    nth = max(1, min(nthreads, nband))
    for k in prange(nth):
        num = np.empty((B + 2 * r, wd), np.float64)
        den = np.empty((B + 2 * r, wd), np.float64)
        xv = np.empty(wd + 2 * r, np.float64)
        vv = np.empty(wd + 2 * r, np.float64)
        s = np.empty(wd, np.float64)
        t = np.empty(wd, np.float64)
        for band in range((k * nband) // nth, ((k + 1) * nband) // nth):
            i0 = band * B
            i1 = min(h, i0 + B)
            a0 = max(0, i0 - r)
            a1 = min(h, i1 + r)
            for i in range(a0, a1):
                _row_h(x, i, w, r, num[i - a0], den[i - a0], xv, vv)
            nb = num[:a1 - a0]
            db = den[:a1 - a0]
            for i in range(i0, i1):
                # rows outside the buffer are outside the image (the band has its halo)
                _row_v(i - a0, w, r, nb, db, s, t)
                xr = x[i]
                orow = out[i]
                for j in range(wd):
                    orow[j] = _highpass_value(xr[j], s[j], t[j])


@njit(cache=True, nogil=True, parallel=True)
def _highpass_rects(x, w, boxes, out):
    """:func:`gaussian_highpass` of each patch ``x[a0:a1, b0:b1]`` (``boxes[k]`` = a0, a1,
    b0, b1, p0, p1, q0, q1), kept on its rectangle ``[p0:p1, q0:q1]`` of ``out``; one
    call (parallel over the rectangles) instead of one pair of parallel kernels per
    rectangle, whose thread start-ups cost more than the filtering of a few windows.
    The same row functions as the whole-image kernels: the same values."""
    r = (w.shape[0] - 1) // 2
    for k in prange(boxes.shape[0]):
        a0, a1, b0, b1, p0, p1, q0, q1 = boxes[k]
        px = x[a0:a1, b0:b1]
        h = a1 - a0
        wd = b1 - b0
        num = np.empty((h, wd), np.float64)
        den = np.empty((h, wd), np.float64)
        xv = np.empty(wd + 2 * r, np.float64)
        vv = np.empty(wd + 2 * r, np.float64)
        for i in range(h):
            _row_h(px, i, w, r, num[i], den[i], xv, vv)
        s = np.empty(wd, np.float64)
        t = np.empty(wd, np.float64)
        for i in range(p0 - a0, p1 - a0):
            _row_v(i, w, r, num, den, s, t)
            orow = out[a0 + i]
            for j in range(q0 - b0, q1 - b0):
                orow[b0 + j] = _highpass_value(px[i, j], s[j], t[j])


def gaussian_highpass(image, sigma, truncate=4.0):
    """``x - nan_gaussian(x)`` as float32 (rows, cols); NaN where ``x`` is not finite."""
    x = np.ascontiguousarray(image)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    w = gaussian_weights(sigma, truncate)
    out = np.empty(x.shape, np.float32)
    _highpass_bands(x, w, out, numba.get_num_threads())
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
    w = gaussian_weights(sigma, truncate)
    r = (w.size - 1) // 2
    H, W = x.shape
    boxes = []
    for p0, p1, q0, q1 in np.asarray(rects, dtype=np.int64).reshape(-1, 4):
        if p1 <= p0 or q1 <= q0:
            continue
        boxes.append((max(p0 - r, 0), min(p1 + r, H), max(q0 - r, 0), min(q1 + r, W),
                      p0, p1, q0, q1))
    if boxes:
        _highpass_rects(x, w, np.array(boxes, np.int64), out)
    return out
