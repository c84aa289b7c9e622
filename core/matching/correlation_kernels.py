"""Numba kernels of the correlator (see :mod:`slidewatch.core.matching.correlation` for the API).

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
   the secondary window statistics from summed-area tables; when windows overlap, the
   products are shared by all windows of a chunk of rows x columns of centres
   (:func:`_group_dots`, :func:`_grid_chunk`) and the statistics come from per-row-shift
   column sums (:func:`_strip_colsums`). Masked path (some invalid
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
ST_IMPRECISE = 8

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
    # x_k = k - a + 1 - t: sin(pi x_k) = +-sin(pi t) (alternating sign) and sin(pi x_k / a)
    # by rotating the angle by pi / a per tap: 5 trigonometric calls instead of 4a
    sp = math.sin(math.pi * t)
    if (a - 1) % 2 == 1:
        sp = -sp
    phi = math.pi * (1 - a - t) / a
    sn = math.sin(phi)
    cs = math.cos(phi)
    sd = math.sin(math.pi / a)
    cd = math.cos(math.pi / a)
    tot = 0.0
    for k in range(2 * a):
        x = (k - a + 1) - t
        px = math.pi * x
        wk = a * sp * sn / (px * px)
        wts[k] = wk
        tot += wk
        sp = -sp
        sn, cs = sn * cd + cs * sd, cs * cd - sn * sd
    for k in range(2 * a):
        wts[k] /= tot


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _taps8(w):
    """The eight Lanczos-4 weights of w as float32 scalars (zeros when w has fewer taps)."""
    if w.shape[0] < 8:
        z = np.float32(0.0)
        return z, z, z, z, z, z, z, z
    return (np.float32(w[0]), np.float32(w[1]), np.float32(w[2]), np.float32(w[3]),
            np.float32(w[4]), np.float32(w[5]), np.float32(w[6]), np.float32(w[7]))


@njit(cache=True, nogil=True, error_model="numpy")
def _warp(A, oy, ox, H, W, a, out, tmp, wy, wx):
    """out[c, i, j] = A[c] sampled at (oy + i, ox + j) (separable kernel, half-width a).

    An integer position along an axis copies the samples exactly (no NaN spreading from
    zero-weight taps); otherwise every tap contributes (a NaN tap gives NaN).
    Loops are ordered tap-outer / column-inner so that LLVM vectorises them.
    """
    iy = int(math.floor(oy))
    ix = int(math.floor(ox))
    ty = oy - iy
    tx = ox - ix
    _interp_weights(ty, a, wy)
    _interp_weights(tx, a, wx)
    C = A.shape[0]
    nt = 2 * a
    # Lanczos-4 (default): the eight weights of each axis as scalars, once per call
    x0, x1, x2, x3, x4, x5, x6, x7 = _taps8(wx)
    y0, y1, y2, y3, y4, y5, y6, y7 = _taps8(wy)
    for c in range(C):
        if ty == 0.0:
            r_lo = iy
            nrows = H
        else:
            r_lo = iy - a + 1
            nrows = H + nt - 1
        for r in range(nrows):
            row = A[c, r_lo + r]
            t = tmp[r]
            if tx == 0.0:
                rp = row[ix:ix + W]
                for j in range(W):
                    t[j] = rp[j]
            elif nt == 8:
                # Lanczos-4 (default): all taps in one pass (one store per output sample)
                # slice first: non-negative indices let LLVM drop the wrap-around checks
                # and vectorise (measured ~4x faster than indexing row[ix - 3 + j])
                rp = row[ix - 3:ix + W + 5]
                for j in range(W):
                    t[j] = (((x0 * rp[j] + x1 * rp[j + 1]) + (x2 * rp[j + 2] + x3 * rp[j + 3]))
                            + ((x4 * rp[j + 4] + x5 * rp[j + 5])
                               + (x6 * rp[j + 6] + x7 * rp[j + 7])))
            else:
                for j in range(W):
                    t[j] = 0.0
                for b in range(nt):
                    wb = np.float32(wx[b])
                    off = ix + b - a + 1
                    rp = row[off:off + W]
                    for j in range(W):
                        t[j] += wb * rp[j]
        if nt == 8 and ty != 0.0 and tmp.shape[1] == W and out[c].shape[1] == W:
            # Lanczos-4, rows of tmp and out contiguous: the vertical pass as one loop over
            # the flattened window (row i + b of tmp is W * b further on), instead of one
            # short loop per output row
            n = H * W
            tf = tmp.ravel()
            of = out[c].ravel()
            t0_ = tf[0:n]
            t1_ = tf[W:W + n]
            t2_ = tf[2 * W:2 * W + n]
            t3_ = tf[3 * W:3 * W + n]
            t4_ = tf[4 * W:4 * W + n]
            t5_ = tf[5 * W:5 * W + n]
            t6_ = tf[6 * W:6 * W + n]
            t7_ = tf[7 * W:7 * W + n]
            for k in range(n):
                of[k] = (((y0 * t0_[k] + y1 * t1_[k]) + (y2 * t2_[k] + y3 * t3_[k]))
                         + ((y4 * t4_[k] + y5 * t5_[k]) + (y6 * t6_[k] + y7 * t7_[k])))
            continue
        for i in range(H):
            o = out[c, i]
            if ty == 0.0:
                t = tmp[i]
                for j in range(W):
                    o[j] = t[j]
            elif nt == 8:
                t0_ = tmp[i]
                t1_ = tmp[i + 1]
                t2_ = tmp[i + 2]
                t3_ = tmp[i + 3]
                t4_ = tmp[i + 4]
                t5_ = tmp[i + 5]
                t6_ = tmp[i + 6]
                t7_ = tmp[i + 7]
                for j in range(W):
                    o[j] = (((y0 * t0_[j] + y1 * t1_[j]) + (y2 * t2_[j] + y3 * t3_[j]))
                            + ((y4 * t4_[j] + y5 * t5_[j]) + (y6 * t6_[j] + y7 * t7_[j])))
            else:
                for j in range(W):
                    o[j] = 0.0
                for b in range(nt):
                    wb = np.float32(wy[b])
                    t = tmp[i + b]
                    for j in range(W):
                        o[j] += wb * t[j]


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
    # rounding-level variance (e.g. a flat area after a high-pass prefilter) is flat too:
    # same floor as the template's (found by tests/test_fuzz.py)
    if (vr <= 1e-12 * ((sr / n) * (sr / n) + 1.0) * n
            or vs <= 1e-12 * ((ss / n) * (ss / n) + 1.0) * n):
        return -np.inf, 1
    return (srs - sr * ss / n) / math.sqrt(vr * vs), 2


# --------------------------------------------------------------------------- one window
@njit(cache=True, nogil=True, fastmath={"reassoc", "contract", "arcp", "nsz"},
      error_model="numpy")
def _mean_inv(f):
    """(mean, 1 / std) of a float32 vector, NaN mean if any value is NaN; inv = 0 if
    flat. Shared by :func:`_normalize_clean` and :func:`_normalized_residual` so that
    identical windows normalise to bit-identical values."""
    n = f.size
    s1 = 0.0
    for k in range(n):
        s1 += f[k]
    m = s1 / n
    if m != m:
        return m, 0.0
    q = 0.0
    for k in range(n):
        d = f[k] - m
        q += d * d
    if not q > 0.0:
        return m, 0.0
    return m, 1.0 / math.sqrt(q / n)


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _normalize_clean(buf):
    """Normalise a NaN-free float32 window in place (zero mean, unit variance)."""
    f = buf.ravel()
    m, inv = _mean_inv(f)
    if inv == 0.0:
        return False
    for k in range(f.size):
        f[k] = np.float32((f[k] - m) * inv)
    return True


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract", "arcp", "nsz"},
      error_model="numpy")
def _normalized_residual(b2, tn, gxa, gya):
    """Fast path of one refinement iteration, fused: normalise each channel of ``b2``
    (values as :func:`_normalize_clean` would store them, not stored) and return
    ``(state, sum gx e, sum gy e, sum y t)`` with ``e = y - t``; state 1 = ok,
    0 = flat, -1 = ``b2`` holds NaN (use the masked path)."""
    C = b2.shape[0]
    bx = 0.0
    by = 0.0
    cc = 0.0
    for c in range(C):
        f = b2[c].ravel()
        m, inv = _mean_inv(f)
        if m != m:
            return -1, 0.0, 0.0, 0.0
        if inv == 0.0:
            return 0, 0.0, 0.0, 0.0
        t = tn[c].ravel()
        gx = gxa[c].ravel()
        gy = gya[c].ravel()
        for k in range(f.size):
            y = np.float32((f[k] - m) * inv)
            e = y - t[k]
            bx += gx[k] * e
            by += gy[k] * e
            cc += y * t[k]
    return 1, bx, by, cc


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract", "arcp", "nsz"},
      error_model="numpy")
def _template_sums(tn, gxa, gya, ks):
    """Per channel ``c``: ``ks[5c:5c+5]`` = sums of gx, gy, gx t, gy t and t over the
    normalised template (for :func:`_moments_residual`)."""
    for c in range(tn.shape[0]):
        t = tn[c].ravel()
        gx = gxa[c].ravel()
        gy = gya[c].ravel()
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        a3 = 0.0
        a4 = 0.0
        for k in range(t.size):
            a0 += gx[k]
            a1 += gy[k]
            a2 += gx[k] * t[k]
            a3 += gy[k] * t[k]
            a4 += t[k]
        ks[5 * c] = a0
        ks[5 * c + 1] = a1
        ks[5 * c + 2] = a2
        ks[5 * c + 3] = a3
        ks[5 * c + 4] = a4


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract", "arcp", "nsz"},
      error_model="numpy")
def _moments_residual(b2, tn, gxa, gya, ks):
    """:func:`_normalized_residual` in one pass over ``b2`` (its moments and its products
    with the template's gradients and values; ``ks``: :func:`_template_sums`), with the
    normalisation applied algebraically: ``sum g (y - t) = inv (sum g f - m sum g) -
    sum g t`` for ``y = (f - m) inv``. Same result up to rounding; used away from
    integer positions, where :func:`_normalized_residual`'s exactness (identical windows
    give exactly zero residual) is not needed. Half its passes over the window."""
    C = b2.shape[0]
    bx = 0.0
    by = 0.0
    cc = 0.0
    for c in range(C):
        f = b2[c].ravel()
        t = tn[c].ravel()
        gx = gxa[c].ravel()
        gy = gya[c].ravel()
        s1 = 0.0
        s2 = 0.0
        sx = 0.0
        sy = 0.0
        st = 0.0
        for k in range(f.size):
            x = f[k]
            s1 += x
            s2 += x * x
            sx += gx[k] * x
            sy += gy[k] * x
            st += t[k] * x
        n = f.size
        m = s1 / n
        if m != m:
            return -1, 0.0, 0.0, 0.0
        var = s2 / n - m * m
        if not var > 1e-12 * (m * m + 1.0):
            return 0, 0.0, 0.0, 0.0
        inv = 1.0 / math.sqrt(var)
        bx += inv * (sx - m * ks[5 * c]) - ks[5 * c + 2]
        by += inv * (sy - m * ks[5 * c + 1]) - ks[5 * c + 3]
        cc += inv * (st - m * ks[5 * c + 4])
    return 1, bx, by, cc


@njit(cache=True, nogil=True)
def _normalize(buf, mask, clean):
    """Normalise each channel of ``buf`` in place to zero mean, unit variance over the
    pixels where ``buf`` and ``mask`` are finite. False if too few pixels or flat.

    The same function (and the same branch: ``clean`` = no NaN anywhere) normalises
    the template and the resampled secondary, so that identical windows give
    bit-identical normalised values (zero residual, exactly zero displacement).
    """
    C, h, w = buf.shape
    if clean:
        for c in range(C):
            if not _normalize_clean(buf[c]):
                return False
        return True
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
                buf[c, i, j] = np.float32((buf[c, i, j] - m) * inv)
    return True


#: fastmath flags that let LLVM vectorise reductions but keep NaN/inf semantics
#: (no "nnan"/"ninf"): a NaN anywhere still propagates into the sum.
_FM_SAFE = {"reassoc", "contract", "arcp", "nsz"}


@njit(cache=True, nogil=True, fastmath=_FM_SAFE, error_model="numpy")
def _region_sum(A, r0, c0, nr, nc):
    """Sum of A[:, r0:r0+nr, c0:c0+nc] in float64 (NaN if any pixel is NaN); vectorised.

    Four rows per inner loop: a window row is only 32-64 samples, so reducing the vector
    lanes and running the scalar remainder once per row cost more than the additions
    (measured 0.24 -> 0.085 us for 32 x 32, issue 18)."""
    acc = 0.0
    for c in range(A.shape[0]):
        i = 0
        while i + 4 <= nr:
            # sliced rows: non-negative indices, no wrap-around checks, so LLVM vectorises
            a0 = A[c, r0 + i, c0:c0 + nc]
            a1 = A[c, r0 + i + 1, c0:c0 + nc]
            a2 = A[c, r0 + i + 2, c0:c0 + nc]
            a3 = A[c, r0 + i + 3, c0:c0 + nc]
            for j in range(nc):
                acc += (np.float64(a0[j]) + a1[j]) + (np.float64(a2[j]) + a3[j])
            i += 4
        while i < nr:
            row = A[c, r0 + i, c0:c0 + nc]
            for j in range(nc):
                acc += row[j]
            i += 1
    return acc


@njit(cache=True, nogil=True, fastmath=_FM_SAFE, error_model="numpy")
def _region_ss(A, r0, c0, nr, nc, m):
    """Sum of (A - m)^2 over a NaN-free region (vectorised, four rows per inner loop as
    :func:`_region_sum`)."""
    acc = 0.0
    for c in range(A.shape[0]):
        i = 0
        while i + 4 <= nr:
            a0 = A[c, r0 + i, c0:c0 + nc]
            a1 = A[c, r0 + i + 1, c0:c0 + nc]
            a2 = A[c, r0 + i + 2, c0:c0 + nc]
            a3 = A[c, r0 + i + 3, c0:c0 + nc]
            for j in range(nc):
                d0 = a0[j] - m
                d1 = a1[j] - m
                d2 = a2[j] - m
                d3 = a3[j] - m
                acc += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)
            i += 4
        while i < nr:
            row = A[c, r0 + i, c0:c0 + nc]
            for j in range(nc):
                d = row[j] - m
                acc += d * d
            i += 1
    return acc


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _template_normalize(tn, gxa, gya, ks):
    """Template ``tn`` normalised in place, gradients scaled alike; returns (hxx, hxy,
    hyy, ok) and, in the same pass, the sums of :func:`_template_sums` in ``ks``."""
    C = tn.shape[0]
    # normalised like the resampled secondary (same _mean_inv and expression as
    # _normalize_clean / _normalized_residual: identical windows give identical values),
    # gradients scaled by the same 1 / std, Hessian and sums, all in one pass per channel
    hxx = 0.0
    hxy = 0.0
    hyy = 0.0
    for c in range(C):
        f = tn[c].ravel()
        m, inv = _mean_inv(f)
        if inv == 0.0:
            return 0.0, 0.0, 0.0, False
        inv32 = np.float32(inv)
        gx = gxa[c].ravel()
        gy = gya[c].ravel()
        a0 = 0.0
        a1 = 0.0
        a2 = 0.0
        a3 = 0.0
        a4 = 0.0
        for k in range(f.size):
            t = np.float32((f[k] - m) * inv)
            f[k] = t
            a = gx[k] * inv32
            b = gy[k] * inv32
            gx[k] = a
            gy[k] = b
            hxx += a * a
            hxy += a * b
            hyy += b * b
            a0 += a
            a1 += b
            a2 += a * t
            a3 += b * t
            a4 += t
        ks[5 * c] = a0
        ks[5 * c + 1] = a1
        ks[5 * c + 2] = a2
        ks[5 * c + 3] = a3
        ks[5 * c + 4] = a4
    return hxx, hxy, hyy, True


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _template_clean(ref, t0, l0, h, w, nk, wd, tn, gxa, gya, ks):
    """NaN-free template: normalised copy, kernel-derivative gradients, Hessian (and the
    sums of :func:`_template_sums` in ``ks``)."""
    C = ref.shape[0]
    for c in range(C):
        for i in range(h):
            # sliced rows (non-negative indices: vectorised, see _region_sum)
            rr = ref[c, t0 + i, l0 - nk:l0 + w + nk]
            o = tn[c, i]
            gx = gxa[c, i]
            gy = gya[c, i]
            # slice first: an index rr[nk + j] with a run-time offset keeps numba's
            # wrap-around check and the loop scalar
            rc = rr[nk:nk + w]
            for j in range(w):
                o[j] = rc[j]
                gx[j] = 0.0
                gy[j] = 0.0
            for k in range(1, nk + 1):
                wk = np.float32(wd[k - 1])
                up = ref[c, t0 + i + k, l0:l0 + w]
                dn = ref[c, t0 + i - k, l0:l0 + w]
                # sliced (non-negative indices): vectorised with runtime sizes too
                rp = rr[nk + k:nk + k + w]
                rm = rr[nk - k:nk - k + w]
                for j in range(w):
                    gx[j] += wk * (rp[j] - rm[j])
                    gy[j] += wk * (up[j] - dn[j])
    return _template_normalize(tn, gxa, gya, ks)


@njit(cache=True, nogil=True)
def _template_masked(ref, t0, l0, h, w, nk, wd, tn, gxa, gya):
    """Template with invalid pixels: gradients NaN where a tap is invalid."""
    C = ref.shape[0]
    for c in range(C):
        for i in range(h):
            for j in range(w):
                gx = 0.0
                gy = 0.0
                for k in range(1, nk + 1):
                    gx += wd[k - 1] * (ref[c, t0 + i, l0 + j + k] - ref[c, t0 + i, l0 + j - k])
                    gy += wd[k - 1] * (ref[c, t0 + i + k, l0 + j] - ref[c, t0 + i - k, l0 + j])
                x = ref[c, t0 + i, l0 + j]
                if gx == gx and gy == gy and x == x:
                    gxa[c, i, j] = gx
                    gya[c, i, j] = gy
                else:
                    gxa[c, i, j] = np.nan
                    gya[c, i, j] = np.nan
                tn[c, i, j] = x
    for c in range(C):
        n = 0
        s1 = 0.0
        for i in range(h):
            for j in range(w):
                if gxa[c, i, j] == gxa[c, i, j]:
                    n += 1
                    s1 += tn[c, i, j]
        if n < 8:
            return 0.0, 0.0, 0.0, False
        m = s1 / n
        q = 0.0
        for i in range(h):
            for j in range(w):
                if gxa[c, i, j] == gxa[c, i, j]:
                    q += (tn[c, i, j] - m) * (tn[c, i, j] - m)
        if not q > 0.0:
            return 0.0, 0.0, 0.0, False
        inv = 1.0 / math.sqrt(q / n)
        for i in range(h):
            for j in range(w):
                gxa[c, i, j] *= inv
                gya[c, i, j] *= inv
    if not _normalize(tn, gxa, False):
        return 0.0, 0.0, 0.0, False
    hxx = 0.0
    hxy = 0.0
    hyy = 0.0
    for c in range(C):
        for i in range(h):
            for j in range(w):
                gx = gxa[c, i, j]
                if gx == gx:
                    gy = gya[c, i, j]
                    hxx += gx * gx
                    hxy += gx * gy
                    hyy += gy * gy
    return hxx, hxy, hyy, True


@njit(cache=True, nogil=True)
def _deriv_weights(a, wd):
    """Taps of the resampling kernel's derivative at integer positions: ``wd[k - 1]``
    for k = 1 .. nk (gradient = sum_k wd[k-1] (x[+k] - x[-k])); returns nk. Lanczos-a:
    nk = a - 1; bicubic (a = 2): the central difference."""
    nk = 1 if a == 2 else a - 1
    for k in range(1, nk + 1):
        if a == 2:
            wd[k - 1] = 0.5
        else:
            sgn = 1.0 if k % 2 == 1 else -1.0
            xk = math.pi * k / a
            wd[k - 1] = sgn / k * math.sin(xk) / xk
    return nk


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _gradient_rows(ref, nk, wd, GX, GY, c, i0, i1):
    """Rows ``i0:i1`` of channel ``c`` of the gradient images (see
    :func:`gradient_images`), the same float32 expression as :func:`_template_clean`."""
    H = ref.shape[1]
    W = ref.shape[2]
    for i in range(i0, i1):
        gx = GX[c, i]
        gy = GY[c, i]
        if i < nk or i >= H - nk:
            for j in range(W):
                gx[j] = np.nan
                gy[j] = np.nan
            continue
        n = W - 2 * nk
        ox = gx[nk:W - nk]
        oy = gy[nk:W - nk]
        for j in range(n):
            ox[j] = 0.0
            oy[j] = 0.0
        for k in range(1, nk + 1):
            wk = np.float32(wd[k - 1])
            rp = ref[c, i, nk + k:nk + k + n]
            rm = ref[c, i, nk - k:nk - k + n]
            up = ref[c, i + k, nk:nk + n]
            dn = ref[c, i - k, nk:nk + n]
            for j in range(n):
                ox[j] += wk * (rp[j] - rm[j])
                oy[j] += wk * (up[j] - dn[j])
        for j in range(nk):
            gx[j] = np.nan
            gy[j] = np.nan
            gx[W - 1 - j] = np.nan
            gy[W - 1 - j] = np.nan


@njit(cache=True, nogil=True, parallel=True)
def gradient_images(ref, a):
    """(GX, GY): the gradients that :func:`_refine` uses for its template (derivative of
    the resampling kernel of half-width ``a`` at every pixel, float32; NaN within nk
    pixels of the array's edge or next to an invalid pixel), computed once per image.

    With the default step (8 px) a pixel lies in 16 windows of 32 px: computing its
    gradient once instead of once per window saved 0.88 us per window on one thread
    (13.17 -> 12.29 us, l8_snow, issue 18)."""
    C, H, W = ref.shape
    GX = np.empty((C, H, W), np.float32)
    GY = np.empty((C, H, W), np.float32)
    wd = np.empty(8, np.float64)
    nk = _deriv_weights(a, wd)
    nb = -(-H // 16)
    for kb in prange(C * nb):
        c = kb // nb
        b = kb - c * nb
        _gradient_rows(ref, nk, wd, GX, GY, c, b * 16, min(H, (b + 1) * 16))
    return GX, GY


@njit(cache=True, nogil=True)
def _template_gradients(ref, nwin, h, w, a, refine):
    """Gradient images for :func:`_refine` (:func:`gradient_images`) when the ``nwin``
    windows of ``h`` x ``w`` cover the image at least once on average (then computing
    each pixel's gradient once is cheaper); else (1, 1, 1) placeholders, and each
    template computes its own gradients."""
    if refine and nwin * h * w >= ref.shape[1] * ref.shape[2]:
        return gradient_images(ref, a)
    e = np.empty((1, 1, 1), np.float32)
    return e, e


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _template_from_images(ref, GX, GY, t0, l0, h, w, tn, gxa, gya, ks):
    """:func:`_template_clean` with the gradients read from :func:`gradient_images`."""
    C = ref.shape[0]
    for c in range(C):
        for i in range(h):
            rr = ref[c, t0 + i, l0:l0 + w]
            xr = GX[c, t0 + i, l0:l0 + w]
            yr = GY[c, t0 + i, l0:l0 + w]
            o = tn[c, i]
            gx = gxa[c, i]
            gy = gya[c, i]
            for j in range(w):
                o[j] = rr[j]
                gx[j] = xr[j]
                gy[j] = yr[j]
    return _template_normalize(tn, gxa, gya, ks)


@njit(cache=True, nogil=True)
def _refine(ref, sec, GX, GY, t0, l0, h, w, dyi, dxi, max_iter, tol, kappa, a, tn, gxa,
            gya, b2, tmp, wy, wx, res, fy0, fx0):
    """Inverse-compositional Lucas-Kanade on the translation; res = [fy, fx, ncc, ok, it].

    The reference window (exact samples) is the template: normalised to zero mean and
    unit variance, its gradients (derivative of the resampling kernel) and the 2x2
    Hessian are computed once. Each iteration resamples the secondary at ``P + f``
    (separable kernel of half-width ``a``, float32), normalises it the same way, and
    updates ``f -= H^-1 sum(g e)``. NaN-free windows take vectorised branch-free loops.
    ``(fy0, fx0)``: starting fraction (from the parabola through the NCC peak), which
    saves about one iteration (~6 us) per window. ``GX``, ``GY``: the image's gradients
    (:func:`gradient_images`, same shape as ``ref``), or placeholders of another shape
    for the template to compute its own.

    ``res[5]``: predicted 1-sigma error of the estimate (px, rms of the two axes), from
    the residual variance of the normalised windows ``2 (1 - ncc)`` and the Hessian of
    the *signal*: the template's gradients also hold its noise, whose energy is
    ``kappa (1 - ncc)`` per pixel (``kappa``: gradient gain of prefiltered white noise,
    :func:`slidewatch.core.matching.correlation.noise_gradient_gain`), so that part is removed
    first; inf when the noise explains the whole gradient energy (no measurable texture).
    """
    C = ref.shape[0]
    res[3] = 0.0
    res[2] = np.nan
    # gradients of the raw template (NaN where a neighbour is invalid): derivative of the
    # resampling kernel at integer positions, so that the Gauss-Newton steps match the
    # warp model (central differences underestimate it ~2x on Sentinel-2 texture and
    # made the iteration converge slowly). Bicubic: central difference.
    nk = _deriv_weights(a, wy)
    # fast path: no invalid pixel in the template and its ring of nk pixels
    tot = _region_sum(ref, t0 - nk, l0 - nk, h + 2 * nk, w + 2 * nk)
    if tot == tot:
        if GX.shape[1] == ref.shape[1]:
            hxx, hxy, hyy, ok = _template_from_images(ref, GX, GY, t0, l0, h, w, tn, gxa,
                                                      gya, res[6:])
        else:
            hxx, hxy, hyy, ok = _template_clean(ref, t0, l0, h, w, nk, wy, tn, gxa, gya,
                                                res[6:])
        if not ok:
            return
        clean = True
    else:
        hxx, hxy, hyy, ok = _template_masked(ref, t0, l0, h, w, nk, wy, tn, gxa, gya)
        if not ok:
            return
        clean = False
    det = hxx * hyy - hxy * hxy
    if not (det > 1e-9 * (hxx + hyy) * (hxx + hyy)):
        return
    fy = fy0
    fx = fx0
    for it in range(max_iter):
        _warp(sec, t0 + dyi + fy, l0 + dxi + fx, h, w, a, b2, tmp, wy, wx)
        state = -1
        if clean:
            if fy != 0.0 or fx != 0.0:
                state, bx, by, cc = _moments_residual(b2, tn, gxa, gya, res[6:])
            else:
                state, bx, by, cc = _normalized_residual(b2, tn, gxa, gya)
            if state == 0:
                return
            nn = b2.size
        if state == -1:
            if not _normalize(b2, gxa, False):
                return
            bx = 0.0
            by = 0.0
            nn = 0
            sy = 0.0
            st = 0.0
            syy = 0.0
            stt = 0.0
            syt = 0.0
            for c in range(C):
                for i in range(h):
                    for j in range(w):
                        y = b2[c, i, j]
                        g = gxa[c, i, j]
                        if y == y and g == g:
                            t = tn[c, i, j]
                            e = y - t
                            bx += g * e
                            by += gya[c, i, j] * e
                            nn += 1
                            sy += y
                            st += t
                            syy += y * y
                            stt += t * t
                            syt += y * t
            # the two windows were normalised over slightly different pixel sets: the
            # NCC is the correlation coefficient over the common valid pixels
            vy = syy - sy * sy / max(nn, 1)
            vt = stt - st * st / max(nn, 1)
            cc = (syt - sy * st / max(nn, 1)) / math.sqrt(vy * vt) * nn if vy > 0 and vt > 0 else np.nan
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
            res[4] = it + 1
            nu = max(1.0 - res[2], 0.0)
            sub = nn * nu * kappa
            ax = hxx - sub
            ay = hyy - sub
            dets = ax * ay - hxy * hxy
            if ax > 0.0 and ay > 0.0 and dets > 0.0:
                res[5] = math.sqrt(nu * (ax + ay) / dets)
            else:
                res[5] = np.inf
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
def _uniform_blocks(cbnd, cseg0, cseg1):
    """(ok, log2 of the block width, blocks per window, blocks between windows) when the
    column segments ``cbnd`` are all one power-of-two width and the windows are evenly
    spaced runs of the same number of them (window width and step multiples of the
    block: the default grid), else ok = False."""
    nq = cseg0.shape[0]
    bw = cbnd[1] - cbnd[0]
    nlev = 0
    while (1 << nlev) < bw:
        nlev += 1
    ok = (1 << nlev) == bw
    for b in range(cbnd.shape[0] - 1):
        if cbnd[b + 1] - cbnd[b] != bw:
            ok = False
    nbw = cseg1[0] - cseg0[0]
    qs = cseg0[1] - cseg0[0] if nq > 1 else 1
    for q in range(nq):
        if cseg0[q] != cseg0[0] + q * qs or cseg1[q] - cseg0[q] != nbw:
            ok = False
    return ok, nlev, nbw, qs


@njit(cache=True, nogil=True, fastmath={"reassoc", "nsz", "contract", "arcp"},
      error_model="numpy")
def _window_sums_uniform(cs, cbnd, cseg0, nlev, nbw, qs, pa, pb, blk, out):
    """``out[q]`` = sum of ``cs`` over window q's columns on a uniform block grid
    (:func:`_uniform_blocks`): block sums of 2^nlev columns by doubling (log2 vector
    passes: pair sums, then sums of pairs of pairs...), then each window the sum of its
    ``nbw`` blocks, ``qs`` blocks apart (vector passes). Replaces a short scalar loop
    per block and per window (measured -12 to -26 % of the integer search, issue 18)."""
    j0 = cbnd[0]
    n = cbnd[cbnd.shape[0] - 1] - j0
    c0 = cs[j0:]
    for j in range(n):
        pa[j] = c0[j]
    p = pa
    o = pb
    hw = 1
    for k in range(nlev):
        n -= hw
        ph = p[hw:]
        for j in range(n):
            o[j] = p[j] + ph[j]
        t = p
        p = o
        o = t
        hw *= 2
    bw = hw
    ncb = cbnd.shape[0] - 1
    for b in range(ncb):
        blk[b] = p[b * bw]
    nq = out.shape[0]
    b0 = cseg0[0]
    for q in range(nq):
        out[q] = blk[b0 + q * qs]
    for m in range(1, nbw):
        bm = blk[b0 + m:]
        if qs == 1:
            for q in range(nq):
                out[q] += bm[q]
        else:
            for q in range(nq):
                out[q] += bm[q * qs]


@njit(cache=True, nogil=True, fastmath={"reassoc", "nsz", "contract", "arcp"}, error_model="numpy")
def _group_dots(Rs, Ss, bnd, rseg0, rseg1, cbnd, cseg0, cseg1, s, segsum, colsum, cblk,
                num, uni, nlev, nbw, qs, pa, pb, wn):
    """Integer-search numerators of all windows of a chunk, sharing work both ways.

    ``Rs`` (C, nrow, ncol) / ``Ss`` (C, nrow + 2s, ncol + 2s): the chunk's reference rows
    and secondary search rows, offset by the chunk constant. The rows are cut into
    segments at every window top and bottom (``bnd``, increasing, relative to ``Rs``);
    window row ``r`` covers segments ``rseg0[r] .. rseg1[r] - 1``. The columns are cut
    the same way at every window's left and right edge (``cbnd``); window ``q`` covers
    column segments ``cseg0[q] .. cseg1[q] - 1``. For every shift (u, v):

    * ``segsum[k, j] = sum over the rows i of segment k of Rs[i, j] * Ss[i + u, j + v]``
      (float32): each product of the chunk is computed once per shift, however many
      windows (vertically and horizontally) contain it;
    * per window row the column sums over its ``h`` rows are the sum of its segments,
      their sums over each column segment are ``cblk`` (float64) and each window's
      numerator the sum of its column segments: ``num[u * ns + v, r * nq + q]``.

    On a uniform block grid (``uni``, :func:`_uniform_blocks`) the column segment and
    window sums take vector passes instead (:func:`_window_sums_uniform`; ``pa``, ``pb``,
    ``wn``: its scratch).

    NaN pixels propagate into the columns / segments that contain them, so they only
    spoil windows that contain an invalid pixel (those use the masked path instead).
    The result of a window depends only on the chunk's rows and columns, which the
    caller derives from the window grid alone (block/halo seams stay bit-identical).
    """
    C = Rs.shape[0]
    ncol = Rs.shape[2]
    ns = 2 * s + 1
    nseg = bnd.shape[0] - 1
    nr = rseg0.shape[0]
    nq = cseg0.shape[0]
    ncb = cbnd.shape[0] - 1
    for u in range(ns):
        for v in range(ns):
            sh = u * ns + v
            for k in range(nseg):
                seg = segsum[k]
                for j in range(ncol):
                    seg[j] = 0.0
                end = bnd[k + 1]
                for c in range(C):
                    # four rows per pass: 4 products per load/store of seg (the loop is
                    # load/store bound)
                    i = bnd[k]
                    while i + 4 <= end:
                        r0 = Rs[c, i]
                        r1 = Rs[c, i + 1]
                        r2 = Rs[c, i + 2]
                        r3 = Rs[c, i + 3]
                        s0 = Ss[c, i + u]
                        s1 = Ss[c, i + u + 1]
                        s2 = Ss[c, i + u + 2]
                        s3 = Ss[c, i + u + 3]
                        for j in range(ncol):
                            seg[j] += ((r0[j] * s0[j + v] + r1[j] * s1[j + v])
                                       + (r2[j] * s2[j + v] + r3[j] * s3[j + v]))
                        i += 4
                    while i < end:
                        rr = Rs[c, i]
                        sr = Ss[c, i + u]
                        for j in range(ncol):
                            seg[j] += rr[j] * sr[j + v]
                        i += 1
            for r in range(nr):
                k0 = rseg0[r]
                k1 = rseg1[r]
                if k1 - k0 == 1:
                    cs = segsum[k0]
                else:
                    cs = colsum
                    a0 = segsum[k0]
                    a1 = segsum[k0 + 1]
                    for j in range(ncol):
                        cs[j] = a0[j] + a1[j]
                    k = k0 + 2
                    while k + 2 <= k1:
                        a0 = segsum[k]
                        a1 = segsum[k + 1]
                        for j in range(ncol):
                            cs[j] += a0[j] + a1[j]
                        k += 2
                    if k < k1:
                        a0 = segsum[k]
                        for j in range(ncol):
                            cs[j] += a0[j]
                base = r * nq
                if uni:
                    _window_sums_uniform(cs, cbnd, cseg0, nlev, nbw, qs, pa, pb, cblk, wn)
                    nrow_ = num[sh, base:base + nq]
                    for q in range(nq):
                        nrow_[q] = wn[q]
                    continue
                # column segments (cut at every window left and right edge) summed once,
                # then each window's numerator is the sum of its column segments
                for b in range(ncb):
                    seg = cs[cbnd[b]:cbnd[b + 1]]
                    acc = 0.0
                    for j in range(seg.shape[0]):
                        acc += seg[j]
                    cblk[b] = acc
                for q in range(nq):
                    acc = 0.0
                    for b in range(cseg0[q], cseg1[q]):
                        acc += cblk[b]
                    num[sh, base + q] = acc


@njit(cache=True, nogil=True, fastmath=_FM_SAFE, error_model="numpy")
def _strip_colsums(sec, r0, c0, h, ns, ncol, cst, col1, col2):
    """Column sums of the secondary for every row shift, as prefix sums over columns.

    With ``c1[u, j]`` = sum over channels and rows r0+u .. r0+u+h-1 of
    (sec[., ., c0+j] - cst) (vectorised; NaN where a pixel is invalid) and ``c2`` the
    same for the square, on return ``col1[u, j] = sum_{k < j} c1[u, k]`` for
    ``j <= ncol`` (``col1`` has ``ncol + 1`` columns; NaN columns count as 0), ``col2``
    likewise (float64)."""
    C = sec.shape[0]
    a1 = col1[0]
    a2 = col2[0]
    for j in range(ncol):
        a1[j] = 0.0
        a2[j] = 0.0
    for c in range(C):
        for i in range(h):
            row = sec[c, r0 + i, c0:c0 + ncol]
            for j in range(ncol):
                x = row[j] - cst
                a1[j] += x
                a2[j] += x * x
    # next row shifts by sliding: add the entering row, remove the leaving one (float64,
    # at most 2*search steps; equal values cancel exactly, so flat areas stay flat)
    for u in range(1, ns):
        p1 = col1[u - 1]
        p2 = col2[u - 1]
        a1 = col1[u]
        a2 = col2[u]
        for j in range(ncol):
            a1[j] = p1[j]
            a2[j] = p2[j]
        for c in range(C):
            rin = sec[c, r0 + u - 1 + h, c0:c0 + ncol]
            rout = sec[c, r0 + u - 1, c0:c0 + ncol]
            for j in range(ncol):
                x = rin[j] - cst
                y = rout[j] - cst
                a1[j] += x - y
                a2[j] += x * x - y * y
    # prefix sums over the columns, in place (shifted by one: col[u, j] = sum of k < j).
    # A NaN column counts as 0 so that it does not spoil the columns after it: windows
    # containing an invalid pixel take the masked path and never use these sums.
    for u in range(ns):
        a1 = col1[u]
        a2 = col2[u]
        p1 = 0.0
        p2 = 0.0
        for j in range(ncol + 1):
            x1 = a1[j] if j < ncol else 0.0
            x2 = a2[j] if j < ncol else 0.0
            if x1 != x1 or x2 != x2:
                x1 = 0.0
                x2 = 0.0
            a1[j] = p1
            a2[j] = p2
            p1 += x1
            p2 += x2


@njit(cache=True, nogil=True, fastmath=_FM_SAFE, error_model="numpy")
def _surface_shared(pre_num, s1, s2, ns, n, tmean, cst, tnorm, min_var, surf):
    """NCC surface from shared numerators ``pre_num`` (offset by ``cst``) and the sums of
    the secondary window ``s1`` (of S - cst) and ``s2`` (of its square) of every shift;
    shifts with a flat secondary window get -inf. Branch-free so that LLVM vectorises it
    (NaN-free inputs: fast path only)."""
    for u in range(ns):
        for v in range(ns):
            ssum = s1[u, v]
            ssum2 = s2[u, v]
            svar = ssum2 - ssum * ssum / n
            ms = ssum / n + cst
            # sum (R - tmean)(S - mS) = sum R'S' - n (tmean - cst)(mS - cst)
            num = pre_num[u, v] - n * (tmean - cst) * (ssum / n)
            val = num / (tnorm * math.sqrt(max(svar, 1e-300)))
            bad = ((svar <= min_var * n) | (svar <= 1e-9 * ssum2)
                   | (svar <= 1e-12 * (ms * ms + 1.0) * n))
            surf[u, v] = -np.inf if bad else val


@njit(cache=True, nogil=True)
def _template_stats(ref, t0, l0, h, w, max_invalid, min_var):
    """(status, invalid pixels, mean, sum of squared deviations) of the template at
    (t0, l0): ST_NODATA when more than ``max_invalid`` of it is invalid, ST_FLAT when its
    variance is below ``min_var`` (or at rounding level), else ST_VALID. One vectorised
    pass when it holds no NaN (the NaN propagates into the sum)."""
    C = ref.shape[0]
    ntpl = C * h * w
    tsum = _region_sum(ref, t0, l0, h, w)
    nbad = 0
    if tsum != tsum:
        tsum = 0.0
        for c in range(C):
            for i in range(h):
                for j in range(w):
                    x = ref[c, t0 + i, l0 + j]
                    if x != x:
                        nbad += 1
                    else:
                        tsum += x
        if nbad > max_invalid * ntpl:
            return ST_NODATA, nbad, np.nan, np.nan
    n_ok = ntpl - nbad
    tmean = tsum / n_ok
    if nbad == 0:
        tvar = _region_ss(ref, t0, l0, h, w, tmean)
    else:
        tvar = 0.0
        for c in range(C):
            for i in range(h):
                for j in range(w):
                    x = ref[c, t0 + i, l0 + j]
                    if x == x:
                        tvar += (x - tmean) * (x - tmean)
    if tvar <= min_var * n_ok or tvar <= 1e-12 * (tmean * tmean + 1.0) * n_ok:
        return ST_FLAT, nbad, tmean, tvar
    return ST_VALID, nbad, tmean, tvar


@njit(cache=True, nogil=True)
def _one_window(ref, sec, GX, GY, t0, l0, h, w, s, max_invalid, min_var, min_ncc, min_snr, mode,
                max_iter, tol, kappa, max_sigma, a, T, Sw, sat, sat2, surf, tn, gxa, gya, b2, tmp, wy, wx,
                res, out, pre_num, has_num, cst, col1, col2, lq):
    """Estimate one window; out = [dy, dx, ncc, snr, status, sigma].

    ``has_num``: ``pre_num[u, v]`` already holds ``sum((R - cst) * (S_uv - cst))`` for
    this window (shared chunk computation, see :func:`_group_dots`); valid only when
    the window and its search area hold no NaN (fast path). Then ``col1[u, lq + j]`` /
    ``col2[u, lq + j]`` also hold the prefix sums over the columns (``j`` excluded) of the
    per-column sums of ``(S - cst)`` and its square over the ``h`` rows of row shift
    ``u`` (:func:`_strip_colsums`), so the secondary window statistics of every shift
    are differences of them (no per-window summed-area table).
    """
    C = ref.shape[0]
    out[0] = np.nan
    out[1] = np.nan
    out[2] = np.nan
    out[3] = np.nan
    out[5] = np.nan
    ntpl = C * h * w
    # --- template validity and statistics
    code, nbad, tmean, tvar = _template_stats(ref, t0, l0, h, w, max_invalid, min_var)
    if code != ST_VALID:
        out[4] = code
        return
    # --- search area validity (one pass)
    hs = h + 2 * s
    ws = w + 2 * s
    ns = 2 * s + 1
    if has_num and nbad == 0:
        # the template is finite, so a shared numerator is NaN exactly when its shifted
        # window holds an invalid pixel: the union over all shifts is the search area
        sall = _region_sum(pre_num.reshape((1, ns, ns)), 0, 0, ns, ns)
    else:
        sall = _region_sum(sec, t0 - s, l0 - s, hs, ws)
    sbad = 0 if sall == sall else 1
    if nbad == 0 and sbad == 0:
        if has_num:
            off = cst
        else:
            # zero-mean template and offset search area for float32 dot products
            off = sall / (C * hs * ws)
            for c in range(C):
                for i in range(h):
                    for j in range(w):
                        T[c, i, j] = np.float32(ref[c, t0 + i, l0 + j] - tmean)
                for i in range(hs):
                    for j in range(ws):
                        Sw[c, i, j] = np.float32(sec[c, t0 - s + i, l0 - s + j] - off)
        if has_num:
            # secondary statistics of all shifts from the strip's column sums: sliding
            # sums over w columns (stored in sat[0] / sat2[0] as [u, v])
            for u in range(ns):
                lo1 = col1[u, lq:lq + ns]
                hi1 = col1[u, lq + w:lq + w + ns]
                lo2 = col2[u, lq:lq + ns]
                hi2 = col2[u, lq + w:lq + w + ns]
                o1 = sat[0, u]
                o2 = sat2[0, u]
                for v in range(ns):
                    o1[v] = hi1[v] - lo1[v]
                    o2[v] = hi2[v] - lo2[v]
        # summed-area tables of (S - off) and its square
        for c in range(C if not has_num else 0):
            for j in range(ws + 1):
                sat[c, 0, j] = 0.0
                sat2[c, 0, j] = 0.0
            for i in range(hs):
                sr = sec[c, t0 - s + i]
                rs = 0.0
                rs2 = 0.0
                sat[c, i + 1, 0] = 0.0
                sat2[c, i + 1, 0] = 0.0
                for j in range(ws):
                    x = sr[l0 - s + j] - off
                    rs += x
                    rs2 += x * x
                    sat[c, i + 1, j + 1] = sat[c, i, j + 1] + rs
                    sat2[c, i + 1, j + 1] = sat2[c, i, j + 1] + rs2
        tnorm = math.sqrt(tvar)
        if has_num:
            _surface_shared(pre_num, sat[0], sat2[0], ns, ntpl, tmean, cst, tnorm, min_var,
                            surf)
        else:
            _surface_dots(T, Sw, ns, surf)
            for u in range(ns):
                for v in range(ns):
                    ssum = 0.0
                    ssum2 = 0.0
                    for c in range(C):
                        ssum += (sat[c, u + h, v + w] - sat[c, u, v + w] - sat[c, u + h, v]
                                 + sat[c, u, v])
                        ssum2 += (sat2[c, u + h, v + w] - sat2[c, u, v + w]
                                  - sat2[c, u + h, v] + sat2[c, u, v])
                    svar = ssum2 - ssum * ssum / ntpl
                    ms = ssum / ntpl + off
                    if (svar <= min_var * ntpl or svar <= 1e-9 * ssum2
                            or svar <= 1e-12 * (ms * ms + 1.0) * ntpl):
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
        # start at the parabola estimate (one iteration fewer on average); near an integer
        # (|offset| <= 0.1 px, where starting at 0 costs no extra iteration) start exactly
        # at the integer so that identical windows give exactly zero displacement
        fy0 = _parabola(surf[bu - 1, bv], best, surf[bu + 1, bv])
        fx0 = _parabola(surf[bu, bv - 1], best, surf[bu, bv + 1])
        if abs(fy0) <= 0.1:
            fy0 = 0.0
        if abs(fx0) <= 0.1:
            fx0 = 0.0
        _refine(ref, sec, GX, GY, t0, l0, h, w, dyi, dxi, max_iter, tol, kappa, a, tn, gxa,
                gya, b2,
                tmp, wy, wx, res, fy0, fx0)
        if res[3] != 1.0 or not abs(res[2]) <= 1.0 + 1e-4:
            # an NCC outside [-1, 1] means the refined windows were ill-conditioned
            out[4] = ST_REFINE_FAILED
            return
        out[0] = dyi + res[0]
        out[1] = dxi + res[1]
        out[2] = res[2]
        out[5] = res[5]
        if max_sigma > 0.0 and not out[5] <= max_sigma:
            # texture too weak for the noise: the predicted error is above max_sigma
            out[0] = np.nan
            out[1] = np.nan
            out[4] = ST_IMPRECISE
            return
    out[4] = ST_VALID


# --------------------------------------------------------------------------- all windows
#: Window rows per chunk of the shared path (vertical sharing of the integer-search
#: products): rows of centres are grouped by ``row // (ROW_GROUP * step)`` in image
#: coordinates, and the block-wise driver cuts blocks at multiples of it.
ROW_GROUP = 8

#: Window columns per chunk of the shared path (bounds the chunk buffers: ~0.5 MB at
#: step 8-10, window 32, so that a chunk's rows stay in the L2 cache).
CHUNK_COLS = 64


@njit(cache=True, nogil=True)
def _scratch(C, h, w, s, a):
    """Per-thread scratch buffers of :func:`_one_window`: (T, Sw, sat, sat2, surf, tn,
    gxa, gya, b2, tmp, wy, wx, res, out); ``res[6:]`` holds the template sums of
    :func:`_template_sums`."""
    ns = 2 * s + 1
    return (np.empty((C, h, w), np.float32),
            np.empty((C, h + 2 * s, w + 2 * s), np.float32),
            np.empty((C, h + 2 * s + 1, w + 2 * s + 1), np.float64),
            np.empty((C, h + 2 * s + 1, w + 2 * s + 1), np.float64),
            np.empty((ns, ns), np.float64),
            np.empty((C, h, w), np.float32),
            np.empty((C, h, w), np.float32),
            np.empty((C, h, w), np.float32),
            np.empty((C, h, w), np.float32),
            np.empty((h + 2 * a, w), np.float32),
            np.empty(2 * a, np.float64),
            np.empty(2 * a, np.float64),
            np.zeros(6 + 5 * C, np.float64),
            np.empty(6, np.float64))


@njit(cache=True, nogil=True)
def _row_chunks(row_group):
    """Start indices of the runs of equal ``row_group`` (plus the end)."""
    nr = row_group.shape[0]
    nrc = 1
    for r in range(1, nr):
        if row_group[r] != row_group[r - 1]:
            nrc += 1
    rstart = np.empty(nrc + 1, np.int64)
    j = 0
    rstart[0] = 0
    for r in range(1, nr):
        if row_group[r] != row_group[r - 1]:
            j += 1
            rstart[j] = r
    rstart[nrc] = nr
    return rstart


@njit(cache=True, nogil=True, parallel=True)
def correlate_grid(ref, sec, tops, lefts, h, w, s, max_invalid, min_var, min_ncc, min_snr,
                   mode, max_iter, tol, kappa, max_sigma, interp_a, nthreads, shared,
                   row_group, pre_status,
                   dy, dx, ncc, snr, status, sig):
    """Correlate the windows whose top-left corners are ``tops`` x ``lefts`` (padded coords).

    ``pre_status`` (len(tops), len(lefts)) int8: non-zero entries are not computed and
    keep that status (e.g. window outside the image). Outputs are filled in place.
    ``shared``: when the centres are closer than the window width, the windows are
    processed in chunks (consecutive window rows with the same ``row_group`` id x
    :data:`CHUNK_COLS` window columns) that share the integer-search products
    (:func:`_group_dots`), parallel over chunks; otherwise windows are independent,
    parallel over chunks of windows. ``lefts`` must be increasing; ``row_group`` (one
    int per row, non-decreasing) must depend on the window grid only (not on how a
    raster is cut into blocks), so that every window's result is bit-identical however
    the rows are blocked.
    """
    C = ref.shape[0]
    nr = tops.shape[0]
    nc = lefts.shape[0]
    total = nr * nc
    nchunks = min(total, 8 * nthreads)
    if nchunks < 1:
        return
    GX, GY = _template_gradients(ref, total, h, w, interp_a, mode == 2)
    step_c = lefts[1] - lefts[0] if nc > 1 else w
    if shared and step_c < w and nc > 1:
        # row chunks: runs of equal row_group; chunks = row chunks x column chunks
        rstart = _row_chunks(row_group)
        nrc = rstart.shape[0] - 1
        ncq = -(-nc // CHUNK_COLS)
        for ci in prange(nrc * ncq):
            kr = ci // ncq
            kq = ci - kr * ncq
            _grid_chunk(ref, sec, GX, GY, tops, lefts, rstart[kr], rstart[kr + 1],
                        kq * CHUNK_COLS, min(nc, (kq + 1) * CHUNK_COLS), h, w, s,
                        max_invalid, min_var, min_ncc, min_snr, mode, max_iter, tol,
                        kappa, max_sigma, interp_a, pre_status, dy, dx, ncc, snr, status,
                        sig)
        return
    for k in prange(nchunks):
        (T, Sw, sat, sat2, surf, tn, gxa, gya, b2, tmp, wy, wx, res,
         out) = _scratch(C, h, w, s, interp_a)
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
                sig[r, q] = np.nan
                continue
            _one_window(ref, sec, GX, GY, tops[r], lefts[q], h, w, s, max_invalid, min_var,
                        min_ncc, min_snr, mode, max_iter, tol, kappa, max_sigma, interp_a, T,
                        Sw, sat, sat2,
                        surf, tn, gxa, gya, b2, tmp, wy, wx, res, out, surf, False, 0.0,
                        sat[0], sat2[0], 0)
            dy[r, q] = out[0]
            dx[r, q] = out[1]
            ncc[r, q] = out[2]
            snr[r, q] = out[3]
            sig[r, q] = out[5]
            status[r, q] = np.int8(out[4])


@njit(cache=True, nogil=True)
def _edges(starts, size):
    """Sorted unique ``starts`` and ``starts + size`` (segment boundaries)."""
    n = starts.shape[0]
    cand = np.empty(2 * n, np.int64)
    for k in range(n):
        cand[2 * k] = starts[k]
        cand[2 * k + 1] = starts[k] + size
    cand = np.sort(cand)
    nb = 1
    for k in range(1, 2 * n):
        if cand[k] != cand[nb - 1]:
            cand[nb] = cand[k]
            nb += 1
    return cand[:nb].copy()


@njit(cache=True, nogil=True)
def _grid_chunk(ref, sec, GX, GY, tops, lefts, rlo, rhi, qlo, qhi, h, w, s, max_invalid, min_var,
                min_ncc, min_snr, mode, max_iter, tol, kappa, max_sigma, interp_a,
                pre_status, dy, dx, ncc,
                snr, status, sig):
    """Windows of rows ``rlo:rhi`` x columns ``qlo:qhi``, integer search shared."""
    C = ref.shape[0]
    ns = 2 * s + 1
    # rows / columns holding at least one window to compute; the others get pre_status
    rsel = np.empty(rhi - rlo, np.int64)
    qsel = np.empty(qhi - qlo, np.int64)
    nrs = 0
    for r in range(rlo, rhi):
        anyr = False
        for q in range(qlo, qhi):
            if pre_status[r, q] == 0:
                anyr = True
            else:
                status[r, q] = pre_status[r, q]
                dy[r, q] = np.nan
                dx[r, q] = np.nan
                ncc[r, q] = np.nan
                snr[r, q] = np.nan
                sig[r, q] = np.nan
        if anyr:
            rsel[nrs] = r
            nrs += 1
    nqs = 0
    for q in range(qlo, qhi):
        for r in range(rlo, rhi):
            if pre_status[r, q] == 0:
                qsel[nqs] = q
                nqs += 1
                break
    if nrs == 0 or nqs == 0:
        return
    (T, Sw, sat, sat2, surf, tn, gxa, gya, b2, tmp, wy, wx, res,
     out) = _scratch(C, h, w, s, interp_a)
    tmin = tops[rsel[0]]
    tmax = tops[rsel[0]]
    for k in range(nrs):
        tmin = min(tmin, tops[rsel[k]])
        tmax = max(tmax, tops[rsel[k]])
    jmin = lefts[qsel[0]]
    jmax = lefts[qsel[nqs - 1]] + w
    nrow = tmax + h - tmin
    ncol = jmax - jmin
    # offset making the chunk values small (float32 products): mean of valid reference
    cst = 0.0
    cnt = 0
    for c in range(C):
        for i in range(nrow):
            row = ref[c, tmin + i]
            for j in range(jmin, jmax):
                x = row[j]
                if x == x:
                    cst += x
                    cnt += 1
    cst = cst / cnt if cnt > 0 else 0.0
    Rs = np.empty((C, nrow, ncol), np.float32)
    Ss = np.empty((C, nrow + 2 * s, ncol + 2 * s), np.float32)
    for c in range(C):
        for i in range(nrow):
            row = ref[c, tmin + i, jmin:jmax]
            o = Rs[c, i]
            for j in range(ncol):
                o[j] = row[j] - cst
        for i in range(nrow + 2 * s):
            row = sec[c, tmin - s + i, jmin - s:jmax + s]
            o = Ss[c, i]
            for j in range(ncol + 2 * s):
                o[j] = row[j] - cst
    # row segments: cut at every window top and bottom (relative to tmin)
    bnd = _edges(tops[rsel[:nrs]] - tmin, h)
    nb = bnd.shape[0]
    rseg0 = np.empty(nrs, np.int64)
    rseg1 = np.empty(nrs, np.int64)
    for k in range(nrs):
        t = tops[rsel[k]] - tmin
        rseg0[k] = np.searchsorted(bnd, t)
        rseg1[k] = np.searchsorted(bnd, t + h)
    lq = lefts[qsel[:nqs]] - jmin
    cbnd = _edges(lq, w)
    cseg0 = np.searchsorted(cbnd, lq)
    cseg1 = np.searchsorted(cbnd, lq + w)
    segsum = np.empty((nb - 1, ncol), np.float32)
    colsum = np.empty(ncol, np.float32)
    cblk = np.empty(cbnd.shape[0] - 1, np.float64)
    num = np.empty((ns * ns, nrs * nqs), np.float64)
    uni, nlev, nbw, qs = _uniform_blocks(cbnd, cseg0, cseg1)
    pa = np.empty(ncol, np.float64)
    pb = np.empty(ncol, np.float64)
    wn = np.empty(nqs, np.float64)
    _group_dots(Rs, Ss, bnd, rseg0, rseg1, cbnd, cseg0, cseg1, s, segsum, colsum, cblk, num,
                uni, nlev, nbw, qs, pa, pb, wn)
    pre_num = np.empty((ns, ns), np.float64)
    col1 = np.empty((ns, ncol + 2 * s + 1), np.float64)
    col2 = np.empty((ns, ncol + 2 * s + 1), np.float64)
    for kr in range(nrs):
        r = rsel[kr]
        t0 = tops[r]
        _strip_colsums(sec, t0 - s, jmin - s, h, ns, ncol + 2 * s, cst, col1, col2)
        for kq in range(nqs):
            q = qsel[kq]
            if pre_status[r, q] != 0:
                continue
            idx = kr * nqs + kq
            for u in range(ns):
                for v in range(ns):
                    pre_num[u, v] = num[u * ns + v, idx]
            _one_window(ref, sec, GX, GY, t0, lefts[q], h, w, s, max_invalid, min_var, min_ncc,
                        min_snr, mode, max_iter, tol, kappa, max_sigma, interp_a, T, Sw, sat,
                        sat2, surf, tn,
                        gxa, gya, b2, tmp, wy, wx, res, out, pre_num, True, cst, col1,
                        col2, lefts[q] - jmin)
            dy[r, q] = out[0]
            dx[r, q] = out[1]
            ncc[r, q] = out[2]
            snr[r, q] = out[3]
            sig[r, q] = out[5]
            status[r, q] = np.int8(out[4])


# --------------------------------------------------------------------------- refine only
@njit(cache=True, nogil=True, parallel=True)
def refine_windows(ref, sec, tops, lefts, h, w, dy0, dx0, max_invalid, min_var, min_ncc,
                   max_iter, tol, kappa, max_sigma, interp_a, nthreads, dy, dx, ncc, status,
                   sig):
    """Sub-pixel refinement only, of windows ``k`` of top-left corners ``(tops[k],
    lefts[k])`` (padded coordinates), started at a known estimate ``(dy0[k], dx0[k])``
    (px): no integer search. The integer base is the estimate rounded, the starting
    fraction the rest; then :func:`_refine` as in the main kernel (same statistics,
    same predicted error). Used by the wide-window pass, whose windows already have a
    first estimate from the nominal window (with an integer search around it the
    pass took 3.3 us per estimate on the l8_snow texture, 1.9 without, one thread).
    Outputs (per window, in place): dy, dx, ncc, status (ST_*), sigma. A window whose
    refinement could read outside the stacks is ST_OUTSIDE."""
    C = ref.shape[0]
    Hs = sec.shape[1]
    Ws = sec.shape[2]
    n = tops.shape[0]
    if n == 0:
        return
    nchunks = min(n, max(nthreads, 1) * 8)
    GX, GY = _template_gradients(ref, n, h, w, interp_a, True)
    for k in prange(nchunks):
        (T, Sw, sat, sat2, surf, tn, gxa, gya, b2, tmp, wy, wx, res,
         out) = _scratch(C, h, w, 0, interp_a)
        start = (k * n) // nchunks
        stop = ((k + 1) * n) // nchunks
        for idx in range(start, stop):
            t0 = tops[idx]
            l0 = lefts[idx]
            dy[idx] = np.nan
            dx[idx] = np.nan
            ncc[idx] = np.nan
            sig[idx] = np.nan
            iy = int(np.rint(dy0[idx]))
            ix = int(np.rint(dx0[idx]))
            # the warp reads up to interp_a + 1 px around the window moved by iy +- 1
            if (t0 + iy - interp_a - 2 < 0 or t0 + iy + h + interp_a + 2 > Hs
                    or l0 + ix - interp_a - 2 < 0 or l0 + ix + w + interp_a + 2 > Ws
                    or t0 - interp_a < 0 or t0 + h + interp_a > ref.shape[1]
                    or l0 - interp_a < 0 or l0 + w + interp_a > ref.shape[2]):
                status[idx] = ST_OUTSIDE
                continue
            code, nbad, tmean, tvar = _template_stats(ref, t0, l0, h, w, max_invalid, min_var)
            if code != ST_VALID:
                status[idx] = code
                continue
            fy0 = dy0[idx] - iy
            fx0 = dx0[idx] - ix
            _refine(ref, sec, GX, GY, t0, l0, h, w, iy, ix, max_iter, tol, kappa, interp_a, tn,
                    gxa, gya, b2, tmp, wy, wx, res, fy0, fx0)
            if res[3] != 1.0 or not abs(res[2]) <= 1.0 + 1e-4:
                status[idx] = ST_REFINE_FAILED
                continue
            ncc[idx] = res[2]
            if res[2] < min_ncc:
                status[idx] = ST_LOW_NCC
                continue
            sig[idx] = res[5]
            if max_sigma > 0.0 and not res[5] <= max_sigma:
                status[idx] = ST_IMPRECISE
                continue
            dy[idx] = iy + res[0]
            dx[idx] = ix + res[1]
            status[idx] = ST_VALID
