"""End-to-end SlideWatch run: catalog -> common grid -> pairing -> correlation -> inversion
-> quality layers -> detection -> overview, resumable, with a log of what was done, skipped
and why.

Entry point::

    from slidewatch.core.run.pipeline import PipelineParams, run_pipeline
    result = run_pipeline("images/", "results/", PipelineParams(), scheduler=None)

Files written under ``output_folder`` (SPEC):

- ``catalog.csv``, ``pairs.csv``, ``pairs/pair_YYYYMMDD_YYYYMMDD.tif``,
  ``timeseries/ts_east_m.tif``, ``ts_north_m.tif``, ``velocity.tif``, ``detections.gpkg``;
- ``common_grid/`` (only when the images are not all on one grid: warped copies);
- ``timeseries/quality_*.tif`` (+ ``.qml`` styles): the per-pixel quality layers of the
  inversion (valid pairs, share with NCC >= threshold, first/last measured date, longest
  gap; :mod:`.quality_layers`);
- ``overview.png`` (velocity + detection outlines + legend, see :mod:`.overview`);
- ``slidewatch_run.json``: the run manifest (per step: parameter hash, input fingerprint,
  output fingerprint, status, time);
- ``slidewatch.log``: what each run did, skipped and why (appended, one run after another).

Resuming
--------
Every step stores its parameters: in the manifest, and in its outputs (the pair rasters
carry their correlation parameters in their tags). A re-run recomputes a step only when
its parameters, its inputs (fingerprints: path, size, modification time) or its outputs
(missing or modified) changed; otherwise it is skipped and the log says why. Correlation
is decided pair by pair (a pair raster is reused when it exists with the same parameters),
so a run interrupted after 900 of 1000 pairs only correlates the last 100. A change of a
detection parameter recomputes only the detection (analysts' validations in
``detections.gpkg`` are kept by the detection store).

Scale-out
---------
Pair correlations and inversion row-blocks are independent tasks run through
:func:`.executor.get_executor` (``scheduler``: None = local threads, or a Dask scheduler
address), by the steps' drivers :func:`.correlation_driver.correlate_pairs` and
:func:`.inversion_driver.invert_pairs` (the single-step Processing algorithms call the same
ones). Tasks get paths, write their own outputs atomically and return small results.
"""

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import Cancelled, InputError, ParameterError, SlideWatchError
from .. import products as prod
from ..matching.correlation_params import CorrelationParams
from ..network.pairing import PairingParams
from ..series.quality_layers import DEFAULT_NCC_THRESHOLD
from ..progress import Progress, as_progress
from ..raster_io import ensure_writable_folder, remove_stale_partials, write_text_atomic

__all__ = ["PipelineParams", "PipelineResult", "run_pipeline", "STEPS", "MANIFEST_NAME",
           "LOG_NAME", "params_from_dict"]

MANIFEST_NAME = "slidewatch_run.json"
LOG_NAME = prod.LOG_FILE
MANIFEST_VERSION = 1

#: the steps in order, with their share of the progress bar
STEPS = (("catalog", 0.04), ("grid", 0.04), ("pairing", 0.04), ("correlation", 0.58),
         ("inversion", 0.18), ("quality", 0.02), ("detection", 0.07), ("overview", 0.03))


@dataclass
class PipelineParams:
    """Every parameter of a pipeline run, with the defaults used by ``qgis_process``.

    Catalog
        ``band``: band to use (None: Sentinel-2 B08 then B04, Landsat B8 then B4, else
        band 1; or a band name such as "B04", or a 1-based index).
    Common grid (used only when the images are not all on one grid)
        ``grid_extent``: "intersection" (default), "union" or "reference";
        ``grid_resampling``: "cubic" (default), "bilinear", "lanczos", "nearest".
    Pairing
        ``pair_strategy``: "optimal" (default; quality model picks the most informative
        pairs), or another strategy of :mod:`.pairing`; ``pairs_per_date``: budget of
        pairs per date (3); both default to :class:`.pairing.PairingParams`'s.
        ``pairing_options``: further fields of :class:`.pairing.PairingParams` (dict;
        ``training_csv`` too; names that are not fields are left out, with a log line).
        The window, step, search and ``max_velocity_m_per_day`` of the correlation are
        passed to the pairing as well.
    Correlation
        ``window`` (32 px), ``step`` (8 px: the output grid spacing), ``search`` (8 px:
        largest displacement looked for), ``stable_ground`` ("median", default: the
        median offset of each pair's valid windows is removed, taking out the
        co-registration error of the two dates — measured on the bundled demo stack it
        brings the stable-ground velocity scatter from 1.9 to 0.2 m/yr; "plane": a robust
        plane, for rotation/scale misregistration; "none": keep the raw offsets),
        ``correlation_options``: further options of :func:`.correlation.correlate`
        (subpixel, prefilter, min_ncc, ...) and of the pair driver.
    Stable area
        ``stable_mask``: ground known not to move, a raster (non-zero = stable, any grid)
        or a polygon layer (GeoPackage, shapefile, GeoJSON, ...; ``path|layername=x``);
        "auto" (default) takes a file of the input folder whose name holds the word
        *stable* (``stable_mask.tif``, ``stable_area.gpkg``) when there is one, "" none.
        It is rasterised once onto the images' grid (:mod:`.stable_area`) and used for
        each pair's co-registration correction (``stable_ground`` "median"/"plane" over
        it instead of the tightest cluster near zero) and for the detection's bias model
        and noise (instead of the data-driven first guess). Give one whenever the moving
        part is large (glaciers, whole flanks).
    Inversion
        ``inversion_lambda`` (None: the inversion's default; "auto": generalised
        cross-validation), ``inversion_robust`` ("tukey"), ``inversion_weighting``
        ("ncc"), ``inversion_block_rows`` (rows of the pair grid per task, 64),
        ``inversion_options``: further options of the inversion driver.
    Quality layers
        ``write_quality_layers``: write ``timeseries/quality_*.tif`` (True);
        ``quality_ncc_threshold``: NCC a valid measurement needs to count in the
        ``ncc_share`` layer (0.5, :data:`.quality_layers.DEFAULT_NCC_THRESHOLD`).
    Detection
        ``detection_options``: fields of :class:`.detection.DetectionParams` to change
        (z_seed, z_grow, min_area_m2, min_score, ...); defaults are the detection
        module's. ``dem_path``: a DEM raster for the downslope evidence and topographic
        bias terms; "auto" (default) uses ``dem.tif`` (or ``dem.tiff``) of the input
        folder when there is one, "" none.
    Run
        ``max_workers``: local threads (None: all CPUs); ``retries``: re-tries of a failed
        task (2); ``write_overview``: write overview.png (True); ``force``: recompute
        every step even if up to date (False).
    """

    band: object = None
    grid_extent: str = "intersection"
    grid_resampling: str = "cubic"
    pair_strategy: str = PairingParams.strategy
    pairs_per_date: int = PairingParams.budget_pairs_per_date
    pairing_options: dict = field(default_factory=dict)
    window: int = CorrelationParams.window
    step: int = CorrelationParams.step
    search: int = CorrelationParams.search
    stable_ground: str = "median"
    correlation_options: dict = field(default_factory=dict)
    inversion_lambda: object = None
    inversion_robust: str = "tukey"
    inversion_weighting: str = "ncc"
    inversion_block_rows: int = 64
    inversion_options: dict = field(default_factory=dict)
    write_quality_layers: bool = True
    quality_ncc_threshold: float = DEFAULT_NCC_THRESHOLD
    detection_options: dict = field(default_factory=dict)
    dem_path: str = "auto"
    stable_mask: str = "auto"
    max_workers: object = None
    retries: int = 2
    write_overview: bool = True
    force: bool = False

    def _correlation_options(self):
        """Correlation options with the stable-ground correction (explicit option wins)."""
        return dict({"stable": self.stable_ground}, **self.correlation_options)

    def step_params(self, step):
        """The parameters that define the outputs of ``step`` (hashed for resuming).

        Canonical: built from the step's checked parameter object with every field,
        defaults included (:class:`.pair_correlation.pair_params` for the correlation,
        :class:`.pairing.PairingParams`, :class:`.inversion.InversionParams`'s options,
        :class:`.detection.DetectionParams`), so that a value given explicitly and the
        same value left to its default hash alike (Python and the Processing dialog)."""
        if step == "catalog":
            return {"band": self.band}
        if step == "grid":
            return {"extent": self.grid_extent, "resampling": self.grid_resampling}
        if step == "pairing":
            params, files, _ = self.pairing_params()
            p = dict(canonical_fields(params), files=files)
            p.pop("history_folder", None)
            return p
        if step == "correlation":
            from ..matching.pair_correlation import pair_params
            return pair_params(**dict(self._correlation_options(), window=self.window,
                                      step=self.step, search=self.search))
        if step == "inversion":
            ip, lam_sample = _inversion_params(self)
            return canonical_numbers(dict(ip, lam_sample=lam_sample))
        if step == "quality":
            return {"ncc_threshold": float(self.quality_ncc_threshold)}
        if step == "detection":
            return dict(canonical_fields(detection_params(self.detection_options)),
                        dem_path=self.dem_path)
        if step == "overview":
            return {}
        raise KeyError(step)

    def pairing_params(self):
        """(:class:`.pairing.PairingParams`, {file argument: path} given in
        ``pairing_options``, [ignored option names]) of the pairing step. The run's
        ``history_folder`` (its output folder) is added by the step unless given."""
        opts = dict(self.pairing_options)
        opts.update(strategy=self.pair_strategy, budget_pairs_per_date=int(self.pairs_per_date),
                    window=self.window, step=self.step, search=self.search)
        vmax = self.correlation_options.get("max_velocity_m_per_day")
        if vmax:
            opts.setdefault("max_velocity_m_per_day", vmax)
        files = {k: opts.pop(k) for k in ("history_folder", "training_csv") if k in opts}
        ignored = sorted(set(opts) - set(PairingParams.names()))
        params = PairingParams(**{k: v for k, v in opts.items() if k not in ignored})
        return params, files, ignored


def canonical_numbers(d):
    """``d`` with its numbers as floats (but bools and ints that are counts: the values
    whose key names an iteration, observation or sample count stay ints)."""
    counts = ("min_obs", "max_iter", "n_start", "lam_sample")
    return {k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool)
                and k not in counts else v) for k, v in d.items()}


def canonical_fields(obj):
    """{field: value} of a parameter dataclass, each number as its field's declared type
    (``5`` for a float field hashes as ``5.0``)."""
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if kind == "float":
                v = float(v)
            elif kind == "int" and float(v).is_integer():
                v = int(v)
        out[f.name] = v
    return out


def detection_params(options):
    """The checked :class:`.detection.DetectionParams` of ``detection_options``."""
    from ..detect import detection as det
    known = {f.name for f in dataclasses.fields(det.DetectionParams)}
    unknown = set(options) - known
    if unknown:
        raise ParameterError("Unknown detection option(s): %s. Known: %s." % (
            ", ".join(sorted(unknown)), ", ".join(sorted(known))))
    return det.DetectionParams(**options).validate()


def params_from_dict(d):
    """A :class:`PipelineParams` from a dict (unknown keys are an error)."""
    names = {f.name for f in dataclasses.fields(PipelineParams)}
    unknown = set(d) - names
    if unknown:
        raise ParameterError("Unknown pipeline parameter(s): %s. Known: %s." % (
            ", ".join(sorted(unknown)), ", ".join(sorted(names))))
    return PipelineParams(**d)


@dataclass
class PipelineResult:
    """What a run produced. ``steps``: {step: {"status": "done"|"skipped", "reason",
    "seconds"}}; ``paths``: the SPEC outputs (absolute paths)."""

    output_folder: str
    paths: dict = field(default_factory=dict)
    steps: dict = field(default_factory=dict)
    n_dates: int = 0
    n_pairs: int = 0
    pairs_computed: int = 0
    pairs_reused: int = 0
    executor: str = ""
    seconds: float = 0.0
    log: list = field(default_factory=list)

    def skipped(self, step):
        return self.steps.get(step, {}).get("status") == "skipped"


# ----------------------------------------------------------------------------- helpers

def _canonical(obj):
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, float):
        return repr(obj)
    if isinstance(obj, (_dt.date, _dt.datetime)):
        return obj.isoformat()
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def params_hash(params):
    """Stable short hash of a parameter dict."""
    text = json.dumps(_canonical(params), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def file_fingerprint(path, base=None):
    """[relative path, size, mtime_ns] of a file, or None when missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    rel = os.path.relpath(path, base) if base else path
    return [rel, st.st_size, st.st_mtime_ns]


def fingerprint(paths, base=None):
    """A hash of the fingerprints of ``paths`` (missing files count as missing)."""
    items = [file_fingerprint(p, base) or [os.path.relpath(p, base) if base else p, None]
             for p in sorted(paths)]
    return params_hash(items)


#: Sidecar files GDAL/QGIS write beside an image when it is displayed (statistics,
#: pyramids): they do not change the pixels, so they do not make the inputs "changed"
#: (a ".msk" mask sidecar does change the valid pixels: it counts).
_SIDECAR_SUFFIXES = (".aux.xml", ".ovr")


def _list_files(folder):
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(os.path.join(root, f) for f in sorted(files)
                   if not f.startswith(".") and not f.lower().endswith(_SIDECAR_SUFFIXES))
    return out


class _RunLog:
    """Collects log lines, echoes them to ``progress.info`` and keeps ``slidewatch.log``."""

    def __init__(self, folder, progress):
        self.path = os.path.join(folder, LOG_NAME)
        self.progress = progress
        self.lines = []
        try:
            with open(self.path, encoding="utf-8") as fh:
                self._previous = fh.read()
        except OSError:
            self._previous = ""

    def __call__(self, message):
        stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        for line in str(message).splitlines() or [""]:
            self.lines.append("[%s] %s" % (stamp, line))
        self.progress.info(message)

    def flush(self):
        text = self._previous
        if text and not text.endswith("\n"):
            text += "\n"
        text += "\n".join(self.lines) + "\n"
        try:
            write_text_atomic(self.path, text)
        except SlideWatchError:
            pass   # the log must never hide the outcome of the run


#: Version of each step's method. Bump a step's number when a code change alters its
#: results at the same parameters (e.g. a new default computed inside core), so that a
#: re-run recomputes that step and what depends on it instead of reusing old outputs.
#: inversion 2: default regularisation weight from the temporal sampling (was 30);
#: detection 2: ramp onset, independent-observation count; 3: biweight object series,
#: onset = profile-likelihood median; 4: onset interval widened for correlated residuals;
#: 5: dates with fewer than half of an object's pixels valid leave its series.
#: correlation 2: wide-window pass on by default, pairs/footprint/*.npy; inversion 3:
#: timeseries/footprint.tif; detection 6: independent observations per window footprint.
METHOD_VERSIONS = {"catalog": 1, "grid": 1, "pairing": 1, "correlation": 3, "inversion": 3,
                   "quality": 1, "detection": 6, "overview": 1}


class _Manifest:
    def __init__(self, folder):
        self.path = os.path.join(folder, MANIFEST_NAME)
        self.folder = folder
        self.data = {"version": MANIFEST_VERSION, "steps": {}}
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
            if isinstance(data, dict) and data.get("version") == MANIFEST_VERSION:
                self.data = data
                self.data.setdefault("steps", {})
        except (OSError, ValueError):
            pass

    def entry(self, step):
        return self.data["steps"].get(step)

    def same_params(self, step, phash):
        """Same parameters and same method version as the recorded run of ``step``."""
        e = self.entry(step) or {}
        return (e.get("params_hash") == phash
                and e.get("method_version", 1) == METHOD_VERSIONS.get(step, 1))

    def is_current(self, step, phash, inputs_fp, outputs, check_outputs=True):
        """(True, reason) when ``step`` can be skipped, else (False, reason)."""
        e = self.entry(step)
        if e is None:
            return False, "no previous run"
        if e.get("method_version", 1) != METHOD_VERSIONS.get(step, 1):
            return False, "method changed by a SlideWatch update (version %s -> %s)" % (
                e.get("method_version", 1), METHOD_VERSIONS.get(step, 1))
        if e.get("params_hash") != phash:
            return False, "parameters changed"
        if e.get("inputs") != inputs_fp:
            return False, "inputs changed"
        missing = [p for p in outputs if not os.path.exists(p)]
        if missing:
            return False, "output missing (%s)" % os.path.relpath(missing[0], self.folder)
        if check_outputs and e.get("outputs") != fingerprint(outputs, self.folder):
            return False, "outputs modified since the last run"
        return True, "up to date (same parameters and inputs)"

    def record(self, step, phash, inputs_fp, outputs, params, extra=None):
        self.data["steps"][step] = dict(
            params_hash=phash, method_version=METHOD_VERSIONS.get(step, 1),
            inputs=inputs_fp, outputs=fingerprint(outputs, self.folder),
            params=json.loads(json.dumps(params, default=str)),
            finished_at=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            **(extra or {}))
        self.save()

    def forget(self, step):
        if self.data["steps"].pop(step, None) is not None:
            self.save()

    def save(self):
        write_text_atomic(self.path, json.dumps(self.data, indent=1, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------- the run

class _Steps:
    """Per-step progress reporters (sub-ranges of one Progress, or a factory)."""

    def __init__(self, progress, step_progress):
        self.progress = progress
        self.factory = step_progress
        self.bounds = {}
        acc = 0.0
        total = sum(w for _, w in STEPS)
        for i, (name, w) in enumerate(STEPS):
            self.bounds[name] = (i, acc / total, (acc + w) / total)
            acc += w

    def __call__(self, name, log):
        i, lo, hi = self.bounds[name]
        inner = self.factory(i, name) if self.factory is not None else self.progress.sub(lo, hi)
        # progress and cancel go to the step's reporter; log lines of the step functions
        # go to the run log (slidewatch.log), which echoes them to the root reporter
        return Progress(callback=lambda pct, msg: inner.update(pct / 100.0, msg),
                        is_cancelled=lambda: inner.cancelled, log=log)


def run_pipeline(input_folder, output_folder, params=None, scheduler=None, progress=None,
                 step_progress=None):
    """Run every step from a folder of images to the SPEC outputs; see the module doc.

    Parameters
    ----------
    input_folder : folder of images (or anything :func:`.catalog.build_catalog` accepts)
    output_folder : receives the outputs (created if needed)
    params : :class:`PipelineParams` (defaults when None) or a dict of its fields
    scheduler : None/"" (local threads), a Dask scheduler address ("tcp://host:8786",
        "scheduler-file:/path", "local:N") or a ``distributed.Client``; see
        :func:`.executor.get_executor`
    progress : :class:`~.progress.Progress` (progress, cancel, log lines)
    step_progress : optional callable ``(index, step_name) -> Progress`` giving each step
        its own full-range reporter (the Processing algorithm uses it with
        QgsProcessingMultiStepFeedback); default: sub-ranges of ``progress``

    Returns
    -------
    :class:`PipelineResult`
    """
    from .executor import get_executor

    t_start = time.perf_counter()
    progress = as_progress(progress)
    if params is None:
        params = PipelineParams()
    elif isinstance(params, dict):
        params = params_from_dict(params)
    if not input_folder or not os.path.exists(str(input_folder)):
        raise InputError("Input '%s' does not exist. Choose the folder holding the images."
                         % input_folder)
    input_folder = os.path.abspath(str(input_folder))
    if not output_folder:
        raise ParameterError("No output folder given: choose a folder for the results.")
    output_folder = os.path.abspath(str(output_folder))
    if output_folder == input_folder:
        raise ParameterError("The output folder must not be the input folder ('%s'): choose "
                             "another folder (e.g. a 'results' sub-folder)." % output_folder)
    ensure_writable_folder(output_folder)
    _check_params(params)

    log = _RunLog(output_folder, progress)
    manifest = _Manifest(output_folder)
    steps = _Steps(progress, step_progress)
    result = PipelineResult(output_folder=output_folder)
    result.log = log.lines
    log("=== SlideWatch pipeline: %s -> %s" % (input_folder, output_folder))
    stale = remove_stale_partials(output_folder)
    if stale:
        log("Removed %d temporary file(s) left by an interrupted earlier run (e.g. %s)."
            % (len(stale), os.path.relpath(stale[0], output_folder)))
    executor = None
    try:
        executor = get_executor(scheduler, max_workers=params.max_workers,
                                retries=params.retries)
        result.executor = executor.description
        log("Executor: %s" % executor.description)
        ctx = _Context(input_folder, output_folder, params, executor, log, manifest, result)
        catalog = _step_catalog(ctx, steps("catalog", log))
        catalog = _step_grid(ctx, catalog, steps("grid", log))
        _prepare_stable_area(ctx, catalog)
        selected = _step_pairing(ctx, catalog, steps("pairing", log))
        _step_correlation(ctx, selected, catalog, steps("correlation", log))
        _step_inversion(ctx, steps("inversion", log))
        _step_quality(ctx, steps("quality", log))
        _step_detection(ctx, steps("detection", log))
        _step_overview(ctx, catalog, steps("overview", log))
        result.seconds = time.perf_counter() - t_start
        done = [s for s, v in result.steps.items() if v["status"] == "done"]
        skipped = [s for s, v in result.steps.items() if v["status"] == "skipped"]
        log("=== Finished in %.1f s. Done: %s. Skipped (up to date): %s." % (
            result.seconds, ", ".join(done) or "none", ", ".join(skipped) or "none"))
        progress.update(1.0, "SlideWatch pipeline finished")
        return result
    except Cancelled:
        log("=== Cancelled by the user. Finished outputs are kept and will be reused.")
        raise
    except SlideWatchError as exc:
        log("=== Stopped with an error: %s" % exc)
        raise
    except Exception as exc:
        log("=== Stopped with an unexpected error: %s: %s" % (type(exc).__name__, exc))
        raise
    finally:
        if executor is not None:
            executor.close()
        log.flush()


def _check_params(p):
    if int(p.window) < 4:
        raise ParameterError("Correlation window must be at least 4 pixels (got %r); 32 is "
                             "usual for Sentinel-2." % p.window)
    if int(p.step) < 1:
        raise ParameterError("Correlation step must be >= 1 pixel (got %r)." % p.step)
    if int(p.search) < 1:
        raise ParameterError("Search radius must be >= 1 pixel (got %r)." % p.search)
    if int(p.pairs_per_date) < 1:
        raise ParameterError("Pairs per date must be >= 1 (got %r)." % p.pairs_per_date)
    if int(p.inversion_block_rows) < 1:
        raise ParameterError("Inversion block rows must be >= 1 (got %r)."
                             % p.inversion_block_rows)
    if int(p.retries) < 0:
        raise ParameterError("Retries must be >= 0 (got %r)." % p.retries)
    try:
        ncc_threshold = float(p.quality_ncc_threshold)
    except (TypeError, ValueError):
        ncc_threshold = float("nan")
    if not -1.0 <= ncc_threshold <= 1.0:
        raise ParameterError("Quality NCC threshold must be a number in [-1, 1] (got %r); "
                             "0.5 is usual." % (p.quality_ncc_threshold,))
    for name in ("pairing_options", "correlation_options", "inversion_options",
                 "detection_options"):
        if not isinstance(getattr(p, name), dict):
            raise ParameterError("%s must be a dict of keyword options (got %r)."
                                 % (name, getattr(p, name)))


@dataclass
class _Context:
    input_folder: str
    output_folder: str
    params: PipelineParams
    executor: object
    log: object
    manifest: object
    result: PipelineResult
    #: the stable-area mask rasterised on the images' grid (:func:`_prepare_stable_area`)
    stable_mask: object = None

    def path(self, *parts):
        return os.path.join(self.output_folder, *parts)

    def mark(self, step, status, reason, seconds=0.0):
        self.result.steps[step] = {"status": status, "reason": reason,
                                   "seconds": round(seconds, 3)}
        self.log("%s: %s (%s)%s" % (step, "skipped" if status == "skipped" else "done", reason,
                                    "" if status == "skipped" else ", %.1f s" % seconds))


# ----------------------------------------------------------------------------- steps

def _catalog_inputs(ctx):
    """What build_catalog is given: the input folder, minus the output folder if inside."""
    inp, out = ctx.input_folder, ctx.output_folder
    if os.path.isdir(inp) and (out + os.sep).startswith(inp + os.sep):
        return [os.path.join(inp, e) for e in sorted(os.listdir(inp))
                if not e.startswith(".") and not (out + os.sep).startswith(
                    os.path.join(inp, e) + os.sep)]
    return inp


def _input_files(ctx, inputs):
    files = []
    for item in (inputs if isinstance(inputs, list) else [inputs]):
        files.extend(_list_files(item) if os.path.isdir(item) else [item])
    return files


def _step_catalog(ctx, progress):
    from ..stack import catalog as cat
    t0 = time.perf_counter()
    progress.check()
    p = ctx.params.step_params("catalog")
    phash = params_hash(p)
    out = ctx.path(prod.CATALOG_CSV)
    inputs = _catalog_inputs(ctx)
    inputs_fp = fingerprint(_input_files(ctx, inputs))
    ok, why = ctx.manifest.is_current("catalog", phash, inputs_fp, [out])
    if ok and not ctx.params.force:
        catalog = cat.read_catalog_csv(out)
        ctx.mark("catalog", "skipped", why)
    else:
        progress.info("catalog: %s, cataloguing the images" % why)
        catalog = cat.build_catalog(inputs, band=ctx.params.band, progress=progress)
        cat.write_catalog_csv(catalog, out)
        ctx.manifest.record("catalog", phash, inputs_fp, [out], p)
        for line in catalog.report().splitlines():
            ctx.log("catalog: " + line)
        ctx.mark("catalog", "done", "%d image(s)" % len(catalog.records),
                 time.perf_counter() - t0)
    if len(catalog.records) < 2:
        from ..input_checks import require_images
        require_images(catalog, ctx.input_folder, catalog_csv=out)  # lists skipped files
    ctx.result.paths["catalog"] = out
    ctx.result.n_dates = len(catalog.records)
    progress.update(1.0, "catalog: %d images" % len(catalog.records))
    return catalog


def _step_grid(ctx, catalog, progress):
    from ..stack import common_grid as cg
    t0 = time.perf_counter()
    progress.check()
    report = cg.check_grids(catalog)
    if report.ok:
        ctx.mark("grid", "skipped", "all images share one grid")
        ctx.manifest.forget("grid")
        progress.update(1.0)
        return catalog
    ctx.log("grid: " + report.message)
    folder = ctx.path("common_grid")
    p = ctx.params.step_params("grid")
    phash = params_hash(p)
    inputs_fp = fingerprint(catalog.paths)
    entry = ctx.manifest.entry("grid") or {}
    same = ctx.manifest.same_params("grid", phash) and entry.get("inputs") == inputs_fp
    # to_common_grid reuses copies newer than their source; copies made with other grid
    # parameters (or from other inputs) must be redone
    new = cg.to_common_grid(catalog, folder, extent=ctx.params.grid_extent,
                            resampling=ctx.params.grid_resampling, progress=progress,
                            overwrite=ctx.params.force or not same)
    ctx.manifest.record("grid", phash, inputs_fp, new.paths, p)
    if same and not ctx.params.force:
        ctx.mark("grid", "skipped", "warped copies in %s up to date"
                 % os.path.relpath(folder, ctx.output_folder))
    else:
        ctx.mark("grid", "done", "%d image(s) warped onto one grid in %s (%s)" % (
            len(new.records), os.path.relpath(folder, ctx.output_folder),
            "no previous run" if not entry else "parameters or inputs changed"),
            time.perf_counter() - t0)
    ctx.result.paths["common_grid"] = folder
    return new


def _stable_source(ctx):
    """The stable-area file to use (``stable_mask`` parameter), or None."""
    from ..stack.stable_area import find_stable_source, split_layer_source
    value = ctx.params.stable_mask
    if value is None or str(value).strip() == "":
        return None
    value = str(value).strip()
    if value.lower() == "auto":
        found, others = find_stable_source(ctx.input_folder)
        if found and others:
            ctx.log("stable area: %s taken (stable_mask 'auto'); also found, not used: %s"
                    % (os.path.basename(found), ", ".join(os.path.basename(o)
                                                         for o in others)))
        return found
    if not os.path.exists(split_layer_source(value)[0]):
        raise InputError("Stable-area mask '%s' does not exist. Give a raster or a polygon "
                         "layer of ground known not to move, 'auto' or leave it empty."
                         % value)
    return value


def _prepare_stable_area(ctx, catalog):
    """Rasterise the user's stable area once onto the images' grid (``stable_mask/``)."""
    from ..stack.stable_area import rasterise_stable_area, stable_mask_name
    source = _stable_source(ctx)
    ctx.stable_mask = None
    if source is None or not catalog.records:
        return
    grid = catalog.records[0].path
    out = ctx.path("stable_mask", stable_mask_name(source, grid))
    info = rasterise_stable_area(source, grid, out)
    ctx.stable_mask = info["path"]
    ctx.result.paths["stable_mask"] = info["path"]
    ctx.log("stable area: using %s (%s, %d px, %.1f %% of the images' grid) for each pair's "
            "co-registration correction and for the detection's bias model"
            % (os.path.basename(str(source)), info["kind"], info["n_stable"],
               100.0 * info["share"]))


def _step_pairing(ctx, catalog, progress):
    from ..network import pairing as pr
    t0 = time.perf_counter()
    progress.check()
    p_all = ctx.params.step_params("pairing")
    phash = params_hash(p_all)
    out = ctx.path(prod.PAIRS_CSV)
    inputs_fp = fingerprint(catalog.paths)
    ok, why = ctx.manifest.is_current("pairing", phash, inputs_fp, [out])
    if ok and not ctx.params.force:
        table = pr.read_pairs_csv(out)
        selected = table.selected
        ctx.mark("pairing", "skipped", why)
    else:
        progress.info("pairing: %s, selecting pairs" % why)
        params, files, ignored = ctx.params.pairing_params()
        files.setdefault("history_folder", ctx.output_folder)
        if ignored:
            # as before PairingParams: names select_pairs does not know are left out
            ctx.log("pairing: option(s) %s ignored: not pairing parameters (known: %s)" % (
                ", ".join(ignored), ", ".join(pr.PairingParams.names())))
        selection = pr.select_pairs(catalog, params, progress=progress, **files)
        pr.write_pairs_csv(selection, out)
        ctx.manifest.record("pairing", phash, inputs_fp, [out], p_all)
        for line in selection.report().splitlines():
            ctx.log("pairing: " + line)
        selected = selection.selected
        ctx.mark("pairing", "done", "%d pair(s) selected" % len(selected),
                 time.perf_counter() - t0)
    if not selected:
        raise InputError("No pair was selected (see the reasons in %s). Add images, widen the "
                         "baseline range or change the pairing strategy." % out)
    ctx.result.paths["pairs_csv"] = out
    ctx.result.n_pairs = len(selected)
    progress.update(1.0, "pairing: %d pairs" % len(selected))
    return selected


def _pair_jobs(ctx, selected, catalog):
    from ..matching.correlation_driver import pair_job
    params = ctx.params
    bands = {os.path.abspath(r.path): int(r.band_index or 1) for r in catalog.records}
    jobs = []
    for pair in selected:
        corr = dict(params._correlation_options(), window=params.window, step=params.step,
                    search=params.search)
        if ctx.stable_mask and corr.get("stable", "none") != "none":
            corr.setdefault("stable_mask", ctx.stable_mask)
        band = bands.get(os.path.abspath(pair.reference_path), 1)
        if band != 1 or "band" in corr:
            corr.setdefault("band", band)
        out = ctx.path(prod.PAIRS_FOLDER, prod.pair_file_name(pair.reference_date,
                                                              pair.secondary_date))
        jobs.append(pair_job(pair.reference_path, pair.secondary_path, pair.reference_date,
                             pair.secondary_date, out, corr))
    return jobs


def _step_correlation(ctx, selected, catalog, progress):
    """The pairs through the correlation step's driver (:mod:`.correlation_driver`)."""
    from ..matching.correlation_driver import correlate_pairs
    t0 = time.perf_counter()
    progress.check()
    jobs = _pair_jobs(ctx, selected, catalog)
    shape = None
    if catalog.records:
        from ..input_checks import check_window_search
        r0 = catalog.records[0]
        check_window_search((r0.height, r0.width), ctx.params.window, ctx.params.search,
                            r0.path)
        shape = (r0.height, r0.width)
    ctx.result.paths["pairs"] = [j["out_path"] for j in jobs]
    run = correlate_pairs(jobs, ctx.executor, resume=not ctx.params.force, shape=shape,
                          progress=progress, log=ctx.log,
                          missing_hint=" any more. Run the pipeline again from the catalog "
                                       "(delete %s)." % ctx.path(prod.CATALOG_CSV))
    ctx.result.pairs_computed = run.computed
    ctx.result.pairs_reused = run.reused
    secs = run.seconds
    if not secs:
        ctx.mark("correlation", "skipped", "all %d pair raster(s) up to date (same images and "
                 "parameters)" % len(jobs))
        return
    ctx.mark("correlation", "done", "%d pair(s) correlated (%.1f s per pair on average), %d "
             "reused" % (len(secs), sum(secs) / len(secs), run.reused),
             time.perf_counter() - t0)


_INVERSION_OPTIONS = ("lam2", "min_obs", "min_ncc", "min_snr", "max_iter", "lam_sample")


def _inversion_params(p):
    from ..series import inversion as inv
    unknown = set(p.inversion_options) - set(_INVERSION_OPTIONS)
    if unknown:
        raise ParameterError("Unknown inversion option(s): %s. Known: %s." % (
            ", ".join(sorted(unknown)), ", ".join(_INVERSION_OPTIONS)))
    lam = p.inversion_lambda
    if lam is None or (isinstance(lam, str) and lam.strip() == ""):
        lam = inv.DEFAULT_LAM
    elif isinstance(lam, str) and lam.strip().lower() == "auto":
        lam = "auto"
    else:
        try:
            lam = float(lam)
        except (TypeError, ValueError):
            raise ParameterError("Inversion lambda must be a number >= 0, 'auto' or empty "
                                 "(got %r)." % (lam,)) from None
        if lam < 0:
            raise ParameterError("Inversion lambda must be >= 0 (got %r)." % lam)
    o = p.inversion_options
    d = inv.InversionParams
    inv.check_params(p.inversion_robust, o.get("min_obs", d.min_obs),
                     o.get("max_iter", d.max_iter))
    if p.inversion_weighting not in inv.WEIGHTINGS:
        raise ParameterError("Inversion weighting must be one of %s (got %r)."
                             % (", ".join(inv.WEIGHTINGS), p.inversion_weighting))
    return dict(lam=lam, lam2=float(o.get("lam2", inv.DEFAULT_LAM2)),
                robust=p.inversion_robust, weighting=p.inversion_weighting,
                min_obs=int(o.get("min_obs", d.min_obs)), min_ncc=o.get("min_ncc"),
                min_snr=o.get("min_snr"), max_iter=int(o.get("max_iter", d.max_iter))), \
        int(o.get("lam_sample", d.lam_sample))


def _step_inversion(ctx, progress):
    from ..series.inversion_driver import invert_pairs
    from ..series.timeseries_io import pair_rasters_from_paths
    t0 = time.perf_counter()
    progress.check()
    pair_paths = ctx.result.paths["pairs"]
    ip, lam_sample = _inversion_params(ctx.params)
    p = dict(ip, block_rows=int(ctx.params.inversion_block_rows))
    phash = params_hash(ctx.params.step_params("inversion"))
    inputs_fp = fingerprint(pair_paths, ctx.output_folder)
    ts_dir = ctx.path(prod.TIMESERIES_FOLDER)
    ts_files = prod.timeseries_paths(ts_dir)
    outs = [ts_files[k] for k in ("ts_east", "ts_north", "velocity", "flags")]
    ctx.result.paths.update(ts_east=outs[0], ts_north=outs[1], velocity=outs[2],
                            network_flags=outs[3], timeseries=ts_dir)
    ok, why = ctx.manifest.is_current("inversion", phash, inputs_fp, outs)
    if ok and not ctx.params.force:
        ctx.mark("inversion", "skipped", why)
        progress.update(1.0)
        return
    progress.info("inversion: %s, inverting the pair network" % why)
    info = invert_pairs(pair_rasters_from_paths(pair_paths), ctx.output_folder, ip,
                        ctx.executor, block_rows=ctx.params.inversion_block_rows,
                        lam_sample=lam_sample, run_key=[phash, inputs_fp],
                        resume=not ctx.params.force, progress=progress, log=ctx.log)
    ctx.manifest.record("inversion", phash, inputs_fp, outs, dict(p, lam=info["lam"]))
    ctx.mark("inversion", "done", "%d dates, %d pairs, lam %g" % (
        info["n_dates"], info["n_pairs"], info["lam"]), time.perf_counter() - t0)


def _step_quality(ctx, progress):
    """Per-pixel quality layers of the inversion (:mod:`.quality_layers`), written into
    ``timeseries/`` beside the series; skipped when up to date."""
    from ..series import quality_layers as ql
    t0 = time.perf_counter()
    progress.check()
    if not ctx.params.write_quality_layers:
        ctx.mark("quality", "skipped", "not requested")
        progress.update(1.0)
        return
    r = ctx.result.paths
    ts_dir = r["timeseries"]
    layers = ql.quality_paths(ts_dir)
    styles = {k: os.path.splitext(v)[0] + ".qml" for k, v in layers.items()}
    outs = [layers[k] for k in ql.LAYER_KEYS] + [styles[k] for k in ql.LAYER_KEYS]
    r["quality"] = dict(layers)
    r["quality_styles"] = dict(styles)
    p = ctx.params.step_params("quality")
    phash = params_hash(p)
    # the pairs the inversion used, and the series (their dates and inversion parameters)
    inputs = list(r["pairs"]) + [r["ts_east"], r["velocity"]]
    inputs_fp = fingerprint(inputs, ctx.output_folder)
    ok, why = ctx.manifest.is_current("quality", phash, inputs_fp, outs)
    if ok and not ctx.params.force:
        ctx.mark("quality", "skipped", why)
        progress.update(1.0)
        return
    progress.info("quality: %s, computing the quality layers" % why)
    # the module's own lines ("Quality layers from ...", "... written to ...") go to the
    # run log under the step's name, like the inversion's
    inner = Progress(callback=lambda pct, msg: progress.update(pct / 100.0, msg),
                     is_cancelled=lambda: progress.cancelled,
                     log=lambda msg: ctx.log("quality: " + msg))
    res = ql.compute_quality_layers(ts_dir, ncc_threshold=p["ncc_threshold"], progress=inner)
    summary = {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
               for k, v in res.summary.items()}
    ctx.manifest.record("quality", phash, inputs_fp, outs, p, extra={"summary": summary})
    ctx.mark("quality", "done", "%d layers and their styles in %s, from %d pairs" % (
        len(res.paths), os.path.relpath(ts_dir, ctx.output_folder), res.n_pairs),
        time.perf_counter() - t0)
    progress.update(1.0)


def _dem_path(ctx):
    dem = ctx.params.dem_path
    if dem is None or str(dem).strip() == "":
        return None
    if str(dem).strip().lower() == "auto":
        for name in ("dem.tif", "dem.tiff", "DEM.tif"):
            cand = os.path.join(ctx.input_folder, name)
            if os.path.isfile(cand):
                return cand
        return None
    if not os.path.isfile(dem):
        raise InputError("DEM '%s' does not exist. Give an elevation raster, 'auto' or "
                         "leave it empty." % dem)
    return os.path.abspath(dem)


def _step_detection(ctx, progress):
    from ..detect import detection as det
    from ..series import inversion as inv
    t0 = time.perf_counter()
    progress.check()
    detection_params(ctx.params.detection_options)
    from ..input_checks import check_velocity_has_data
    check_velocity_has_data(ctx.result.paths["velocity"], ctx.result.n_pairs,
                            ctx.result.n_dates,
                            inv.effective_min_obs(
                                ctx.params.inversion_options.get("min_obs",
                                                                 inv.InversionParams.min_obs),
                                ctx.result.n_pairs or 3))
    dem = _dem_path(ctx)
    p = ctx.params.step_params("detection")
    phash = params_hash(p)
    r = ctx.result.paths
    stable = ctx.stable_mask
    inputs = [r["ts_east"], r["ts_north"]] + ([dem] if dem else []) + (
        [stable] if stable else [])
    inputs_fp = fingerprint(inputs)
    out = ctx.path(prod.DETECTIONS_GPKG)
    r["detections"] = out
    # analysts edit the validations in detections.gpkg: its own changes do not matter
    ok, why = ctx.manifest.is_current("detection", phash, inputs_fp, [out],
                                      check_outputs=False)
    if ok and not ctx.params.force:
        ctx.mark("detection", "skipped", why)
        progress.update(1.0)
        return
    progress.info("detection: %s, detecting moving areas%s" % (
        why, " (DEM %s)" % os.path.basename(dem) if dem else " (no DEM)"))
    res = det.detect_from_folder(r["timeseries"], dem_path=dem, stable_mask_path=stable,
                                 out_gpkg=out, progress=progress,
                                 **ctx.params.detection_options)
    ctx.manifest.record("detection", phash, inputs_fp, [out], p,
                        extra={"n_detections": len(res.features)})
    s = res.store_summary or {}
    ctx.mark("detection", "done", "%d detection(s), %d validation(s) kept" % (
        len(res.features), s.get("n_validations_kept", 0)), time.perf_counter() - t0)


def _step_overview(ctx, catalog, progress):
    from .overview import write_overview, write_velocity_arrows
    t0 = time.perf_counter()
    progress.check()
    out = ctx.path(prod.OVERVIEW_PNG)
    if not ctx.params.write_overview:
        ctx.mark("overview", "skipped", "not requested")
        return
    r = ctx.result.paths
    arrows = ctx.path(prod.VELOCITY_ARROWS_GPKG)
    r["arrows"] = arrows
    background = catalog.records[0].path if catalog.records else None
    inputs = [r["velocity"], r["detections"]] + ([background] if background else [])
    # validations change the outline colours: detections.gpkg is an input here
    inputs_fp = fingerprint(inputs)
    phash = params_hash({"version": 1})
    r["overview"] = out
    ok, why = ctx.manifest.is_current("overview", phash, inputs_fp, [out, arrows])
    if ok and not ctx.params.force:
        ctx.mark("overview", "skipped", why)
        return
    n_arrows = write_velocity_arrows(r["velocity"], arrows)
    dates = [rec.iso for rec in catalog.records]
    title = "SlideWatch - mean velocity %s to %s (%d dates, %d pairs)" % (
        dates[0], dates[-1], len(dates), ctx.result.n_pairs)
    write_overview(r["velocity"], out, detections_path=r["detections"],
                   background_path=background, title=title)
    ctx.manifest.record("overview", phash, inputs_fp, [out, arrows], {})
    ctx.mark("overview", "done", "overview.png and %d direction arrow(s) written" % n_arrows,
             time.perf_counter() - t0)
    progress.update(1.0)
