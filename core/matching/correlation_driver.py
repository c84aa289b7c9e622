"""The correlation step's driver: a list of image pairs -> ``pairs/pair_YYYYMMDD_YYYYMMDD.tif``.

One driver for every caller: the pipeline (:mod:`.pipeline`), the Processing algorithm
"Correlate pairs from pairs.csv" and scripts (:func:`correlate_pairs_csv`). A pair is one
job (:func:`pair_job`: image paths, dates, output path, correlation parameters); the jobs
run as :func:`.pipeline_tasks.correlate_pair_task` on an executor (:mod:`.executor`: local
threads by default, or a Dask cluster), which reports progress after each pair, polls
cancel between pairs and hands the cancel flag to the running pairs (they stop between
their blocks).

Resuming: a pair raster that exists with the same parameters
(:func:`.pair_correlation.pair_output_is_current`, from the parameters stored in its tags)
is reused, not recomputed, unless ``resume=False`` (then it is deleted and recomputed).
"""

import contextlib
import os
from dataclasses import dataclass, field

import numpy as np

from .. import products as prod
from ..errors import InputError
from ..progress import as_progress

__all__ = ["pair_job", "jobs_from_pairs_csv", "correlate_pairs", "correlate_pairs_csv",
           "CorrelationRun", "LOW_VALID_FRACTION"]

#: pairs with fewer valid windows than this share are listed in the log
LOW_VALID_FRACTION = 0.2


@dataclass
class CorrelationRun:
    """What :func:`correlate_pairs` did. ``pairs``: one dict per job, in the order of the
    jobs: path, reference_date, secondary_date, skipped (True: reused, up to date),
    valid_fraction (NaN when skipped), seconds, stable_ground (tag, '' when skipped)."""

    pairs: list = field(default_factory=list)
    executor: str = ""

    @property
    def computed(self):
        return sum(1 for p in self.pairs if not p["skipped"])

    @property
    def reused(self):
        return sum(1 for p in self.pairs if p["skipped"])

    @property
    def seconds(self):
        """Seconds of each computed pair."""
        return [p["seconds"] for p in self.pairs if not p["skipped"]]


def pair_job(reference_path, secondary_path, reference_date, secondary_date, out_path,
             params):
    """One pair to correlate (the job of :func:`.pipeline_tasks.correlate_pair_task`).
    ``params``: the correlation parameters (as :func:`.pair_correlation.correlate_pair_rasters`)."""
    return dict(reference_path=reference_path, secondary_path=secondary_path,
                reference_date=reference_date, secondary_date=secondary_date,
                out_path=out_path, params=dict(params))


def jobs_from_pairs_csv(pairs_csv, output_folder, params):
    """The jobs of the selected pairs of ``pairs_csv`` (outputs in
    ``output_folder/pairs/``); the parameters and every row are validated first."""
    from ..input_checks import validate_pairs_csv
    from .pair_correlation import pair_params, read_selected_pairs

    pair_params(**params)  # validate before doing anything
    validate_pairs_csv(pairs_csv)  # every bad row of a hand-edited file, with line numbers
    out_dir = os.path.join(output_folder, prod.PAIRS_FOLDER)
    return [pair_job(p["reference_path"], p["secondary_path"], p["reference_date"],
                     p["secondary_date"],
                     os.path.join(out_dir, prod.pair_file_name(p["reference_date"],
                                                               p["secondary_date"])), params)
            for p in read_selected_pairs(pairs_csv)]


def _check_images(jobs, missing_hint):
    for job in jobs:
        for key in ("reference_path", "secondary_path"):
            if not os.path.exists(job[key]):
                raise InputError("Image '%s' of pair %s / %s does not exist%s" % (
                    job[key], job["reference_date"], job["secondary_date"],
                    missing_hint or "."))


def _check_space(todo, shape):
    """A full disk is reported before hours of work: 5 float32 bands per pair on the grid
    of window centres, counted at half size (deflate compresses them)."""
    from ..input_checks import check_free_space
    if shape is None:
        import rasterio
        try:
            with rasterio.open(todo[0]["reference_path"]) as src:
                shape = (src.height, src.width)
        except Exception:  # an unreadable image is reported by the correlation itself
            return
    step = int(todo[0]["params"].get("step", 8))
    cells = -(-int(shape[0]) // step) * -(-int(shape[1]) // step)
    check_free_space(os.path.dirname(todo[0]["out_path"]), len(todo) * cells * 5 * 4 * 0.5,
                     "%d pair raster(s)" % len(todo))


def _to_do(jobs, resume):
    """The jobs whose output is not current (all of them, outputs deleted, without resume)."""
    from .pair_correlation import pair_output_is_current
    if not resume:
        for job in jobs:
            with contextlib.suppress(OSError):
                os.remove(job["out_path"])
        return list(jobs)
    return [j for j in jobs if not pair_output_is_current(j["out_path"], j["params"])]


def _log_summary(results, log):
    low = [os.path.basename(r["path"]) for r in results
           if np.isfinite(r["valid_fraction"]) and r["valid_fraction"] < LOW_VALID_FRACTION]
    if low:
        log("correlation: pair(s) with less than %d %% valid windows (clouds, snow, "
            "changes): %s" % (round(100 * LOW_VALID_FRACTION), ", ".join(low)))
    computed = [r for r in results if not r["reused"]]
    nostable = [os.path.basename(r["path"]) for r in results
                if r.get("stable_ground", "") == prod.STABLE_GROUND_NONE]
    if nostable:
        log("correlation: %d of %d pair(s) without identifiable stable ground (no tight "
            "cluster of displacements near zero: the scene moves almost everywhere), no "
            "co-registration offset removed from them; give a stable-area mask to "
            "correct them: %s" % (len(nostable), len(computed), ", ".join(nostable[:10])
                                  + (", ..." if len(nostable) > 10 else "")))


def _pair_row(job, result):
    if result is None or result["reused"]:
        return dict(path=job["out_path"], reference_date=job["reference_date"],
                    secondary_date=job["secondary_date"], skipped=True,
                    valid_fraction=float("nan"), seconds=0.0, stable_ground="")
    return dict(path=result["path"], reference_date=job["reference_date"],
                secondary_date=job["secondary_date"], skipped=False,
                valid_fraction=result["valid_fraction"], seconds=result["seconds"],
                stable_ground=result.get("stable_ground", ""))


def correlate_pairs(jobs, executor=None, resume=True, shape=None, progress=None, log=None,
                    missing_hint=""):
    """Correlate the pairs ``jobs`` (:func:`pair_job`) into their pair rasters.

    Parameters
    ----------
    jobs : list of :func:`pair_job` dicts
    executor : an executor of :func:`.executor.get_executor` (local threads or Dask); None:
        local threads on every CPU, for this call
    resume : reuse the pair rasters already computed with the same parameters (False:
        recompute every pair)
    shape : (height, width) of the images for the free-space check (default: read from
        the first image to correlate)
    progress : :class:`~.progress.Progress`: fraction of the pairs done, cancel between
        pairs (and, through the executor's cancel flag, between the blocks of a pair)
    log : callable for the log lines (default ``progress.info``)
    missing_hint : end of the message when an image is missing (what to do)

    Returns a :class:`CorrelationRun`.
    """
    from ..run.executor import executor_or_local
    from ..run.pipeline_tasks import correlate_pair_task
    from ..raster_io import ensure_writable_folder

    progress = as_progress(progress)
    log = log or progress.info
    progress.check()
    _check_images(jobs, missing_hint)
    for folder in sorted({os.path.dirname(os.path.abspath(j["out_path"])) for j in jobs}):
        ensure_writable_folder(folder)
    todo = _to_do(jobs, resume)
    if todo:
        _check_space(todo, shape)
    with executor_or_local(executor) as ex:
        run = CorrelationRun(executor=ex.description)
        if not todo:
            run.pairs = [_pair_row(j, None) for j in jobs]
            progress.update(1.0)
            return run
        log("correlation: %d pair(s) to correlate, %d up to date and reused, on %s"
            % (len(todo), len(jobs) - len(todo), ex.description))
        results = ex.map(correlate_pair_task, todo, progress=progress, pass_cancel=True,
                         describe=lambda j: "pair %s / %s" % (j["reference_date"],
                                                              j["secondary_date"]),
                         label="correlation")
    _log_summary(results, log)
    by_path = {j["out_path"]: r for j, r in zip(todo, results)}
    run.pairs = [_pair_row(j, by_path.get(j["out_path"])) for j in jobs]
    return run


def correlate_pairs_csv(pairs_csv, output_folder, progress=None, executor=None, resume=True,
                        **params):
    """Correlate every selected pair of ``pairs_csv`` into
    ``output_folder/pairs/pair_YYYYMMDD_YYYYMMDD.tif`` (:func:`correlate_pairs`);
    resumable: a pair whose output exists with the same parameters is skipped.

    ``params``: as :func:`.pair_correlation.correlate_pair_rasters`. Returns the list of
    :attr:`CorrelationRun.pairs` dicts (path, reference_date, secondary_date, skipped,
    valid_fraction, seconds, stable_ground).
    """
    jobs = jobs_from_pairs_csv(pairs_csv, output_folder, params)
    run = correlate_pairs(jobs, executor, resume=resume, progress=progress,
                          missing_hint=" (listed in '%s')." % pairs_csv)
    return run.pairs
