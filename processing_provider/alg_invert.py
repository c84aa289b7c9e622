"""Processing algorithm: invert a network of pair rasters into displacement time series."""

from qgis.core import (QgsProcessingParameterBoolean, QgsProcessingParameterDefinition,
                       QgsProcessingParameterEnum, QgsProcessingParameterFile,
                       QgsProcessingParameterFolderDestination, QgsProcessingParameterNumber,
                       QgsProcessingOutputFile)

from .base import SlideWatchAlgorithm
from .executor_params import EXECUTOR_HELP, add_executor_parameters, executor_from

ROBUST_OPTIONS = ["tukey", "huber", "none"]
WEIGHTING_OPTIONS = ["ncc", "none"]


class InvertTimeseriesAlgorithm(SlideWatchAlgorithm):
    NAME = "invert_timeseries"
    DISPLAY_NAME = "Invert pair network into displacement time series"
    GROUP = "Time series"
    GROUP_ID = "timeseries"
    HELP = (
        "Inverts, pixel by pixel, the displacements of every pair raster "
        "(<i>pairs/pair_YYYYMMDD_YYYYMMDD.tif</i>) into the cumulative east and north "
        "displacement at every date, by weighted least squares with a temporal "
        "regularisation (changes of velocity between consecutive dates are penalised) and "
        "iterative re-weighting that rejects outlier pairs. Dates without a valid pair and "
        "disconnected networks are bridged by the regularisation and flagged.<br>"
        "<b>Pair rasters folder</b>: the folder holding <i>pairs/</i> (or the pair rasters "
        "themselves).<br>"
        "<b>pairs.csv</b> (optional): only its selected pairs are used, and all of its "
        "dates are output (dates without a usable pair are bridged).<br>"
        "<b>Regularisation weight</b>: dimensionless weight of the velocity-change "
        "penalty (a change of velocity times its interval, in metres, relative to an "
        "average pair). Empty (default): (150 days / mean interval between dates)&sup2;, "
        "i.e. a change of velocity costs as much as a pair missing by the displacement "
        "it produces in 150 days, whatever the sampling (about 150 at a 12-day sampling, "
        "900 at 5 days, 25 at 30 days; TICOI's coef (regu 1), in days, is the same "
        "convention with 100). Larger = smoother series; 1-10 follows abrupt changes of "
        "velocity more closely; 0 = none. The value used is logged and written to the "
        "LAMBDA tag of the outputs.<br>"
        "<b>Choose the regularisation automatically</b>: generalised cross-validation on "
        "400 pixels sampled from five windows of the grid, once for the whole stack "
        "(overrides the weight above). It under-smooths when the errors belong to dates "
        "(co-registration, illumination) rather than to pairs.<br>"
        "<b>Second-order regularisation weight</b> (advanced): optional penalty on changes of acceleration.<br>"
        "<b>Outlier rejection</b>: tukey (L1 start then Tukey biweight, default), huber, or "
        "none.<br><b>Pair weights</b>: ncc (weight ncc&sup2;/(1-ncc&sup2;), default) or "
        "none (all valid pairs equal). Pairs with status &ne; 0 or no value are never "
        "used.<br>"
        "<b>Minimum number of pairs per pixel</b>: pixels with fewer usable pairs are left empty.<br>"
        "<b>Block size</b> (advanced): pixels per block side (rows per task, columns per "
        "chunk); memory grows with the number of pairs times its square, per running "
        "task.<br>"
        "<b>Output folder</b>: receives <i>timeseries/ts_east_m.tif</i>, "
        "<i>ts_north_m.tif</i> (one band per date, named by its date, cumulative since the "
        "first date), <i>velocity.tif</i> (ve, vn, v, v_sigma in m/yr, n_obs, rmse_m) and "
        "<i>network_flags.tif</i> (bits: 1 date bridged, 2 disconnected network bridged, "
        "4 outlier pair rejected, 8 too few pairs, 16 solver failure).<br>"
        "The same inversion step as the pipeline's: one task per band of rows, on local "
        "threads or Dask; resumable: the bands finished by a cancelled or failed run are "
        "kept (timeseries/.parts/) and reused by the next run with the same inputs and "
        "parameters.<br>" + EXECUTOR_HELP)

    INPUT = "INPUT"
    PAIRS_CSV = "PAIRS_CSV"
    LAMBDA = "LAMBDA"
    AUTO = "AUTO_LAMBDA"
    LAMBDA2 = "LAMBDA2"
    ROBUST = "ROBUST"
    WEIGHTING = "WEIGHTING"
    MIN_OBS = "MIN_OBS"
    BLOCK = "BLOCK_SIZE"
    OUTPUT = "OUTPUT_FOLDER"
    TS_EAST = "TS_EAST"
    TS_NORTH = "TS_NORTH"
    VELOCITY = "VELOCITY"
    FLAGS = "NETWORK_FLAGS"

    def initAlgorithm(self, config=None):  # noqa: N802
        Num = QgsProcessingParameterNumber
        self.addParameter(QgsProcessingParameterFile(
            self.INPUT, self.tr("Pair rasters folder"),
            behavior=QgsProcessingParameterFile.Folder))
        self.addParameter(QgsProcessingParameterFile(
            self.PAIRS_CSV, self.tr("pairs.csv (optional: selected pairs only)"),
            extension="csv", optional=True))
        self.addParameter(Num(self.LAMBDA, self.tr("Regularisation weight (empty = from the "
                                                   "sampling)"), Num.Double, None,
                              optional=True, minValue=0.0))
        self.addParameter(QgsProcessingParameterBoolean(
            self.AUTO, self.tr("Choose the regularisation automatically (GCV)"), False))
        self.addParameter(QgsProcessingParameterEnum(
            self.ROBUST, self.tr("Outlier rejection"), ROBUST_OPTIONS, defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum(
            self.WEIGHTING, self.tr("Pair weights"), WEIGHTING_OPTIONS, defaultValue=0))
        self.addParameter(Num(self.MIN_OBS, self.tr("Minimum number of pairs per pixel"),
                              Num.Integer, 3, minValue=1))
        advanced = [
            Num(self.LAMBDA2, self.tr("Second-order regularisation weight"), Num.Double, 0.0,
                minValue=0.0),
            Num(self.BLOCK, self.tr("Block size (pixels)"), Num.Integer, 256, minValue=16,
                maxValue=4096),
        ]
        for p in advanced:
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)
        add_executor_parameters(self)
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.OUTPUT, self.tr("Output folder")))
        for name, label in ((self.TS_EAST, "Cumulative east displacement"),
                            (self.TS_NORTH, "Cumulative north displacement"),
                            (self.VELOCITY, "Velocity"), (self.FLAGS, "Network flags")):
            self.addOutput(QgsProcessingOutputFile(name, self.tr(label)))

    def compute(self, parameters, context, feedback, progress):
        from ..core.series.inversion_driver import invert_pairs, invert_request

        out = self.parameterAsString(parameters, self.OUTPUT, context)
        pairs, params, dates = invert_request(
            self.parameterAsFile(parameters, self.INPUT, context),
            self.parameterAsFile(parameters, self.PAIRS_CSV, context) or None,
            lam=self._lambda(parameters, context),
            lam2=self.parameterAsDouble(parameters, self.LAMBDA2, context),
            robust=ROBUST_OPTIONS[self.parameterAsEnum(parameters, self.ROBUST, context)],
            weighting=WEIGHTING_OPTIONS[self.parameterAsEnum(parameters, self.WEIGHTING,
                                                             context)],
            min_obs=self.parameterAsInt(parameters, self.MIN_OBS, context))
        block = self.parameterAsInt(parameters, self.BLOCK, context)
        with executor_from(self, parameters, context) as executor:
            res = invert_pairs(pairs, out, params, executor, dates=dates, block_rows=block,
                               block_cols=block, progress=progress)
        paths = res["paths"]
        progress.info("Inverted %d pairs into %d dates (%s to %s), lambda = %g, on %s. "
                      "Outputs in %s" % (res["n_pairs"], res["n_dates"], res["dates"][0],
                                         res["dates"][-1], res["lam"], res["executor"], out))
        return {self.OUTPUT: out, self.TS_EAST: paths["ts_east"],
                self.TS_NORTH: paths["ts_north"], self.VELOCITY: paths["velocity"],
                self.FLAGS: paths["flags"]}

    def _lambda(self, parameters, context):
        if self.parameterAsBool(parameters, self.AUTO, context):
            return "auto"
        if parameters.get(self.LAMBDA) in (None, ""):
            return None  # default: from the temporal sampling
        return self.parameterAsDouble(parameters, self.LAMBDA, context)
