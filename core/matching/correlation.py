"""Sub-pixel image correlation (offset tracking) of two co-registered images.

Entry point (SPEC)::

    from slidewatch.core.matching.correlation import correlate
    res = correlate(reference, secondary, window=32, step=8, search=8)
    res.dx, res.dy, res.ncc, res.snr, res.status   # 2-D, one value per window centre
    res.rows, res.cols                             # window centres (pixel indices)

Convention (SPEC): a feature at (row, col) in ``reference`` is found at
(row + dy, col + dx) in ``secondary``; dx, dy in pixels.

Windows
    ``window`` is an int (square) or ``(height, width)``. The window of centre (r, c)
    covers rows ``r - height//2 .. r - height//2 + height - 1`` (same for columns).
    Default centres: ``step//2, step//2 + step, ...`` (``ceil(n / step)`` of them) on each
    axis, so the centre grid tiles the image with cells of ``step`` pixels (the pair
    raster's grid).

Estimator
    Zero-mean normalised cross-correlation over every integer shift in
    ``[-search, search]`` per axis (masked: NaN pixels are excluded), then sub-pixel
    refinement, ``subpixel=``:

    * ``"iterative"`` (default): symmetric iterative Lucas-Kanade on the translation with
      bicubic resampling of both windows, normalised for gain/offset; converges when the
      update is below ``tol`` px (``max_iter`` iterations at most). No pixel locking
      (measured: fractional parts of estimates uniform over a sweep of true shifts).
    * ``"parabola"``: 3-point parabola per axis through the NCC peak. Fast option, biased
      towards integer shifts (pixel locking) -- use only for previews.
    * ``"none"``: integer peak.

Performance
    Numba kernels, ``nogil``, cached. When the centres are closer than the window width
    (any step < width, including the dense mode ``step=1``), windows are processed in
    chunks of up to ``ROW_GROUP`` (8) rows x ``CHUNK_COLS`` (64) columns of centres,
    parallel (``prange``) over chunks, that share the integer-search work: for every
    shift each product of a reference pixel and the shifted secondary pixel is computed
    once per chunk, summed per row segment and column segment (segments cut at window
    edges), and each window's numerator is the sum of its segments (cost per window and
    shift ~``step * step`` instead of ``height * width``). Rows of centres are grouped by
    :func:`row_groups` (image coordinates), so a block of rows gives bit-identical
    results to the whole image. Windows touching invalid pixels fall back to the masked
    NCC. Otherwise windows are independent, parallel over chunks of windows.

Rules for invalid data (never a silent 0: the value is NaN and ``status`` says why)
    NaN in either image is an invalid pixel. A template with more than ``max_nodata``
    invalid fraction is ``STATUS_NODATA``; shifts whose common valid area is smaller
    than ``(1 - max_nodata)`` of the window are not candidates. A window not entirely
    inside the image is ``STATUS_OUTSIDE``; so an image smaller than the window gives an
    all-NaN result with status ``STATUS_OUTSIDE`` everywhere (not an error). An empty
    array or arrays of different shapes raise :class:`ParameterError`/:class:`InputError`.

Quality
    ``ncc``: the NCC at the peak (after refinement: NCC of the two resampled windows).
    ``snr``: peak-to-second-peak ratio, ``ncc_peak / max(second, 0.001)`` where
    ``second`` is the highest NCC of the integer surface farther than 2 px (per axis)
    from the peak. Kept (not NaN) for rejected windows where they were measured, so that
    users can see *how* bad a window was.
"""

from dataclasses import dataclass, field

import numba
import numpy as np

from . import correlation_kernels as K
from .correlation_params import (INTERPOLATIONS, SUBPIXEL_MODES, CorrelationParams,
                                 window_shape)
from ..errors import InputError, ParameterError
from .prefilters import apply_prefilter, check_prefilter, halo as prefilter_halo
from ..progress import as_progress

STATUS_VALID = K.ST_VALID
STATUS_OUTSIDE = K.ST_OUTSIDE
STATUS_NODATA = K.ST_NODATA
STATUS_FLAT = K.ST_FLAT
STATUS_PEAK_ON_BORDER = K.ST_PEAK_ON_BORDER
STATUS_LOW_NCC = K.ST_LOW_NCC
STATUS_LOW_SNR = K.ST_LOW_SNR
STATUS_REFINE_FAILED = K.ST_REFINE_FAILED
STATUS_IMPRECISE = K.ST_IMPRECISE

#: Meaning of every status code (also written to the pair rasters' status band tags).
STATUS_MEANINGS = {
    STATUS_VALID: "valid estimate",
    STATUS_OUTSIDE: "window not entirely inside the image",
    STATUS_NODATA: "too many invalid (nodata / masked) pixels in the window or search area",
    STATUS_FLAT: "flat texture: window standard deviation below min_std",
    STATUS_PEAK_ON_BORDER: "correlation peak on the border of the search area (displacement "
                           "may exceed search, or the peak is next to invalid shifts)",
    STATUS_LOW_NCC: "peak NCC below min_ncc (decorrelation, cloud, change)",
    STATUS_LOW_SNR: "peak-to-second-peak ratio below min_snr (ambiguous match)",
    STATUS_REFINE_FAILED: "sub-pixel refinement diverged (moved > 1 px from the integer "
                          "peak), did not converge, or was ill-conditioned",
    STATUS_IMPRECISE: "predicted error above max_sigma: the window's texture is too weak "
                      "for the noise / change between the images",
}

#: Default options. ``prefilter="gaussian_hp"`` (sigma 1 px) since issue 3 round 2: on the
#: real Sentinel-2 null pair it lowers the 68th percentile of the residual from 0.237 to
#: 0.140 px (window 32) and gives 18 % more valid windows; on synthetic shifts it costs
#: little (RMSE 0.005 -> 0.007 px). Use ``prefilter="none"`` for raw intensities.
#: ``min_snr=1.2`` since issue 18 (bench/bench_textures.py, six real textures): with 1.0,
#: windows whose peak was barely above the second one (snr 1.02-1.10) were kept, and 0.1 %
#: of them were 2-5 px wrong (RMSE 0.077 px on Sentinel-2 fields, 0.023 on Landsat snow);
#: with 1.2 every texture is <= 0.016 px at 1 % noise for 1-2 % fewer valid windows; the
#: Sentinel-2 null pair's p68 goes 0.145 -> 0.134 px with 10 % fewer valid windows.
#: With ``prefilter="none"`` and a small ``search`` the peak of raw intensities is broad
#: (the "second peak" 3 px away is nearly as high): lower ``min_snr`` to 1.0 there.
#: ``min_snr_coherent=1.0``, ``coherence_px=0.5`` since the issue-14 pairing regression:
#: with ``min_snr`` 1.2 alone, windows of weak texture lost nearly every pair and the few
#: survivors were false matches (about 3 px, whatever the baseline) that the inversion
#: extrapolated into hundreds of metres (bench/bench_pairing.py: RMSE optimal 0.54 -> 1.31
#: m, all pairs 0.61 -> 35 m). A peak whose ratio is between ``min_snr_coherent`` and
#: ``min_snr`` is kept only when it agrees with the confident windows around it
#: (:func:`coherence_filter`): the gross errors of issue 18 are 2-5 px off them. Judging by
#: any valid neighbour (3 x 3) let clusters of one false peak along field rows through
#: (Sentinel-2 fields 0.008 -> 0.025 px); 1 px instead of 0.5 kept more imprecise snow
#: windows (Landsat snow at 5 % noise + contrast 0.074 against 0.059 px).
#: The one source of these values is :class:`.correlation_params.CorrelationParams`
#: (units, bounds, choices and help of each option there).
DEFAULTS = CorrelationParams.defaults()


@dataclass
class CorrelationResult:
    """Result of :func:`correlate`; 2-D arrays of shape (len(rows), len(cols))."""
    dx: np.ndarray
    dy: np.ndarray
    ncc: np.ndarray
    snr: np.ndarray
    status: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    params: dict = field(default_factory=dict)
    #: predicted 1-sigma error of each refined estimate (px, rms of the two axes; NaN
    #: where not refined); None from the seeded search
    sigma: np.ndarray = None
    #: window area of each estimate relative to the nominal window (1, or WIDE_FOOTPRINT
    #: where the wide-window pass was taken); None from the seeded search
    footprint: np.ndarray = None

    @property
    def valid(self):
        return self.status == STATUS_VALID


def normalize_params(window=CorrelationParams.window, step=CorrelationParams.step,
                     search=CorrelationParams.search, **options):
    """Check every parameter and return them as a plain dict (used for tags/resume):
    :meth:`.correlation_params.CorrelationParams.as_dict` of the checked object."""
    return CorrelationParams.from_options(window, step, search, **options).as_dict()


def centres(n, step):
    """Default window centres along an axis of ``n`` pixels: ``k*step + step//2`` for
    ``k < ceil(n / step)`` (one per cell of the pair raster grid; a centre past the last
    pixel gets STATUS_OUTSIDE)."""
    return np.arange(-(-n // step), dtype=np.int64) * step + step // 2


_KAPPA = {}


def noise_gradient_gain(prefilter, options, a):
    """Gradient energy per unit variance of white noise after ``prefilter``, with the
    refinement's derivative filter (resampling kernel half-width ``a``): the ``kappa`` by
    which the kernels remove the noise's share from a template's Hessian before
    predicting the error (``sigma``). Exact for the linear prefilters ("none",
    "gaussian_hp", from the discrete kernels' frequency responses); the non-linear ones
    ("wallis", "orientation") are taken as "none"."""
    opts = check_prefilter(prefilter, options)
    key = (prefilter, tuple(sorted(opts.items())), int(a))
    if key in _KAPPA:
        return _KAPPA[key]
    nk = 1 if a == 2 else a - 1
    k = np.arange(1, nk + 1)
    wd = np.full(nk, 0.5) if a == 2 else (np.where(k % 2 == 1, 1.0, -1.0) / k
                                            * np.sinc(k / a))
    f = np.fft.fftfreq(256)
    d2 = (2.0 * np.sum(wd[None, :] * np.sin(2 * np.pi * f[:, None] * k[None, :]), axis=1)) ** 2
    if prefilter == "gaussian_hp":
        from .prefilter_kernels import gaussian_weights
        g = gaussian_weights(float(opts["sigma"]))
        r = (g.size - 1) // 2
        gf = np.real(np.sum(g[None, :] * np.exp(-2j * np.pi * f[:, None]
                                                 * np.arange(-r, r + 1)[None, :]), axis=1))
        h2 = (1.0 - gf[:, None] * gf[None, :]) ** 2      # [fy, fx]
    else:
        h2 = np.ones((f.size, f.size))
    kappa = float(np.sum(h2 * d2[None, :]) / np.sum(h2))
    _KAPPA[key] = kappa
    return kappa


def data_margin(params, wide=True):
    """Pixels of padding the kernels read around a window beyond the template (and, with
    the wide-window pass on and ``wide``, the half window by which its windows are
    larger; ``wide=False``: what the nominal windows alone read)."""
    extra = max(params["window"]) // 2 if wide and _wide(params) else 0
    return int(params["search"]) + K.REFINE_MARGIN + extra


def _wide(params):
    """Whether the wide-window pass is on (``wide_sigma`` > 0, see :func:`_wide_pass`)."""
    return float(params.get("wide_sigma") or 0.0) > 0.0


def _fallback(params):
    """(prefilter, options) of the second pass, or None (see :func:`correlate_raw`)."""
    sigma = float(params.get("fallback_sigma") or 0.0)
    if sigma <= 0:
        return None
    return "gaussian_hp", {"sigma": sigma}


def read_margin(params):
    """Padding + prefilter support: halo to read around the pixels of a block (the wider
    of the prefilter's and the second pass's)."""
    fh = prefilter_halo(params["prefilter"], params["prefilter_options"])
    fb = _fallback(params)
    if fb is not None:
        fh = max(fh, prefilter_halo(*fb))
    return data_margin(params) + fh


def prepare(image_block, params, fallback=False):
    """Prefilter a NaN-padded block (padded by :func:`read_margin`) and drop the filter
    halo, leaving a float32 stack padded by :func:`data_margin`. ``fallback``: with the
    second pass's prefilter instead."""
    fh = read_margin(params) - data_margin(params)
    name, opts = _fallback(params) if fallback else (params["prefilter"],
                                                      params["prefilter_options"])
    stack = apply_prefilter(image_block, name, opts)
    if fh:
        stack = stack[:, fh:stack.shape[1] - fh, fh:stack.shape[2] - fh]
    return np.ascontiguousarray(stack, dtype=np.float32)


def correlate_raw(ref_block, sec_block, rows, cols, image_shape, row_offset, params,
                  with_sigma=False, with_footprint=False):
    """Prefilter and correlate raw blocks padded by :func:`read_margin` (pixel (m, m) is
    image pixel (row_offset, 0)), with the second pass.

    Second pass: windows whose peak is below ``min_ncc`` with the main prefilter are
    correlated again with a wider Gaussian high-pass (``fallback_sigma``, 3 px; 0 = off)
    and take that result when it is valid. A sigma-1 high-pass is the most accurate on
    well-textured ground (Sentinel-2 null pair, docs/benchmarks.md) but removes the
    texture that survives between the dates of a fast, shearing glacier (Landsat 8
    Yahtse pair: 68 % of the fast windows valid with it alone, 91 % with the second pass);
    windows that succeed with the main prefilter are unchanged. Windows above
    ``max_sigma`` (STATUS_IMPRECISE, when set) get the second pass too. The pass computes
    only those windows, each alone, with its prefilter computed only around them when they
    are few (issue 18: it used to filter the whole block and correlate the whole rectangle
    of rows x columns holding them, 1.5-2 us per estimate of a 384 x 384 call for ten
    windows). Returns (dx, dy, ncc, snr, status) (+ sigma with ``with_sigma``, + the
    footprint with ``with_footprint``: float32 window area relative to the nominal window,
    1 or :data:`WIDE_FOOTPRINT`)."""
    ref_stack, sec_stack = prepare(ref_block, params), prepare(sec_block, params)
    out = _correlate(ref_stack, sec_stack, rows, cols, image_shape, row_offset, params)
    if _fallback(params) is not None:
        out = _second_pass(out, ref_block, sec_block, rows, cols, image_shape, row_offset,
                           params)
    foot = np.ones(out[0].shape, np.float32)
    if _wide(params):
        out, widened = _wide_pass(out, ref_stack, sec_stack, rows, cols, image_shape,
                                  row_offset, params)
        foot[widened] = WIDE_FOOTPRINT
    return (out if with_sigma else out[:5]) + ((foot,) if with_footprint else ())


#: window area of the wide-window pass relative to the nominal window (twice as high and
#: wide): the footprint band of pair rasters, the detector's independent observations
WIDE_FOOTPRINT = 4.0


def _wide_pass(out, ref_stack, sec_stack, rows, cols, image_shape, row_offset, params):
    """Wide-window pass: valid windows whose predicted error ``sigma`` exceeds
    ``wide_sigma`` are refined again with a window twice as high and wide at the same
    centre (main prefilter), started at their first estimate (no integer search: the
    first estimate is already within a fraction of a pixel; the refinement may move up
    to 1 px from its rounded value), and take that result when it is valid and its
    predicted error is lower. Low texture and noise leave a 32 px window too few
    independent gradients; four times the pixels give about half the error where the
    texture allows, at the cost of a coarser footprint for those windows only (as
    autoRIFT's progressive chip sizes). The peak ratio (snr) stays the first estimate's.
    Figures: docs/benchmarks.md (issue 18). Returns (out, the windows that took the wide
    result)."""
    dx, dy, ncc, snr, status, sig = out
    with np.errstate(invalid="ignore"):
        redo = (status == STATUS_VALID) & (sig > float(params["wide_sigma"]))
    widened = np.zeros(status.shape, bool)
    ii, jj = np.nonzero(redo)
    if not ii.size:
        return out, widened
    h, w = (2 * int(v) for v in params["window"])
    pad = data_margin(params)
    H, W = image_shape
    top_img = np.asarray(rows, np.int64)[ii] - h // 2
    left_img = np.asarray(cols, np.int64)[jj] - w // 2
    inside = (top_img >= 0) & (top_img + h <= H) & (left_img >= 0) & (left_img + w <= W)
    ii, jj, top_img, left_img = ii[inside], jj[inside], top_img[inside], left_img[inside]
    if not ii.size:
        return out, widened
    n = ii.size
    wdy, wdx, wncc, wsig = (np.empty(n, np.float64) for _ in range(4))
    wstatus = np.empty(n, np.int8)
    kappa = _noise_gain(params)
    K.refine_windows(ref_stack, sec_stack, top_img - row_offset + pad, left_img + pad, h, w,
                     np.ascontiguousarray(dy[ii, jj], np.float64),
                     np.ascontiguousarray(dx[ii, jj], np.float64),
                     params["max_nodata"], params["min_std"] ** 2, params["min_ncc"],
                     params["max_iter"], params["tol"], kappa,
                     params.get("max_sigma", 0.0), INTERPOLATIONS[params["interpolation"]],
                     numba.get_num_threads(), wdy, wdx, wncc, wstatus, wsig)
    with np.errstate(invalid="ignore"):
        take = (wstatus == STATUS_VALID) & (wsig < sig[ii, jj])
    ii, jj = ii[take], jj[take]
    dy[ii, jj] = wdy[take]
    dx[ii, jj] = wdx[take]
    ncc[ii, jj] = wncc[take]
    sig[ii, jj] = wsig[take]
    widened[ii, jj] = True
    return out, widened


def _merge(out, res, rsel, csel, take):
    """Put the windows ``take`` of a pass's results ``res`` (on the rows ``rsel`` x
    columns ``csel``) into ``out`` (dx, dy, ncc, snr, status, sigma), in place."""
    for a, b in zip(out, res):
        sub = a[np.ix_(rsel, csel)]
        sub[take] = b[take]
        a[np.ix_(rsel, csel)] = sub
    return out


def _second_pass(out, ref_block, sec_block, rows, cols, image_shape, row_offset, params):
    """Second pass (see :func:`correlate_raw`) on the windows below ``min_ncc`` or above
    ``max_sigma`` only; the wider high-pass is computed only around them when they are
    few (same pixels as the whole block: the filter is local)."""
    dx, dy, ncc, snr, status, sig = out
    redo = (status == STATUS_LOW_NCC) | (status == STATUS_IMPRECISE)
    rsel = np.flatnonzero(redo.any(axis=1))
    if not rsel.size:
        return out
    csel = np.flatnonzero(redo[rsel].any(axis=0))
    rows = np.asarray(rows, np.int64)
    cols = np.asarray(cols, np.int64)
    todo = redo[np.ix_(rsel, csel)]
    stacks = [_prepare_around(blk, params, rows[rsel], cols[csel], todo, row_offset)
              for blk in (ref_block, sec_block)]
    f = _correlate(stacks[0], stacks[1], rows[rsel], cols[csel], image_shape, row_offset,
                   params, fallback=True, todo=todo)
    take = todo & (f[4] == STATUS_VALID)
    return _merge(out, f, rsel, csel, take)


def _prepare_around(block, params, rows, cols, todo, row_offset):
    """:func:`prepare` with the second pass's prefilter, computed only on the pixels the
    windows ``todo`` (of centres ``rows`` x ``cols``) read when that is much less than
    the block (NaN elsewhere); those pixels get exactly the values of the whole block's
    filter (:func:`prefilter_kernels.gaussian_highpass_rects`)."""
    from .prefilter_kernels import gaussian_highpass_rects
    h, w = params["window"]
    dm = data_margin(params)
    fh = read_margin(params) - dm
    name, opts = _fallback(params)
    # what the second pass's (nominal) windows read around their template, not the
    # wide-window pass's extra half window
    m = data_margin(params, wide=False)
    ii, jj = np.nonzero(todo)
    # cost ~ pixels filtered: (h + 2 m) x (w + 2 m) per window (+ the filter's halo
    # rows) against the whole block
    if name != "gaussian_hp" or 1.5 * ii.size * (h + 2 * m) * (w + 2 * m) > block.size:
        return prepare(block, params, True)
    hp, wp = block.shape[0] - 2 * fh, block.shape[1] - 2 * fh
    t = np.asarray(rows, np.int64)[ii] - h // 2 - row_offset + dm
    l0 = np.asarray(cols, np.int64)[jj] - w // 2 + dm
    # window regions in prepared coordinates, then in block coordinates (+ fh)
    rects = np.stack([np.clip(t - m, 0, hp), np.clip(t + h + m, 0, hp),
                      np.clip(l0 - m, 0, wp), np.clip(l0 + w + m, 0, wp)], axis=1) + fh
    # windows of one row side by side: one rectangle (their regions overlap)
    order = np.lexsort((rects[:, 2], rects[:, 0]))
    merged = []
    for r in rects[order]:
        m = merged[-1] if merged else None
        if m is not None and m[0] == r[0] and m[1] == r[1] and r[2] <= m[3]:
            m[3] = max(m[3], r[3])
        else:
            merged.append(r.copy())
    rects = np.array(merged, np.int64)
    stack = gaussian_highpass_rects(block, float(opts["sigma"]), rects)
    if fh:
        stack = stack[fh:stack.shape[0] - fh, fh:stack.shape[1] - fh]
    return np.ascontiguousarray(stack)[None]


def correlate_prepared(ref_stack, sec_stack, rows, cols, image_shape, row_offset, params):
    """Kernel call on prepared stacks (see :func:`_correlate`); (dx, dy, ncc, snr, status)."""
    dx, dy, ncc, snr, status, _sig = _correlate(ref_stack, sec_stack, rows, cols,
                                                image_shape, row_offset, params)
    coherence_filter(dx, dy, snr, status, params)
    return dx, dy, ncc, snr, status


def _correlate(ref_stack, sec_stack, rows, cols, image_shape, row_offset, params,
               fallback=False, todo=None, pad=None):
    """Kernel call on prepared stacks.

    ``ref_stack``/``sec_stack``: outputs of :func:`prepare`, whose pixel (pad, pad)
    is image pixel (row_offset, 0) with ``pad = data_margin(params)``. ``rows``/``cols``:
    window centres in image coordinates. Returns (dx, dy, ncc, snr, status, sigma);
    ``sigma``: predicted 1-sigma error of the refined estimate (px, NaN if not refined).
    ``fallback``: the stacks hold the second pass's prefilter. ``todo``: optional boolean
    (len(rows), len(cols)); windows where it is False are not computed (status
    STATUS_OUTSIDE, never taken), the others independently (no shared products).
    ``pad``: the stacks' padding when not ``data_margin(params)`` (the wide-window pass).
    """
    h, w = params["window"]
    pad = data_margin(params) if pad is None else int(pad)
    H, W = image_shape
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    top_img = rows - h // 2
    left_img = cols - w // 2
    pre = np.zeros((rows.size, cols.size), np.int8)
    out_r = (top_img < 0) | (top_img + h > H)
    out_c = (left_img < 0) | (left_img + w > W)
    pre[out_r, :] = STATUS_OUTSIDE
    pre[:, out_c] = STATUS_OUTSIDE
    tops = np.clip(top_img - row_offset + pad, 0, None)
    lefts = np.clip(left_img + pad, 0, None)
    shared = bool(np.all(np.diff(lefts) > 0))
    if todo is not None:
        # windows computed alone: each result depends on its own pixels only (not on
        # which neighbours need the pass, so blocks still equal the whole image), and
        # the pass is on a few windows (sharing the integer-search products pays only
        # when most windows of a chunk are computed)
        pre[~todo & (pre == 0)] = STATUS_OUTSIDE
        shared = False
    kappa = _noise_gain(params, fallback)
    shape = (rows.size, cols.size)
    dy = np.empty(shape, np.float64)
    dx = np.empty(shape, np.float64)
    ncc = np.empty(shape, np.float64)
    snr = np.empty(shape, np.float64)
    status = np.empty(shape, np.int8)
    sig = np.empty(shape, np.float64)
    if rows.size and cols.size:
        K.correlate_grid(ref_stack, sec_stack, tops, lefts, h, w, int(params["search"]),
                         params["max_nodata"], params["min_std"] ** 2, params["min_ncc"],
                         kernel_min_snr(params), SUBPIXEL_MODES[params["subpixel"]],
                         params["max_iter"], params["tol"],
                         kappa, params.get("max_sigma", 0.0),
                         INTERPOLATIONS[params["interpolation"]], numba.get_num_threads(),
                         shared, row_groups(rows, h), pre, dy,
                         dx, ncc, snr, status, sig)
    return dx, dy, ncc, snr, status, sig


def _noise_gain(params, fallback=False):
    """:func:`noise_gradient_gain` of the main prefilter (or the second pass's)."""
    name, opts = _fallback(params) if fallback else (params["prefilter"],
                                                      params["prefilter_options"])
    return noise_gradient_gain(name, opts, INTERPOLATIONS[params["interpolation"]])


def kernel_min_snr(params):
    """Peak ratio below which the kernel rejects a window: ``min_snr``, or
    ``min_snr_coherent`` when lower (those windows are then kept or rejected by
    :func:`coherence_filter`)."""
    return min(float(params["min_snr"]), float(params.get("min_snr_coherent",
                                                          params["min_snr"])))


#: neighbourhood of :func:`coherence_filter`: windows up to this many grid steps away
#: (9 x 9 windows); valid windows of a ratio >= min_snr among them that a low-ratio window
#: needs to be judged
COHERENCE_RADIUS = 4
COHERENCE_MIN_NEIGHBOURS = 3


def _halo(rows, n, width, at_end):
    """The ``n`` rows of (dx, dy, snr, status) next to a block, NaN / invalid where the
    grid has fewer (``rows``: tuple of 2-D arrays or None; ``at_end``: take its last
    rows)."""
    out = [np.full((n, width), np.nan), np.full((n, width), np.nan),
           np.full((n, width), np.nan), np.full((n, width), -1, np.int16)]
    if rows is not None and len(rows[0]):
        k = min(n, len(rows[0]))
        for o, a in zip(out, rows):
            src = a[-k:] if at_end else a[:k]
            if at_end:
                o[n - k:] = src
            else:
                o[:k] = src
    return out


def coherence_filter(dx, dy, snr, status, params, sigma=None, above=None, below=None):
    """Keep a window whose peak ratio is below ``min_snr`` (but at least
    ``min_snr_coherent``) only where its displacement is within ``coherence_px`` of the
    median of the confident windows around it (valid, ratio >= ``min_snr``, at most
    :data:`COHERENCE_RADIUS` grid steps away, at least :data:`COHERENCE_MIN_NEIGHBOURS`
    of them); the others become STATUS_LOW_SNR with NaN offsets. Only confident windows
    judge: ambiguous neighbours may share one false peak (field rows), confident ones
    do not. In place on (dx, dy, status[, sigma]) of a grid of windows (rows x cols);
    ``above``/``below``: (dx, dy, snr, status) of the rows of windows just above / below
    a block of rows (up to COHERENCE_RADIUS of them), as the kernel returned them, so
    that a tiled raster gets the same decision as a whole one. Returns the number of
    low-ratio windows kept."""
    thr = float(params["min_snr"])
    if kernel_min_snr(params) >= thr or dx.size == 0:
        return 0
    ok = status == STATUS_VALID
    with np.errstate(invalid="ignore"):
        low = ok & (snr < thr)
    if not low.any():
        return 0
    R = COHERENCE_RADIUS
    W = dx.shape[1]
    top = _halo(above, R, W, True)
    bot = _halo(below, R, W, False)
    full = [np.vstack([t, a, b]) for t, a, b in zip(top, (dx, dy, snr, status), bot)]
    with np.errstate(invalid="ignore"):
        conf = (full[3] == STATUS_VALID) & (full[2] >= thr)
    ii, jj = np.nonzero(low)
    off = np.arange(-R, R + 1)
    di, dj = (a.ravel() for a in np.meshgrid(off, off, indexing="ij"))
    keep_off = (di != 0) | (dj != 0)
    di, dj = di[keep_off], dj[keep_off]
    r = ii[:, None] + R + di[None]
    c = jj[:, None] + dj[None]
    inside = (c >= 0) & (c < W)
    c = np.clip(c, 0, W - 1)
    good = conf[r, c] & inside
    n = good.sum(axis=1)
    err = []
    for comp, own in ((full[0], dx[ii, jj]), (full[1], dy[ii, jj])):
        v = np.where(good, comp[r, c], np.nan)
        v.sort(axis=1)   # NaN last: the median of the first n values
        k = np.clip(n - 1, 0, v.shape[1] - 1)
        med = 0.5 * (np.take_along_axis(v, (k // 2)[:, None], 1)[:, 0]
                     + np.take_along_axis(v, (k - k // 2)[:, None], 1)[:, 0])
        err.append(own - med)
    with np.errstate(invalid="ignore"):
        agree = (n >= COHERENCE_MIN_NEIGHBOURS) & (
            np.hypot(err[0], err[1]) <= float(params["coherence_px"]))
    drop_i, drop_j = ii[~agree], jj[~agree]
    dx[drop_i, drop_j] = np.nan
    dy[drop_i, drop_j] = np.nan
    status[drop_i, drop_j] = STATUS_LOW_SNR
    if sigma is not None:
        sigma[drop_i, drop_j] = np.nan
    return int(agree.sum())


def row_groups(rows, height):
    """Chunk id of every row of window centres for the shared integer search.

    Rows evenly spaced by ``d < height`` (their windows overlap) are grouped by
    ``row // (K.ROW_GROUP * d)`` (image coordinates: the same groups whichever block of
    rows is passed, provided blocks start at multiples of ``K.ROW_GROUP`` rows of the
    default centres, as :func:`slidewatch.core.matching.pair_correlation.correlate_pair_rasters`
    does); other rows are chunks of their own.
    """
    rows = np.asarray(rows, dtype=np.int64)
    d = np.diff(rows)
    if rows.size > 1 and np.all(d == d[0]) and 0 < d[0] < height:
        return rows // (K.ROW_GROUP * int(d[0]))
    return np.arange(rows.size, dtype=np.int64)


def pad_image(image, margin):
    out = np.full((image.shape[0] + 2 * margin, image.shape[1] + 2 * margin), np.nan,
                  np.float32)
    out[margin:margin + image.shape[0], margin:margin + image.shape[1]] = image
    return out


def _as_image(a, name):
    a = np.asarray(a)
    if a.ndim != 2:
        raise InputError("%s must be a 2-D array (got %d dimensions)." % (name, a.ndim))
    if a.size == 0:
        raise InputError("%s is empty." % name)
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise InputError("%s must be numeric (got %s)." % (name, a.dtype))
    a = a.astype(np.float32)
    a[~np.isfinite(a)] = np.nan
    return a


def correlate(reference, secondary, window=CorrelationParams.window,
              step=CorrelationParams.step, search=CorrelationParams.search, rows=None,
              cols=None, progress=None, **options):
    """Sub-pixel displacement of ``secondary`` relative to ``reference`` per window.

    Parameters
    ----------
    reference, secondary : 2-D arrays of the same shape (NaN = invalid pixel)
    window : int or (height, width); step : centre spacing (px); search : max |shift| (px)
    rows, cols : optional explicit window centres (pixel indices); default every
        ``step`` pixels starting at ``step // 2``
    subpixel : "iterative" (default), "parabola" or "none"
    prefilter : "gaussian_hp" (default, sigma 1 px), "none", "wallis", "orientation";
        prefilter_options: dict
    max_nodata : tolerated invalid fraction in a window (0.1)
    min_std : windows flatter than this (image units, after prefilter) are STATUS_FLAT
    min_ncc : peaks below are STATUS_LOW_NCC (0.3); min_snr : below is STATUS_LOW_SNR (1.2;
        1.0 before issue 18: ambiguous peaks, e.g. along field rows or on flat snow, gave
        0.1 % of gross errors of up to 5 px that dominated the RMSE of two real textures)
        unless the window is coherent: min_snr_coherent (1.0), coherence_px (0.5) : a
        window whose ratio is in [min_snr_coherent, min_snr) is kept where its offset is
        within coherence_px of the median of its valid neighbours in the grid of
        ``rows`` x ``cols`` (:func:`coherence_filter`; min_snr_coherent = min_snr: off; coherence_px 0.5)
    max_iter, tol : refinement iterations (20) and convergence threshold on the size of
        the last update (0.02 px; the update is applied, and the iteration converges
        about 10x per step, so the remaining error is ~0.002 px)
    interpolation : resampling kernel of the refinement: "lanczos4" (default),
        "lanczos3", "lanczos6" or "bicubic" (bicubic leaves ~0.03 px pixel-locking bias)
    fallback_sigma : second pass for windows below ``min_ncc``: a Gaussian high-pass of
        this sigma (3 px; 0 = off), kept where valid (:func:`correlate_raw`)
    max_sigma : windows whose predicted error (``sigma``, px) is above it get
        STATUS_IMPRECISE (and the second pass); 0 = off (default: on the real Sentinel-2
        null pair 0.1 px removes 17 % of the valid windows, docs/benchmarks.md)
    wide_sigma : valid windows whose predicted error is above it (px; default 0.025)
        are correlated again with a window twice as large at the same centre, within 2 px
        of their first estimate, kept where valid and predicted more precise
        (:func:`_wide_pass`; their ``footprint`` is then 4); 0 = off. Issue 18: 5 % noise
        + contrast change RMSE 0.020-0.059 -> 0.016-0.036 px on six real textures, real
        Sentinel-2 null pair p68 0.139 -> 0.116 px. The detector counts independent
        observations with each window's footprint (core/footprint.py), so the coarser
        footprints of the widened windows do not weaken detection elsewhere
        (docs/benchmarks.md).
    max_displacement : largest displacement looked for (px; 0 = off, the default). When
        larger than ``search``, the search follows the motion: a coarse level gives a
        seed per window and the fine search of ``search`` px is centred on it
        (:mod:`slidewatch.core.matching.seeded_search`); the result's ``params["seeds"]``
        describes the coarse level.

    Returns
    -------
    CorrelationResult with 2-D ``dx, dy, ncc, snr`` (float64, NaN where not valid),
    ``status`` (int8, see STATUS_MEANINGS), 1-D ``rows, cols``, ``params`` and ``sigma``
    (predicted 1-sigma error of each refined estimate, px, rms of the two axes: residual
    variance of the normalised windows times the inverse Hessian of the template's
    texture with its noise share removed; within 0.7-1.5x of the actual RMSE over six
    real textures with white noise, bench/bench_textures.py; it does not see
    co-registration or scene-change errors).
    """
    params = normalize_params(window, step, search, **options)
    ref = _as_image(reference, "reference")
    sec = _as_image(secondary, "secondary")
    if ref.shape != sec.shape:
        raise InputError("reference %s and secondary %s must have the same shape: bring "
                         "them onto a common grid first." % (ref.shape, sec.shape))
    H, W = ref.shape
    rows = centres(H, params["step"]) if rows is None else np.asarray(rows, np.int64).ravel()
    cols = centres(W, params["step"]) if cols is None else np.asarray(cols, np.int64).ravel()
    progress = as_progress(progress)
    from .seeded_search import correlate_in_memory, is_seeded
    if is_seeded(params):
        dx, dy, ncc, snr, status, seeds = correlate_in_memory(ref, sec, rows, cols, params,
                                                              progress)
        coherence_filter(dx, dy, snr, status, params)
        progress.update(1.0)
        return CorrelationResult(dx=dx, dy=dy, ncc=ncc, snr=snr, status=status, rows=rows,
                                 cols=cols, params=dict(params, seeds=seeds.describe()))
    m = read_margin(params)
    progress.check()
    dx, dy, ncc, snr, status, sig, foot = correlate_raw(
        pad_image(ref, m), pad_image(sec, m), rows, cols, (H, W), 0, params, with_sigma=True,
        with_footprint=True)
    coherence_filter(dx, dy, snr, status, params, sigma=sig)
    progress.update(1.0)
    return CorrelationResult(dx=dx, dy=dy, ncc=ncc, snr=snr, status=status, rows=rows,
                             cols=cols, params=params, sigma=sig, footprint=foot)
