"""Processing algorithm: per-pixel quality layers of an inversion (timeseries/quality_*.tif)."""

from qgis.core import (QgsProcessingContext, QgsProcessingOutputNumber,
                       QgsProcessingOutputRasterLayer, QgsProcessingParameterBoolean,
                       QgsProcessingParameterDefinition, QgsProcessingParameterFile,
                       QgsProcessingParameterNumber)

from .base import SlideWatchAlgorithm

#: output name -> (core layer key, layer name in QGIS)
OUTPUTS = (("N_VALID_PAIRS", "n_valid_pairs", "valid pairs per pixel"),
           ("NCC_SHARE", "ncc_share", "share of pairs above the NCC threshold"),
           ("FIRST_DATE", "first_valid_date", "first valid date"),
           ("LAST_DATE", "last_valid_date", "last valid date"),
           ("LONGEST_GAP", "longest_gap_days", "longest gap (days)"))


class QualityLayersAlgorithm(SlideWatchAlgorithm):
    NAME = "quality_layers"
    DISPLAY_NAME = "Quality layers of a time series"
    GROUP = "Time series"
    GROUP_ID = "timeseries"
    HELP = (
        "Computes, for every pixel of an inversion, how well its displacement time series is "
        "observed, from the pair rasters the inversion used, and writes one raster per "
        "layer into the <i>timeseries/</i> folder, each with a QGIS style beside it "
        "(<i>.qml</i>, applied whenever the raster is opened):<br>"
        "<i>quality_n_valid_pairs.tif</i>: number of pairs with a valid measurement (status 0, "
        "finite, passing the inversion's NCC/SNR minimum);<br>"
        "<i>quality_ncc_share.tif</i>: share (0-1) of the inversion's pairs that are valid "
        "with NCC at or above the threshold;<br>"
        "<i>quality_first_date.tif</i>, <i>quality_last_date.tif</i>: first and last date "
        "that is an end of a valid pair (as YYYYMMDD numbers; 0 = none);<br>"
        "<i>quality_longest_gap.tif</i>: the longest interval, in days, between two "
        "consecutive such dates (over it the series is interpolated by the regularisation)."
        "<br><b>Output folder of the inversion</b>: the folder holding <i>timeseries/</i> and "
        "<i>pairs/</i> (or the <i>timeseries/</i> folder itself). The pairs are the "
        "inversion's own list (tags of the time-series files), else the selected pairs of "
        "<i>pairs.csv</i>, else every pair raster.<br>"
        "<b>NCC threshold</b>: correlation a valid measurement needs to count in the share "
        "(default 0.5).<br>"
        "<b>Memory per block</b> (advanced, MB): rows are processed in blocks of at most "
        "this size, one pair at a time, whatever the size of the rasters.")

    INPUT = "INPUT"
    NCC = "NCC_THRESHOLD"
    MEMORY = "MEMORY_MB"
    LOAD = "LOAD_OUTPUTS"
    N_PAIRS = "N_PAIRS"

    def initAlgorithm(self, config=None):  # noqa: N802
        from ..core.series.quality_layers import DEFAULT_MEMORY_MB, DEFAULT_NCC_THRESHOLD

        Num = QgsProcessingParameterNumber
        self.addParameter(QgsProcessingParameterFile(
            self.INPUT, self.tr("Output folder of the inversion"),
            behavior=QgsProcessingParameterFile.Folder))
        self.addParameter(Num(self.NCC, self.tr("NCC threshold"), Num.Double,
                              DEFAULT_NCC_THRESHOLD, minValue=-1.0, maxValue=1.0))
        self.addParameter(QgsProcessingParameterBoolean(
            self.LOAD, self.tr("Open the layers in the project"), True))
        memory = Num(self.MEMORY, self.tr("Memory per block (MB)"), Num.Integer,
                     DEFAULT_MEMORY_MB, minValue=8, maxValue=8192)
        memory.setFlags(memory.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(memory)
        for name, _key, label in OUTPUTS:
            self.addOutput(QgsProcessingOutputRasterLayer(name, self.tr(label)))
        self.addOutput(QgsProcessingOutputNumber(self.N_PAIRS, self.tr("Pairs used")))

    def compute(self, parameters, context, feedback, progress):
        from ..core.series.quality_layers import compute_quality_layers

        folder = self.parameterAsFile(parameters, self.INPUT, context)
        res = compute_quality_layers(
            folder, ncc_threshold=self.parameterAsDouble(parameters, self.NCC, context),
            memory_mb=self.parameterAsInt(parameters, self.MEMORY, context), progress=progress)
        out = {self.N_PAIRS: res.n_pairs}
        load = self.parameterAsBool(parameters, self.LOAD, context)
        for name, key, label in OUTPUTS:
            out[name] = res.paths[key]
            if load and context.project() is not None:
                # the .qml beside the raster is its default style: QGIS applies it on load
                context.addLayerToLoadOnCompletion(res.paths[key], QgsProcessingContext.LayerDetails(
                    label, context.project(), name))
        return out
