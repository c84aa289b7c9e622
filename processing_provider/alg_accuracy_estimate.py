"""Processing algorithm: accuracy and area estimates from the labelled sample points."""

from qgis.core import (QgsProcessingOutputNumber, QgsProcessingParameterFile,
                       QgsProcessingParameterFileDestination, QgsProcessingParameterNumber)

from .base import SlideWatchAlgorithm


class AccuracyEstimateAlgorithm(SlideWatchAlgorithm):
    NAME = "accuracy_estimate"
    DISPLAY_NAME = "Accuracy assessment: estimates"
    GROUP = "Accuracy assessment"
    GROUP_ID = "accuracy"
    HELP = (
        "Second step of the accuracy assessment of the detection map: from the sample "
        "points labelled in the <b>Accuracy sample</b> dock, the estimators of Olofsson et "
        "al. (2014, Remote Sensing of Environment 148, eqs. 1-11) for stratified random "
        "sampling: the error matrix in proportions of area, the overall accuracy, the "
        "user's and producer's accuracy of each class and the area of each class (the "
        "error-adjusted area of moving ground), each with its standard error and "
        "confidence interval. Points labelled 'unsure' and points not labelled yet are left "
        "out, counted and listed in the log and the outputs. See "
        "docs/accuracy_assessment.md.<br>"
        "<b>Labelled sample points</b>: the file written by 'Accuracy assessment: sample "
        "points' (.gpkg, or .csv with its .design.json).<br>"
        "<b>Confidence level</b>: of the intervals (0.95: estimate ± 1.96 standard "
        "errors).<br>"
        "<b>Estimates (CSV)</b>: one row per measure (measure, class, reference_class, "
        "estimate, se, ci_low, ci_high, unit).<br>"
        "<b>Estimates (JSON)</b> (optional): the same, with the design and the lists of "
        "unlabelled and unsure points.<br>"
        "<b>Report section (HTML)</b> (optional): tables for a report.")

    INPUT = "INPUT"
    CONFIDENCE = "CONFIDENCE"
    OUTPUT_CSV = "OUTPUT_CSV"
    OUTPUT_JSON = "OUTPUT_JSON"
    OUTPUT_HTML = "OUTPUT_HTML"
    NUMBERS = (("OVERALL_ACCURACY", "Overall accuracy"),
               ("USERS_ACCURACY_MOVING", "User's accuracy, moving"),
               ("PRODUCERS_ACCURACY_MOVING", "Producer's accuracy, moving"),
               ("AREA_MOVING_M2", "Estimated moving area (m2)"),
               ("AREA_MOVING_SE_M2", "Standard error of the moving area (m2)"),
               ("AREA_MOVING_CI_LOW_M2", "Moving area, lower confidence bound (m2)"),
               ("AREA_MOVING_CI_HIGH_M2", "Moving area, upper confidence bound (m2)"),
               ("N_USED", "Labelled points used"),
               ("N_UNSURE", "Points labelled unsure (left out)"),
               ("N_UNLABELLED", "Points not labelled (left out)"))

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterFile(
            self.INPUT, self.tr("Labelled sample points"),
            fileFilter="Sample files (*.gpkg *.csv);;GeoPackage (*.gpkg);;CSV (*.csv)"))
        Num = QgsProcessingParameterNumber
        self.addParameter(Num(self.CONFIDENCE, self.tr("Confidence level"), Num.Double, 0.95,
                              minValue=0.5, maxValue=0.999))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_CSV, self.tr("Estimates (CSV)"), "CSV files (*.csv)"))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_JSON, self.tr("Estimates (JSON)"), "JSON files (*.json)",
            optional=True, createByDefault=False))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_HTML, self.tr("Report section (HTML)"), "HTML files (*.html)",
            optional=True, createByDefault=True))
        for key, text in self.NUMBERS:
            self.addOutput(QgsProcessingOutputNumber(key, self.tr(text)))

    def _dest(self, parameters, key, context):
        if not parameters.get(key):
            return None
        return self.parameterAsFileOutput(parameters, key, context) or None

    def compute(self, parameters, context, feedback, progress):
        from ..core.outputs import accuracy_assessment as aa

        path = self.parameterAsFile(parameters, self.INPUT, context)
        progress.update(0.1, "Reading the labelled sample")
        report = aa.assess(path, self.parameterAsDouble(parameters, self.CONFIDENCE, context))
        for w in report.warnings:
            if hasattr(feedback, "pushWarning"):
                feedback.pushWarning(w)
            else:  # pragma: no cover - QGIS < 3.16
                progress.info("Warning: " + w)
        progress.info(report.summary())
        outs = {self.OUTPUT_CSV: self._dest(parameters, self.OUTPUT_CSV, context),
                self.OUTPUT_JSON: self._dest(parameters, self.OUTPUT_JSON, context),
                self.OUTPUT_HTML: self._dest(parameters, self.OUTPUT_HTML, context)}
        report.write(outs[self.OUTPUT_CSV], outs[self.OUTPUT_JSON], outs[self.OUTPUT_HTML])
        e = report.estimates
        k = aa.CLASSES.index("moving")
        values = (e.overall.value, e.users[k].value, e.producers[k].value, e.area[k].value,
                  e.area[k].se, e.area[k].low, e.area[k].high, report.n_used, report.n_unsure,
                  report.n_unlabelled)
        result = {key: v for (key, _t), v in zip(self.NUMBERS, values)}
        result.update({k2: v for k2, v in outs.items() if v})
        progress.update(1.0, "Estimates written")
        return result
