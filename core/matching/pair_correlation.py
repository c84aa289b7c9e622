"""Block-wise raster driver: two co-registered rasters -> ``pairs/pair_YYYYMMDD_YYYYMMDD.tif``.

The output (SPEC) has bands ``east_m, north_m, ncc, snr, status`` on the grid of window
centres: output cell (k, q) covers source pixels ``[k*step, (k+1)*step) x [q*step,
(q+1)*step)`` (transform = source transform scaled by ``step``) and its window is centred
on source pixel ``(k*step + step//2, q*step + step//2)``, exactly the default centres of
:func:`slidewatch.core.matching.correlation.correlate`.

Memory is bounded whatever the raster size: rows of window centres are processed in
blocks; each block reads the source rows it needs plus a halo of
``window/2 + search + refinement margin + prefilter support`` rows (NaN beyond the image,
exactly like the padding of the in-memory :func:`correlate`), so the tiled result is
bit-identical to the untiled one. Between blocks ``progress.check()`` lets the user cancel;
the output is written under a temporary name and renamed only when complete.

Pixels -> metres: ``east = a*dx + b*dy``, ``north = d*dx + e*dy`` with the source affine
``(a, b, c, d, e, f)`` (north-up: ``east = dx*xres``, ``north = -dy*|yres|``).

Stable-ground correction (``stable="median"``): the median dx, dy of valid windows over
stable ground is subtracted (co-registration offset); the medians are written to the tags.
Stable ground is where ``stable_mask`` is non-zero, or without a mask the tightest cluster
of displacement vectors nearest zero (:mod:`.stable_offset`): the median of the whole
image was the motion itself when a glacier filled most of it. When no such cluster exists
(the scene moves everywhere) nothing is removed and the log says so.
``stable="plane"``: a robust plane ``d = c0 + c1*col + c2*row`` (col/row: source pixel of
the window centre) is fitted per axis to the valid stable windows (those with ncc >= 0.6
when there are enough of them) with iterative 3-sigma (MAD) outlier rejection and
subtracted: it also removes the small rotation/scale part of the co-registration error
(on the real Sentinel-2 pair a trend of ~0.2 px in dy across the scene). The coefficients
are written to the tags (``STABLE_PLANE_DX_PX``/``STABLE_PLANE_DY_PX``).
"""

import json
import math
import os
from dataclasses import dataclass, field

import numpy as np

from .correlation import (COHERENCE_RADIUS, STATUS_MEANINGS, STATUS_VALID, coherence_filter,
                          correlate_raw,
                          normalize_params,
                          read_margin)
from .correlation_kernels import ROW_GROUP
from .correlation_params import CorrelationParams, DRIVER_DEFAULTS as _DRIVER_DEFAULTS, \
    STABLE_MODES as _STABLE_MODES
from . import seeded_search as seeded
from ..errors import InputError, OutputError, ParameterError
from ..input_checks import check_window_search
from ..network import pairs_file
from .stable_offset import MIN_SHARE as STABLE_MIN_SHARE, stable_offset
from .. import products as prod
from ..progress import as_progress
from ..raster_io import GTIFF_FLOAT_OPTIONS, atomic_output, temporary_name

#: bands of a pair raster (:data:`.products.PAIR_BANDS`)
BANDS = prod.PAIR_BANDS

#: Parameters of the driver itself (the rest are correlation options) and the
#: stable-ground corrections (none, constant median offset, robust plane): defined with the
#: correlation's parameters (:mod:`.correlation_params`, importable without numba).
DRIVER_DEFAULTS = _DRIVER_DEFAULTS
STABLE_MODES = _STABLE_MODES

#: Windows with at least this NCC are preferred for the plane fit (if >= PLANE_MIN_N).
PLANE_MIN_NCC = 0.6
PLANE_MIN_N = 50

#: Recommended settings for Sentinel-2 10 m pairs (real null pair of ../shared/data, see
#: docs/benchmarks.md "Correlation core (issue 3)"): 68th percentile of the residual on
#: clear ground 0.083 px with these, 0.120 px at window 32, 0.234 px with the old
#: defaults (no prefilter, median). ``correlate``'s own defaults already include the
#: gaussian_hp prefilter; window 64 and stable="plane" must be asked for.
SENTINEL2_RECOMMENDED = dict(window=64, step=8, search=8, prefilter="gaussian_hp",
                             prefilter_options={"sigma": 1.0}, stable="plane")

#: Options accepted but not part of the result's identity (do not change the numbers).
_EXECUTION_OPTIONS = ("block_rows", "memory_mb", "reference_date", "secondary_date")

PARAMS_TAG = prod.TAG_PARAMS
FORMAT_VERSION = 1


# ------------------------------------------------------------------------- parameters
def pair_params(**kwargs):
    """Canonical, JSON-able dict of every parameter that determines a pair raster.

    Accepts the correlation options of :func:`~slidewatch.core.matching.correlation.correlate`
    (window, step, search, subpixel, prefilter, ...) and the driver's ``band``,
    ``zero_is_nodata``, ``stable`` ("none" or "median"), ``stable_mask`` (path or None).
    """
    kw = {k: v for k, v in kwargs.items() if k not in _EXECUTION_OPTIONS}
    drv = dict(DRIVER_DEFAULTS)
    for k in list(kw):
        if k in DRIVER_DEFAULTS:
            drv[k] = kw.pop(k)
    window = kw.pop("window", CorrelationParams.window)
    step = kw.pop("step", CorrelationParams.step)
    search = kw.pop("search", CorrelationParams.search)
    corr = normalize_params(window, step, search, **kw)
    if drv["stable"] not in STABLE_MODES:
        raise ParameterError("stable must be one of %s (got %r)."
                             % (", ".join(STABLE_MODES), drv["stable"]))
    drv["band"] = int(drv["band"])
    if drv["band"] < 1:
        raise ParameterError("band must be >= 1 (got %d)." % drv["band"])
    drv["zero_is_nodata"] = bool(drv["zero_is_nodata"])
    drv["max_velocity_m_per_day"] = _check_velocity(drv["max_velocity_m_per_day"])
    if drv["stable_mask"] is not None and not isinstance(drv["stable_mask"], str):
        drv["stable_mask"] = "<array>"
    params = dict(corr, **drv)
    params["format_version"] = FORMAT_VERSION
    return json.loads(json.dumps(params, sort_keys=True))


def _check_velocity(v):
    if v is None or v == "" or v == 0:
        return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise ParameterError("max_velocity_m_per_day must be a number of metres per day "
                             "(got %r)." % (v,)) from None
    if not np.isfinite(v) or v < 0:
        raise ParameterError("max_velocity_m_per_day must be >= 0 (got %r); 0 or empty "
                             "turns it off." % (v,))
    return v


def effective_max_displacement(corr, max_velocity_m_per_day, ref_date, sec_date,
                               transform):
    """Largest displacement to look for (px): ``max_displacement`` or the motion that
    ``max_velocity_m_per_day`` gives over the pair's baseline (whichever is larger)."""
    d = float(corr.get("max_displacement") or 0)
    if max_velocity_m_per_day:
        import datetime as _dt
        try:
            days = abs((_dt.date.fromisoformat(sec_date) -
                        _dt.date.fromisoformat(ref_date)).days)
        except (TypeError, ValueError):
            raise InputError("max_velocity_m_per_day needs the pair's dates: give "
                             "reference_date/secondary_date or name the output "
                             "pair_YYYYMMDD_YYYYMMDD.tif.") from None
        pixel = min(abs(transform.a), abs(transform.e)) or 1.0
        d = max(d, max_velocity_m_per_day * days / pixel)
    return d


def pair_output_is_current(path, params):
    """True if ``path`` is a complete pair raster computed with the same parameters.

    ``params``: the keyword arguments the pair would be computed with (defaults filled
    in the same way as :func:`correlate_pair_rasters`). Used to resume a list of pairs.
    """
    if not os.path.isfile(path):
        return False
    try:
        import rasterio
        with rasterio.open(path) as src:
            stored = src.tags().get(PARAMS_TAG)
            descr = tuple(src.descriptions)
    except Exception:
        return False
    if not stored or descr != BANDS:
        return False
    try:
        want = pair_params(**dict(params))
        have = json.loads(stored).get("params")
    except (ValueError, ParameterError, AttributeError):
        return False
    return have == want


def pair_output_name(reference_date, secondary_date):
    """``pair_YYYYMMDD_YYYYMMDD.tif`` from two ISO dates (:func:`.products.pair_file_name`)."""
    return prod.pair_file_name(reference_date, secondary_date)


def _dates_for(out_path, ref_path, sec_path, ref_date, sec_date):
    named = prod.parse_pair_name(out_path)
    if ref_date is None and named:
        ref_date = named[0]
    if sec_date is None and named:
        sec_date = named[1]

    def iso(d, path):
        if d is None:
            from ..stack.dates import date_from_path
            parsed = date_from_path(path)
            return parsed.iso if getattr(parsed, "ok", False) else ""
        d = str(d).replace("-", "")
        return "%s-%s-%s" % (d[:4], d[4:6], d[6:8]) if len(d) >= 8 else str(d)

    return iso(ref_date, ref_path), iso(sec_date, sec_path)


# ------------------------------------------------------------------------- reading
def _open(path):
    import rasterio
    try:
        return rasterio.open(path)
    except Exception as exc:
        raise InputError("Cannot open raster '%s': %s. Check that it exists and is a "
                         "readable raster." % (path, exc)) from exc


def read_rows_padded(src, band, row0, row1, margin, zero_is_nodata):
    """Rows [row0, row1) of ``band`` with ``margin`` columns of NaN on each side; rows
    outside the raster are NaN. float32, nodata (and 0 if asked) -> NaN."""
    from rasterio.windows import Window
    H, W = src.height, src.width
    out = np.full((row1 - row0, W + 2 * margin), np.nan, np.float32)
    r0 = max(row0, 0)
    r1 = min(row1, H)
    if r1 > r0:
        a = src.read(band, window=Window(0, r0, W, r1 - r0)).astype(np.float32)
        nod = src.nodata
        bad = ~np.isfinite(a)
        if nod is not None and not np.isnan(nod):
            bad |= a == np.float32(nod)
        if zero_is_nodata:
            bad |= a == 0
        a[bad] = np.nan
        out[r0 - row0:r1 - row0, margin:margin + W] = a
    return out


def _check_same_grid(rs, ss, ref_path, sec_path):
    if (rs.width, rs.height) != (ss.width, ss.height) or not rs.transform.almost_equals(
            ss.transform, precision=1e-6 * max(abs(rs.transform.a), 1e-9)):
        raise InputError(
            "'%s' (%d x %d) and '%s' (%d x %d) are not on the same grid (size or "
            "geotransform differ). Bring the secondary onto the reference grid first "
            "(common grid step of the pipeline, or pair_correlation.reproject_to_grid)."
            % (ref_path, rs.width, rs.height, sec_path, ss.width, ss.height))
    if rs.crs and ss.crs and rs.crs != ss.crs:
        raise InputError("'%s' and '%s' have different CRS (%s vs %s). Reproject them onto "
                         "a common grid first." % (ref_path, sec_path, rs.crs, ss.crs))


def _stable_mask_reader(stable_mask, height, width):
    """Function rows, cols -> bool array (True = stable) or None (whole image). Window
    centres past the last pixel (the default grid's last centre may be) read the last
    pixel; their windows are outside the image and never valid anyway."""
    if stable_mask is None:
        return None
    if isinstance(stable_mask, np.ndarray):
        m = np.asarray(stable_mask)
        if m.shape != (height, width):
            raise InputError("stable_mask array has shape %s, the rasters %s." %
                             (m.shape, (height, width)))
        def read_array(rows, cols):
            v = m[np.ix_(np.minimum(rows, height - 1), np.minimum(cols, width - 1))]
            return (v != 0) & np.isfinite(v)
        return read_array
    src = _open(stable_mask)
    if (src.width, src.height) != (width, height):
        raise InputError("Stable-ground mask '%s' (%d x %d) is not on the grid of the images "
                         "(%d x %d). Resample it onto the common grid." %
                         (stable_mask, src.width, src.height, width, height))

    def read(rows, cols):
        from rasterio.windows import Window
        rows = np.minimum(rows, height - 1)
        cols = np.minimum(cols, width - 1)
        r0, r1 = int(rows.min()), int(rows.max()) + 1
        a = src.read(1, window=Window(0, r0, width, r1 - r0))[rows - r0][:, cols]
        return np.isfinite(a) & (a != 0) & ((src.nodata is None) | (a != (src.nodata or 0)))

    read.close = src.close
    return read


def _auto_block_rows(params, width, memory_mb):
    # bytes per output row: step source rows x padded width x (2 images x ~6 float64
    # temporaries of the prefilter) -- conservative
    step = params["step"]
    per_row = step * (width + 2 * read_margin(params)) * 2 * 6 * 8
    halo = (params["window"][0] + 2 * read_margin(params)) * width * 2 * 6 * 8
    rows = int((memory_mb * 2 ** 20 - halo) // max(per_row, 1))
    return max(1, min(rows, 512))


# ------------------------------------------------------------------------- driver
def _rows_of(blocks, first):
    """(dx, dy, snr, status) of the first / last COHERENCE_RADIUS rows of windows of the
    raw results of consecutive ``blocks`` (None when there are none)."""
    if not blocks:
        return None
    R = COHERENCE_RADIUS
    parts = [tuple(blk[3][i] for i in (0, 1, 3, 4)) for blk in blocks]
    cat = [np.vstack([p[i] for p in parts]) for i in range(4)]
    return tuple((a[:R] if first else a[-R:]).copy() for a in cat)


def _emit_ready(pending, above, emit, final_block):
    """Emit the pending blocks whose COHERENCE_RADIUS rows below are computed (all of
    them with ``final_block``); returns the rows above the next pending block."""
    while pending:
        below_rows = sum(len(blk[2]) for blk in pending[1:])
        if below_rows < COHERENCE_RADIUS and not final_block:
            break
        below = _rows_of(pending[1:], first=True)
        own = _rows_of(pending[:1], first=False)
        above_next = own if above is None else tuple(
            np.vstack([a, b])[-COHERENCE_RADIUS:] for a, b in zip(above, own))
        emit(*pending[0], above, below)
        pending.pop(0)
        above = above_next
    return above


def correlate_pair_rasters(reference_path, secondary_path, output_path, progress=None,
                           block_rows=None, memory_mb=256, reference_date=None,
                           secondary_date=None, **params):
    """Correlate two rasters on a common grid into the pair GeoTIFF ``output_path``.

    Parameters
    ----------
    reference_path, secondary_path : rasters on the same grid (size, transform, CRS)
    output_path : the pair raster (conventionally ``pairs/pair_YYYYMMDD_YYYYMMDD.tif``)
    progress : core Progress (cancel between blocks)
    block_rows : output rows per block (default: from ``memory_mb``; rounded up to a
        multiple of ``ROW_GROUP``)
    reference_date, secondary_date : ISO dates for the tags (default: from the output
        name ``pair_YYYYMMDD_YYYYMMDD``, else from the input names/tags)
    **params : correlation options (window, step, search, subpixel, prefilter, ...)
        and ``band`` (1), ``zero_is_nodata`` (True: 0 is nodata, as in Sentinel-2 L1C),
        ``stable`` ("none" | "median"), ``stable_mask`` (raster path on the grid,
        non-zero = stable, or a 2-D array; default whole image)

    Returns a dict: path, n_windows, n_valid, valid_fraction, median_dx_px, median_dy_px,
    n_stable, status_counts.
    """
    run = _pair_run(reference_path, secondary_path, output_path, reference_date,
                    secondary_date, params, as_progress(progress))
    run.rs = _open(reference_path)
    run.ss = _open(secondary_path)
    try:
        _check_pair(run)
        _window_grid(run, block_rows, memory_mb)
        _search_plan(run)
        run.stable_read = _stable_mask_reader(run.params.get("stable_mask"), run.H, run.W)
        _write_pair(run)
        if run.stable_read is not None and hasattr(run.stable_read, "close"):
            run.stable_read.close()
    finally:
        run.rs.close()
        run.ss.close()
    run.progress.update(1.0, "correlation: done")
    return _pair_result(run)


@dataclass
class _PairRun:
    """What the phases of one :func:`correlate_pair_rasters` call share and fill in, in
    order: :func:`_pair_run`, :func:`_check_pair`, :func:`_window_grid`,
    :func:`_search_plan`, :func:`_write_pair` (:func:`_write_blocks`, then
    :func:`_correct_stable_ground` with ``stable`` "median" or "plane"),
    :func:`_pair_result`."""

    reference_path: str
    secondary_path: str
    params: dict                # the caller's options, as given
    tag_params: dict            # :func:`pair_params`: what identifies the result (tags)
    corr: dict                  # normalised correlation options
    ref_date: str
    sec_date: str
    final: str                  # absolute path of the output
    progress: object
    rs: object = None           # open reference / secondary rasters
    ss: object = None
    # grid of window centres (_window_grid)
    H: int = 0
    W: int = 0
    T: object = None
    out_h: int = 0
    out_w: int = 0
    rows_all: np.ndarray = None
    cols: np.ndarray = None
    block_rows: int = 0
    sub_stride: int = 1
    # search (_search_plan)
    seeds: object = None
    rm: int = 0                 # source rows/columns read around a block
    stable_read: object = None  # :func:`_stable_mask_reader`
    # statistics and stable-ground samples (_write_block)
    n_valid: int = 0
    status_counts: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))
    samples_dx: list = field(default_factory=list)
    samples_dy: list = field(default_factory=list)
    samples_r: list = field(default_factory=list)
    samples_c: list = field(default_factory=list)
    samples_ncc: list = field(default_factory=list)
    # stable-ground correction (_correct_stable_ground)
    med_dx: float = float("nan")
    med_dy: float = float("nan")
    n_stable: int = 0
    plane: dict = None
    footprint: np.ndarray = None    # window footprints (_write_block, _write_footprint)

    @property
    def band(self):
        return self.tag_params["band"]

    @property
    def zero_nod(self):
        return self.tag_params["zero_is_nodata"]

    @property
    def stable(self):
        return self.tag_params["stable"]

    @property
    def step(self):
        return self.corr["step"]


def _pair_run(reference_path, secondary_path, output_path, reference_date, secondary_date,
              params, progress):
    """The checked parameters (ParameterError if one is wrong) and the pair's dates, as a
    new :class:`_PairRun`."""
    tag_params = pair_params(**params)
    corr = normalize_params(params.get("window", CorrelationParams.window),
                            params.get("step", CorrelationParams.step),
                            params.get("search", CorrelationParams.search),
                            **{k: v for k, v in params.items()
                               if k not in DRIVER_DEFAULTS and k not in
                               ("window", "step", "search")})
    ref_date, sec_date = _dates_for(output_path, reference_path, secondary_path,
                                    reference_date, secondary_date)
    return _PairRun(reference_path, secondary_path, params, tag_params, corr, ref_date,
                    sec_date, os.path.abspath(output_path), progress)


def _check_pair(run):
    """InputError unless both rasters have the band, share one grid and are large enough
    for the window and search."""
    band = run.band
    for src, p in ((run.rs, run.reference_path), (run.ss, run.secondary_path)):
        if band > src.count:
            raise InputError("'%s' has %d band(s); band %d does not exist. Choose a "
                             "band between 1 and %d." % (p, src.count, band, src.count))
    _check_same_grid(run.rs, run.ss, run.reference_path, run.secondary_path)
    check_window_search((run.rs.height, run.rs.width), run.corr["window"],
                        run.corr["search"], run.reference_path)


def _window_grid(run, block_rows, memory_mb):
    """The source size and transform, the output grid of window centres (``rows_all``,
    ``cols``), the sampling stride of the stable-ground samples, and ``block_rows``
    (from ``memory_mb`` when None; rounded by :func:`_search_plan`)."""
    step = run.step
    run.H, run.W = run.rs.height, run.rs.width
    run.T = run.rs.transform
    run.out_h = -(-run.H // step)
    run.out_w = -(-run.W // step)
    run.rows_all = np.arange(run.out_h, dtype=np.int64) * step + step // 2
    run.cols = np.arange(run.out_w, dtype=np.int64) * step + step // 2
    if block_rows is None:
        block_rows = _auto_block_rows(run.corr, run.W, memory_mb)
    run.block_rows = block_rows
    run.sub_stride = max(1, int(math.ceil(run.out_h * run.out_w / 4e6)))


def _search_plan(run):
    """``corr["max_displacement"]`` for the pair (:func:`effective_max_displacement`), the
    coarse seeds when the search follows the motion (coarse-to-fine), ``block_rows``
    rounded to whole row groups and the read margin ``rm``."""
    corr = run.corr
    # whole chunks of the shared integer search (correlation.row_groups): blocks
    # start at multiples of ROW_GROUP rows, so tiled results equal untiled ones
    g = ROW_GROUP
    corr["max_displacement"] = effective_max_displacement(
        corr, run.tag_params["max_velocity_m_per_day"], run.ref_date, run.sec_date, run.T)
    if seeded.is_seeded(corr):
        # coarse-to-fine: seeds from a reduced pair, tiles of TILE_ROWS centre rows
        g = int(np.lcm(ROW_GROUP, seeded.TILE_ROWS))
        run.seeds = _coarse_seeds(run.rs, run.ss, run.band, run.zero_nod, corr,
                                  run.progress)
        run.progress.info("correlation: search follows the motion up to %.1f px (%s)"
                          % (corr["max_displacement"], run.seeds.describe()))
    run.block_rows = -(-max(1, int(run.block_rows)) // g) * g
    run.rm = read_margin(corr) if run.seeds is None else seeded.needed_margin(
        corr, run.seeds.max_abs_px)


def _write_pair(run):
    """The pair raster, written under a temporary name and renamed when complete: the
    blocks (:func:`_write_blocks`), then with a stable-ground correction a corrected
    copy of that first stage (:func:`_correct_stable_ground`), the stage removed. The
    windows' footprints go to the pair's footprint raster
    (:func:`.products.pair_footprint_path`, :func:`_write_footprint`), written once the
    blocks are (before the pair raster is renamed)."""
    with atomic_output(run.final) as tmp:
        stage = tmp if run.stable == "none" else temporary_name(run.final)
        try:
            _write_blocks(run, stage)
            _write_footprint(run)
            if run.stable != "none":
                _correct_stable_ground(run, stage, tmp)
        except BaseException:
            _remove_footprint(run.final)
            raise
        finally:
            if stage != tmp:
                for p in (stage, stage + ".aux.xml"):
                    try:
                        os.remove(p)
                    except OSError:
                        pass


def _remove_footprint(final):
    """Remove the footprint raster of a pair that failed or was cancelled after it was
    written, and its folder when that leaves it empty (nothing is left behind)."""
    path = prod.pair_footprint_path(final)
    for p, remove in ((path, os.remove), (os.path.dirname(path), os.rmdir)):
        try:
            remove(p)
        except OSError:
            pass


def _output_profile(run):
    """GeoTIFF profile of the pair raster (float32 bands on the grid of window centres;
    striped when smaller than 256 x 256)."""
    from affine import Affine
    profile = dict(GTIFF_FLOAT_OPTIONS, height=run.out_h, width=run.out_w, count=len(BANDS),
                   dtype="float32", crs=run.rs.crs, transform=run.T * Affine.scale(run.step),
                   nodata=np.nan)
    if run.out_h < 256 or run.out_w < 256:
        profile.update(tiled=False)
        profile.pop("blockxsize"), profile.pop("blockysize")
    return profile


def _write_blocks(run, path):
    """Correlate the blocks of window rows in order (cancellable between blocks) and write
    them to ``path`` with the band descriptions and tags (:func:`_describe`); their window
    footprints are kept in ``run.footprint``.

    A block is written once the COHERENCE_RADIUS rows of windows below it are computed:
    the coherence decision of its last rows needs them (and the rows above, kept in
    ``above``), see :func:`_emit_ready`.
    """
    import rasterio
    progress = run.progress
    nblocks = -(-run.out_h // run.block_rows)
    share = 0.9 if run.stable != "none" else 1.0  # the rest: the stable-ground copy
    with rasterio.Env(GDAL_CACHEMAX=128):
        with rasterio.open(path, "w", **_output_profile(run)) as dst:
            def emit(k0, k1, rows, raw, above, below):
                _write_block(run, dst, k0, k1, rows, raw, above, below)

            pending, above = [], None
            for b in range(nblocks):
                progress.check()
                pending.append(_correlate_block(run, b))
                above = _emit_ready(pending, above, emit, final_block=False)
                progress.update((b + 1) / nblocks * share,
                                "correlation: block %d/%d" % (b + 1, nblocks))
            _emit_ready(pending, above, emit, final_block=True)
            _describe(dst, run.ref_date, run.sec_date, run.tag_params, run.corr, run.T)


def _write_footprint(run):
    """The pair's window footprints ``run.footprint`` (one per window, NaN where not valid)
    saved beside it (:func:`.footprint.save_pair_footprint`); the inversion writes their
    georeferenced mean, timeseries/footprint.tif. A write failure names the pair raster
    too (its output is the pair's)."""
    from ..detect.footprint import save_pair_footprint
    if run.footprint is None:
        run.footprint = np.full((run.out_h, run.out_w), np.nan, np.float32)
    try:
        save_pair_footprint(run.final, run.footprint)
    except OutputError as exc:
        raise OutputError("%s (window footprints of the pair raster '%s')"
                          % (exc, run.final)) from exc


def _correlate_block(run, b):
    """Raw correlation of block ``b`` (output rows ``k0:k1``): reads the source rows it
    needs plus the halo ``rm`` and returns ``(k0, k1, rows, (dx, dy, ncc, snr, status))``
    before the coherence decision."""
    k0 = b * run.block_rows
    k1 = min(run.out_h, k0 + run.block_rows)
    rows = run.rows_all[k0:k1]
    h, rm, corr = run.corr["window"][0], run.rm, run.corr
    src_r0 = int(rows[0]) - h // 2 - rm
    src_r1 = int(rows[-1]) - h // 2 + h + rm
    ref_blk = read_rows_padded(run.rs, run.band, src_r0, src_r1, rm, run.zero_nod)
    sec_blk = read_rows_padded(run.ss, run.band, src_r0, src_r1, rm, run.zero_nod)
    if run.seeds is not None:
        raw = seeded.correlate_seeded(
            ref_blk, sec_blk, (src_r0, -rm), rows, run.cols,
            np.arange(k0, k1), np.arange(run.out_w), (run.H, run.W),
            run.seeds, corr, run.progress, with_footprint=True)
    else:
        raw = correlate_raw(
            ref_blk, sec_blk, rows, run.cols, (run.H, run.W), src_r0 + rm, corr,
            with_footprint=True)
    return k0, k1, rows, tuple(raw)


def _write_block(run, dst, k0, k1, rows, raw, above, below):
    """Coherence decision of one block (needs the raw rows ``above`` and ``below`` it),
    its statistics and stable-ground samples, and the write of its bands to ``dst`` (its
    window footprints into ``run.footprint``)."""
    import rasterio
    dx, dy, ncc, snr, status, foot = raw
    coherence_filter(dx, dy, snr, status, run.corr, above=above, below=below)
    ok = status == STATUS_VALID
    run.n_valid += int(ok.sum())
    run.status_counts += np.bincount(status.ravel().astype(np.int64), minlength=256)[:256]
    if run.stable != "none":
        sel = ok if run.stable_read is None else ok & run.stable_read(rows, run.cols)
        _add_stable_samples(run, rows, sel, dx, dy, ncc)
    east, north = _to_metres(dx, dy, run.T)
    win = rasterio.windows.Window(0, k0, run.out_w, k1 - k0)
    for i, arr in enumerate((east, north, ncc, snr, status), start=1):
        dst.write(arr.astype(np.float32), i, window=win)
    if run.footprint is None:
        run.footprint = np.full((run.out_h, run.out_w), np.nan, np.float32)
    run.footprint[k0:k1] = np.where(ok, foot, np.float32(np.nan))


def _add_stable_samples(run, rows, sel, dx, dy, ncc):
    """Keep every ``sub_stride``-th selected window of a block (dx, dy; with "plane" also
    its source row, column and ncc) for the stable-ground correction."""
    s = run.sub_stride
    run.samples_dx.append(dx[sel][::s].astype(np.float32))
    run.samples_dy.append(dy[sel][::s].astype(np.float32))
    if run.stable == "plane":
        rr, cc = np.broadcast_arrays(rows[:, None], run.cols[None, :])
        run.samples_r.append(rr[sel][::s].astype(np.float32))
        run.samples_c.append(cc[sel][::s].astype(np.float32))
        run.samples_ncc.append(ncc[sel][::s].astype(np.float32))


def _correct_stable_ground(run, stage, tmp):
    """Stable-ground correction (module doc): from the samples, ``n_stable``, the median
    offset and with "plane" the fitted plane; ``stage`` copied to ``tmp`` with them
    subtracted (:func:`_apply_offset`) and the STABLE_GROUND tag set. A pair without any
    valid window is moved to ``tmp`` unchanged; valid windows but none over stable ground
    is an InputError."""
    import rasterio
    sdx = np.concatenate(run.samples_dx) if run.samples_dx else np.zeros(0)
    sdy = np.concatenate(run.samples_dy) if run.samples_dy else np.zeros(0)
    run.n_stable = int(sdx.size)
    if run.n_stable == 0 and run.n_valid == 0:
        # nothing valid at all (e.g. a fully clouded date): the pair stays
        # all-NaN with its status codes; there is no offset to remove
        run.progress.info("correlation: no valid window in '%s' / '%s'; no "
                          "stable-ground correction needed"
                          % (run.reference_path, run.secondary_path))
        os.replace(stage, tmp)
    elif run.n_stable == 0:
        raise InputError(
            "No valid window over stable ground in '%s' / '%s': the median "
            "offset cannot be removed. Use stable='none' or a larger stable "
            "mask." % (run.reference_path, run.secondary_path))
    if not run.n_stable:
        return
    keep = _stable_windows(run, sdx, sdy)
    run.n_stable = n_stable = int(keep.sum())
    run.med_dx = float(np.median(sdx[keep])) if n_stable else 0.0
    run.med_dy = float(np.median(sdy[keep])) if n_stable else 0.0
    if run.stable == "plane" and n_stable:
        run.plane = fit_stable_plane(sdx[keep], sdy[keep],
                                     np.concatenate(run.samples_r)[keep],
                                     np.concatenate(run.samples_c)[keep],
                                     np.concatenate(run.samples_ncc)[keep])
    _apply_offset(stage, tmp, run.med_dx, run.med_dy, run.T, n_stable, run.block_rows,
                  run.progress, plane=run.plane, step=run.step)
    with rasterio.open(tmp, "r+") as dst:
        dst.update_tags(**{prod.TAG_STABLE_GROUND: (
            prod.STABLE_GROUND_MASK if run.stable_read is not None else
            prod.STABLE_GROUND_CLUSTER if n_stable else
            prod.STABLE_GROUND_NONE)})


def _stable_windows(run, sdx, sdy):
    """Which samples are stable ground: all of them with a mask; without one those of the
    tightest cluster of vectors nearest zero (none, logged, when there is no cluster)."""
    keep = np.ones(sdx.size, bool)
    if run.stable_read is None:
        # no mask: the stable ground is the tightest cluster of
        # vectors nearest zero, not the median of a scene that may
        # be mostly moving (core/stable_offset.py)
        cl = stable_offset(sdx, sdy)
        if cl is None:
            keep[:] = False
            run.progress.info(
                "correlation: no stable ground identified in '%s' / '%s' "
                "(no tight cluster of displacements holding >= %.0f %% of "
                "the windows): no offset removed; give a stable-area mask "
                "to correct it" % (run.reference_path, run.secondary_path,
                                   100 * STABLE_MIN_SHARE))
        else:
            keep = np.hypot(sdx - cl["dx"], sdy - cl["dy"]) <= max(
                3.0 * cl["spread_px"], 0.3)
    return keep


def _pair_result(run):
    """The summary dict returned by :func:`correlate_pair_rasters`."""
    total = run.out_h * run.out_w
    plane = run.plane
    return dict(path=run.final, n_windows=total, n_valid=run.n_valid,
                valid_fraction=run.n_valid / total if total else 0.0,
                median_dx_px=run.med_dx, median_dy_px=run.med_dy, n_stable=run.n_stable,
                plane_dx_px=None if plane is None else plane["dx"],
                plane_dy_px=None if plane is None else plane["dy"],
                status_counts={int(k): int(v) for k, v in enumerate(run.status_counts)
                               if v})


def _coarse_seeds(rs, ss, band, zero_nod, corr, progress):
    """Seed field of a pair (seeded_search steps 1-2), reading the rasters by blocks."""
    D = corr["max_displacement"]
    f = seeded.reduction_factor(D, corr["search"])
    H = rs.height
    chunk = f * max(1, 2048 // f)
    reduced = []
    for src in (rs, ss):
        parts = []
        for r0 in range(0, H, chunk):
            progress.check()
            a = read_rows_padded(src, band, r0, min(H, r0 + chunk), 0, zero_nod)
            parts.append(seeded.block_mean(a, f))
        reduced.append(np.concatenate(parts, axis=0))
    return seeded.seed_field(reduced[0], reduced[1], corr, D, f)


def _to_metres(dx, dy, T):
    east = T.a * dx + T.b * dy
    north = T.d * dx + T.e * dy
    return east, north


def _describe(dst, ref_date, sec_date, tag_params, corr, T):
    for i, d in enumerate(BANDS, start=1):
        dst.set_band_description(i, d)
    dst.update_tags(5, **{"STATUS_%d" % k: v for k, v in STATUS_MEANINGS.items()})
    dst.update_tags(1, UNITS="m")
    dst.update_tags(2, UNITS="m")
    tags = {prod.TAG_REFERENCE_DATE: ref_date, prod.TAG_SECONDARY_DATE: sec_date,
            "STATUS_CODES": json.dumps({str(k): v for k, v in STATUS_MEANINGS.items()}),
            "SOURCE_PIXEL_SIZE": json.dumps([T.a, T.e]),
            "CONVENTION": "feature at (row, col) in the reference is at (row+dy, col+dx) in "
                          "the secondary; east_m/north_m from dx, dy with the source affine"}
    for k, v in tag_params.items():
        tags[k.upper()] = json.dumps(v) if isinstance(v, (list, dict)) else str(v)
    tags[PARAMS_TAG] = json.dumps({"params": tag_params})
    dst.update_tags(**tags)


def _robust_plane(d, r, c, w, n_iter=8, k=3.0):
    """Least-squares plane d ~ c0 + c1*c + c2*r with iterative k-sigma (MAD) rejection."""
    A = np.column_stack([np.ones_like(c), c, r])
    keep = np.ones(d.size, bool)
    coef = np.array([float(np.median(d)), 0.0, 0.0])
    for _ in range(n_iter):
        if keep.sum() < 3:
            break
        coef = np.linalg.lstsq(A[keep] * w[keep, None], d[keep] * w[keep], rcond=None)[0]
        res = d - A @ coef
        med = np.median(res[keep])
        sig = 1.4826 * np.median(np.abs(res[keep] - med))
        new = np.abs(res - med) <= max(k * sig, 1e-6)
        if np.array_equal(new, keep):
            break
        keep = new
    return coef, int(keep.sum())


def fit_stable_plane(dx, dy, rows, cols, ncc, min_ncc=PLANE_MIN_NCC, min_n=PLANE_MIN_N):
    """Robust planes of dx and dy over stable windows (see module doc).

    ``rows``/``cols``: source pixel of each window centre. Uses the windows with
    ``ncc >= min_ncc`` when there are at least ``min_n`` of them (else all). Returns
    ``{"dx": [c0, c1, c2], "dy": [...], "n": used, "n_inliers": [nx, ny]}`` with
    ``d = c0 + c1*col + c2*row``.
    """
    dx, dy, rows, cols, ncc = (np.asarray(a, np.float64).ravel()
                               for a in (dx, dy, rows, cols, ncc))
    sel = ncc >= min_ncc
    if sel.sum() < min_n:
        sel = np.ones(dx.size, bool)
    w = np.ones(int(sel.sum()))
    cx, nx = _robust_plane(dx[sel], rows[sel], cols[sel], w)
    cy, ny = _robust_plane(dy[sel], rows[sel], cols[sel], w)
    return dict(dx=[float(v) for v in cx], dy=[float(v) for v in cy], n=int(sel.sum()),
                n_inliers=[nx, ny])


def _apply_offset(stage, final_tmp, med_dx, med_dy, T, n_stable, block_rows, progress,
                  plane=None, step=1):
    """Copy ``stage`` to ``final_tmp`` subtracting the median offset (or, with ``plane``,
    the fitted plane at each window centre) from east/north."""
    import rasterio
    with rasterio.open(stage) as src:
        profile = src.profile
        tags = src.tags()
        descr = src.descriptions
        btags = [src.tags(i) for i in range(1, src.count + 1)]
        oe, on = _to_metres(med_dx, med_dy, T)
        with rasterio.open(final_tmp, "w", **profile) as dst:
            nb = -(-src.height // block_rows)
            for b in range(nb):
                progress.check()
                win = rasterio.windows.Window(0, b * block_rows, src.width,
                                              min(block_rows, src.height - b * block_rows))
                data = src.read(window=win)
                if plane is None:
                    data[0] -= np.float32(oe)
                    data[1] -= np.float32(on)
                else:
                    rr = (np.arange(win.row_off, win.row_off + win.height) * step
                          + step // 2)[:, None].astype(np.float64)
                    cc = (np.arange(src.width) * step + step // 2)[None, :].astype(np.float64)
                    px = plane["dx"]
                    py = plane["dy"]
                    pe, pn = _to_metres(px[0] + px[1] * cc + px[2] * rr,
                                        py[0] + py[1] * cc + py[2] * rr, T)
                    data[0] -= pe.astype(np.float32)
                    data[1] -= pn.astype(np.float32)
                dst.write(data, window=win)
                progress.update(0.9 + 0.1 * (b + 1) / nb)
            for i, d in enumerate(descr, start=1):
                dst.set_band_description(i, d)
                if btags[i - 1]:
                    dst.update_tags(i, **btags[i - 1])
            tags.update(STABLE_MEDIAN_DX_PX=repr(med_dx), STABLE_MEDIAN_DY_PX=repr(med_dy),
                        STABLE_MEDIAN_EAST_M=repr(oe), STABLE_MEDIAN_NORTH_M=repr(on),
                        STABLE_N_WINDOWS=str(n_stable))
            if plane is not None:
                tags.update(STABLE_PLANE_DX_PX=json.dumps(plane["dx"]),
                            STABLE_PLANE_DY_PX=json.dumps(plane["dy"]),
                            STABLE_PLANE_FORMULA="d_px = c0 + c1*col + c2*row (source pixel "
                                                 "of the window centre)",
                            STABLE_PLANE_N_WINDOWS=str(plane["n"]))
            dst.update_tags(**tags)


# ------------------------------------------------------------------------- helpers
def reproject_to_grid(src_path, like_path, dst_path, band=1, resampling="cubic",
                      zero_is_nodata=True):
    """Resample ``src_path`` onto the grid of ``like_path`` (float32, NaN nodata).

    A small helper for tests/benchmarks on rasters with different grids; the pipeline's
    common grid step (core.common_grid) is the full-featured version.
    """
    import rasterio
    from rasterio.warp import Resampling, reproject

    with _open(like_path) as like, _open(src_path) as src:
        a = src.read(band).astype(np.float32)
        bad = ~np.isfinite(a)
        if src.nodata is not None and not np.isnan(src.nodata):
            bad |= a == src.nodata
        if zero_is_nodata:
            bad |= a == 0
        a[bad] = np.nan
        out = np.full((like.height, like.width), np.nan, np.float32)
        reproject(a, out, src_transform=src.transform, src_crs=src.crs, src_nodata=np.nan,
                  dst_transform=like.transform, dst_crs=like.crs or src.crs,
                  dst_nodata=np.nan, resampling=getattr(Resampling, resampling))
        profile = dict(GTIFF_FLOAT_OPTIONS, height=like.height, width=like.width, count=1,
                       dtype="float32", crs=like.crs or src.crs, transform=like.transform,
                       nodata=np.nan)
    with atomic_output(dst_path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(out, 1)
            dst.set_band_description(1, os.path.basename(src_path))
    return dst_path


# ------------------------------------------------------------------------- list of pairs

def read_selected_pairs(pairs_csv):
    """Rows of ``pairs.csv`` (SPEC columns) whose ``selected`` is 1/true, as dicts with
    reference_date, secondary_date (ISO) and absolute reference_path, secondary_path
    (relative paths are resolved against the CSV's folder). Strict
    (:func:`.pairs_file.read_selected`): a bad cell anywhere in the file, or a selected
    row without its image paths, raises InputError naming the line, column and value."""
    return [dict(reference_date=r.reference_date, secondary_date=r.secondary_date,
                 reference_path=r.reference_path, secondary_path=r.secondary_path)
            for r in pairs_file.read_selected(pairs_csv, require_paths=True)]


def __getattr__(name):
    """``correlate_pairs_csv`` moved to :mod:`.correlation_driver` (the correlation step's
    one driver); still importable from here."""
    if name == "correlate_pairs_csv":
        from .correlation_driver import correlate_pairs_csv
        return correlate_pairs_csv
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
