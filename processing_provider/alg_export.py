"""Processing algorithm: export detections / pixel series (InSAR Explorer points) and
detection reports (HTML)."""

from qgis.core import (QgsProcessingContext, QgsProcessingOutputFolder,
                       QgsProcessingOutputNumber, QgsProcessingOutputString,
                       QgsProcessingParameterBoolean, QgsProcessingParameterDefinition,
                       QgsProcessingParameterEnum, QgsProcessingParameterFile,
                       QgsProcessingParameterFolderDestination, QgsProcessingParameterNumber)

from .base import SlideWatchAlgorithm

FORMAT_OPTIONS = [(("gpkg",), "GeoPackage"), (("csv",), "CSV"),
                  (("gpkg", "csv"), "GeoPackage and CSV")]
COMPONENT_OPTIONS = [("along", "along the direction of motion (signed)"),
                     ("magnitude", "magnitude of the displacement vector"),
                     ("east", "east"), ("north", "north")]
UNIT_OPTIONS = [("mm", "millimetres (mm, mm/yr: InSAR Explorer, EGMS)"),
                ("m", "metres (m, m/yr: SlideWatch)")]


class ExportAlgorithm(SlideWatchAlgorithm):
    NAME = "export"
    DISPLAY_NAME = "Export detections, pixel series and reports"
    GROUP = "Analysis"
    GROUP_ID = "analysis"
    HELP = (
        "Exports a SlideWatch output folder for other tools and for people.<br>"
        "<b>Detection points</b>: one point per detection (on its polygon) with the mean "
        "displacement series of its pixels (east and north averaged first, never speeds), "
        "as the point layers that the QGIS plugin <i>InSAR Explorer</i> reads: a field "
        "<i>velocity</i> and one field <i>DYYYYMMDD</i> per date (cumulative displacement "
        "since the first date), plus the detection's attributes and validation status. "
        "File <i>detections_insar_explorer.gpkg</i> / <i>.csv</i>.<br>"
        "<b>Pixel points</b>: the same for every pixel (every <i>step</i>-th row and "
        "column; optionally only pixels at least <i>minimum velocity</i> fast, or inside "
        "detections). File <i>pixels_insar_explorer.gpkg</i> / <i>.csv</i>. A full grid "
        "gives one point per pixel: use a step or a minimum velocity on large scenes.<br>"
        "<b>Detection reports</b>: one self-contained HTML page per detection (map "
        "thumbnail, curves with linear and piecewise fits, evidence of the score, "
        "validation status) and <i>reports/index.html</i>, which also gives the accuracy "
        "assessment of the detection map (user's and producer's accuracy, error-adjusted "
        "moving area, 95 % intervals) of the <i>Accuracy sample</i> given, or of the "
        "labelled sample files found in the output folder.<br>"
        "<b>Component</b>: SlideWatch measures a horizontal vector, a point layer holds one "
        "value per date: <i>along</i> the point's mean direction of motion (default), the "
        "<i>magnitude</i>, <i>east</i> or <i>north</i>. Along and magnitude are biased up "
        "by noise on ground that does not move; east and north are not.<br>"
        "<b>Units</b>: mm and mm/yr (InSAR Explorer's and EGMS's unit, default) or m and "
        "m/yr.<br>CSV files have <i>x</i>, <i>y</i> in the CRS of the time series and "
        "<i>lon</i>, <i>lat</i> in WGS 84 (Layer ▸ Add delimited text layer).")

    INPUT = "INPUT"
    DETECTIONS = "DETECTION_POINTS"
    PIXELS = "PIXEL_POINTS"
    REPORTS = "REPORTS"
    FORMAT = "FORMAT"
    COMPONENT = "COMPONENT"
    UNITS = "UNITS"
    STEP = "PIXEL_STEP"
    MIN_V = "MIN_VELOCITY"
    INSIDE = "INSIDE_DETECTIONS"
    LOAD = "LOAD_OUTPUTS"
    ACCURACY = "ACCURACY_SAMPLE"
    OUTPUT = "OUTPUT_FOLDER"
    FILES = "FILES"
    N_DET = "N_DETECTIONS"
    N_PIX = "N_PIXELS"
    N_REP = "N_REPORTS"
    REPORT_INDEX = "REPORT_INDEX"

    def initAlgorithm(self, config=None):  # noqa: N802
        Num = QgsProcessingParameterNumber
        self.addParameter(QgsProcessingParameterFile(
            self.INPUT, self.tr("SlideWatch output folder"),
            behavior=QgsProcessingParameterFile.Folder))
        self.addParameter(QgsProcessingParameterBoolean(
            self.DETECTIONS, self.tr("Detection points (mean series)"), True))
        self.addParameter(QgsProcessingParameterBoolean(
            self.PIXELS, self.tr("Pixel points (series of every pixel)"), False))
        self.addParameter(QgsProcessingParameterBoolean(
            self.REPORTS, self.tr("Detection reports (HTML)"), True))
        self.addParameter(QgsProcessingParameterEnum(
            self.FORMAT, self.tr("Format of the point layers"),
            [label for _v, label in FORMAT_OPTIONS], defaultValue=2))
        self.addParameter(QgsProcessingParameterEnum(
            self.COMPONENT, self.tr("Displacement component"),
            [label for _v, label in COMPONENT_OPTIONS], defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum(
            self.UNITS, self.tr("Units"), [label for _v, label in UNIT_OPTIONS],
            defaultValue=0))
        advanced = [
            Num(self.STEP, self.tr("Pixel step (every n-th row and column)"), Num.Integer, 1,
                minValue=1),
            Num(self.MIN_V, self.tr("Minimum pixel velocity (m/yr, empty = all)"), Num.Double,
                None, optional=True, minValue=0.0),
            QgsProcessingParameterBoolean(self.INSIDE, self.tr("Only pixels inside "
                                                               "detections"), False),
            QgsProcessingParameterBoolean(self.LOAD, self.tr("Open the point layers in the "
                                                             "project"), True),
            QgsProcessingParameterFile(
                self.ACCURACY, self.tr("Accuracy sample for the reports' index (empty = the "
                                       "sample files in the output folder)"),
                fileFilter="Accuracy sample (*.gpkg *.csv)", optional=True),
        ]
        for p in advanced:
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.OUTPUT, self.tr("Export folder")))
        self.addOutput(QgsProcessingOutputString(self.FILES, self.tr("Files written")))
        self.addOutput(QgsProcessingOutputNumber(self.N_DET, self.tr("Detection points")))
        self.addOutput(QgsProcessingOutputNumber(self.N_PIX, self.tr("Pixel points")))
        self.addOutput(QgsProcessingOutputNumber(self.N_REP, self.tr("Reports")))
        self.addOutput(QgsProcessingOutputFolder(self.REPORT_INDEX,
                                                 self.tr("Reports folder")))

    def compute(self, parameters, context, feedback, progress):
        import os

        from qgis.core import QgsProcessingException

        from ..core.outputs import exports

        folder = self.parameterAsFile(parameters, self.INPUT, context)
        out = self.parameterAsString(parameters, self.OUTPUT, context)
        want_det = self.parameterAsBool(parameters, self.DETECTIONS, context)
        want_pix = self.parameterAsBool(parameters, self.PIXELS, context)
        want_rep = self.parameterAsBool(parameters, self.REPORTS, context)
        if not (want_det or want_pix or want_rep):
            raise QgsProcessingException(self.tr(
                "Nothing to export: tick detection points, pixel points or reports."))
        formats = FORMAT_OPTIONS[self.parameterAsEnum(parameters, self.FORMAT, context)][0]
        component = COMPONENT_OPTIONS[self.parameterAsEnum(parameters, self.COMPONENT,
                                                           context)][0]
        units = UNIT_OPTIONS[self.parameterAsEnum(parameters, self.UNITS, context)][0]
        steps = [s for s in (want_det, want_pix, want_rep) if s]
        part = 1.0 / len(steps)
        done = 0.0
        files, result = [], {self.N_DET: 0, self.N_PIX: 0, self.N_REP: 0,
                             self.REPORT_INDEX: ""}
        load = []
        if want_det:
            res = exports.export_detection_points(
                folder, os.path.join(out, exports.DETECTION_FILE), formats, component, units,
                progress=progress.sub(done, done + part))
            done += part
            files += res.paths
            result[self.N_DET] = res.n_points
            load += [(p, "detections (InSAR Explorer points)") for p in res.paths
                     if p.endswith(".gpkg")]
        if want_pix:
            min_v = None
            if parameters.get(self.MIN_V) not in (None, ""):
                min_v = self.parameterAsDouble(parameters, self.MIN_V, context)
            res = exports.export_pixel_points(
                folder, os.path.join(out, exports.PIXEL_FILE), formats, component, units,
                step=self.parameterAsInt(parameters, self.STEP, context), min_velocity=min_v,
                inside_detections=self.parameterAsBool(parameters, self.INSIDE, context),
                progress=progress.sub(done, done + part))
            done += part
            files += res.paths
            result[self.N_PIX] = res.n_points
            load += [(p, "pixels (InSAR Explorer points)") for p in res.paths
                     if p.endswith(".gpkg")]
        if want_rep:
            rep_dir = os.path.join(out, exports.REPORTS_FOLDER)
            sample = self.parameterAsFile(parameters, self.ACCURACY, context)
            res = exports.write_detection_reports(folder, rep_dir,
                                                  progress=progress.sub(done, 1.0),
                                                  accuracy_samples=[sample] if sample
                                                  else None)
            files += res.paths
            result[self.N_REP] = res.n_points
            result[self.REPORT_INDEX] = rep_dir
        if self.parameterAsBool(parameters, self.LOAD, context) and context.project() is not None:
            for path, name in load:
                context.addLayerToLoadOnCompletion(path, QgsProcessingContext.LayerDetails(
                    name, context.project(), name))
        result[self.OUTPUT] = out
        result[self.FILES] = ";".join(files)
        progress.info("Exported to %s: %s" % (out, ", ".join(os.path.basename(f)
                                                              for f in files)))
        return result
