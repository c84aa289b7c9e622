"""Processing algorithm: stratified random sample points for the accuracy assessment."""

from qgis.core import (QgsProcessing, QgsProcessingException, QgsProcessingOutputNumber,
                       QgsProcessingParameterBoolean, QgsProcessingParameterDefinition,
                       QgsProcessingParameterEnum, QgsProcessingParameterFile,
                       QgsProcessingParameterNumber, QgsProcessingParameterRasterLayer,
                       QgsProcessingParameterVectorDestination)

from .base import SlideWatchAlgorithm

#: (core allocation key, label), in the enum's order
ALLOCATION_OPTIONS = [("proportional", "Proportional to area, with a minimum per stratum"),
                      ("equal", "Equal in each stratum")]

_POINT_TYPE = getattr(QgsProcessing, "TypeVectorPoint", None)
if _POINT_TYPE is None:  # Qt6 / QGIS 4 scoped enum
    _POINT_TYPE = QgsProcessing.SourceType.VectorPoint


class AccuracySamplingAlgorithm(SlideWatchAlgorithm):
    NAME = "accuracy_sampling"
    DISPLAY_NAME = "Accuracy assessment: sample points"
    GROUP = "Accuracy assessment"
    GROUP_ID = "accuracy"
    HELP = (
        "First step of the design-based accuracy assessment of the detection map (as "
        "AcATaMa does for thematic maps; Olofsson et al. 2014, <i>Good practices for "
        "estimating area and assessing accuracy of land change</i>, Remote Sensing of "
        "Environment 148). The map is split into two strata, <i>moving</i> (inside a "
        "detection) and <i>not_moving</i> (every other pixel with data), and random points "
        "are drawn in each. Label them in the <b>Accuracy sample</b> dock (moving / not "
        "moving / unsure), then run <b>Accuracy assessment: estimates</b>. See "
        "docs/accuracy_assessment.md.<br>"
        "<b>Detection output folder</b>: a SlideWatch output folder (detections.gpkg on "
        "the grid of timeseries/velocity.tif).<br>"
        "<b>Detection raster</b> (instead of the folder): a raster where non-zero = "
        "detected and nodata = outside the map, or the detection's evidence raster (its "
        "band 'label').<br>"
        "<b>Leave out rejected detections</b>: assess the map as corrected by the "
        "analysts' validations (polygons with status 'rejected' count as not detected).<br>"
        "<b>Target standard error of overall accuracy</b>: the total sample size follows "
        "from it (Olofsson et al. 2014 eq. 13; 0.01-0.02 is usual).<br>"
        "<b>Anticipated user's accuracy</b> of each stratum: your guess of the share of "
        "correct map labels in it (moving: 0.6-0.8 for a first assessment; not moving: "
        "0.9-0.99).<br>"
        "<b>Allocation</b>: proportional to the strata areas with a minimum per stratum "
        "(recommended: the rare moving stratum still gets enough points), or equal.<br>"
        "<b>Minimum per stratum</b>: at least this many points in each stratum (50 or "
        "more).<br>"
        "<b>Total sample size</b> (advanced, 0 = from the target standard error).<br>"
        "<b>Random seed</b>: the same map and seed give the same points.<br>"
        "<b>Sample points</b>: a GeoPackage (.gpkg: layer accuracy_samples, with the strata "
        "and the design in tables beside it) or a CSV (.csv: id, x, y, stratum, label, ... "
        "plus a .design.json file beside it). Labels are saved into this file.")

    FOLDER = "DETECTION_FOLDER"
    RASTER = "DETECTION_RASTER"
    EXCLUDE_REJECTED = "EXCLUDE_REJECTED"
    TARGET_SE = "TARGET_SE"
    UA_MOVING = "UA_MOVING"
    UA_NOT_MOVING = "UA_NOT_MOVING"
    ALLOCATION = "ALLOCATION"
    MIN_PER_STRATUM = "MIN_PER_STRATUM"
    SAMPLE_SIZE = "SAMPLE_SIZE"
    SEED = "SEED"
    OUTPUT = "OUTPUT"
    N_SAMPLES = "N_SAMPLES"
    N_REQUIRED = "N_REQUIRED"
    N_MOVING = "N_MOVING"
    N_NOT_MOVING = "N_NOT_MOVING"

    def initAlgorithm(self, config=None):  # noqa: N802
        from ..core.outputs import accuracy_assessment as aa

        Num = QgsProcessingParameterNumber
        self.addParameter(QgsProcessingParameterFile(
            self.FOLDER, self.tr("Detection output folder"),
            behavior=QgsProcessingParameterFile.Folder, optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.RASTER, self.tr("Detection raster"), optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.EXCLUDE_REJECTED, self.tr("Leave out rejected detections"), False))
        self.addParameter(Num(self.TARGET_SE, self.tr("Target standard error of overall "
                                                      "accuracy"), Num.Double,
                              aa.DEFAULT_TARGET_SE, minValue=0.001, maxValue=0.25))
        self.addParameter(Num(self.UA_MOVING, self.tr("Anticipated user's accuracy, moving"),
                              Num.Double, aa.DEFAULT_UA["moving"], minValue=0.01,
                              maxValue=0.99))
        self.addParameter(Num(self.UA_NOT_MOVING, self.tr("Anticipated user's accuracy, not "
                                                          "moving"), Num.Double,
                              aa.DEFAULT_UA["not_moving"], minValue=0.01, maxValue=0.99))
        self.addParameter(QgsProcessingParameterEnum(
            self.ALLOCATION, self.tr("Allocation"),
            [self.tr(lab) for _k, lab in ALLOCATION_OPTIONS], defaultValue=0))
        self.addParameter(Num(self.MIN_PER_STRATUM, self.tr("Minimum per stratum"),
                              Num.Integer, aa.DEFAULT_MIN_PER_STRATUM, minValue=2))
        size = Num(self.SAMPLE_SIZE, self.tr("Total sample size (0 = from the target "
                                             "standard error)"), Num.Integer, 0, minValue=0)
        size.setFlags(size.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(size)
        self.addParameter(Num(self.SEED, self.tr("Random seed"), Num.Integer, 0, minValue=0))
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.OUTPUT, self.tr("Sample points"), _POINT_TYPE))
        for key, text in ((self.N_SAMPLES, "Number of sample points"),
                          (self.N_REQUIRED, "Sample size from the target standard error"),
                          (self.N_MOVING, "Points in the moving stratum"),
                          (self.N_NOT_MOVING, "Points in the not-moving stratum")):
            self.addOutput(QgsProcessingOutputNumber(key, self.tr(text)))

    def compute(self, parameters, context, feedback, progress):
        from ..core.outputs import accuracy_assessment as aa

        folder = self.parameterAsFile(parameters, self.FOLDER, context)
        raster = self.parameterAsRasterLayer(parameters, self.RASTER, context)
        if bool(folder) == (raster is not None):
            raise QgsProcessingException(self.tr(
                "Give either the detection output folder (with detections.gpkg and "
                "timeseries/) or a detection raster, not both and not neither."))
        source = folder or raster.source()
        out = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        if not out.lower().endswith((".gpkg", ".csv")):
            raise QgsProcessingException(self.tr(
                "Sample points must be written to a GeoPackage (.gpkg) or a CSV (.csv) file "
                "(the labels are saved into it); got '%s'.") % out)
        ua = {"moving": self.parameterAsDouble(parameters, self.UA_MOVING, context),
              "not_moving": self.parameterAsDouble(parameters, self.UA_NOT_MOVING, context)}
        path, design, samples = aa.create_sample(
            out, source,
            exclude_rejected=self.parameterAsBool(parameters, self.EXCLUDE_REJECTED, context),
            target_se=self.parameterAsDouble(parameters, self.TARGET_SE, context),
            anticipated_ua=ua,
            allocation=ALLOCATION_OPTIONS[self.parameterAsEnum(parameters, self.ALLOCATION,
                                                               context)][0],
            min_per_stratum=self.parameterAsInt(parameters, self.MIN_PER_STRATUM, context),
            n_total=self.parameterAsInt(parameters, self.SAMPLE_SIZE, context) or None,
            seed=self.parameterAsInt(parameters, self.SEED, context),
            progress=progress)
        n = {r["stratum"]: r["n_samples"] for r in design.strata}
        progress.info("Label the %d points in the 'Accuracy sample' dock (SlideWatch menu), "
                      "then run 'Accuracy assessment: estimates' on %s." % (len(samples), path))
        return {self.OUTPUT: path, self.N_SAMPLES: len(samples),
                self.N_REQUIRED: design.n_required, self.N_MOVING: n["moving"],
                self.N_NOT_MOVING: n["not_moving"]}
