"""Numba kernels of the correlator (see :mod:`slidewatch.core.correlation` for the API).

All kernels work on *padded* float32 stacks of shape ``(channels, rows, cols)`` in which
NaN marks an invalid pixel (nodata, cloud mask, outside the image). The caller pads the
images with NaN by at least ``search + REFINE_MARGIN`` pixels on every side, so no
kernel needs bounds checks, and a block of rows read with the same padding gives
bit-identical results to the whole image (this is what the block-wise raster driver
relies on).

Per window the estimator is:

1. integer search: zero-mean normalised cross-correlation (NCC) of the reference window
   against every integer shift of the secondary within ``[-search, search]`` per axis.
   Fast path (no invalid pixel in the template nor in the search area): one float32
   dot product per shift (the template is zero-mean, so it is the whole numerator) and
   the secondary window statistics from summed-area tables. Masked path (some invalid
   pixels): every statistic is accumulated over the pixels valid in *both* windows
   (masked NCC); shifts whose common valid area is too small are not candidates.
2. sub-pixel refinement (``mode`` 2, default): inverse-compositional Lucas-Kanade on
   the translation, started at the integer peak ``P``. The reference window (exact
   samples, normalised to zero mean / unit variance) is the template with precomputed
   gradients and Hessian; each iteration resamples the secondary at ``P + f`` with a
   separable windowed-sinc kernel (Lanczos-4 by default; bicubic available), normalises
   it (so gain/offset/contrast changes do not matter) and updates ``f``. Converged when
   the update is below ``tol``; moving more than 1 px from ``P`` is a failure. Measured:
   bicubic resampling leaves a ~0.03 px pixel-locking bias on Sentinel-2 texture,
   Lanczos-3 ~0.008 px, Lanczos-4 < 0.001 px (see docs/benchmarks.md).
   Mode 1 is the 3-point parabola fit per axis (fast, biased towards integers), mode 0
   the integer peak only.
"""

import math

import numpy as np
from numba import njit, prange

# Keep in sync with correlation.STATUS_* (documented there).
ST_VALID = 0
ST_OUTSIDE = 1
ST_NODATA = 2
ST_FLAT = 3
ST_PEAK_ON_BORDER = 4
ST_LOW_NCC = 5
ST_LOW_SNR = 6
ST_REFINE_FAILED = 7

#: Extra padding (pixels, beyond ``search``) the refinement may read.
REFINE_MARGIN = 8

#: Half-size of the main lobe excluded when looking for the second peak (SNR).
LOBE = 2


# --------------------------------------------------------------------------- helpers
@njit(cache=True, nogil=True)
def _interp_weights(t, a, wts):
    """Weights of taps ``-a+1 .. a`` for a sample at fraction ``t`` in [0, 1).

    ``a == 2``: bicubic (Keys, a=-0.5); ``a >= 3``: Lanczos-a windowed sinc,
    normalised to unit sum. ``t == 0`` gives exactly (0, .., 1, .., 0).
    """
    if a == 2:
        t2 = t * t
        t3 = t2 * t
        wts[0] = -0.5 * t3 + t2 - 0.5 * t
        wts[1] = 1.5 * t3 - 2.5 * t2 + 1.0
        wts[2] = -1.5 * t3 + 2.0 * t2 + 0.5 * t
        wts[3] = 0.5 * t3 - 0.5 * t2
        return
    if t == 0.0:
        for k in range(2 * a):
            wts[k] = 0.0
        wts[a - 1] = 1.0
        return
    tot = 0.0
    for k in range(2 * a):
        x = (k - a + 1) - t
        px = math.pi * x
        wk = a * math.sin(px) * math.sin(px / a) / (px * px)
        wts[k] = wk
        tot += wk
    for k in range(2 * a):
        wts[k] /= tot


@njit(cache=True, nogil=True)
def _warp(A, oy, ox, H, W, a, out, tmp, wy, wx):
    """out[c, i, j] = A[c] sampled at (oy + i, ox + j) (separable kernel, half-width a).

    Zero weights are skipped, so an integer position reproduces the samples exactly
    (and a NaN neighbour does not contaminate it).
    """
    iy = int(math.floor(oy))
    ix = int(math.floor(ox))
    _interp_weights(oy - iy, a, wy)
    _interp_weights(ox - ix, a, wx)
    C = A.shape[0]
    nt = 2 * a
    for c in range(C):
        for r in range(H + nt - 1):
            ar = iy - a + 1 + r
            for j in range(W):
                acc = 0.0
                for b in range(nt):
                    if wx[b] != 0.0:
                        acc += wx[b] * A[c, ar, ix + j + b - a + 1]
                tmp[r, j] = acc
        for i in range(H):
            for j in range(W):
                acc = 0.0
                for b in range(nt):
                    if wy[b] != 0.0:
                        acc += wy[b] * tmp[i + b, j]
                out[c, i, j] = acc


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy", inline="always")
def _row_dot(a, b, off, n):
    """sum(a[:n] * b[off:off+n]) in float32; written so that LLVM vectorises it."""
    acc = np.float32(0.0)
    for j in range(n):
        acc += a[j] * b[off + j]
    return acc


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _surface_dots(T, S, ns, out):
    """out[u, v] = sum(T * S[:, u:u+h, v:v+w]) in float32 (fast path: no NaN).

    All shifts in one function so that LLVM vectorises the row dot products
    (measured ~6x faster than one call per shift).
    """
    C, h, w = T.shape
    for u in range(ns):
        for v in range(ns):
            acc = np.float32(0.0)
            for c in range(C):
                for i in range(h):
                    acc += _row_dot(T[c, i], S[c, i + u], v, w)
            out[u, v] = acc


@njit(cache=True, nogil=True)
def _masked_ncc(ref, sec, t0, l0, h, w, u, v, min_count, min_var):
    """Masked zero-mean NCC of the template at (t0, l0) and sec at (t0+u, l0+v)."""
    C = ref.shape[0]
    n = 0
    sr = 0.0
    ss = 0.0
    srr = 0.0
    sss = 0.0
    srs = 0.0
    for c in range(C):
        for i in range(h):
            for j in range(w):
                r = ref[c, t0 + i, l0 + j]
                s = sec[c, t0 + u + i, l0 + v + j]
                if r == r and s == s:
                    n += 1
                    sr += r
                    ss += s
                    srr += r * r
                    sss += s * s
                    srs += r * s
    if n < min_count:
        return -np.inf, 0
    vr = srr - sr * sr / n
    vs = sss - ss * ss / n
    if vr <= min_var * n or vs <= min_var * n:
        return -np.inf, 1
    return (srs - sr * ss / n) / math.sqrt(vr * vs), 2


# --------------------------------------------------------------------------- one window
@njit(cache=True, nogil=True)
def _normalize(buf, mask):
    """Normalise each channel of ``buf`` in place to zero mean, unit variance over the
    pixels where ``buf`` and ``mask`` are finite. False if too few pixels or flat.

    The same function normalises the template and the resampled secondary, so that
    identical windows give bit-identical normalised values (zero residual).
    """
    C, h, w = buf.shape
    for c in range(C):
        n = 0
        s1 = 0.0
        for i in range(h):
            for j in range(w):
                x = buf[c, i, j]
                if x == x and mask[c, i, j] == mask[c, i, j]:
                    n += 1
                    s1 += x
        if n < 8:
            return False
        m = s1 / n
        q = 0.0
        for i in range(h):
            for j in range(w):
                x = buf[c, i, j]
                if x == x and mask[c, i, j] == mask[c, i, j]:
                    q += (x - m) * (x - m)
        if not q > 0.0:
            return False
        inv = 1.0 / math.sqrt(q / n)
        for i in range(h):
            for j in range(w):
                buf[c, i, j] = (buf[c, i, j] - m) * inv
    return True


@njit(cache=True, nogil=True)
def _refine(ref, sec, t0, l0, h, w, dyi, dxi, max_iter, tol, a, tn, gxa, gya, b2, tmp,
            wy, wx, res):
    """Inverse-compositional Lucas-Kanade on the translation; res = [fy, fx, ncc, ok].

    The reference window (exact samples) is the template: normalised to zero mean and
    unit variance, its central-difference gradients and the 2x2 Hessian are computed
    once. Each iteration resamples the secondary at ``P + f`` (separable kernel of
    half-width ``a``), normalises it the same way, and updates ``f -= H^-1 sum(g e)``.
    """
    C = ref.shape[0]
    res[3] = 0.0
    res[2] = np.nan
    # gradients of the raw template (NaN where a neighbour is invalid)
    for c in range(C):
        for i in range(h):
            for j in range(w):
                gxa[c, i, j] = 0.5 * (ref[c, t0 + i, l0 + j + 1] - ref[c, t0 + i, l0 + j - 1])
                gya[c, i, j] = 0.5 * (ref[c, t0 + i + 1, l0 + j] - ref[c, t0 + i - 1, l0 + j])
                if gya[c, i, j] != gya[c, i, j]:
                    gxa[c, i, j] = np.nan
                tn[c, i, j] = ref[c, t0 + i, l0 + j]
    # normalise the template; scale its gradients by the same factor
    for c in range(C):
        n = 0
        s1 = 0.0
        for i in range(h):
            for j in range(w):
                if tn[c, i, j] == tn[c, i, j] and gxa[c, i, j] == gxa[c, i, j]:
                    n += 1
                    s1 += tn[c, i, j]
        if n < 8:
            return
        m = s1 / n
        q = 0.0
        for i in range(h):
            for j in range(w):
                if tn[c, i, j] == tn[c, i, j] and gxa[c, i, j] == gxa[c, i, j]:
                    q += (tn[c, i, j] - m) * (tn[c, i, j] - m)
        if not q > 0.0:
            return
        inv = 1.0 / math.sqrt(q / n)
        for i in range(h):
            for j in range(w):
                gxa[c, i, j] *= inv
                gya[c, i, j] *= inv
    if not _normalize(tn, gxa):
        return
    hxx = 0.0
    hxy = 0.0
    hyy = 0.0
    for c in range(C):
        for i in range(h):
            for j in range(w):
                gx = gxa[c, i, j]
                if gx == gx and tn[c, i, j] == tn[c, i, j]:
                    gy = gya[c, i, j]
                    hxx += gx * gx
                    hxy += gx * gy
                    hyy += gy * gy
    det = hxx * hyy - hxy * hxy
    if not (det > 1e-9 * (hxx + hyy) * (hxx + hyy)):
        return
    fy = 0.0
    fx = 0.0
    for it in range(max_iter):
        _warp(sec, t0 + dyi + fy, l0 + dxi + fx, h, w, a, b2, tmp, wy, wx)
        if not _normalize(b2, gxa):
            return
        bx = 0.0
        by = 0.0
        cc = 0.0
        nn = 0
        for c in range(C):
            for i in range(h):
                for j in range(w):
                    y = b2[c, i, j]
                    g = gxa[c, i, j]
                    t = tn[c, i, j]
                    if y == y and g == g and t == t:
                        e = y - t
                        bx += g * e
                        by += gya[c, i, j] * e
                        cc += y * t
                        nn += 1
        if nn < 8:
            return
        res[2] = cc / nn
        ddx = (hyy * bx - hxy * by) / det
        ddy = (hxx * by - hxy * bx) / det
        fx -= ddx
        fy -= ddy
        if not (abs(fx) <= 1.0 and abs(fy) <= 1.0):
            return
        if math.sqrt(ddx * ddx + ddy * ddy) < tol:
            res[0] = fy
            res[1] = fx
            res[3] = 1.0
            return
    return


@njit(cache=True, nogil=True)
def _parabola(cm, c0, cp):
    den = cm - 2.0 * c0 + cp
    if den >= 0.0:
        return 0.0
    off = 0.5 * (cm - cp) / den
    if off > 0.5:
        off = 0.5
    elif off < -0.5:
        off = -0.5
    return off


@njit(cache=True, nogil=True)
def _one_window(ref, sec, t0, l0, h, w, s, max_invalid, min_var, min_ncc, min_snr, mode,
                max_iter, tol, a, T, Sw, sat, sat2, surf, tn, gxa, gya, b2, tmp, wy, wx,
                res, out):
    """Estimate one window; out = [dy, dx, ncc, snr, status]."""
    C = ref.shape[0]
    out[0] = np.nan
    out[1] = np.nan
    out[2] = np.nan
    out[3] = np.nan
    ntpl = C * h * w
    # --- template validity and statistics
    nbad = 0
    for c in range(C):
        for i in range(h):
            for j in range(w):
                if ref[c, t0 + i, l0 + j] != ref[c, t0 + i, l0 + j]:
                    nbad += 1
    if nbad > max_invalid * ntpl:
        out[4] = ST_NODATA
        return
    n_ok = ntpl - nbad
    tsum = 0.0
    for c in range(C):
        for i in range(h):
            for j in range(w):
                x = ref[c, t0 + i, l0 + j]
                if x == x:
                    tsum += x
    tmean = tsum / n_ok
    tvar = 0.0
    for c in range(C):
        for i in range(h):
            for j in range(w):
                x = ref[c, t0 + i, l0 + j]
                if x == x:
                    tvar += (x - tmean) * (x - tmean)
    if tvar <= min_var * n_ok or tvar <= 1e-12 * (tmean * tmean + 1.0) * n_ok:
        out[4] = ST_FLAT
        return
    # --- search area validity
    hs = h + 2 * s
    ws = w + 2 * s
    sbad = 0
    for c in range(C):
        for i in range(hs):
            for j in range(ws):
                x = sec[c, t0 - s + i, l0 - s + j]
                if x != x:
                    sbad += 1
    ns = 2 * s + 1
    if nbad == 0 and sbad == 0:
        # fast path: zero-mean template, float32 dot products + summed-area tables
        for c in range(C):
            for i in range(h):
                for j in range(w):
                    T[c, i, j] = np.float32(ref[c, t0 + i, l0 + j] - tmean)
            for i in range(hs):
                for j in range(ws):
                    Sw[c, i, j] = sec[c, t0 - s + i, l0 - s + j]
        # local mean of the search area for stable float32 dot products
        smean = 0.0
        for c in range(C):
            for i in range(hs):
                for j in range(ws):
                    smean += Sw[c, i, j]
        smean /= C * hs * ws
        for c in range(C):
            for i in range(hs):
                for j in range(ws):
                    Sw[c, i, j] = np.float32(Sw[c, i, j] - smean)
        for c in range(C):
            for i in range(hs + 1):
                sat[c, i, 0] = 0.0
                sat2[c, i, 0] = 0.0
            for j in range(ws + 1):
                sat[c, 0, j] = 0.0
                sat2[c, 0, j] = 0.0
            for i in range(hs):
                rs = 0.0
                rs2 = 0.0
                for j in range(ws):
                    x = Sw[c, i, j]
                    rs += x
                    rs2 += x * x
                    sat[c, i + 1, j + 1] = sat[c, i, j + 1] + rs
                    sat2[c, i + 1, j + 1] = sat2[c, i, j + 1] + rs2
        tnorm = math.sqrt(tvar)
        _surface_dots(T, Sw, ns, surf)
        for u in range(ns):
            for v in range(ns):
                ssum = 0.0
                ssum2 = 0.0
                for c in range(C):
                    ssum += sat[c, u + h, v + w] - sat[c, u, v + w] - sat[c, u + h, v] + sat[c, u, v]
                    ssum2 += (sat2[c, u + h, v + w] - sat2[c, u, v + w]
                              - sat2[c, u + h, v] + sat2[c, u, v])
                svar = ssum2 - ssum * ssum / ntpl
                if svar <= min_var * ntpl or svar <= 1e-9 * ssum2:
                    surf[u, v] = -np.inf
                else:
                    surf[u, v] = surf[u, v] / (tnorm * math.sqrt(svar))
    else:
        min_count = (1.0 - max_invalid) * ntpl
        nflat = 0
        for u in range(ns):
            for v in range(ns):
                val, kind = _masked_ncc(ref, sec, t0, l0, h, w, u - s, v - s, min_count,
                                        min_var)
                surf[u, v] = val
                if kind == 1:
                    nflat += 1
    # --- integer peak
    best = -np.inf
    bu = -1
    bv = -1
    for u in range(ns):
        for v in range(ns):
            if surf[u, v] > best:
                best = surf[u, v]
                bu = u
                bv = v
    if bu < 0:
        if nbad == 0 and sbad == 0:
            out[4] = ST_FLAT
        elif nflat > 0:
            out[4] = ST_FLAT
        else:
            out[4] = ST_NODATA
        return
    second = -np.inf
    for u in range(ns):
        for v in range(ns):
            if abs(u - bu) > LOBE or abs(v - bv) > LOBE:
                if surf[u, v] > second:
                    second = surf[u, v]
    out[2] = best
    out[3] = best / max(second, 1e-3) if second > -np.inf else np.nan
    if (bu == 0 or bv == 0 or bu == ns - 1 or bv == ns - 1
            or surf[bu - 1, bv] == -np.inf or surf[bu + 1, bv] == -np.inf
            or surf[bu, bv - 1] == -np.inf or surf[bu, bv + 1] == -np.inf):
        out[4] = ST_PEAK_ON_BORDER
        return
    if best < min_ncc:
        out[4] = ST_LOW_NCC
        return
    if out[3] == out[3] and out[3] < min_snr:
        out[4] = ST_LOW_SNR
        return
    dyi = bu - s
    dxi = bv - s
    if mode == 0:
        out[0] = dyi
        out[1] = dxi
    elif mode == 1:
        out[0] = dyi + _parabola(surf[bu - 1, bv], best, surf[bu + 1, bv])
        out[1] = dxi + _parabola(surf[bu, bv - 1], best, surf[bu, bv + 1])
    else:
        _refine(ref, sec, t0, l0, h, w, dyi, dxi, max_iter, tol, a, tn, gxa, gya, b2, tmp,
                wy, wx, res)
        if res[3] != 1.0:
            out[4] = ST_REFINE_FAILED
            return
        out[0] = dyi + res[0]
        out[1] = dxi + res[1]
        out[2] = res[2]
    out[4] = ST_VALID


# --------------------------------------------------------------------------- all windows
@njit(cache=True, nogil=True, parallel=True)
def correlate_grid(ref, sec, tops, lefts, h, w, s, max_invalid, min_var, min_ncc, min_snr,
                   mode, max_iter, tol, interp_a, nthreads, pre_status, dy, dx, ncc, snr,
                   status):
    """Correlate the windows whose top-left corners are ``tops`` x ``lefts`` (padded coords).

    ``pre_status`` (len(tops), len(lefts)) int8: non-zero entries are not computed and
    keep that status (e.g. window outside the image). Outputs are filled in place.
    """
    C = ref.shape[0]
    nr = tops.shape[0]
    nc = lefts.shape[0]
    total = nr * nc
    nchunks = min(total, 8 * nthreads)
    if nchunks < 1:
        return
    ns = 2 * s + 1
    for k in prange(nchunks):
        T = np.empty((C, h, w), np.float32)
        Sw = np.empty((C, h + 2 * s, w + 2 * s), np.float32)
        sat = np.empty((C, h + 2 * s + 1, w + 2 * s + 1), np.float64)
        sat2 = np.empty((C, h + 2 * s + 1, w + 2 * s + 1), np.float64)
        surf = np.empty((ns, ns), np.float64)
        tn = np.empty((C, h, w), np.float64)
        gxa = np.empty((C, h, w), np.float64)
        gya = np.empty((C, h, w), np.float64)
        b2 = np.empty((C, h, w), np.float64)
        tmp = np.empty((h + 2 * interp_a, w), np.float64)
        wy = np.empty(2 * interp_a, np.float64)
        wx = np.empty(2 * interp_a, np.float64)
        res = np.empty(4, np.float64)
        out = np.empty(5, np.float64)
        start = (k * total) // nchunks
        stop = ((k + 1) * total) // nchunks
        for idx in range(start, stop):
            r = idx // nc
            q = idx - r * nc
            if pre_status[r, q] != 0:
                status[r, q] = pre_status[r, q]
                dy[r, q] = np.nan
                dx[r, q] = np.nan
                ncc[r, q] = np.nan
                snr[r, q] = np.nan
                continue
            _one_window(ref, sec, tops[r], lefts[q], h, w, s, max_invalid, min_var,
                        min_ncc, min_snr, mode, max_iter, tol, interp_a, T, Sw, sat, sat2,
                        surf, tn, gxa, gya, b2, tmp, wy, wx, res, out)
            dy[r, q] = out[0]
            dx[r, q] = out[1]
            ncc[r, q] = out[2]
            snr[r, q] = out[3]
            status[r, q] = np.int8(out[4])
