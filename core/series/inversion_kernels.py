"""Numba kernels of the per-pixel network inversion (see :mod:`.inversion`).

Every pixel is an independent small problem: unknowns are the cumulative displacements
``d_1 .. d_{n-1}`` at the dates after the first (``d_0 = 0``), observations are pair
displacements ``y_p = d[j_p] - d[i_p]``. With observation weights ``w_p`` (prior quality
weight times robust IRLS weight) the normal matrix is

    N = Q + sum_p w_p a_p a_p^T,      a_p = e_{j_p} - e_{i_p}

where ``Q`` is the (shared) regularisation normal matrix. Each ``a_p`` has at most two
non-zero entries, so assembling ``N`` is O(n_pairs); ``N`` is banded (half bandwidth =
the longest pair span in dates, or the band of ``Q`` if wider) and is factorised by a band
Cholesky in O(m bw^2). East and north share the robust weights
(an outlier pair is a bad match in both components), hence one factorisation per
iteration serves both components.

The kernels take blocks of pixels laid out as (n_pairs, n_pixels) and run ``prange`` over
chunks of pixels, each chunk with its own work arrays.
"""

import numpy as np
from numba import njit, prange

#: robust modes
ROBUST_NONE = 0
ROBUST_HUBER = 1
ROBUST_TUKEY = 2

#: network flag bits (uint8, documented in docs and :mod:`.inversion`)
FLAG_GAP = 1            # a date has no valid observation: bridged by the regularisation
FLAG_DISCONNECTED = 2   # the dates with observations form >= 2 connected components
FLAG_REJECTED = 4       # at least one pair was rejected (zero weight) by the robust IRLS
FLAG_TOO_FEW = 8        # fewer than min_obs usable pairs: outputs are NaN
FLAG_SOLVER = 16        # normal matrix not positive definite: outputs are NaN

_CHUNK = 64


@njit(cache=True, nogil=True)
def _find(parent, a):
    while parent[a] != a:
        parent[a] = parent[parent[a]]
        a = parent[a]
    return a


@njit(cache=True, nogil=True)
def _cholesky(N, L, m, bw):
    """Lower Cholesky factor of the band matrix N[:m, :m] (half bandwidth ``bw``: N[i, j] = 0
    for |i - j| > bw) into L; only the band of L is written and read. Cost O(m bw^2).
    Returns False if N is not positive definite."""
    for j in range(m):
        k0 = j - bw if j > bw else 0
        s = N[j, j]
        for k in range(k0, j):
            s -= L[j, k] * L[j, k]
        if not (s > 1e-300):
            return False
        ljj = np.sqrt(s)
        L[j, j] = ljj
        i1 = j + bw + 1 if j + bw + 1 < m else m
        for i in range(j + 1, i1):
            t = N[i, j]
            ks = i - bw if i - bw > k0 else k0
            for k in range(ks, j):
                t -= L[i, k] * L[j, k]
            L[i, j] = t / ljj
    return True


@njit(cache=True, nogil=True)
def _chol_solve(L, b, x, m, bw):
    """Solve (L L^T) x = b with the band Cholesky factor L."""
    for i in range(m):
        t = b[i]
        k0 = i - bw if i > bw else 0
        for k in range(k0, i):
            t -= L[i, k] * x[k]
        x[i] = t / L[i, i]
    for i in range(m - 1, -1, -1):
        t = x[i]
        k1 = i + bw + 1 if i + bw + 1 < m else m
        for k in range(i + 1, k1):
            t -= L[k, i] * x[k]
        x[i] = t / L[i, i]


@njit(cache=True, nogil=True)
def _median(a, n):
    return np.median(a[:n])


@njit(cache=True, nogil=True)
def _gather(pix, east, north, wprior, pi, pj, ii, jj, w, ye, yn):
    """Copy the usable observations of pixel ``pix`` (weight > 0, finite values) to the
    front of the work arrays, weights normalised to a mean of 1 (lambda is relative to a
    unit-weight pair). Returns their number."""
    nv = 0
    wsum = 0.0
    for p in range(east.shape[0]):
        wq = wprior[p, pix]
        e = east[p, pix]
        nn = north[p, pix]
        if wq > 0.0 and np.isfinite(wq) and np.isfinite(e) and np.isfinite(nn):
            ii[nv] = pi[p]
            jj[nv] = pj[p]
            w[nv] = wq
            ye[nv] = e
            yn[nv] = nn
            wsum += wq
            nv += 1
    for q in range(nv):
        w[q] = w[q] * nv / wsum
    return nv


@njit(cache=True, nogil=True)
def _work(n_pairs, m, n_vec, n_mat):
    """Per-chunk work arrays: 2 int rows and 8 float rows of length n_pairs (pair
    indices, weights, observations, residuals), ``n_vec`` rows of length m, ``n_mat``
    (m, m) matrices (zeroed: the band routines read only the band they wrote)."""
    return (np.empty((2, n_pairs), np.int64), np.empty((8, n_pairs)),
            np.empty((n_vec, m)), np.zeros((n_mat, m, m)))


@njit(cache=True, nogil=True)
def _band_inverse_trace(L, Q, Z, m, bw, qbw):
    """tr(N^-1 Q) from the band Cholesky factor L of N (N = L L^T, half bandwidth bw) and
    a symmetric Q of half bandwidth qbw <= bw, in O(m bw^2): only the band of
    Z = N^-1 is needed, computed by the Takahashi recursion
    Z_ij = delta_ij / L_ii^2 - sum_{k>i} (L_ki / L_ii) Z_kj (i <= j, rows from the last)."""
    for i in range(m - 1, -1, -1):
        k1 = i + bw + 1 if i + bw + 1 < m else m
        lii = L[i, i]
        for j in range(k1 - 1, i - 1, -1):
            s = 1.0 / (lii * lii) if j == i else 0.0
            for k in range(i + 1, k1):
                zkj = Z[k, j] if k >= j else Z[j, k]
                s -= (L[k, i] / lii) * zkj
            Z[j, i] = s
            Z[i, j] = s
    tr = 0.0
    for a in range(m):
        b0 = a - qbw if a > qbw else 0
        b1 = a + qbw + 1 if a + qbw + 1 < m else m
        for b in range(b0, b1):
            tr += Z[a, b] * Q[b, a]
    return tr


@njit(cache=True, nogil=True)
def _solve_weighted(Q, m, bw, nv, ii, jj, w, ye, yn, N, L, be, bn, xe, xn):
    """Assemble N = Q + A^T W A, b = A^T W y (band of half width bw), factorise, solve.
    Returns success."""
    for a in range(m):
        be[a] = 0.0
        bn[a] = 0.0
        b0 = a - bw if a > bw else 0
        b1 = a + bw + 1 if a + bw + 1 < m else m
        for b in range(b0, b1):
            N[a, b] = Q[a, b]
    for q in range(nv):
        wq = w[q]
        if wq <= 0.0:
            continue
        i = ii[q] - 1
        j = jj[q] - 1
        if j >= 0:
            N[j, j] += wq
            be[j] += wq * ye[q]
            bn[j] += wq * yn[q]
        if i >= 0:
            N[i, i] += wq
            be[i] -= wq * ye[q]
            bn[i] -= wq * yn[q]
        if i >= 0 and j >= 0:
            N[i, j] -= wq
            N[j, i] -= wq
    if not _cholesky(N, L, m, bw):
        return False
    _chol_solve(L, be, xe, m, bw)
    _chol_solve(L, bn, xn, m, bw)
    return True


@njit(cache=True, nogil=True)
def _residuals(m, nv, ii, jj, ye, yn, xe, xn, re, rn):
    for q in range(nv):
        i = ii[q]
        j = jj[q]
        pe = 0.0
        pn = 0.0
        if j > 0:
            pe += xe[j - 1]
            pn += xn[j - 1]
        if i > 0:
            pe -= xe[i - 1]
            pn -= xn[i - 1]
        re[q] = ye[q] - pe
        rn[q] = yn[q] - pn


@njit(cache=True, nogil=True)
def _robust_scale(nv, wp, r, tmp, floor, corr):
    """Robust sigma of sqrt(prior weight) * residual: 1.4826 * MAD (about 0), with a
    small-sample/leverage correction factor and a floor."""
    k = 0
    for q in range(nv):
        if wp[q] > 0.0:
            tmp[k] = abs(np.sqrt(wp[q]) * r[q])
            k += 1
    if k == 0:
        return floor
    s = 1.4826 * _median(tmp, k) * corr
    if s < floor:
        s = floor
    return s


@njit(cache=True, nogil=True)
def _invert_one(pix, east, north, wprior, pi, pj, t_years, Q, bw, m, n_dates,
                min_obs, robust, n_huber, max_iter, c_huber, c_tukey, tol, sigma_floor,
                ii, jj, wp, w, ye, yn, re, rn, tmp, N, L, be, bn, xe, xn, xe0, xn0, xl_e, xl_n,
                g, z, parent, has_obs, out_ce, out_cn, out_stats):
    """Invert one pixel. out_stats: ve, vn, sve, svn, n_obs, rmse, flags."""
    nan = np.nan
    # ---- usable observations, prior weights normalised to a mean of 1
    nv = _gather(pix, east, north, wprior, pi, pj, ii, jj, wp, ye, yn)
    for k in range(n_dates):
        out_ce[k, pix] = nan
        out_cn[k, pix] = nan
    for k in range(6):
        out_stats[k, pix] = nan
    out_stats[4, pix] = 0.0
    if nv < min_obs or nv == 0:
        out_stats[6, pix] = FLAG_TOO_FEW
        return
    for q in range(nv):
        w[q] = wp[q]
    # ---- network topology: gaps and connected components
    flags = 0
    for k in range(n_dates):
        parent[k] = k
        has_obs[k] = 0
    for q in range(nv):
        has_obs[ii[q]] = 1
        has_obs[jj[q]] = 1
        ra = _find(parent, ii[q])
        rb = _find(parent, jj[q])
        if ra != rb:
            parent[ra] = rb
    n_with = 0
    roots = 0
    for k in range(n_dates):
        if has_obs[k]:
            n_with += 1
            if _find(parent, k) == k:
                roots += 1
        else:
            flags |= FLAG_GAP
    if roots > 1:
        flags |= FLAG_DISCONNECTED
    # leverage correction of the MAD: residuals of a fit with p parameters are smaller
    # than the errors by about sqrt((n - p) / n)
    p_eff = n_with - roots
    red = nv - p_eff
    if red < 1:
        red = 1
    corr = np.sqrt(nv / red)
    # ---- IRLS
    ok = _solve_weighted(Q, m, bw, nv, ii, jj, w, ye, yn, N, L, be, bn, xe, xn)
    if not ok:
        out_stats[6, pix] = flags | FLAG_SOLVER
        return
    se = sigma_floor
    sn = sigma_floor
    have_l1 = False
    if robust != ROBUST_NONE:
        for it in range(max_iter):
            _residuals(m, nv, ii, jj, ye, yn, xe, xn, re, rn)
            huber_phase = robust == ROBUST_HUBER or it < n_huber
            # robust scale of the current residuals, re-estimated at every iteration
            se = _robust_scale(nv, wp, re, tmp, sigma_floor, corr)
            sn = _robust_scale(nv, wp, rn, tmp, sigma_floor, corr)
            if robust == ROBUST_TUKEY and it == n_huber:
                # keep the L1 start: fallback if Tukey would reject most pairs
                for a in range(m):
                    xl_e[a] = xe[a]
                    xl_n[a] = xn[a]
                have_l1 = True
            for q in range(nv):
                sw = np.sqrt(wp[q])
                ze = sw * re[q] / se
                zn = sw * rn[q] / sn
                zz = np.sqrt(0.5 * (ze * ze + zn * zn))
                if robust == ROBUST_HUBER:
                    rw = 1.0 if zz <= c_huber else c_huber / zz
                elif huber_phase:
                    # L1 start (IRLS weights 1/|z|, bounded): breaks down far later than
                    # least squares, so Tukey starts near the bulk of the good pairs
                    rw = 1.0 / (zz if zz > 0.1 else 0.1)
                else:
                    if zz >= c_tukey:
                        rw = 0.0
                    else:
                        u = zz / c_tukey
                        rw = (1.0 - u * u) ** 2
                w[q] = wp[q] * rw
            for a in range(m):
                xe0[a] = xe[a]
                xn0[a] = xn[a]
            ok = _solve_weighted(Q, m, bw, nv, ii, jj, w, ye, yn, N, L, be, bn, xe, xn)
            if not ok:
                out_stats[6, pix] = flags | FLAG_SOLVER
                return
            dmax = 0.0
            for a in range(m):
                d1 = abs(xe[a] - xe0[a]) / se
                d2 = abs(xn[a] - xn0[a]) / sn
                if d1 > dmax:
                    dmax = d1
                if d2 > dmax:
                    dmax = d2
            if dmax < tol and (robust == ROBUST_HUBER or it > n_huber):
                break
        if have_l1:
            n_pos = 0
            for q in range(nv):
                if w[q] > 0.0:
                    n_pos += 1
            if n_pos < min_obs or 2 * n_pos < nv:
                # Tukey rejected most pairs (no clear majority): keep the L1 estimate
                _residuals(m, nv, ii, jj, ye, yn, xl_e, xl_n, re, rn)
                se = _robust_scale(nv, wp, re, tmp, sigma_floor, corr)
                sn = _robust_scale(nv, wp, rn, tmp, sigma_floor, corr)
                for q in range(nv):
                    sw = np.sqrt(wp[q])
                    ze = sw * re[q] / se
                    zn = sw * rn[q] / sn
                    zz = np.sqrt(0.5 * (ze * ze + zn * zn))
                    w[q] = wp[q] / (zz if zz > 0.1 else 0.1)
                ok = _solve_weighted(Q, m, bw, nv, ii, jj, w, ye, yn, N, L, be, bn, xe, xn)
                if not ok:
                    out_stats[6, pix] = flags | FLAG_SOLVER
                    return
    # ---- final statistics
    _residuals(m, nv, ii, jj, ye, yn, xe, xn, re, rn)
    n_used = 0
    ss = 0.0
    swr_e = 0.0
    swr_n = 0.0
    for q in range(nv):
        if w[q] > 0.0:
            n_used += 1
            ss += re[q] * re[q] + rn[q] * rn[q]
            swr_e += w[q] * re[q] * re[q]
            swr_n += w[q] * rn[q] * rn[q]
        if robust != ROBUST_NONE and w[q] <= 0.0:
            flags |= FLAG_REJECTED
    if n_used < min_obs:
        out_stats[6, pix] = flags | FLAG_TOO_FEW
        return
    out_ce[0, pix] = 0.0
    out_cn[0, pix] = 0.0
    for a in range(m):
        out_ce[a + 1, pix] = xe[a]
        out_cn[a + 1, pix] = xn[a]
    # mean velocity: least-squares slope of the cumulative series against time (years)
    tm = 0.0
    for k in range(n_dates):
        tm += t_years[k]
    tm /= n_dates
    stt = 0.0
    for k in range(n_dates):
        stt += (t_years[k] - tm) ** 2
    ve = 0.0
    vn = 0.0
    for a in range(m):
        g[a] = (t_years[a + 1] - tm) / stt
        ve += g[a] * xe[a]
        vn += g[a] * xn[a]
    # posterior variance of the slope: sigma0^2 g^T N^-1 g (N of the last iteration)
    _chol_solve(L, g, z, m, bw)
    gng = 0.0
    for a in range(m):
        gng += g[a] * z[a]
    red2 = n_used - p_eff
    if red2 < 1:
        red2 = 1
    s0e = swr_e / red2
    s0n = swr_n / red2
    out_stats[0, pix] = ve
    out_stats[1, pix] = vn
    out_stats[2, pix] = np.sqrt(s0e * gng)
    out_stats[3, pix] = np.sqrt(s0n * gng)
    out_stats[4, pix] = n_used
    out_stats[5, pix] = np.sqrt(ss / n_used)
    out_stats[6, pix] = flags


@njit(cache=True, nogil=True, parallel=True)
def invert_block(east, north, wprior, pi, pj, t_years, Q, bw, min_obs, robust, n_huber,
                 max_iter, c_huber, c_tukey, tol, sigma_floor, out_ce, out_cn, out_stats):
    """Invert every pixel of a block.

    east, north, wprior : (n_pairs, n_pix) float32 (wprior <= 0 or NaN: pair not used)
    pi, pj : (n_pairs,) int64 date indices (reference, secondary) into t_years
    Q : (n_dates-1, n_dates-1) float64 regularisation normal matrix (shared)
    bw : half bandwidth of the normal matrices: max(date-index span of the pairs, band of Q)
    out_ce, out_cn : (n_dates, n_pix) float32 cumulative displacement
    out_stats : (7, n_pix) float64 = ve, vn (m/yr), sigma ve, sigma vn, n_obs, rmse, flags
    """
    n_pairs, n_pix = east.shape
    n_dates = t_years.shape[0]
    m = n_dates - 1
    n_chunks = (n_pix + _CHUNK - 1) // _CHUNK
    for c in prange(n_chunks):
        iw, pw, mw, mats = _work(n_pairs, m, 11, 2)
        ii, jj = iw[0], iw[1]
        wp, w, ye, yn, re, rn, tmp = pw[0], pw[1], pw[2], pw[3], pw[4], pw[5], pw[6]
        be, bn, xe, xn, xe0, xn0, xl_e, xl_n, g, z = (mw[0], mw[1], mw[2], mw[3], mw[4],
                                                      mw[5], mw[6], mw[7], mw[8], mw[9])
        N, L = mats[0], mats[1]
        parent = np.empty(n_dates, np.int64)
        has_obs = np.empty(n_dates, np.int64)
        start = c * _CHUNK
        stop = min(start + _CHUNK, n_pix)
        for pix in range(start, stop):
            _invert_one(pix, east, north, wprior, pi, pj, t_years, Q, bw, m, n_dates,
                        min_obs, robust, n_huber, max_iter, c_huber, c_tukey, tol,
                        sigma_floor, ii, jj, wp, w, ye, yn, re, rn, tmp, N, L, be, bn,
                        xe, xn, xe0, xn0, xl_e, xl_n, g, z, parent, has_obs, out_ce, out_cn,
                        out_stats)


@njit(cache=True, nogil=True, parallel=True)
def gcv_block(east, north, wfinal, pi, pj, Q1, Q2, bw, qbw, lams, out_gcv):
    """Generalised cross-validation score per (lambda, pixel) with fixed weights.

    For each lambda: x = argmin sum w r^2 + x^T (lam Q1 + Q2) x; the GCV score is
    n * RSS_w / (n - tr(H))^2 with tr(H) = tr(N^-1 A^T W A) = m - tr(N^-1 Q),
    summed over east and north (same H). ``bw``: half bandwidth of the normal matrices,
    ``qbw``: that of Q1 and Q2. Cost per (lambda, pixel) O(n_pairs + m bw^2).
    out_gcv: (n_lams, n_pix), NaN if unusable.
    """
    n_pairs, n_pix = east.shape
    m = Q1.shape[0]
    n_l = lams.shape[0]
    for pix in prange(n_pix):
        iw, pw, mw, mats = _work(n_pairs, m, 4, 4)
        ii, jj = iw[0], iw[1]
        w, ye, yn, re, rn = pw[0], pw[1], pw[2], pw[3], pw[4]
        be, bn, xe, xn = mw[0], mw[1], mw[2], mw[3]
        N, L, Q, Z = mats[0], mats[1], mats[2], mats[3]
        for li in range(n_l):
            out_gcv[li, pix] = np.nan
        nv = _gather(pix, east, north, wfinal, pi, pj, ii, jj, w, ye, yn)
        if nv < 3:
            continue
        for li in range(n_l):
            lam = lams[li]
            for a in range(m):
                b0 = a - bw if a > bw else 0
                b1 = a + bw + 1 if a + bw + 1 < m else m
                for b in range(b0, b1):
                    Q[a, b] = lam * Q1[a, b] + Q2[a, b]
            if not _solve_weighted(Q, m, bw, nv, ii, jj, w, ye, yn, N, L, be, bn, xe, xn):
                continue
            _residuals(m, nv, ii, jj, ye, yn, xe, xn, re, rn)
            rss = 0.0
            for q in range(nv):
                rss += w[q] * (re[q] * re[q] + rn[q] * rn[q])
            tr_reg = _band_inverse_trace(L, Q, Z, m, bw, qbw)
            # the m unknowns are shared by nv observations (per component)
            dof = nv - (m - tr_reg)
            if dof <= 0.0:
                continue
            out_gcv[li, pix] = nv * rss / (dof * dof)
