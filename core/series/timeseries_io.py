"""Block-wise inversion of pair rasters into the ``timeseries/`` files of SPEC.

Input: the pair GeoTIFFs ``pairs/pair_YYYYMMDD_YYYYMMDD.tif`` (bands described
``east_m``, ``north_m``, ``ncc``, ``snr``, ``status``; tags ``REFERENCE_DATE``,
``SECONDARY_DATE``), all on the same grid. They are found in a folder (its ``pairs/``
sub-folder when it has one) or listed by a ``pairs.csv`` (rows with ``selected`` 1/true,
read by :mod:`.pairs_file`).

Output, in ``<output_folder>/timeseries/`` (each written atomically; a cancel or an
error leaves none of them, and existing ones untouched; the row blocks already inverted
wait in the hidden ``timeseries/.parts/`` for the next run to resume):

* ``ts_east_m.tif``, ``ts_north_m.tif``: one band per date, described by its ISO date,
  cumulative displacement (m) since the first date (band 1 is 0 where valid);
* ``velocity.tif``: ``ve_m_per_yr``, ``vn_m_per_yr``, ``v_m_per_yr``, ``v_sigma_m_per_yr``,
  ``n_obs``, ``rmse_m`` (float32; ``n_obs`` is 0 where the pixel could not be inverted);
* ``network_flags.tif``: one uint8 band ``network_flags``, bit field per pixel:
  1 = some date had no valid pair (bridged by the regularisation),
  2 = the network of valid pairs was disconnected (components bridged by the
  regularisation), 4 = at least one pair rejected as an outlier, 8 = too few valid pairs
  (outputs NaN), 16 = solver failure (outputs NaN).

Building blocks (public) of the inversion step's driver, :mod:`.inversion_driver`
(:func:`~.inversion_driver.invert_pairs`, used by the pipeline and the Processing
algorithm, and :func:`~.inversion_driver.invert_pair_rasters`, still importable from
here), and of its tasks in :mod:`.pipeline_tasks`:
:func:`find_pair_rasters` / :func:`pair_rasters_from_paths` / :func:`pair_dates`,
:class:`PairStack` (open rasters on one grid, ``read(window)``, ``network()``),
:func:`select_lambda` (once per run: a number, the sampling default, or GCV),
:func:`invert_window` / :func:`invert_window_data` (one window -> cumulative series and
the seven output bands), :class:`TimeseriesWriter` (the four files, atomically, window
by window) and :func:`timeseries_tags`.

Memory is bounded by the block size: one window holds ``n_pairs x rows x cols`` values
of the five input bands (about 160 MB for 120 pairs and 256 x 256 pixels) per running
task, whatever the raster size.
"""

import json
import os
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np

from . import inversion as inv
from ..network import pairs_file
from ..errors import InputError
from .. import products as prod
from ..products import PAIR_BANDS
from ..raster_io import GTIFF_FLOAT_OPTIONS, atomic_output, band_index_by_description

#: defaults of the inversion options (one source: :class:`.inversion.InversionParams`)
_IP = inv.InversionParams

TS_FOLDER = prod.TIMESERIES_FOLDER
FLAGS_DESCRIPTION = ("bit field: 1 = date(s) without valid pair bridged by regularisation; "
                     "2 = disconnected network bridged by regularisation; 4 = outlier pair(s) "
                     "rejected; 8 = too few valid pairs (NaN); 16 = solver failure (NaN)")


@dataclass
class PairRaster:
    path: str
    reference_date: np.datetime64
    secondary_date: np.datetime64


@dataclass
class TimeseriesOutputs:
    ts_east: str
    ts_north: str
    velocity: str
    flags: str
    dates: list
    lam: float
    lam2: float
    n_pairs: int
    info: dict = field(default_factory=dict)


# ------------------------------------------------------------------------ discovery
def _date_from_name(name, which):
    dates = prod.parse_pair_name(name)
    return None if dates is None else np.datetime64(dates[which], "D")


def pair_dates(path):
    """(reference, secondary) datetime64[D] of a pair raster: its REFERENCE_DATE /
    SECONDARY_DATE tags, else the dates of its name ``pair_YYYYMMDD_YYYYMMDD``."""
    import rasterio
    try:
        with rasterio.open(path) as src:
            tags = src.tags()
    except rasterio.errors.RasterioIOError as exc:
        raise InputError("Cannot read pair raster '%s': %s. Re-run the correlation for this "
                         "pair or remove the file." % (path, exc)) from exc
    out = []
    for which, key in enumerate((prod.TAG_REFERENCE_DATE, prod.TAG_SECONDARY_DATE)):
        d = None
        if tags.get(key):
            try:
                d = np.datetime64(str(tags[key]).strip()[:10], "D")
            except ValueError:
                d = None
        if d is None:
            d = _date_from_name(path, which)
        if d is None:
            raise InputError("Pair raster '%s' has no readable %s tag and its name is not "
                             "pair_YYYYMMDD_YYYYMMDD.tif. Re-create it with SlideWatch."
                             % (path, key))
        out.append(d)
    return out


def pair_rasters_from_paths(paths):
    """:class:`PairRaster` list (sorted by dates) for explicit pair raster paths."""
    out = []
    for path in paths:
        if not os.path.exists(path):
            raise InputError("Pair raster '%s' does not exist. Run the correlation first."
                             % path)
        ref, sec = pair_dates(path)
        out.append(PairRaster(path, ref, sec))
    out.sort(key=lambda r: (r.reference_date, r.secondary_date, r.path))
    return out


def find_pair_rasters(source, pairs_csv=None):
    """List the pair rasters to invert.

    ``source``: a folder (uses ``source/pairs`` if it exists, else ``source`` itself,
    files ``pair_*.tif``) or a ``pairs.csv``. ``pairs_csv`` (optional) restricts a folder
    to the rows of that CSV with ``selected`` true. Returns a list of :class:`PairRaster`
    sorted by dates.
    """
    if source is None or str(source) == "":
        raise InputError("No input given: choose a folder of pair rasters or a pairs.csv.")
    source = os.path.abspath(str(source))
    if os.path.isfile(source) and source.lower().endswith(".csv"):
        pairs_csv, folder = source, os.path.dirname(source)
    elif os.path.isdir(source):
        folder = source
    else:
        raise InputError("Input '%s' is neither a folder nor a pairs.csv file. Choose the "
                         "folder that holds pairs/ (or the pair rasters) or a pairs.csv."
                         % source)
    pair_dir = os.path.join(folder, prod.PAIRS_FOLDER) \
        if os.path.isdir(os.path.join(folder, prod.PAIRS_FOLDER)) else folder
    if pairs_csv:
        wanted = _read_pairs_csv(pairs_csv)
        paths = []
        for ref, sec in wanted:
            p = os.path.join(pair_dir, prod.pair_file_name(ref, sec))
            if os.path.isfile(p):
                paths.append(p)
        if not paths:
            raise InputError("None of the %d selected pairs of '%s' has a pair raster in "
                             "'%s'. Run the correlation of the pairs first."
                             % (len(wanted), pairs_csv, pair_dir))
    else:
        paths = sorted(os.path.join(pair_dir, f) for f in os.listdir(pair_dir)
                       if f.lower().startswith(prod.PAIR_PREFIX)
                       and f.lower().endswith((".tif", ".tiff")))
        if not paths:
            raise InputError("No pair raster (pair_*.tif) in '%s'. Choose the output folder "
                             "of the correlation step." % pair_dir)
    out = []
    for p in paths:
        ref, sec = pair_dates(p)
        if ref == sec:
            continue
        if sec < ref:
            raise InputError("Pair raster '%s' has its secondary date before its reference "
                             "date; re-create it with SlideWatch." % p)
        out.append(PairRaster(p, ref, sec))
    out.sort(key=lambda r: (r.reference_date, r.secondary_date, r.path))
    return out


def stack_dates_from_csv(path):
    """Every date named in a pairs.csv (selected or not): the dates of the stack."""
    out = set()
    for ref, sec in _read_pairs_csv(path, selected_only=False):
        for d in (ref, sec):
            try:
                out.add(np.datetime64(d, "D"))
            except ValueError:
                raise InputError("Unreadable date '%s' in '%s' (expected YYYY-MM-DD)."
                                 % (d, path)) from None
    return sorted(out)


def _read_pairs_csv(path, selected_only=True):
    """(reference, secondary) ISO dates of the rows of a pairs.csv (the selected ones
    with ``selected_only``), read strictly by :func:`.pairs_file.read_pairs`: a bad cell
    raises InputError naming the line, column and value."""
    return [r.key for r in pairs_file.read_pairs(path, selected_only=selected_only)]


# --------------------------------------------------------------------------- reading
class PairStack:
    """Open pair rasters on one grid; reads windows of the five bands.

    Use as a context manager (or call :meth:`close`). ``height``, ``width``,
    ``transform``, ``crs`` describe the common grid; a raster on another grid raises
    InputError.
    """

    def __init__(self, pairs):
        import rasterio
        self.pairs = pairs
        self.datasets = []
        self.bands = []
        first = None
        try:
            for pr in pairs:
                src = rasterio.open(pr.path)
                self.datasets.append(src)
                self.bands.append([band_index_by_description(src, d) for d in PAIR_BANDS])
                grid = (src.height, src.width, tuple(src.transform)[:6], src.crs)
                if first is None:
                    first = grid
                    self.first_path = pr.path
                elif (grid[0], grid[1]) != (first[0], first[1]) or not np.allclose(
                        grid[2], first[2], rtol=0, atol=1e-6 * max(1.0, abs(first[2][0]))) or \
                        grid[3] != first[3]:
                    raise InputError("Pair raster '%s' is not on the grid of '%s' (size, "
                                     "transform or CRS differ). All pairs of a stack must "
                                     "come from the same correlation run." % (pr.path,
                                                                              self.first_path))
        except Exception:
            self.close()
            raise
        src0 = self.datasets[0]
        self.height, self.width = src0.height, src0.width
        self.transform, self.crs = src0.transform, src0.crs

    def stable_ground_counts(self):
        """How the pairs' co-registration offsets were found (their STABLE_GROUND tag):
        counts ``identified`` (a stable-area mask or a tight cluster of windows near zero),
        ``not_identified`` (no offset removed: the scene moved almost everywhere in that
        pair) and ``unknown`` (no tag: pairs from other tools or older runs)."""
        out = {"identified": 0, "not_identified": 0, "unknown": 0}
        for src in self.datasets:
            tag = src.tags().get(prod.TAG_STABLE_GROUND, "")
            key = ("identified" if tag in (prod.STABLE_GROUND_MASK, prod.STABLE_GROUND_CLUSTER)
                   else "not_identified" if tag == prod.STABLE_GROUND_NONE else "unknown")
            out[key] += 1
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def network(self, dates=None):
        """``(dates64, pi, pj)`` of the stack (see :func:`.inversion.network_dates`)."""
        return inv.network_dates([p.reference_date for p in self.pairs],
                                 [p.secondary_date for p in self.pairs], dates)

    def read(self, window):
        """(east, north, ncc, snr, status) arrays (n_pairs, h, w) float32 for a window
        ``((r0, r1), (c0, c1))``."""
        from rasterio.windows import Window
        (r0, r1), (c0, c1) = window
        win = Window(c0, r0, c1 - c0, r1 - r0)
        n = len(self.datasets)
        out = np.empty((5, n, r1 - r0, c1 - c0), np.float32)
        for k, (src, idx) in enumerate(zip(self.datasets, self.bands)):
            arr = src.read(idx, window=win, out_dtype=np.float32)
            for b in range(5):
                nodata = src.nodatavals[idx[b] - 1]
                if nodata is not None and not np.isnan(nodata) and b != 4:
                    arr[b][arr[b] == nodata] = np.nan
            out[:, k] = arr
        return out

    def close(self):
        for d in self.datasets:
            try:
                d.close()
            except Exception:  # pragma: no cover
                pass
        self.datasets = []


#: keyword settings of :func:`invert_window` (besides the network and Q)
WINDOW_SETTINGS = ("robust", "weighting", "min_obs", "min_ncc", "min_snr", "max_iter")


def window_weights(data, weighting=_IP.weighting, min_ncc=None, min_snr=None):
    """Prior weights (n_pairs, h, w) of a window read by :meth:`PairStack.read`."""
    east, north, ncc, snr, status = data
    status = np.where(np.isfinite(status), status, 1)
    return inv.prior_weights(east, north, ncc, snr, status, weighting, min_ncc, min_snr)


def select_lambda(stack, lam, pi, pj, dates64, lam2=inv.DEFAULT_LAM2, robust=_IP.robust,
                  weighting=_IP.weighting, min_ncc=None, min_snr=None, min_obs=_IP.min_obs,
                  sample=inv.DEFAULT_LAM_SAMPLE):
    """The lambda of a raster run, once for the whole stack: ``lam`` if it is a number,
    :func:`.inversion.default_lambda` of the dates if None, the GCV choice of
    :func:`.inversion.choose_lambda` if "auto" (on ``sample`` pixels drawn from up to 5
    windows of 64 x 64 pixels spread over the grid: centre and the four quarter points).
    Returns ``(lam, info)`` as :func:`.inversion.resolve_lambda`."""
    if not (isinstance(lam, str) and lam.strip().lower() == "auto"):
        return inv.resolve_lambda(lam, None, None, None, pi, pj, dates64)
    h, w = stack.height, stack.width
    s = max(1, min(64, h, w))
    centres = [(h // 2, w // 2), (h // 4, w // 4), (h // 4, 3 * w // 4), (3 * h // 4, w // 4),
               (3 * h // 4, 3 * w // 4)]
    es, ns, ws = [], [], []
    seen = set()
    for rc, cc in centres:
        r0 = min(max(rc - s // 2, 0), h - s)
        c0 = min(max(cc - s // 2, 0), w - s)
        if (r0, c0) in seen:
            continue
        seen.add((r0, c0))
        data = stack.read(((r0, r0 + s), (c0, c0 + s)))
        n = data.shape[1]
        es.append(data[0].reshape(n, -1))
        ns.append(data[1].reshape(n, -1))
        ws.append(window_weights(data, weighting, min_ncc, min_snr).reshape(n, -1))
    return inv.resolve_lambda(lam, np.concatenate(es, axis=1), np.concatenate(ns, axis=1),
                              np.concatenate(ws, axis=1), pi, pj, dates64, lam2, robust,
                              min_obs, sample)


def lambda_message(lam, info):
    """One log line saying which lambda is used and why."""
    why = {"sampling": "default: (%g days / mean interval)^2" % info.get(
        "lambda_time_scale_days", inv.LAM_TIME_SCALE_DAYS),
           "gcv": "chosen by generalised cross-validation",
           "given": "as given"}.get(info.get("lambda_rule"), "")
    return "Regularisation lam = %g (%s)" % (lam, why)


def invert_window(stack, window, pi, pj, dates64, Q, robust=_IP.robust,
                  weighting=_IP.weighting, min_obs=_IP.min_obs, min_ncc=None, min_snr=None,
                  max_iter=_IP.max_iter):
    """Invert every pixel of a window ``((r0, r1), (c0, c1))`` of a :class:`PairStack`.

    ``pi``, ``pj``, ``dates64``: the network (:meth:`PairStack.network`); ``Q``: the
    regularisation matrix (:func:`.inversion.regularisation_matrix` with the resolved
    lambda, see :func:`select_lambda`). Returns float32 arrays ``cum_east``,
    ``cum_north`` (n_dates, h, w) and ``bands`` (7, h, w): the six
    :data:`.inversion.VELOCITY_BANDS` then the network flags. Pixels are independent,
    so results do not depend on how a raster is split into windows.
    """
    return invert_window_data(stack.read(window), pi, pj, dates64, Q, robust, weighting,
                              min_obs, min_ncc, min_snr, max_iter)


def invert_window_data(data, pi, pj, dates64, Q, robust=_IP.robust, weighting=_IP.weighting,
                       min_obs=_IP.min_obs, min_ncc=None, min_snr=None,
                       max_iter=_IP.max_iter):
    """:func:`invert_window` on a window already read by :meth:`PairStack.read`
    (``data``: (5, n_pairs, h, w))."""
    n, bh, bw = data.shape[1:]
    wp = window_weights(data, weighting, min_ncc, min_snr).reshape(n, -1)
    ce, cn, st = inv.invert_arrays(data[0].reshape(n, -1), data[1].reshape(n, -1), wp, pi, pj,
                                   dates64, robust=robust, min_obs=min_obs, max_iter=max_iter,
                                   Q=Q)
    del wp
    v, vs = inv.velocity_magnitude(st[0], st[1], st[2], st[3])
    bands = np.stack([st[0], st[1], v, vs, st[4], st[5], st[6]]).astype(np.float32)
    nd = len(dates64)
    return ce.reshape(nd, bh, bw), cn.reshape(nd, bh, bw), bands.reshape(7, bh, bw)


# --------------------------------------------------------------------------- writing
def timeseries_paths(out_dir):
    """The four output files of a time-series folder (:func:`.products.timeseries_paths`)."""
    return prod.timeseries_paths(out_dir)


def timeseries_tags(dates_iso, params, pair_names, stable_ground=None):
    """Dataset tags of the time-series files. ``params``: lam (number), lam2, robust,
    weighting, min_obs and any other parameter (all go to SLIDEWATCH_PARAMS);
    ``stable_ground``: the pairs' counts of :meth:`PairStack.stable_ground_counts`."""
    full = dict(params, n_pairs=len(pair_names), n_dates=len(dates_iso),
                pairs=list(pair_names))
    extra = {prod.TAG_PARAMS: json.dumps(full, default=str)}
    if stable_ground is not None:
        extra[prod.TAG_STABLE_GROUND_PAIRS] = json.dumps(stable_ground)
    return dict(DATES=",".join(dates_iso), FIRST_DATE=dates_iso[0],
                LAMBDA=float(params["lam"]), LAMBDA2=float(params["lam2"]),
                ROBUST=params["robust"], WEIGHTING=params["weighting"],
                MIN_OBS=int(params["min_obs"]), N_PAIRS=len(pair_names), **extra)


def _profile(height, width, count, dtype, crs, transform, nodata):
    prof = dict(GTIFF_FLOAT_OPTIONS, height=height, width=width, count=count, dtype=dtype,
                crs=crs, transform=transform, nodata=nodata)
    if height < 256 or width < 256:
        prof.update(tiled=False)
        prof.pop("blockxsize")
        prof.pop("blockysize")
    if not np.issubdtype(np.dtype(dtype), np.floating):
        prof["predictor"] = 2
    if nodata is None:
        prof.pop("nodata")
    return prof


class TimeseriesWriter:
    """Context manager writing the ``timeseries/`` files window by window, atomically.

    ``with TimeseriesWriter(out_dir, dates_iso, height, width, transform, crs, tags) as
    tw: tw.write(r0, c0, cum_east, cum_north, bands)`` (arrays as returned by
    :func:`invert_window`). The files appear under their final names only when the
    block exits without an exception; ``tw.paths`` gives them.
    """

    def __init__(self, out_dir, dates_iso, height, width, transform, crs, tags):
        self.paths = timeseries_paths(out_dir)
        self.dates_iso = list(dates_iso)
        self.height, self.width = int(height), int(width)
        self.transform, self.crs = transform, crs
        self.tags = {k: str(v) for k, v in tags.items()}
        self._es = None

    def __enter__(self):
        import rasterio
        self._es = ExitStack()
        try:
            self._open(self._es, rasterio)
        except BaseException:
            self._es.__exit__(*sys.exc_info())
            raise
        return self

    def _open(self, es, rasterio):
        h, w, nd = self.height, self.width, len(self.dates_iso)
        tmp = {k: es.enter_context(atomic_output(p)) for k, p in self.paths.items()}

        def prof(count, dtype="float32", nodata=np.nan):
            return _profile(h, w, count, dtype, self.crs, self.transform, nodata)

        self.dst_e = es.enter_context(rasterio.open(tmp["ts_east"], "w", **prof(nd)))
        self.dst_n = es.enter_context(rasterio.open(tmp["ts_north"], "w", **prof(nd)))
        self.dst_v = es.enter_context(rasterio.open(tmp["velocity"], "w", **prof(6)))
        self.dst_f = es.enter_context(rasterio.open(tmp["flags"], "w",
                                                    **prof(1, "uint8", None)))
        first = self.dates_iso[0]
        for dst, comp in ((self.dst_e, "east"), (self.dst_n, "north")):
            for i, d in enumerate(self.dates_iso, start=1):
                dst.set_band_description(i, d)
                dst.update_tags(i, DATE=d)
            dst.update_tags(**self.tags, COMPONENT=comp, UNITS="m",
                            CONTENT="cumulative %s displacement since %s" % (comp, first))
        for i, d in enumerate(prod.VELOCITY_BANDS, start=1):
            self.dst_v.set_band_description(i, d)
        self.dst_v.update_tags(**self.tags)
        self.dst_f.set_band_description(1, prod.NETWORK_FLAGS_BAND)
        self.dst_f.update_tags(**self.tags, FLAGS=FLAGS_DESCRIPTION)

    def write(self, r0, c0, cum_east, cum_north, bands):
        from rasterio.windows import Window
        bh, bw = bands.shape[1], bands.shape[2]
        win = Window(c0, r0, bw, bh)
        self.dst_e.write(cum_east, window=win)
        self.dst_n.write(cum_north, window=win)
        self.dst_v.write(bands[:6], window=win)
        flags = np.nan_to_num(bands[6], nan=0.0).astype(np.uint8)
        self.dst_f.write(flags[None], window=win)

    def __exit__(self, *exc):
        # datasets close before the atomic renames (ExitStack unwinds in reverse order)
        return self._es.__exit__(*exc)


# --------------------------------------------------------------------------- driver
def __getattr__(name):
    """``invert_pair_rasters`` moved to :mod:`.inversion_driver` (the inversion step's one
    driver, shared with the pipeline); still importable from here."""
    if name == "invert_pair_rasters":
        from .inversion_driver import invert_pair_rasters
        return invert_pair_rasters
    raise AttributeError("module %r has no attribute %r" % (__name__, name))


def write_pair_raster(path, east, north, ncc, snr, status, transform, crs, reference_date,
                      secondary_date, tags=None, footprint=None):
    """Write a pair raster in the SPEC layout (bands east_m, north_m, ncc, snr, status;
    and, with ``footprint``, its window footprints, see :mod:`.footprint`).

    The correlation driver writes the real ones; this helper serves tests, benchmarks and
    displacement fields imported from other software.
    """
    from ..raster_io import write_bands
    t = {prod.TAG_REFERENCE_DATE: inv.iso(np.datetime64(str(reference_date)[:10], "D")),
         prod.TAG_SECONDARY_DATE: inv.iso(np.datetime64(str(secondary_date)[:10], "D"))}
    t.update(tags or {})
    if footprint is not None:
        from ..detect.footprint import save_pair_footprint
        save_pair_footprint(path, footprint)
    write_bands(path, [east, north, ncc, snr, np.asarray(status, np.float32)], transform, crs,
                descriptions=list(PAIR_BANDS), tags=t)
