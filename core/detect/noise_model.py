"""Noise model of a displacement/velocity field, estimated on stable ground.

Detection thresholds in SlideWatch are expressed in units of noise (a velocity
divided by the local noise level), never as a fixed velocity or a percentile: a
percentile always flags the top few percent of a scene, even where nothing moves,
whereas a noise-relative threshold flags nothing on a scene of pure noise.

The noise level is estimated robustly (1.4826 x median absolute deviation) on stable
ground -- a user mask of stable areas, or the whole scene minus the pixels that
already look like motion -- and is allowed to vary in space: the field is cut into
blocks, a robust sigma is estimated in each block from its stable pixels, blocks
without enough stable samples are filled from their neighbours, and the block grid is
smoothed and interpolated bilinearly back to pixels. A vegetated or otherwise noisy
patch therefore gets a higher noise level than bare rock around it.
"""

import numpy as np
from scipy import ndimage

#: factor turning a median absolute deviation into a Gaussian standard deviation
MAD_TO_SIGMA = 1.4826


def robust_sigma(values):
    """Robust standard deviation (1.4826 x MAD about the median) of finite ``values``.

    Returns NaN when there is no finite value.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan")
    med = np.median(v)
    return float(MAD_TO_SIGMA * np.median(np.abs(v - med)))


def robust_location_scale(values):
    """(median, robust sigma) of the finite ``values`` (NaN, NaN when empty)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    med = float(np.median(v))
    return med, float(MAD_TO_SIGMA * np.median(np.abs(v - med)))


def _block_sigma(field, stable, block, min_count, center):
    """Robust sigma per block of ``block`` x ``block`` pixels (NaN where too few samples)."""
    h, w = field.shape
    nby, nbx = -(-h // block), -(-w // block)
    out = np.full((nby, nbx), np.nan)
    for by in range(nby):
        for bx in range(nbx):
            sl = (slice(by * block, (by + 1) * block), slice(bx * block, (bx + 1) * block))
            v = field[sl][stable[sl]]
            v = v[np.isfinite(v)]
            if v.size >= min_count:
                c = 0.0 if center == "zero" else np.median(v)
                out[by, bx] = MAD_TO_SIGMA * np.median(np.abs(v - c))
    return out


def _fill_nan_nearest(grid):
    """Replace NaN cells by the value of the nearest finite cell."""
    bad = ~np.isfinite(grid)
    if not bad.any():
        return grid
    if bad.all():
        return grid
    idx = ndimage.distance_transform_edt(bad, return_distances=False, return_indices=True)
    return grid[tuple(idx)]


def _upsample_bilinear(grid, shape, block):
    """Interpolate a block grid (values at block centres) bilinearly to ``shape`` pixels."""
    h, w = shape
    nby, nbx = grid.shape
    rows = (np.arange(h) + 0.5) / block - 0.5
    cols = (np.arange(w) + 0.5) / block - 0.5
    rows = np.clip(rows, 0, nby - 1)
    cols = np.clip(cols, 0, nbx - 1)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    return ndimage.map_coordinates(grid, [rr, cc], order=1, mode="nearest")


class NoiseModel:
    """A spatially varying noise level.

    Attributes
    ----------
    sigma : 2-D float array, local noise level (same unit as the field) per pixel
    global_sigma : float, robust sigma over all stable pixels
    stable : 2-D bool array, the pixels used as stable ground
    block : int, block size in pixels
    n_stable : int, number of stable samples used
    """

    def __init__(self, sigma, global_sigma, stable, block, n_stable):
        self.sigma = sigma
        self.global_sigma = global_sigma
        self.stable = stable
        self.block = block
        self.n_stable = n_stable
        #: effective noise correlation area in pixels (set by the detection, see
        #: :func:`correlation_area`); None when not measured
        self.correlation_area_px = None

    def as_dict(self):
        s = self.sigma[np.isfinite(self.sigma)]
        return {"global_sigma": self.global_sigma, "block_px": self.block,
                "correlation_area_px": self.correlation_area_px,
                "n_stable_px": int(self.n_stable),
                "local_sigma_min": float(s.min()) if s.size else None,
                "local_sigma_median": float(np.median(s)) if s.size else None,
                "local_sigma_max": float(s.max()) if s.size else None}


def local_noise(fields, stable=None, block=48, min_count=60, floor_fraction=0.5,
                center="median", smooth_blocks=True):
    """Spatially varying robust noise level of one or several co-located fields.

    Parameters
    ----------
    fields : 2-D array or sequence of 2-D arrays of the same shape (e.g. the east and
        north velocity components). With several fields the returned sigma is the root
        mean square of the per-field sigmas, i.e. the per-component noise level of a
        vector field.
    stable : 2-D bool array or None. Pixels usable as stable ground (True). None: all
        finite pixels.
    block : block size in pixels for the local estimate.
    min_count : minimum number of stable samples for a block estimate; blocks below it
        are filled from the nearest estimated block.
    floor_fraction : the local sigma is never below ``floor_fraction`` x the global
        sigma (protects against over-confident blocks with few, lucky samples).
    center : "median" (MAD about the block median) or "zero" (about zero, so that a
        residual local bias counts as noise).

    Returns
    -------
    NoiseModel
    """
    if isinstance(fields, np.ndarray) and fields.ndim == 2:
        fields = [fields]
    fields = [np.asarray(f, dtype=np.float64) for f in fields]
    shape = fields[0].shape
    finite = np.ones(shape, bool)
    for f in fields:
        finite &= np.isfinite(f)
    st = finite if stable is None else (np.asarray(stable, bool) & finite)
    block = int(max(4, min(block, max(shape))))
    sig2 = np.zeros(shape)
    glob2 = 0.0
    for f in fields:
        g = robust_sigma(f[st])
        if not np.isfinite(g) or g <= 0:
            g = robust_sigma(f[finite])
        if not np.isfinite(g) or g <= 0:
            g = 1e-12
        grid = _block_sigma(f, st, block, min_count, center)
        if np.isfinite(grid).any():
            grid = _fill_nan_nearest(grid)
            if smooth_blocks and min(grid.shape) >= 3:
                grid = ndimage.median_filter(grid, size=3, mode="nearest")
            loc = _upsample_bilinear(grid, shape, block)
        else:
            loc = np.full(shape, g)
        loc = np.maximum(loc, floor_fraction * g)
        sig2 += loc ** 2
        glob2 += g ** 2
    n = len(fields)
    sigma = np.sqrt(sig2 / n)
    sigma[~finite] = np.nan
    return NoiseModel(sigma, float(np.sqrt(glob2 / n)), st, block, int(st.sum()))


def nan_gaussian(field, sigma_px):
    """Gaussian smoothing that ignores NaN (normalised convolution); NaN stays NaN."""
    field = np.asarray(field, dtype=np.float64)
    if sigma_px is None or sigma_px <= 0:
        return field.copy()
    ok = np.isfinite(field)
    num = ndimage.gaussian_filter(np.where(ok, field, 0.0), sigma_px, mode="nearest")
    den = ndimage.gaussian_filter(ok.astype(np.float64), sigma_px, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    out[~ok] = np.nan
    return out


def correlation_area(field, stable=None, max_lag=24, clip_sigmas=3.0):
    """Effective correlation area (pixels) of the noise of a 2-D field on stable ground.

    Neighbouring estimates of a correlator share image content (a 32-pixel window moved
    by an 8-pixel step overlaps its neighbours) and the errors of an inversion are
    spatially correlated, so N pixels of an object are not N independent observations.
    The normalised autocorrelation ``rho`` of the (median-removed, clipped at
    ``clip_sigmas`` robust sigmas so that a few gross mismatches do not dominate) field is
    computed on the stable pixels (FFT, normalised by the autocorrelation of the mask),
    and the area is the sum of ``rho`` over the lags inside the radius where its radial
    mean first drops below 0.05 (at most ``max_lag`` pixels): the usual
    ``N_eff = N / sum(rho)`` for the number of independent samples of a mean. Returns
    at least 1.0 (1.0 when the field is too small or has no stable pixel).
    """
    f = np.asarray(field, dtype=np.float64)
    ok = np.isfinite(f)
    if stable is not None:
        ok &= np.asarray(stable, bool)
    if ok.sum() < 100:
        return 1.0
    med, sig = robust_location_scale(f[ok])
    if not (np.isfinite(sig) and sig > 0):
        return 1.0
    x = np.where(ok, np.clip(f - med, -clip_sigmas * sig, clip_sigmas * sig), 0.0)
    m = ok.astype(np.float64)
    h, w = f.shape
    ph, pw = h + max_lag + 1, w + max_lag + 1
    fx = np.fft.rfft2(x, (ph, pw))
    fm = np.fft.rfft2(m, (ph, pw))
    cx = np.fft.irfft2(fx * np.conj(fx), (ph, pw))
    cm = np.fft.irfft2(fm * np.conj(fm), (ph, pw))
    lags = np.arange(-max_lag, max_lag + 1)
    cx = cx[np.ix_(lags % ph, lags % pw)]
    cm = cm[np.ix_(lags % ph, lags % pw)]
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = np.where(cm > 50, cx / np.maximum(cm, 1e-12), np.nan)
    c0 = cov[max_lag, max_lag]
    if not (np.isfinite(c0) and c0 > 0):
        return 1.0
    rho = cov / c0
    rr = np.hypot(*np.meshgrid(lags, lags, indexing="ij"))
    radius = max_lag
    for r in range(1, max_lag + 1):
        ring = rho[(rr >= r - 0.5) & (rr < r + 0.5)]
        ring = ring[np.isfinite(ring)]
        if ring.size == 0 or ring.mean() < 0.05:
            radius = r - 0.5
            break
    inside = (rr <= radius) & np.isfinite(rho)
    return float(max(1.0, rho[inside].sum()))
