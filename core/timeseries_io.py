"""Block-wise inversion of pair rasters into the ``timeseries/`` files of SPEC.

Input: the pair GeoTIFFs ``pairs/pair_YYYYMMDD_YYYYMMDD.tif`` (bands described
``east_m``, ``north_m``, ``ncc``, ``snr``, ``status``; tags ``REFERENCE_DATE``,
``SECONDARY_DATE``), all on the same grid. They are found in a folder (its ``pairs/``
sub-folder when it has one) or listed by a ``pairs.csv`` (rows with ``selected`` true).

Output, in ``<output_folder>/timeseries/`` (each written atomically; a cancel or an
error leaves none of them, and existing ones untouched):

* ``ts_east_m.tif``, ``ts_north_m.tif``: one band per date, described by its ISO date,
  cumulative displacement (m) since the first date (band 1 is 0 where valid);
* ``velocity.tif``: ``ve_m_per_yr``, ``vn_m_per_yr``, ``v_m_per_yr``, ``v_sigma_m_per_yr``,
  ``n_obs``, ``rmse_m`` (float32; ``n_obs`` is 0 where the pixel could not be inverted);
* ``network_flags.tif``: one uint8 band ``network_flags``, bit field per pixel:
  1 = some date had no valid pair (bridged by the regularisation),
  2 = the network of valid pairs was disconnected (components bridged by the
  regularisation), 4 = at least one pair rejected as an outlier, 8 = too few valid pairs
  (outputs NaN), 16 = solver failure (outputs NaN).

Memory is bounded by the block size: one block holds ``n_pairs x block^2`` values of the
five input bands (about 160 MB for 120 pairs and 256 x 256 blocks), whatever the raster
size. The next block is read in a background thread while the current one is inverted.
"""

import csv
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np

from . import inversion as inv
from .errors import InputError, ParameterError
from .progress import as_progress
from .raster_io import GTIFF_FLOAT_OPTIONS, atomic_output, band_index_by_description

PAIR_BANDS = ("east_m", "north_m", "ncc", "snr", "status")
_PAIR_NAME = re.compile(r"pair_(\d{8})_(\d{8})", re.IGNORECASE)
TS_FOLDER = "timeseries"
#: GDAL block cache (MB) while inverting: bounds the memory next to the pair blocks
GDAL_CACHE_MB = 384
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
    m = _PAIR_NAME.search(os.path.basename(name))
    if not m:
        return None
    s = m.group(1 + which)
    try:
        return np.datetime64("%s-%s-%s" % (s[:4], s[4:6], s[6:8]), "D")
    except ValueError:
        return None


def _pair_dates(path):
    import rasterio
    try:
        with rasterio.open(path) as src:
            tags = src.tags()
    except rasterio.errors.RasterioIOError as exc:
        raise InputError("Cannot read pair raster '%s': %s. Re-run the correlation for this "
                         "pair or remove the file." % (path, exc)) from exc
    out = []
    for which, key in enumerate(("REFERENCE_DATE", "SECONDARY_DATE")):
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


def _truthy(value):
    return str(value).strip().lower() in ("1", "true", "yes", "y", "t", "selected")


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
    pair_dir = os.path.join(folder, "pairs") if os.path.isdir(os.path.join(folder, "pairs")) \
        else folder
    if pairs_csv:
        wanted = _read_pairs_csv(pairs_csv)
        paths = []
        for ref, sec in wanted:
            p = os.path.join(pair_dir, "pair_%s_%s.tif" % (ref.replace("-", ""),
                                                          sec.replace("-", "")))
            if os.path.isfile(p):
                paths.append(p)
        if not paths:
            raise InputError("None of the %d selected pairs of '%s' has a pair raster in "
                             "'%s'. Run the correlation of the pairs first."
                             % (len(wanted), pairs_csv, pair_dir))
    else:
        paths = sorted(os.path.join(pair_dir, f) for f in os.listdir(pair_dir)
                       if f.lower().startswith("pair_") and f.lower().endswith((".tif", ".tiff")))
        if not paths:
            raise InputError("No pair raster (pair_*.tif) in '%s'. Choose the output folder "
                             "of the correlation step." % pair_dir)
    out = []
    for p in paths:
        ref, sec = _pair_dates(p)
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
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise InputError("Cannot read '%s': %s." % (path, exc)) from exc
    if not rows or "reference_date" not in rows[0] or "secondary_date" not in rows[0]:
        raise InputError("'%s' is not a SlideWatch pairs.csv (needs columns reference_date, "
                         "secondary_date, selected)." % path)
    out = []
    for r in rows:
        if selected_only and "selected" in r and not _truthy(r["selected"]):
            continue
        out.append((str(r["reference_date"]).strip()[:10], str(r["secondary_date"]).strip()[:10]))
    return out


# --------------------------------------------------------------------------- reading
class _PairStack:
    """Open pair rasters on one grid; reads windows of the five bands."""

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

    def read(self, window):
        """(east, north, ncc, snr, status) arrays (n_pairs, h, w) float32 for a window."""
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


def _blocks(height, width, block):
    out = []
    for r0 in range(0, height, block):
        for c0 in range(0, width, block):
            out.append(((r0, min(r0 + block, height)), (c0, min(c0 + block, width))))
    return out


def _weights_block(data, weighting, min_ncc, min_snr):
    east, north, ncc, snr, status = data
    status = np.where(np.isfinite(status), status, 1)
    return inv.prior_weights(east, north, ncc, snr, status, weighting, min_ncc, min_snr)


# --------------------------------------------------------------------------- driver
def invert_pair_rasters(source, output_folder, lam=inv.DEFAULT_LAM, lam2=inv.DEFAULT_LAM2,
                        robust="tukey", weighting="ncc", min_obs=3, min_ncc=None,
                        min_snr=None, block_size=256, lam_sample=400, pairs_csv=None,
                        max_iter=12, dates=None, progress=None):
    """Invert every pixel of a stack of pair rasters; write the ``timeseries/`` files.

    Parameters are those of :func:`slidewatch.core.inversion.invert_network` plus
    ``source`` / ``pairs_csv`` (see :func:`find_pair_rasters`), ``output_folder`` (the
    files go to ``output_folder/timeseries/``) and ``block_size`` (pixels per block side;
    memory grows with ``n_pairs * block_size^2``). Output dates are the dates of the pair
    rasters, plus every date of the pairs.csv when one is used (a date whose pairs were all
    deselected or failed is bridged by the regularisation and flagged), plus ``dates``.
    Returns :class:`TimeseriesOutputs`.
    """
    progress = as_progress(progress)
    if int(block_size) < 1:
        raise ParameterError("block_size must be >= 1 (got %r)." % block_size)
    block_size = int(block_size)
    inv._check_params(robust, min_obs, max_iter, 3)
    if weighting not in inv.WEIGHTINGS:
        raise ParameterError("weighting must be one of %s (got %r)."
                             % (", ".join(inv.WEIGHTINGS), weighting))
    pairs = find_pair_rasters(source, pairs_csv)
    if len(pairs) < 1:
        raise InputError("No usable pair raster found in '%s'." % source)
    csv_path = str(source) if str(source).lower().endswith(".csv") else pairs_csv
    all_dates = None
    if csv_path or dates is not None:
        # the output dates: every date of the stack (pairs.csv rows, selected or not) and
        # any requested date; dates without a usable pair are bridged by the regularisation
        all_dates = [p.reference_date for p in pairs] + [p.secondary_date for p in pairs]
        if csv_path:
            all_dates += stack_dates_from_csv(csv_path)
        if dates is not None:
            all_dates += list(inv.to_datetime64(dates))
    dates64, pi, pj = inv.network_dates([p.reference_date for p in pairs],
                                        [p.secondary_date for p in pairs], all_dates)
    dates_iso = [inv.iso(d) for d in dates64]
    progress.info("Inverting %d pairs over %d dates (%s to %s)."
                  % (len(pairs), len(dates64), dates_iso[0], dates_iso[-1]))
    out_dir = os.path.join(os.path.abspath(str(output_folder)), TS_FOLDER)
    stack = _PairStack(pairs)
    try:
        info = {}
        if isinstance(lam, str):
            if lam != "auto":
                raise ParameterError("lam must be a number >= 0 or 'auto' (got %r)." % lam)
            lam, info = _auto_lambda(stack, pi, pj, dates64, lam2, robust, weighting, min_ncc,
                                     min_snr, min_obs, lam_sample)
            progress.info("Regularisation chosen by generalised cross-validation: lam = %g"
                          % lam)
        Q = inv.regularisation_matrix(dates64, lam, lam2)
        paths = dict(ts_east=os.path.join(out_dir, "ts_east_m.tif"),
                     ts_north=os.path.join(out_dir, "ts_north_m.tif"),
                     velocity=os.path.join(out_dir, "velocity.tif"),
                     flags=os.path.join(out_dir, "network_flags.tif"))
        params = dict(lam=float(lam), lam2=float(lam2), robust=robust, weighting=weighting,
                      min_obs=int(min_obs), min_ncc=min_ncc, min_snr=min_snr,
                      max_iter=int(max_iter), n_pairs=len(pairs), n_dates=len(dates64),
                      pairs=[os.path.basename(p.path) for p in pairs])
        tags = dict(DATES=",".join(dates_iso), FIRST_DATE=dates_iso[0],
                    LAMBDA=float(lam), LAMBDA2=float(lam2), ROBUST=robust,
                    WEIGHTING=weighting, MIN_OBS=int(min_obs), N_PAIRS=len(pairs),
                    SLIDEWATCH_PARAMS=json.dumps(params))
        _run_blocks(stack, paths, dates_iso, pi, pj, dates64, Q, tags, block_size, robust,
                    weighting, min_ncc, min_snr, min_obs, max_iter, progress)
    finally:
        stack.close()
    return TimeseriesOutputs(paths["ts_east"], paths["ts_north"], paths["velocity"],
                             paths["flags"], dates_iso, float(lam), float(lam2), len(pairs),
                             info)


def _auto_lambda(stack, pi, pj, dates64, lam2, robust, weighting, min_ncc, min_snr, min_obs,
                 sample):
    """GCV on pixels from up to 5 windows spread over the raster."""
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
        wp = _weights_block(data, weighting, min_ncc, min_snr)
        n = data.shape[1]
        es.append(data[0].reshape(n, -1))
        ns.append(data[1].reshape(n, -1))
        ws.append(wp.reshape(n, -1))
    e = np.concatenate(es, axis=1)
    n = np.concatenate(ns, axis=1)
    wpr = np.concatenate(ws, axis=1)
    lam, grid, scores = inv.choose_lambda(e, n, wpr, pi, pj, dates64, lam2=lam2, sample=sample,
                                          robust=robust, min_obs=min_obs)
    return lam, dict(lambda_grid=[float(g) for g in grid],
                     lambda_gcv=[float(x) for x in scores])


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


def _run_blocks(stack, paths, dates_iso, pi, pj, dates64, Q, tags, block_size, robust,
                weighting, min_ncc, min_snr, min_obs, max_iter, progress):
    import rasterio
    from rasterio.windows import Window

    h, w = stack.height, stack.width
    nd = len(dates_iso)
    blocks = _blocks(h, w, block_size)
    with ExitStack() as es:
        # bounded GDAL block cache: inputs are read once per block (windows follow the
        # 256-pixel tiles by default), outputs are flushed block by block
        es.enter_context(rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB))
        tmp = {k: es.enter_context(atomic_output(p)) for k, p in paths.items()}
        fprof = lambda count: _profile(h, w, count, "float32", stack.crs, stack.transform,
                                       np.nan)
        dst_e = es.enter_context(rasterio.open(tmp["ts_east"], "w", **fprof(nd)))
        dst_n = es.enter_context(rasterio.open(tmp["ts_north"], "w", **fprof(nd)))
        dst_v = es.enter_context(rasterio.open(tmp["velocity"], "w", **fprof(6)))
        dst_f = es.enter_context(rasterio.open(
            tmp["flags"], "w", **_profile(h, w, 1, "uint8", stack.crs, stack.transform, None)))
        for dst, comp in ((dst_e, "east"), (dst_n, "north")):
            for i, d in enumerate(dates_iso, start=1):
                dst.set_band_description(i, d)
                dst.update_tags(i, DATE=d)
            dst.update_tags(**{k: str(v) for k, v in tags.items()},
                            COMPONENT=comp, UNITS="m",
                            CONTENT="cumulative %s displacement since %s" % (comp, dates_iso[0]))
        for i, d in enumerate(inv.VELOCITY_BANDS, start=1):
            dst_v.set_band_description(i, d)
        dst_v.update_tags(**{k: str(v) for k, v in tags.items()})
        dst_f.set_band_description(1, "network_flags")
        dst_f.update_tags(**{k: str(v) for k, v in tags.items()}, FLAGS=FLAGS_DESCRIPTION)

        pool = es.enter_context(ThreadPoolExecutor(max_workers=1))
        future = pool.submit(stack.read, blocks[0])
        for bi, blk in enumerate(blocks):
            progress.check()
            data = future.result()
            if bi + 1 < len(blocks):
                future = pool.submit(stack.read, blocks[bi + 1])
            (r0, r1), (c0, c1) = blk
            bh, bw = r1 - r0, c1 - c0
            n = data.shape[1]
            wp = _weights_block(data, weighting, min_ncc, min_snr).reshape(n, -1)
            ce, cn, st = inv.invert_arrays(data[0].reshape(n, -1), data[1].reshape(n, -1), wp,
                                           pi, pj, dates64, robust=robust, min_obs=min_obs,
                                           max_iter=max_iter, Q=Q)
            del data, wp
            v, vs = inv.velocity_magnitude(st[0], st[1], st[2], st[3])
            vel = np.stack([st[0], st[1], v, vs, st[4], st[5]]).astype(np.float32)
            win = Window(c0, r0, bw, bh)
            dst_e.write(ce.reshape(nd, bh, bw), window=win)
            dst_n.write(cn.reshape(nd, bh, bw), window=win)
            dst_v.write(vel.reshape(6, bh, bw), window=win)
            dst_f.write(st[6].astype(np.uint8).reshape(1, bh, bw), window=win)
            progress.update((bi + 1) / len(blocks), "Inverted block %d/%d" % (bi + 1,
                                                                              len(blocks)))
        progress.check()
        # close the datasets before the atomic renames (ExitStack closes in reverse order)
        for dst in (dst_e, dst_n, dst_v, dst_f):
            dst.close()


def write_pair_raster(path, east, north, ncc, snr, status, transform, crs, reference_date,
                      secondary_date, tags=None):
    """Write a pair raster in the SPEC layout (bands east_m, north_m, ncc, snr, status).

    The correlation driver writes the real ones; this helper serves tests, benchmarks and
    displacement fields imported from other software.
    """
    from .raster_io import write_bands
    t = {"REFERENCE_DATE": inv.iso(np.datetime64(str(reference_date)[:10], "D")),
         "SECONDARY_DATE": inv.iso(np.datetime64(str(secondary_date)[:10], "D"))}
    t.update(tags or {})
    write_bands(path, [east, north, ncc, snr, np.asarray(status, np.float32)], transform, crs,
                descriptions=list(PAIR_BANDS), tags=t)
