"""Processing algorithm: detect active unstable slopes (writes detections.gpkg)."""

from qgis.core import (QgsProcessing, QgsProcessingOutputNumber, QgsProcessingParameterBoolean,
                       QgsProcessingParameterFile, QgsProcessingParameterNumber,
                       QgsProcessingParameterRasterDestination, QgsProcessingParameterRasterLayer,
                       QgsProcessingParameterVectorDestination)

from ..core.detect.detection import DetectionParams
from .base import SlideWatchAlgorithm, number_bounds

_D = DetectionParams()


class DetectAlgorithm(SlideWatchAlgorithm):
    NAME = "detect"
    DISPLAY_NAME = "Detect moving slopes"
    GROUP = "Analysis"
    GROUP_ID = "analysis"
    HELP = (
        "Finds active unstable slopes (landslides) in a SlideWatch displacement time series "
        "and flags acceleration phases. Thresholds are in units of the local noise measured "
        "on stable ground, so a scene where nothing moves gives no detection. Each polygon "
        "carries an explainable score (the contribution of each piece of evidence is "
        "stored) and validation fields; re-running keeps analysts' validations of polygons "
        "that still exist (matched by overlap >= 50 %% of the smaller polygon; validated "
        "polygons that disappeared are kept in the layer detections_archive). An object "
        "needs at least 3 independent observations (its area over the noise correlation "
        "area measured on stable ground, times its number of date intervals); a single pair "
        "(2 dates) gives a detection only where the evidence is overwhelming (at least %g "
        "independent observations and a mean significance of %g; its explanation then says "
        "it comes from a single pair, to be confirmed on a longer series), the rest are "
        "candidates in the log (one interval cannot tell motion from a coherent "
        "correlation artefact). The acceleration onset date is the start of the velocity "
        "rise, with an onset interval (accel_onset_earliest / accel_onset_latest).<br>"
        "<b>Time-series folder</b>: the 'timeseries' folder of the inversion (ts_east_m.tif, "
        "ts_north_m.tif; one band per date, described by its ISO date).<br>"
        "<b>DEM</b> (optional): elevation raster, any grid/CRS (resampled). Enables removal "
        "of elevation/slope-correlated apparent motion and the downslope evidence.<br>"
        "<b>Stable-area mask</b> (optional): raster, non-zero = known stable ground used for "
        "the noise model and bias fit (default: the whole scene, robustly).<br>"
        "<b>Seed significance</b>: |velocity| / local noise a pixel needs to start an object "
        "(default %g).<br>"
        "<b>Growth significance</b>: significance to which objects are grown (default %g).<br>"
        "<b>Minimum area</b>: smallest object kept, m2.<br>"
        "<b>Minimum score</b>: objects with a lower score (0-1) are dropped.<br>"
        "<b>Smoothing</b>: Gaussian smoothing of velocities in pixels (0 = none).<br>"
        "<b>Keep validations</b>: carry analysts' decisions over from an existing file "
        "(recommended).<br>"
        "<b>Detections</b>: output GeoPackage (layer 'detections').<br>"
        "<b>Evidence raster</b> (optional): per-pixel significance, evidence and score."
    ) % (_D.single_pair_min_independent_obs, _D.single_pair_min_significance, _D.z_seed,
         _D.z_grow)

    TS = "TIMESERIES_FOLDER"
    DEM = "DEM"
    MASK = "STABLE_MASK"
    Z_SEED = "Z_SEED"
    Z_GROW = "Z_GROW"
    MIN_AREA = "MIN_AREA_M2"
    MIN_SCORE = "MIN_SCORE"
    SMOOTH = "SMOOTH_PX"
    KEEP = "KEEP_VALIDATIONS"
    OUTPUT = "OUTPUT"
    EVIDENCE = "EVIDENCE"
    N_DET = "N_DETECTIONS"

    def initAlgorithm(self, config=None):  # noqa: N802
        d = _D
        Num = QgsProcessingParameterNumber
        self.addParameter(QgsProcessingParameterFile(
            self.TS, self.tr("Time-series folder"), behavior=QgsProcessingParameterFile.Folder))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.DEM, self.tr("DEM"), optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.MASK, self.tr("Stable-area mask"), optional=True))
        for key, name, label in ((self.Z_SEED, "z_seed", "Seed significance (x noise)"),
                                 (self.Z_GROW, "z_grow", "Growth significance (x noise)"),
                                 (self.MIN_AREA, "min_area_m2", "Minimum area (m2)"),
                                 (self.MIN_SCORE, "min_score", "Minimum score"),
                                 (self.SMOOTH, "smooth_px", "Smoothing (pixels)")):
            self.addParameter(Num(key, self.tr(label), Num.Double, getattr(d, name),
                                  **number_bounds(DetectionParams, name)))
        self.addParameter(QgsProcessingParameterBoolean(
            self.KEEP, self.tr("Keep analysts' validations from an existing file"), True))
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.OUTPUT, self.tr("Detections"), QgsProcessing.TypeVectorPolygon,
            defaultValue=None))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.EVIDENCE, self.tr("Evidence raster"), optional=True, createByDefault=False))
        self.addOutput(QgsProcessingOutputNumber(self.N_DET, self.tr("Number of detections")))

    def compute(self, parameters, context, feedback, progress):
        from ..core.detect.detection import detect_from_folder
        from ..core.errors import ParameterError

        ts = self.parameterAsFile(parameters, self.TS, context)
        dem = self.parameterAsRasterLayer(parameters, self.DEM, context)
        mask = self.parameterAsRasterLayer(parameters, self.MASK, context)
        out = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        if not out.lower().endswith(".gpkg"):
            raise ParameterError("Detections must be written to a GeoPackage (.gpkg); got "
                                 "'%s'. Choose a file name ending in .gpkg." % out)
        evidence = None
        if parameters.get(self.EVIDENCE):
            evidence = self.parameterAsOutputLayer(parameters, self.EVIDENCE, context) or None
        res = detect_from_folder(
            ts,
            dem_path=dem.source() if dem is not None else None,
            stable_mask_path=mask.source() if mask is not None else None,
            out_gpkg=out,
            preserve_validations=self.parameterAsBool(parameters, self.KEEP, context),
            evidence_path=evidence,
            progress=progress,
            z_seed=self.parameterAsDouble(parameters, self.Z_SEED, context),
            z_grow=self.parameterAsDouble(parameters, self.Z_GROW, context),
            min_area_m2=self.parameterAsDouble(parameters, self.MIN_AREA, context),
            min_score=self.parameterAsDouble(parameters, self.MIN_SCORE, context),
            smooth_px=self.parameterAsDouble(parameters, self.SMOOTH, context))
        result = {self.OUTPUT: out, self.N_DET: len(res.features)}
        if evidence:
            result[self.EVIDENCE] = evidence
        return result
