"""The inversion step's driver: pair rasters -> the ``timeseries/`` files of SPEC.

One driver for every caller: the pipeline (:mod:`.pipeline`), the Processing algorithm
"Invert pair network" and scripts (:func:`invert_pair_rasters`, also importable from
:mod:`.timeseries_io`, its old home). :func:`invert_pairs` resolves lambda once for the
whole stack (:func:`.timeseries_io.select_lambda`), splits the pair grid into bands of
rows, runs one :func:`.pipeline_tasks.invert_rows_task` per band on an executor
(:mod:`.executor`: local threads by default, or a Dask cluster), each writing a part file,
and assembles the parts into the four files (:func:`.pipeline_tasks.assemble_timeseries`,
atomically). Pixels are independent, so the result does not depend on the split, the
executor or the number of workers.

Resuming: parts are kept in ``timeseries/.parts/<key>`` until the files are assembled;
``key`` hashes the parameters, the pairs (paths, sizes, modification times), the output
dates, the band height and ``run_key``. A run interrupted (cancel, error, dead worker)
reuses the parts already written by the next run with the same key; ``resume=False``
deletes them first. Progress: the share of bands done (90 %), then the assembly; cancel
between bands (the running bands stop between their chunks of columns).
"""

import hashlib
import json
import os
import shutil

from . import inversion as inv
from . import timeseries_io as tio
from ..errors import InputError, ParameterError
from ..detect.footprint import write_footprint
from ..progress import as_progress

__all__ = ["invert_pairs", "invert_request", "invert_pair_rasters"]


def _run_network(pairs, ip, dates, lam_sample, log):
    """Network, lambda (resolved once, ``ip["lam"]`` set to it) and grid of the pairs."""
    with tio.PairStack(pairs) as stack:
        dates64, pi, pj = stack.network(dates)
        grid = (stack.height, stack.width, stack.transform, stack.crs)
        lam, lam_info = tio.select_lambda(stack, ip["lam"], pi, pj, dates64, ip["lam2"],
                                          ip["robust"], ip["weighting"], ip["min_ncc"],
                                          ip["min_snr"], ip["min_obs"], lam_sample)
        stable_ground = stack.stable_ground_counts()
    log("inversion: %s" % tio.lambda_message(lam, lam_info))
    ip["lam"] = float(lam)
    return [inv.iso(d) for d in dates64], grid, lam_info, stable_ground


def _part_dir(output_folder, pairs, ip, dates_iso, block_rows, run_key, resume):
    """The folder of this run's parts (emptied first without ``resume``)."""
    key_src = json.dumps([run_key, sorted(ip.items(), key=lambda kv: kv[0]),
                          [os.path.abspath(p.path) for p in pairs],
                          [(os.path.getsize(p.path), os.path.getmtime(p.path)) for p in pairs],
                          int(block_rows), list(dates_iso)], default=str)
    key = hashlib.sha256(key_src.encode("utf-8")).hexdigest()[:16]
    ts_dir = os.path.join(os.path.abspath(str(output_folder)), tio.TS_FOLDER)
    from ..run.pipeline_tasks import PART_FOLDER
    part_dir = os.path.join(ts_dir, PART_FOLDER, key)
    if not resume:
        shutil.rmtree(part_dir, ignore_errors=True)
    return ts_dir, part_dir


def invert_pairs(pairs, output_folder, params, executor=None, dates=None, block_rows=64,
                 block_cols=256, lam_sample=inv.DEFAULT_LAM_SAMPLE, run_key=None,
                 resume=True, progress=None, log=None):
    """Invert the pair rasters ``pairs`` into ``output_folder/timeseries/``.

    Parameters
    ----------
    pairs : :class:`.timeseries_io.PairRaster` list (:func:`.timeseries_io.find_pair_rasters`
        or :func:`.timeseries_io.pair_rasters_from_paths`), all on one grid
    output_folder : the files go to its ``timeseries/`` folder
    params : dict with lam (number, None for the default from the sampling, or "auto"),
        lam2, robust, weighting, min_obs, min_ncc, min_snr, max_iter (checked by the
        caller); its order is the order of the SLIDEWATCH_PARAMS tag
    executor : an executor of :func:`.executor.get_executor`; None: local threads on every
        CPU, for this call
    dates : further output dates (bridged by the regularisation when without a pair)
    block_rows, block_cols : rows per task; columns per chunk inside a task (memory:
        ``n_pairs x block_rows x block_cols x 5`` float32 per running task)
    lam_sample : pixels of the GCV choice of lambda (``lam="auto"``)
    run_key : anything JSON-able naming the run (part of the parts' key)
    resume : reuse the parts of an interrupted run with the same key
    progress, log : :class:`~.progress.Progress` (progress, cancel) and log lines
        (default ``progress.info``)

    Returns a dict: paths, lam, lam_info, lam2, dates, n_pairs, n_dates, n_blocks,
    reused_blocks, executor.
    """
    from ..run.executor import executor_or_local
    from ..run.pipeline_tasks import assemble_timeseries, inversion_jobs, invert_rows_task

    progress = as_progress(progress)
    log = log or progress.info
    if not pairs:
        raise InputError("No pair raster to invert. Run the correlation first.")
    ip = dict(params)
    dates_iso, (height, width, transform, crs), lam_info, stable_ground = _run_network(
        pairs, ip, dates, lam_sample, log)
    ts_dir, part_dir = _part_dir(output_folder, pairs, ip, dates_iso, block_rows, run_key,
                                 resume)
    jobs = inversion_jobs(pairs, height, width, part_dir, ip, block_rows, block_cols,
                          dates=None if dates is None else dates_iso)
    with executor_or_local(executor) as ex:
        log("inversion: %d pairs, %d dates (%s to %s), %d x %d grid in %d row block(s) on %s"
            % (len(pairs), len(dates_iso), dates_iso[0], dates_iso[-1], width, height,
               len(jobs), ex.description))
        results = ex.map(invert_rows_task, jobs, progress=progress.sub(0.0, 0.9),
                         pass_cancel=True, label="inversion",
                         describe=lambda j: "inversion rows %d-%d" % tuple(j["rows"]))
        description = ex.description
    reused = sum(1 for r in results if r["reused"])
    if reused:
        log("inversion: %d row block(s) reused from an interrupted run" % reused)
    tags = tio.timeseries_tags(dates_iso, ip, [os.path.basename(x.path) for x in pairs],
                               stable_ground=stable_ground)
    paths = assemble_timeseries(jobs, ts_dir, dates_iso, transform, crs, tags,
                                progress=progress.sub(0.9, 1.0))
    # the pairs' mean window footprint beside the series, for the detector
    # (core/detect/footprint.py)
    write_footprint([p.path for p in pairs], ts_dir, (height, width), transform, crs)
    return dict(paths=paths, lam=ip["lam"], lam_info=lam_info, lam2=float(ip["lam2"]),
                dates=dates_iso, n_pairs=len(pairs), n_dates=len(dates_iso),
                n_blocks=len(jobs), reused_blocks=reused, executor=description)


def _output_dates(pairs, source, pairs_csv, dates):
    """The output dates beyond those of the pairs: every date of the pairs.csv (selected
    or not) and ``dates``; None when neither is given."""
    csv_path = str(source) if str(source).lower().endswith(".csv") else pairs_csv
    if not csv_path and dates is None:
        return None
    all_dates = [p.reference_date for p in pairs] + [p.secondary_date for p in pairs]
    if csv_path:
        all_dates += tio.stack_dates_from_csv(csv_path)
    if dates is not None:
        all_dates += list(inv.to_datetime64(dates))
    return all_dates


def invert_request(source, pairs_csv=None, lam=inv.DEFAULT_LAM, lam2=inv.DEFAULT_LAM2,
                   robust=inv.InversionParams.robust, weighting=inv.InversionParams.weighting,
                   min_obs=inv.InversionParams.min_obs, min_ncc=None, min_snr=None,
                   max_iter=inv.InversionParams.max_iter, dates=None):
    """What :func:`invert_pairs` needs from a folder of pair rasters or a pairs.csv
    (:func:`.timeseries_io.find_pair_rasters`), settings checked: ``(pairs, params,
    dates)``, ``dates`` being every date of the pairs.csv and ``dates`` beside those of
    the pairs (None when neither is given)."""
    inv.check_params(robust, min_obs, max_iter)
    if weighting not in inv.WEIGHTINGS:
        raise ParameterError("weighting must be one of %s (got %r)."
                             % (", ".join(inv.WEIGHTINGS), weighting))
    pairs = tio.find_pair_rasters(source, pairs_csv)
    if len(pairs) < 1:
        raise InputError("No usable pair raster found in '%s'." % source)
    params = dict(robust=robust, weighting=weighting, min_obs=int(min_obs), min_ncc=min_ncc,
                  min_snr=min_snr, max_iter=int(max_iter), lam=lam, lam2=float(lam2))
    return pairs, params, _output_dates(pairs, source, pairs_csv, dates)


def invert_pair_rasters(source, output_folder, pairs_csv=None, block_size=256, dates=None,
                        lam_sample=inv.DEFAULT_LAM_SAMPLE, progress=None, **settings):
    """Invert every pixel of a stack of pair rasters; write the ``timeseries/`` files.

    ``settings``: the solver settings of :func:`invert_request` (lam, lam2, robust,
    weighting, min_obs, min_ncc, min_snr, max_iter; as in
    :func:`slidewatch.core.series.inversion.invert_network`); ``source`` / ``pairs_csv``: see
    :func:`.timeseries_io.find_pair_rasters`; ``output_folder``: the files go to
    ``output_folder/timeseries/``; ``block_size``: rows per task and columns per chunk
    (memory grows with ``n_pairs * block_size^2`` per running task). ``lam`` is resolved
    once for the whole stack (None = the default from the temporal sampling, "auto" =
    generalised cross-validation on ``lam_sample`` pixels). Output dates are the dates of
    the pair rasters, plus every date of the pairs.csv when one is used (a date whose pairs
    were all deselected or failed is bridged by the regularisation and flagged), plus
    ``dates``. Runs on local threads through :func:`invert_pairs` (resumable). Returns
    :class:`.timeseries_io.TimeseriesOutputs`.
    """
    if int(block_size) < 1:
        raise ParameterError("block_size must be >= 1 (got %r)." % block_size)
    pairs, params, all_dates = invert_request(source, pairs_csv, dates=dates, **settings)
    res = invert_pairs(pairs, output_folder, params, dates=all_dates,
                       block_rows=int(block_size), block_cols=int(block_size),
                       lam_sample=lam_sample, progress=progress)
    paths = res["paths"]
    return tio.TimeseriesOutputs(paths["ts_east"], paths["ts_north"], paths["velocity"],
                                 paths["flags"], res["dates"], res["lam"], res["lam2"],
                                 res["n_pairs"], res["lam_info"])
