"""Search range that follows the motion: coarse-to-fine (seeded) correlation.

A fixed search radius (``search``, 8 px by default) misses displacements larger than
itself: a glacier moving 2 m/day on a 16-day Landsat pair (15 m pixels) moves 2 px, but
28 m/day is 30 px. Widening ``search`` everywhere costs ``(2 s + 1)^2`` per window and
raises the chance of a false peak on every stable window. This module keeps the fine
search small and moves it to where the motion is, as autoRIFT does with its search-range
and seed rasters:

1. **Coarse level.** Both images are reduced by an integer factor ``f``
   (:func:`reduction_factor`: 4, or more for very large displacements) by a NaN-aware
   block mean, and correlated with the same estimator (prefilter, masks) at search
   ``ceil(max_displacement / f) + 1``, parabola sub-pixel, windows of
   ``COARSE_WINDOW`` coarse pixels every ``COARSE_STEP``. The coarse windows cover
   ``f`` times more ground, so the coarse field is robust but smooth.
2. **Seed field.** Valid coarse estimates that differ from the median of their 3 x 3
   neighbourhood by more than ``OUTLIER_COARSE_PX`` (either axis), or have fewer than
   ``MIN_NEIGHBOURS`` valid neighbours, are discarded; holes are filled with the nearest
   kept estimate (no seed anywhere: zero), and scaled by ``f``.
3. **Fine level.** Window centres are processed in tiles of ``TILE_ROWS`` x
   ``TILE_COLS`` centres (tile boundaries are fixed in the global centre grid, so a block
   of rows gives the same result as the whole image); a tile whose seed range is wider
   than ``2 * SPLIT_SPREAD_PX`` is halved recursively (down to ``MIN_TILE``
   centres a side), so that a shear margin costs a wide search only along the margin.
   Per tile, the seeds that can apply are those of the coarse windows within one
   coarse step of the tile (:meth:`SeedField.bounds`; not an interpolation, which
   would invent intermediate displacements along a shear margin where stable ground
   meets a fast body). The secondary is shifted by the integer middle ``S`` of their
   range and correlated with the unchanged estimator and a search of ``search +
   ceil(half the range)`` (capped at ``max_displacement``), so that ``search`` px around
   every plausible seed are searched and the best NCC peak wins; ``S`` is added back.
   Where that range leaves out zero, the plain search around zero is run too and, per
   window, its result replaces the seeded one only if it is valid and its peak higher
   than the seeded peak (valid or not): a coarse window straddling a margin can
   hand the body's seed to stable ground beside it, and stable ground must never be
   pushed to a false peak by a seed. Sub-pixel refinement, quality measures
   and statuses are exactly those of the plain correlation, so the issue-3 accuracy and
   pixel-locking figures hold for the fine level.

Cost: the coarse level costs about ``((2 s_c + 1) / (2 s + 1))^2 / f^2`` of a plain pass
(~9 % at ``max_displacement = 30``, ``search = 8``); a tile of stable ground costs the
same as a plain tile, a moving tile about twice (its seeded search and the zero
candidate), and a tile straddling a shear margin pays a wider search there only.

Entry points: :func:`seed_field` (coarse level + filtering, from whole images or from
reduced images), :func:`correlate_seeded` (fine level over an array that covers the
windows' rows) and :func:`correlate_in_memory` (both, for :func:`correlation.correlate`).
``slidewatch.core.matching.pair_correlation.correlate_pair_rasters`` uses the same functions
block by block.
"""

import math
import warnings

import numpy as np
from scipy import ndimage

from .correlation import STATUS_OUTSIDE, STATUS_VALID, correlate, correlate_raw, read_margin
from ..errors import ParameterError

#: Coarse correlation windows (coarse pixels) and their spacing.
COARSE_WINDOW = 16
COARSE_STEP = 4
#: A coarse estimate farther than this (coarse px, either axis) from its 3 x 3 median
#: is an outlier; one with fewer valid neighbours than MIN_NEIGHBOURS is isolated.
OUTLIER_COARSE_PX = 1.0
MIN_NEIGHBOURS = 3
#: Fine tiles, in window centres (rows x columns).
TILE_ROWS = 16
TILE_COLS = 32
#: A tile whose seeds spread more than this (px) around its median is halved, down to
#: MIN_TILE centres a side.
SPLIT_SPREAD_PX = 2
MIN_TILE = 2


def reduction_factor(max_displacement, search):
    """Smallest power of two ``f >= 4`` with ``ceil(max_displacement / f) <= 2 * search``
    (coarse windows of COARSE_WINDOW coarse px cover ``f * COARSE_WINDOW`` px: the
    smaller ``f``, the sharper the seeds along a margin; the coarse search of up to
    ``2 * search + 1`` on ``1 / f^2`` of the pixels keeps the coarse cost near 10 %)."""
    f = 4
    while math.ceil(float(max_displacement) / f) > 2 * max(int(search), 1):
        f *= 2
    return f


def block_mean(a, f):
    """NaN-aware mean over ``f x f`` blocks (a partial last block is averaged over what it
    holds); a block with fewer than half of its pixels valid is NaN."""
    a = np.asarray(a, np.float32)
    H, W = a.shape
    Hc, Wc = -(-H // f), -(-W // f)
    pad = np.full((Hc * f, Wc * f), np.nan, np.float32)
    pad[:H, :W] = a
    blocks = pad.reshape(Hc, f, Wc, f)
    ok = np.isfinite(blocks)
    n = ok.sum(axis=(1, 3))
    s = np.where(ok, blocks, 0).sum(axis=(1, 3), dtype=np.float64)
    full = np.full((Hc, Wc), f * f)
    full[-1, :] = (H - (Hc - 1) * f) * f
    full[:, -1] = f * (W - (Wc - 1) * f)
    full[-1, -1] = (H - (Hc - 1) * f) * (W - (Wc - 1) * f)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(n * 2 >= full, s / np.maximum(n, 1), np.nan)
    return out.astype(np.float32)


def check_max_displacement(value):
    """``value`` as a float >= 0 (0 = off); ParameterError if unusable."""
    if value is None:
        return 0.0
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParameterError("max_displacement must be a number of pixels (got %r)."
                             % (value,)) from None
    if not np.isfinite(v) or v < 0:
        raise ParameterError("max_displacement must be >= 0 pixels (got %r); 0 turns the "
                             "coarse-to-fine search off." % (value,))
    if v > 2000:
        raise ParameterError("max_displacement %g px is more than 2000 px: check the units "
                             "(pixels, or give max_velocity_m_per_day)." % v)
    return v


def is_seeded(params):
    """True when ``params`` ask for a search wider than ``search`` (coarse-to-fine)."""
    return float(params.get("max_displacement") or 0) > int(params["search"])


class SeedField:
    """Filtered coarse displacement field; :meth:`bounds` gives a tile's seed range."""

    def __init__(self, dx, dy, rows, cols, factor, n_valid, n_kept, params):
        self.dx, self.dy = dx, dy            # coarse px, filtered and filled (or zeros)
        self.rows, self.cols = rows, cols    # coarse centres (coarse pixel indices)
        self.factor = int(factor)
        self.n_valid, self.n_kept = int(n_valid), int(n_kept)
        self.params = params                 # coarse correlation parameters

    def bounds(self, y0, y1, x0, x1):
        """Range of the seeds (fine px) that can apply to windows covering image rows
        [y0, y1) and columns [x0, x1): the coarse estimates whose centres lie within one
        coarse step of that area. Returns (dx_min, dx_max, dy_min, dy_max)."""
        f = self.factor
        reach = self.params["step"] * f
        rc = (self.rows + 0.5) * f - 0.5
        cc = (self.cols + 0.5) * f - 0.5
        ri = np.flatnonzero((rc >= y0 - reach) & (rc <= y1 + reach))
        ci = np.flatnonzero((cc >= x0 - reach) & (cc <= x1 + reach))
        if not ri.size:
            ri = np.array([int(np.argmin(np.abs(rc - 0.5 * (y0 + y1))))])
        if not ci.size:
            ci = np.array([int(np.argmin(np.abs(cc - 0.5 * (x0 + x1))))])
        bx = self.dx[ri[0]:ri[-1] + 1, ci[0]:ci[-1] + 1] * f
        by = self.dy[ri[0]:ri[-1] + 1, ci[0]:ci[-1] + 1] * f
        return float(bx.min()), float(bx.max()), float(by.min()), float(by.max())

    @property
    def max_abs_px(self):
        """Largest |seed| in fine pixels (bounds the extra read margin)."""
        if not self.dx.size:
            return 0.0
        return float(max(np.abs(self.dx).max(), np.abs(self.dy).max()) * self.factor)

    def describe(self):
        return ("coarse level 1/%d: %d of %d coarse windows valid, %d kept as seeds; "
                "seeds up to %.1f px" % (self.factor, self.n_valid, self.dx.size, self.n_kept,
                                         self.max_abs_px))


def coarse_params(params, max_displacement, coarse_shape, f):
    """Correlation parameters of the coarse level (dict for :func:`correlate`) at
    reduction factor ``f``."""
    win = max(4, min(COARSE_WINDOW, coarse_shape[0], coarse_shape[1]))
    s = int(math.ceil(float(max_displacement) / f)) + 1
    s = max(1, min(s, max(1, min(coarse_shape) // 2)))
    opts = {k: v for k, v in params.items()
            if k not in ("window", "step", "search", "subpixel", "max_displacement")}
    return dict(opts, window=win, step=min(COARSE_STEP, win), search=s, subpixel="parabola")


def seed_field(coarse_ref, coarse_sec, params, max_displacement, factor):
    """Coarse correlation of reduced images and the filtered seed field."""
    cp = coarse_params(params, max_displacement, coarse_ref.shape, factor)
    res = correlate(coarse_ref, coarse_sec, **cp)
    ok = res.status == STATUS_VALID
    dx = np.where(ok, res.dx, np.nan)
    dy = np.where(ok, res.dy, np.nan)
    keep = _robust(dx, dy) & ok
    return SeedField(_fill(dx, keep), _fill(dy, keep), res.rows, res.cols, factor,
                     ok.sum(), keep.sum(), res.params)


def _robust(dx, dy):
    """Estimates consistent with their 3 x 3 neighbourhood (module doc, step 2)."""
    H, W = dx.shape
    keep = np.isfinite(dx) & np.isfinite(dy)
    if not keep.any():
        return keep
    stacks = []
    for comp in (dx, dy):
        p = np.pad(comp, 1, constant_values=np.nan)
        stacks.append(np.stack([p[1 + a:1 + a + H, 1 + b:1 + b + W]
                                for a in (-1, 0, 1) for b in (-1, 0, 1) if (a, b) != (0, 0)]))
    n_nb = np.isfinite(stacks[0]).sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = [np.nanmedian(np.concatenate([s, c[None]]), axis=0) for s, c in
               zip(stacks, (dx, dy))]
    with np.errstate(invalid="ignore"):
        close = (np.abs(dx - med[0]) <= OUTLIER_COARSE_PX) & \
                (np.abs(dy - med[1]) <= OUTLIER_COARSE_PX)
    return keep & close & (n_nb >= MIN_NEIGHBOURS)


def _fill(a, keep):
    if not keep.any():
        return np.zeros(a.shape, np.float64)
    idx = ndimage.distance_transform_edt(~keep, return_distances=False, return_indices=True)
    return np.asarray(a, np.float64)[idx[0], idx[1]]


def tile_plan(rows_idx, cols_idx):
    """Tiles of the fine grid: list of (row slice, col slice) over the given global
    centre indices, cut at multiples of TILE_ROWS / TILE_COLS."""
    def cuts(idx, t):
        idx = np.asarray(idx)
        if not idx.size:
            return []
        tid = idx // t
        bounds = np.flatnonzero(np.diff(tid)) + 1
        edges = np.concatenate([[0], bounds, [idx.size]])
        return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]
    return [(rs, cs) for rs in cuts(rows_idx, TILE_ROWS) for cs in cuts(cols_idx, TILE_COLS)]


def _crop(a, origin, y0, y1, x0, x1):
    """``a[y0:y1, x0:x1]`` in image coordinates (``a[0, 0]`` is image pixel ``origin``),
    NaN where ``a`` does not reach."""
    r0, c0 = origin
    out = np.full((y1 - y0, x1 - x0), np.nan, np.float32)
    ay0, ay1 = max(y0 - r0, 0), min(y1 - r0, a.shape[0])
    ax0, ax1 = max(x0 - c0, 0), min(x1 - c0, a.shape[1])
    if ay1 > ay0 and ax1 > ax0:
        out[ay0 - (y0 - r0):ay1 - (y0 - r0), ax0 - (x0 - c0):ax1 - (x0 - c0)] = \
            a[ay0:ay1, ax0:ax1]
    return out


def tile_search(bounds, params):
    """(Sy, Sx, search) of one tile from the range of its seeds (module doc, step 3):
    the fine search of ``search`` px around every seed of the range."""
    x0, x1, y0, y1 = bounds
    Sx, Sy = int(round(0.5 * (x0 + x1))), int(round(0.5 * (y0 + y1)))
    spread = max(x1 - Sx, Sx - x0, y1 - Sy, Sy - y0, 0.0)
    cap = float(params.get("max_displacement") or 0)
    return Sy, Sx, int(params["search"]) + int(math.ceil(min(spread, cap)))


def needed_margin(params, max_seed_px):
    """Rows/columns of raw image to hold around a block of windows for the fine level."""
    cap = float(params.get("max_displacement") or 0)
    extra = int(math.ceil(min(max_seed_px, cap)))
    p = dict(params, search=int(params["search"]) + extra)
    return read_margin(p) + int(math.ceil(max_seed_px)) + 1


def correlate_seeded(ref, sec, origin, rows, cols, row_idx, col_idx, image_shape, seeds,
                     params, progress=None, with_footprint=False):
    """Fine level over arrays ``ref``/``sec`` whose pixel (0, 0) is image pixel ``origin``
    (raw values, NaN = invalid; they must reach :func:`needed_margin` around the windows,
    beyond that the image is treated as invalid). ``rows``/``cols``: window centres (image
    pixels), ``row_idx``/``col_idx`` their indices in the global centre grid (tiling).
    ``seeds``: the pair's :class:`SeedField`. Returns dx, dy, ncc, snr, status (+ the
    window footprint with ``with_footprint``, see :func:`.correlation.correlate_raw`).
    """
    h, w = params["window"]
    H, W = image_shape
    shape = (len(rows), len(cols))
    dx = np.full(shape, np.nan)
    dy = np.full(shape, np.nan)
    ncc = np.full(shape, np.nan)
    snr = np.full(shape, np.nan)
    status = np.zeros(shape, np.int8)
    foot = np.ones(shape, np.float32)
    tiles = list(tile_plan(row_idx, col_idx))
    done = 0
    while tiles:
        rs, cs = tiles.pop()
        if progress is not None and done % 8 == 0:
            progress.check()
        r = np.asarray(rows[rs], np.int64)
        c = np.asarray(cols[cs], np.int64)
        y0, y1 = int(r[0]) - h // 2, int(r[-1]) - h // 2 + h
        x0, x1 = int(c[0]) - w // 2, int(c[-1]) - w // 2 + w
        Sy, Sx, s_t = tile_search(seeds.bounds(y0, y1, x0, x1), params)
        nr, nc = rs.stop - rs.start, cs.stop - cs.start
        if s_t - int(params["search"]) > SPLIT_SPREAD_PX and max(nr, nc) > MIN_TILE:
            # the seeds vary a lot inside the tile (shear margin): halve it, so that the
            # wide search is paid only where the motion changes
            if nr >= nc:
                mid = rs.start + nr // 2
                tiles += [(slice(rs.start, mid), cs), (slice(mid, rs.stop), cs)]
            else:
                mid = cs.start + nc // 2
                tiles += [(rs, slice(cs.start, mid)), (rs, slice(mid, cs.stop))]
            continue
        done += 1
        p = dict(params, search=s_t)
        m = read_margin(p)
        rc = _crop(ref, origin, y0 - m, y1 + m, x0 - m, x1 + m)
        sc = _crop(sec, origin, y0 - m + Sy, y1 + m + Sy, x0 - m + Sx, x1 + m + Sx)
        # image pixels outside the image are invalid in both (NaN), whatever the arrays hold
        _blank_outside(rc, y0 - m, x0 - m, H, W)
        _blank_outside(sc, y0 - m + Sy, x0 - m + Sx, H, W)
        tdx, tdy, tncc, tsnr, tst, tft = correlate_raw(rc, sc, r - y0, c - x0,
                                                       (y1 - y0, x1 - x0), 0, p,
                                                       with_footprint=True)
        tdx, tdy = tdx + Sx, tdy + Sy
        if max(abs(Sx), abs(Sy)) > s_t - int(params["search"]):
            # zero is not in the seeded range: stable ground stays a candidate (a coarse
            # window straddling a margin can hand a moving body's seed to stable ground);
            # per window, the better valid NCC peak wins
            p0 = dict(params)
            m0 = read_margin(p0)
            rc0 = _crop(rc, (y0 - m, x0 - m), y0 - m0, y1 + m0, x0 - m0, x1 + m0)
            sc0 = _crop(sec, origin, y0 - m0, y1 + m0, x0 - m0, x1 + m0)
            _blank_outside(sc0, y0 - m0, x0 - m0, H, W)
            z = correlate_raw(rc0, sc0, r - y0, c - x0, (y1 - y0, x1 - x0), 0, p0,
                              with_footprint=True)
            # the zero candidate wins only with a valid and higher peak than the seeded
            # one, whether or not the seeded peak passed the tests: a seeded peak that is
            # higher but ambiguous must not hand the window to a false zero-side match
            with np.errstate(invalid="ignore"):
                use0 = (z[4] == STATUS_VALID) & ~(tncc >= z[2])
            tdx, tdy = np.where(use0, z[0], tdx), np.where(use0, z[1], tdy)
            tncc, tsnr = np.where(use0, z[2], tncc), np.where(use0, z[3], tsnr)
            tst = np.where(use0, z[4], tst)
            tft = np.where(use0, z[5], tft)
        dx[rs, cs] = tdx
        dy[rs, cs] = tdy
        ncc[rs, cs] = tncc
        snr[rs, cs] = tsnr
        status[rs, cs] = tst
        foot[rs, cs] = tft
    top = np.asarray(rows, np.int64) - h // 2
    left = np.asarray(cols, np.int64) - w // 2
    out_r = (top < 0) | (top + h > H)
    out_c = (left < 0) | (left + w > W)
    outside = out_r[:, None] | out_c[None, :]
    status[outside] = STATUS_OUTSIDE
    bad = status != STATUS_VALID
    dx[bad] = np.nan
    dy[bad] = np.nan
    return (dx, dy, ncc, snr, status) + ((foot,) if with_footprint else ())


def _blank_outside(a, y0, x0, H, W):
    """Set pixels of crop ``a`` (image pixel (y0, x0) at [0, 0]) outside [0,H)x[0,W) NaN."""
    if y0 < 0:
        a[:min(-y0, a.shape[0])] = np.nan
    if y0 + a.shape[0] > H:
        a[max(H - y0, 0):] = np.nan
    if x0 < 0:
        a[:, :min(-x0, a.shape[1])] = np.nan
    if x0 + a.shape[1] > W:
        a[:, max(W - x0, 0):] = np.nan


def correlate_in_memory(ref, sec, rows, cols, params, progress=None):
    """Coarse-to-fine correlation of whole images (float32, NaN = invalid).

    Returns (dx, dy, ncc, snr, status, seed_field). Used by
    :func:`slidewatch.core.matching.correlation.correlate` when ``max_displacement > search``.
    """
    D = float(params["max_displacement"])
    H, W = ref.shape
    f = reduction_factor(D, params["search"])
    seeds = seed_field(block_mean(ref, f), block_mean(sec, f), params, D, f)
    step = int(params["step"])
    rows = np.asarray(rows, np.int64)
    cols = np.asarray(cols, np.int64)
    # tiles follow the default centre grid when the centres are on it, else their order
    row_idx = _grid_index(rows, step)
    col_idx = _grid_index(cols, step)
    out = correlate_seeded(ref, sec, (0, 0), rows, cols, row_idx, col_idx, (H, W), seeds,
                           params, progress)
    return out + (seeds,)


def _grid_index(centres_px, step):
    c = np.asarray(centres_px, np.int64)
    k = (c - step // 2) // step
    if c.size and np.array_equal(c, k * step + step // 2) and np.all(np.diff(k) > 0):
        return k
    return np.arange(c.size, dtype=np.int64)
