"""Processing algorithm ``slidewatch:pipeline``: from a folder of images to every output.

Headless (SPEC)::

    QT_QPA_PLATFORM=offscreen /usr/bin/qgis_process.bin run slidewatch:pipeline -- \
        INPUT=<folder of images> OUTPUT_FOLDER=<folder>
"""

import json
import os

from qgis.core import (QgsProcessing, QgsProcessingMultiStepFeedback, QgsProcessingOutputFile,
                       QgsProcessingOutputNumber, QgsProcessingParameterBoolean,
                       QgsProcessingParameterDefinition, QgsProcessingParameterEnum,
                       QgsProcessingParameterFile, QgsProcessingParameterFolderDestination,
                       QgsProcessingParameterMapLayer, QgsProcessingParameterNumber,
                       QgsProcessingParameterString)

from ..core import products as prod
from ..core.correlation_params import CorrelationParams as CP
from ..core.detect.detection import DetectionParams
from ..core.network.pairing import STRATEGIES, PairingParams
from .base import SlideWatchAlgorithm, feedback_progress, number_bounds
from .layer_source import layer_file_source

GRID_EXTENTS = ("intersection", "union", "reference")
RESAMPLINGS = ("cubic", "bilinear", "lanczos", "nearest", "average")
#: "default" = the correlation module's own default (not passed); then the choices of
#: :class:`.core.correlation_params.CorrelationParams`
SUBPIXELS = ("default",) + tuple(CP.CHOICES["subpixel"])
PREFILTERS = ("default",) + tuple(CP.CHOICES["prefilter"])
ROBUST = ("tukey", "huber", "none")
STABLE_GROUND = ("median", "plane", "none")
WEIGHTINGS = ("ncc", "none")


class PipelineAlgorithm(SlideWatchAlgorithm):
    NAME = "pipeline"
    DISPLAY_NAME = "Run the whole pipeline (images to detections)"
    GROUP = "Pipeline"
    GROUP_ID = "pipeline"
    HELP = (
        "Runs every SlideWatch step on a folder of images: catalog (dates from the file "
        "names or tags) &rarr; common grid (only if the images differ) &rarr; pair selection "
        "&rarr; correlation of every selected pair &rarr; inversion into displacement time "
        "series &rarr; detection of moving areas, then writes a styled QGIS project "
        "<i>slidewatch.qgz</i> and a picture <i>overview.png</i>.<br>"
        "<b>Resumable</b>: a second run reuses every output whose inputs and parameters are "
        "unchanged and recomputes the rest (pair by pair for the correlation); "
        "<i>slidewatch.log</i> says what was done, skipped and why; "
        "<i>slidewatch_run.json</i> keeps the parameters of every step.<br>"
        "<b>Input folder</b>: the images (GeoTIFF, JPEG 2000, Sentinel-2 SAFE folders...).<br>"
        "<b>Output folder</b>: catalog.csv, pairs.csv, pairs/, timeseries/, "
        "detections.gpkg, velocity_arrows.gpkg, overview.png, slidewatch.qgz, "
        "slidewatch.log.<br>"
        "<b>Advanced parameters</b> (defaults are good for Sentinel-2 at 10 m):<br>"
        "<i>Band</i>: band to use (empty: B08 then B04 for Sentinel-2; a name such as B04; "
        "or a 1-based index).<br>"
        "<i>Common grid extent / resampling</i>: used only when the images are on different "
        "grids.<br>"
        "<i>Pairing strategy</i>: optimal (quality model + optimal design, default), "
        "sequential, seasonal, all, random. <i>Pairs per date</i>: budget (%g).<br>"
        "<i>Correlation window / step / search</i>: window size (%d px), output spacing "
        "(%d px), largest displacement searched (%d px). <i>Sub-pixel</i>, <i>pre-filter</i> "
        "(default: the correlation module's own default), "
        "<i>minimum NCC</i>: see the correlation algorithm. <i>Stable-ground "
        "correction</i>: median (default) removes each pair's median offset over the "
        "scene (the co-registration error of the two dates; assumes most of the scene is "
        "stable), plane removes a robust plane (rotation/scale misregistration), none keeps "
        "the raw offsets.<br>"
        "<i>Stable-area mask</i>: a raster (non-zero = stable) or a polygon layer of "
        "ground known not to move (rock, roads, villages). Each pair's co-registration "
        "offset is then measured over it, and the detection fits its bias model and "
        "noise on it. Give one whenever the moving part is large (a glacier, a whole "
        "flank): without it the stable ground is found from the data and may not exist. "
        "Empty: a file of the input folder whose name holds the word <i>stable</i> "
        "(stable_mask.tif, stable_area.gpkg) when there is one; untick <i>Use a "
        "stable-area mask</i> to use none.<br>"
        "<i>Inversion lambda</i>: regularisation (empty = default, 'auto' = generalised "
        "cross-validation). <i>Robust</i>: tukey, huber or none. <i>Weighting</i>: ncc or "
        "none. <i>Rows per inversion task</i>: rows of the pair grid per task.<br>"
        "<i>Write the quality layers</i> (on by default): after the inversion, per-pixel "
        "rasters timeseries/quality_*.tif (number of valid pairs, share of the pairs "
        "valid with NCC at or above the threshold, first / last measured date, longest "
        "gap between measured dates), each with its .qml style, shown in the project's "
        "<i>Quality</i> group; skipped when up to date. <i>Quality layers: NCC "
        "threshold</i> (-1 to 1): the correlation a valid measurement needs "
        "to count in the share; changing it recomputes only the quality layers (see "
        "docs/quality_layers.md).<br>"
        "<i>Detection</i>: seed and growth significance (in units of noise), minimum area "
        "(m&sup2;), minimum score; <i>DEM</i>: elevation raster (empty: dem.tif of the input "
        "folder if present).<br>"
        "<i>Further options (JSON)</i>: any other option of a step as a JSON object, e.g. "
        "<code>{\"max_baseline_days\": 200}</code> for the pairing.<br>"
        "<i>Dask scheduler</i>: empty = local threads; 'tcp://host:8786' (or "
        "'scheduler-file:/path/scheduler.json') to run the correlations and inversion "
        "blocks on an existing Dask cluster (workers need the same paths: shared storage, "
        "and slidewatch on their PYTHONPATH); 'local:N' starts a cluster of N worker "
        "processes on this computer, run by the plugin's .venv Python or the system Python "
        "(environment variable SLIDEWATCH_WORKER_PYTHON to choose another; see "
        "docs/scaling.md).<br>"
        "<i>Local threads</i>: 0 = all CPUs. <i>Retries</i>: re-tries of a failed task. "
        "<i>Recompute everything</i>: ignore up-to-date outputs."
    ) % (PairingParams.budget_pairs_per_date, CP.window, CP.step, CP.search)

    INPUT = "INPUT"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"

    def initAlgorithm(self, config=None):  # noqa: N802
        from ..core.run.pipeline import PipelineParams
        d = PipelineParams()
        Num = QgsProcessingParameterNumber
        self.addParameter(QgsProcessingParameterFile(
            self.INPUT, self.tr("Input folder of images"),
            behavior=QgsProcessingParameterFile.Folder))
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.OUTPUT_FOLDER, self.tr("Output folder")))

        def adv(param):
            param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(param)

        S = QgsProcessingParameterString
        E = QgsProcessingParameterEnum
        adv(S("BAND", self.tr("Band (empty = automatic)"), "", optional=True))
        adv(E("GRID_EXTENT", self.tr("Common grid extent"), list(GRID_EXTENTS), False,
              GRID_EXTENTS.index(d.grid_extent)))
        adv(E("GRID_RESAMPLING", self.tr("Common grid resampling"), list(RESAMPLINGS), False,
              RESAMPLINGS.index(d.grid_resampling)))
        adv(E("PAIR_STRATEGY", self.tr("Pairing strategy"), list(STRATEGIES), False,
              STRATEGIES.index(d.pair_strategy)))
        adv(Num("PAIRS_PER_DATE", self.tr("Pairs per date (budget)"), Num.Integer,
                d.pairs_per_date, minValue=1, maxValue=100))
        adv(S("PAIRING_OPTIONS", self.tr("Further pairing options (JSON)"), "", optional=True))
        adv(Num("WINDOW", self.tr("Correlation window (pixels)"), Num.Integer, d.window,
                **number_bounds(CP, "window")))
        adv(Num("STEP", self.tr("Correlation step (pixels)"), Num.Integer, d.step,
                **number_bounds(CP, "step")))
        adv(Num("SEARCH", self.tr("Search radius (pixels)"), Num.Integer, d.search,
                **number_bounds(CP, "search")))
        self.addParameter(Num("MAX_VELOCITY", self.tr(
            "Maximum velocity, m/day (fast motion: the search follows the motion; 0 = "
            "search radius only)"), Num.Double, 0.0, minValue=0.0, maxValue=1000.0))
        adv(E("SUBPIXEL", self.tr("Sub-pixel refinement"), list(SUBPIXELS), False, 0))
        adv(E("PREFILTER", self.tr("Pre-filter"), list(PREFILTERS), False, 0))
        adv(Num("MIN_NCC", self.tr("Minimum NCC of a valid window"), Num.Double, CP.min_ncc,
                **number_bounds(CP, "min_ncc")))
        self.addParameter(QgsProcessingParameterMapLayer(
            "STABLE_MASK", self.tr("Stable-area mask: raster or polygons of ground known "
                                   "not to move (optional)"),
            optional=True, types=[QgsProcessing.TypeRaster,
                                  QgsProcessing.TypeVectorPolygon]))
        adv(QgsProcessingParameterBoolean("USE_STABLE_MASK", self.tr(
            "Use a stable-area mask (empty above = a *stable* file of the input folder)"),
            True))
        adv(E("STABLE_GROUND", self.tr("Stable-ground correction of each pair"),
              list(STABLE_GROUND), False, STABLE_GROUND.index(d.stable_ground)))
        adv(S("CORRELATION_OPTIONS", self.tr("Further correlation options (JSON)"), "",
              optional=True))
        adv(S("INVERSION_LAMBDA", self.tr("Inversion lambda (empty = default, 'auto')"), "",
              optional=True))
        adv(E("INVERSION_ROBUST", self.tr("Inversion robust weighting"), list(ROBUST), False,
              ROBUST.index(d.inversion_robust)))
        adv(E("INVERSION_WEIGHTING", self.tr("Inversion prior weighting"), list(WEIGHTINGS),
              False, WEIGHTINGS.index(d.inversion_weighting)))
        adv(Num("INVERSION_BLOCK_ROWS", self.tr("Rows per inversion task"), Num.Integer,
                d.inversion_block_rows, minValue=1, maxValue=100000))
        adv(S("INVERSION_OPTIONS", self.tr("Further inversion options (JSON)"), "",
              optional=True))
        adv(QgsProcessingParameterBoolean("WRITE_QUALITY_LAYERS", self.tr(
            "Write the quality layers (timeseries/quality_*.tif)"), d.write_quality_layers))
        adv(Num("QUALITY_NCC_THRESHOLD", self.tr("Quality layers: NCC threshold of the share "
                                                 "of good pairs"), Num.Double,
                d.quality_ncc_threshold, minValue=-1.0, maxValue=1.0))
        dp = DetectionParams()
        for key, label in (("z_seed", "Detection: seed significance"),
                           ("z_grow", "Detection: growth significance"),
                           ("min_area_m2", "Detection: minimum area (m²)"),
                           ("min_score", "Detection: minimum score")):
            adv(Num(key.upper(), self.tr(label), Num.Double, getattr(dp, key),
                    **number_bounds(DetectionParams, key)))
        adv(QgsProcessingParameterFile("DEM", self.tr("DEM (empty = dem.tif of the input "
                                                      "folder if present)"), optional=True))
        adv(QgsProcessingParameterBoolean("USE_DEM", self.tr("Use a DEM for detection"), True))
        adv(S("DETECTION_OPTIONS", self.tr("Further detection options (JSON)"), "",
              optional=True))
        adv(S("DASK_SCHEDULER", self.tr("Dask scheduler: tcp://host:port, local:N (empty = "
                                          "local threads)"), "",
              optional=True))
        adv(Num("MAX_WORKERS", self.tr("Local threads (0 = all CPUs)"), Num.Integer, 0,
                minValue=0, maxValue=1024))
        adv(Num("RETRIES", self.tr("Retries of a failed task"), Num.Integer, d.retries,
                minValue=0, maxValue=20))
        adv(QgsProcessingParameterBoolean("FORCE", self.tr("Recompute everything"), False))
        adv(QgsProcessingParameterBoolean("WRITE_PROJECT", self.tr("Write the QGIS project "
                                                                   + prod.PROJECT_QGZ), True))

        self.addOutput(QgsProcessingOutputFile("PROJECT", self.tr("QGIS project")))
        self.addOutput(QgsProcessingOutputFile("OVERVIEW", self.tr("Overview picture")))
        self.addOutput(QgsProcessingOutputFile("VELOCITY", self.tr("Velocity raster")))
        self.addOutput(QgsProcessingOutputFile("DETECTIONS", self.tr("Detections")))
        self.addOutput(QgsProcessingOutputFile("LOG", self.tr("Run log")))
        self.addOutput(QgsProcessingOutputNumber("N_PAIRS", self.tr("Pairs")))
        self.addOutput(QgsProcessingOutputNumber("N_DATES", self.tr("Dates")))

    def _json(self, parameters, name, context):
        from ..core.errors import ParameterError
        text = (self.parameterAsString(parameters, name, context) or "").strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise ParameterError("%s is not valid JSON (%s). Give an object such as "
                                 "{\"name\": value}." % (name, exc)) from exc
        if not isinstance(value, dict):
            raise ParameterError("%s must be a JSON object such as {\"name\": value}." % name)
        return value

    def params_from(self, parameters, context):
        """The :class:`PipelineParams` of the algorithm's parameter values."""
        from ..core.run.pipeline import PipelineParams

        def enum(name, values):
            return values[self.parameterAsEnum(parameters, name, context)]

        corr = {"subpixel": enum("SUBPIXEL", SUBPIXELS), "prefilter": enum("PREFILTER",
                                                                          PREFILTERS),
                "min_ncc": self.parameterAsDouble(parameters, "MIN_NCC", context)}
        corr = {k: v for k, v in corr.items() if v != "default"}
        vmax = self.parameterAsDouble(parameters, "MAX_VELOCITY", context)
        if vmax > 0:
            corr["max_velocity_m_per_day"] = vmax
        corr.update(self._json(parameters, "CORRELATION_OPTIONS", context))
        det = {"z_seed": self.parameterAsDouble(parameters, "Z_SEED", context),
               "z_grow": self.parameterAsDouble(parameters, "Z_GROW", context),
               "min_area_m2": self.parameterAsDouble(parameters, "MIN_AREA_M2", context),
               "min_score": self.parameterAsDouble(parameters, "MIN_SCORE", context)}
        det.update(self._json(parameters, "DETECTION_OPTIONS", context))
        # no need to drop values equal to the defaults: the parameter hashes come from the
        # checked parameter objects, defaults included (PipelineParams.step_params)
        band = (self.parameterAsString(parameters, "BAND", context) or "").strip() or None
        dem = (self.parameterAsString(parameters, "DEM", context) or "").strip()
        if not self.parameterAsBool(parameters, "USE_DEM", context):
            dem = ""
        elif not dem:
            dem = "auto"
        stable = "auto"
        if not self.parameterAsBool(parameters, "USE_STABLE_MASK", context):
            stable = ""
        else:
            layer = self.parameterAsLayer(parameters, "STABLE_MASK", context)
            if layer is not None:
                stable = layer_file_source(layer, context)
        workers = self.parameterAsInt(parameters, "MAX_WORKERS", context)
        return PipelineParams(
            band=band,
            grid_extent=enum("GRID_EXTENT", GRID_EXTENTS),
            grid_resampling=enum("GRID_RESAMPLING", RESAMPLINGS),
            pair_strategy=enum("PAIR_STRATEGY", STRATEGIES),
            pairs_per_date=self.parameterAsInt(parameters, "PAIRS_PER_DATE", context),
            pairing_options=self._json(parameters, "PAIRING_OPTIONS", context),
            window=self.parameterAsInt(parameters, "WINDOW", context),
            step=self.parameterAsInt(parameters, "STEP", context),
            search=self.parameterAsInt(parameters, "SEARCH", context),
            stable_ground=enum("STABLE_GROUND", STABLE_GROUND),
            correlation_options=corr,
            inversion_lambda=(self.parameterAsString(parameters, "INVERSION_LAMBDA", context)
                              or "").strip() or None,
            inversion_robust=enum("INVERSION_ROBUST", ROBUST),
            inversion_weighting=enum("INVERSION_WEIGHTING", WEIGHTINGS),
            inversion_block_rows=self.parameterAsInt(parameters, "INVERSION_BLOCK_ROWS",
                                                     context),
            inversion_options=self._json(parameters, "INVERSION_OPTIONS", context),
            write_quality_layers=self.parameterAsBool(parameters, "WRITE_QUALITY_LAYERS",
                                                      context),
            quality_ncc_threshold=self.parameterAsDouble(parameters, "QUALITY_NCC_THRESHOLD",
                                                         context),
            detection_options=det,
            dem_path=dem,
            stable_mask=stable,
            max_workers=workers if workers > 0 else None,
            retries=self.parameterAsInt(parameters, "RETRIES", context),
            force=self.parameterAsBool(parameters, "FORCE", context))

    def compute(self, parameters, context, feedback, progress):
        from ..core.run.pipeline import STEPS, run_pipeline

        inp = self.parameterAsFile(parameters, self.INPUT, context)
        out = self.parameterAsString(parameters, self.OUTPUT_FOLDER, context)
        params = self.params_from(parameters, context)
        scheduler = (self.parameterAsString(parameters, "DASK_SCHEDULER", context)
                     or "").strip() or None
        write_project = self.parameterAsBool(parameters, "WRITE_PROJECT", context)
        multi = QgsProcessingMultiStepFeedback(len(STEPS) + (1 if write_project else 0),
                                               feedback) if feedback is not None else None

        def step_progress(index, name):
            if multi is None:
                return progress
            multi.setCurrentStep(index)
            multi.setProgressText(name)
            return feedback_progress(multi)

        result = run_pipeline(inp, out, params, scheduler=scheduler, progress=progress,
                              step_progress=step_progress)
        paths = result.paths
        project = ""
        if write_project:
            from .project_writer import write_project as _write
            if multi is not None:
                multi.setCurrentStep(len(STEPS))
                multi.setProgressText("project")
            progress.check()
            project = _write(result.output_folder)
            progress.info("QGIS project: %s" % project)
            _append_log(result.output_folder, "project: %s written" % prod.PROJECT_QGZ)
        progress.info("Outputs in %s (log: %s)" % (result.output_folder,
                                                   os.path.join(result.output_folder,
                                                                prod.LOG_FILE)))
        return {self.OUTPUT_FOLDER: result.output_folder, "PROJECT": project,
                "OVERVIEW": paths.get("overview", ""), "VELOCITY": paths.get("velocity", ""),
                "DETECTIONS": paths.get("detections", ""),
                "LOG": os.path.join(result.output_folder, prod.LOG_FILE),
                "N_PAIRS": result.n_pairs, "N_DATES": result.n_dates}


def _append_log(folder, line):
    """Add one line to slidewatch.log (atomically)."""
    import datetime as _dt

    from ..core.raster_io import write_text_atomic
    path = os.path.join(folder, prod.LOG_FILE)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        text = ""
    if text and not text.endswith("\n"):
        text += "\n"
    text += "[%s] %s\n" % (_dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S"), line)
    write_text_atomic(path, text)
