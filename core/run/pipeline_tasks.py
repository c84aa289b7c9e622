"""Independent tasks of the pipeline, run by :mod:`.executor` (local threads or Dask).

Each task is a module-level function taking one small, picklable job (paths and
parameters), reading its inputs from shared storage, writing its own output atomically
and returning a small dict. Tasks are resumable: an output already renamed into place
with the same parameters is reused, so a re-submitted task (retry, dead worker, re-run)
does not redo finished work.

- :func:`correlate_pair_task`: one pair of images -> ``pairs/pair_YYYYMMDD_YYYYMMDD.tif``
  (through the correlation raster driver of :mod:`.pair_correlation`).
- :func:`invert_rows_task`: one band of rows of the pair grid -> a part file
  (cumulative east/north per date, velocity bands, flags), assembled by
  :func:`assemble_timeseries` into the SPEC ``timeseries/`` files. Reading, weighting,
  inverting and writing are the public helpers of :mod:`.timeseries_io`
  (:class:`~.timeseries_io.PairStack`, :func:`~.timeseries_io.select_lambda`,
  :func:`~.timeseries_io.invert_window`, :class:`~.timeseries_io.TimeseriesWriter`), the
  pixels are independent, so the result does not depend on how rows are split.

The step drivers that run them on an executor, for the pipeline and the single-step
algorithms alike: :mod:`.correlation_driver` and :mod:`.inversion_driver`.
"""

import os
import shutil
import uuid

import numpy as np

from .. import products as prod
from ..errors import Cancelled, InputError
from ..progress import Progress

__all__ = ["correlate_pair_task", "inversion_jobs", "invert_rows_task",
           "invert_pairs_over_executor", "assemble_timeseries",
           "PART_FOLDER"]

#: hidden folder (under timeseries/) holding the inversion parts while a run is under way
PART_FOLDER = ".parts"


def _task_progress(cancelled):
    return Progress(is_cancelled=cancelled) if cancelled is not None else Progress()


# ------------------------------------------------------------------------- correlation

def correlate_pair_task(job, cancelled=None):
    """Correlate one pair of images into its pair raster (skipped if already current).

    ``job``: dict with ``reference_path``, ``secondary_path``, ``reference_date``,
    ``secondary_date`` (ISO), ``out_path``, ``params`` (correlation parameters) and
    optional ``band_reference`` / ``band_secondary`` (1-based) and ``driver_options``.
    Returns ``{"path", "reused", "seconds", "valid_fraction"}``.
    """
    import time
    from ..matching import pair_correlation as pc

    t0 = time.perf_counter()
    out = job["out_path"]
    if pc.pair_output_is_current(out, job["params"]):
        return {"path": out, "reused": True, "seconds": 0.0,
                "valid_fraction": _valid_fraction(out)}
    pc_kwargs = dict(job.get("driver_options") or {})
    pc.correlate_pair_rasters(job["reference_path"], job["secondary_path"], out,
                              progress=_task_progress(cancelled),
                              reference_date=job.get("reference_date"),
                              secondary_date=job.get("secondary_date"),
                              **pc_kwargs, **job["params"])
    return {"path": out, "reused": False, "seconds": time.perf_counter() - t0,
            "valid_fraction": _valid_fraction(out), "stable_ground": _stable_ground(out)}


def _stable_ground(path):
    """The pair raster's STABLE_GROUND tag (how its offset was found), or ''."""
    import rasterio
    try:
        with rasterio.open(path) as src:
            return src.tags().get(prod.TAG_STABLE_GROUND, "")
    except Exception:  # a missing tag or file is reported elsewhere
        return ""


def _valid_fraction(path):
    """Fraction of windows with status 0 (valid) in a pair raster (cheap statistic)."""
    try:
        import rasterio
        from ..raster_io import band_index_by_description
        with rasterio.open(path) as src:
            st = src.read(band_index_by_description(src, "status"))
        return float(np.mean(st == 0)) if st.size else 0.0
    except Exception:
        return float("nan")


# --------------------------------------------------------------------------- inversion

def _pairs_from_job(job):
    from ..series.timeseries_io import PairRaster
    return [PairRaster(p, np.datetime64(r, "D"), np.datetime64(s, "D"))
            for p, r, s in zip(job["pair_paths"], job["reference_dates"],
                               job["secondary_dates"])]


def inversion_jobs(pairs, height, width, part_dir, params, block_rows=64, block_cols=256,
                   dates=None):
    """Split the pair grid into bands of ``block_rows`` rows: one job per band.

    ``pairs``: :class:`.timeseries_io.PairRaster` list; ``params``: lam, lam2, robust,
    weighting, min_obs, min_ncc, min_snr, max_iter (all explicit, lam a number);
    ``dates``: the output dates (ISO) when not only those of the pairs.
    """
    block_rows = max(1, int(block_rows))
    base = dict(pair_paths=[p.path for p in pairs],
                reference_dates=[str(p.reference_date) for p in pairs],
                secondary_dates=[str(p.secondary_date) for p in pairs],
                width=int(width), height=int(height), block_cols=int(block_cols),
                params=dict(params))
    if dates is not None:
        base["dates"] = [str(d) for d in dates]
    jobs = []
    for r0 in range(0, height, block_rows):
        r1 = min(r0 + block_rows, height)
        jobs.append(dict(base, rows=(r0, r1),
                         part_path=os.path.join(part_dir, "rows_%06d_%06d.npy" % (r0, r1))))
    return jobs


def invert_rows_task(job, cancelled=None):
    """Invert rows ``job["rows"]`` of the pair grid; write them to ``job["part_path"]``.

    The part is one float32 array ``(2 * n_dates + 7, rows, width)``: cumulative east per
    date, cumulative north per date, the six velocity bands, the network flags. It is
    written under a temporary name and renamed when complete; an existing part is reused.
    Memory: ``n_pairs x rows x block_cols x 5`` float32 per chunk of columns.
    """
    from ..series import inversion as inv
    from ..series import timeseries_io as tio

    part = job["part_path"]
    r0, r1 = job["rows"]
    if os.path.exists(part):
        return {"part": part, "rows": (r0, r1), "reused": True}
    p = job["params"]
    settings = {k: p[k] for k in tio.WINDOW_SETTINGS}
    width = job["width"]
    with tio.PairStack(_pairs_from_job(job)) as stack:
        if stack.width != width or stack.height != job["height"]:
            raise InputError("Pair raster '%s' changed size during the inversion (%dx%d, "
                             "expected %dx%d). Run the pipeline again."
                             % (stack.first_path, stack.width, stack.height, width,
                                job["height"]))
        dates64, pi, pj = stack.network(job.get("dates"))
        nd = len(dates64)
        Q = inv.regularisation_matrix(dates64, p["lam"], p["lam2"])
        out = np.full((2 * nd + 7, r1 - r0, width), np.nan, np.float32)
        for c0 in range(0, width, job["block_cols"]):
            if cancelled is not None and cancelled():
                raise Cancelled()
            c1 = min(c0 + job["block_cols"], width)
            ce, cn, bands = tio.invert_window(stack, ((r0, r1), (c0, c1)), pi, pj, dates64, Q,
                                              **settings)
            out[:nd, :, c0:c1] = ce
            out[nd:2 * nd, :, c0:c1] = cn
            out[2 * nd:, :, c0:c1] = bands
    os.makedirs(os.path.dirname(part), exist_ok=True)
    tmp = os.path.join(os.path.dirname(part), ".%s.%s.partial.npy" % (
        os.path.basename(part), uuid.uuid4().hex[:8]))
    try:
        np.save(tmp, out)
        os.replace(tmp, part)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return {"part": part, "rows": (r0, r1), "reused": False}


def assemble_timeseries(jobs, out_dir, dates_iso, transform, crs, tags, progress=None):
    """Write ``ts_east_m.tif``, ``ts_north_m.tif``, ``velocity.tif`` and
    ``network_flags.tif`` (:class:`.timeseries_io.TimeseriesWriter`: same layout and tags
    as :func:`.timeseries_io.invert_pair_rasters`) from the parts, atomically, then remove
    the parts. Memory: one part at a time."""
    from ..progress import as_progress
    from ..series.timeseries_io import TimeseriesWriter

    progress = as_progress(progress)
    h, w = jobs[0]["height"], jobs[0]["width"]
    nd = len(dates_iso)
    with TimeseriesWriter(out_dir, dates_iso, h, w, transform, crs, tags) as tw:
        for k, job in enumerate(jobs):
            progress.check()
            r0, r1 = job["rows"]
            arr = np.load(job["part_path"])
            if arr.shape != (2 * nd + 7, r1 - r0, w):
                raise InputError("Inversion part '%s' has shape %s, expected %s. Delete the "
                                 "folder '%s' and run again." % (
                                     job["part_path"], arr.shape, (2 * nd + 7, r1 - r0, w),
                                     os.path.dirname(job["part_path"])))
            tw.write(r0, 0, arr[:nd], arr[nd:2 * nd], arr[2 * nd:])
            progress.update((k + 1) / len(jobs), "writing time series %d/%d" % (k + 1, len(jobs)))
    part_dir = os.path.dirname(jobs[0]["part_path"])
    shutil.rmtree(part_dir, ignore_errors=True)
    try:
        os.rmdir(os.path.dirname(part_dir))
    except OSError:
        pass
    return tw.paths


def invert_pairs_over_executor(pair_paths, output_folder, executor, params, block_rows=64,
                               lam_sample=None, run_key=None, progress=None, log=None):
    """Invert pair rasters (paths) into ``output_folder/timeseries/`` on ``executor``:
    :func:`.inversion_driver.invert_pairs` (the inversion step's one driver), kept here
    under its old name. Returns its dict (paths, lam, dates, n_pairs, n_dates, n_blocks,
    reused_blocks, ...)."""
    from ..series.inversion_driver import invert_pairs
    from ..series.timeseries_io import pair_rasters_from_paths

    if not pair_paths:
        raise InputError("No pair raster to invert. Run the correlation first.")
    if lam_sample is None:
        from ..series.inversion import DEFAULT_LAM_SAMPLE as lam_sample
    return invert_pairs(pair_rasters_from_paths(pair_paths), output_folder, params, executor,
                        block_rows=block_rows, lam_sample=lam_sample, run_key=run_key,
                        progress=progress, log=log)
