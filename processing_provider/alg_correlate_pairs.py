"""Processing algorithm: correlate every selected pair of a pairs.csv (resumable)."""

from qgis.core import (QgsProcessingOutputNumber, QgsProcessingParameterFile,
                       QgsProcessingParameterFolderDestination)

from .alg_correlate_pair import PARAMETERS_HELP, add_correlation_parameters, \
    correlation_parameters
from .base import SlideWatchAlgorithm


class CorrelatePairsAlgorithm(SlideWatchAlgorithm):
    NAME = "correlate_pairs"
    DISPLAY_NAME = "Correlate pairs from pairs.csv"
    GROUP = "Correlation"
    GROUP_ID = "correlation"
    HELP = (
        "Correlates every pair of a pairs.csv whose 'selected' column is 1/true into "
        "OUTPUT_FOLDER/pairs/pair_YYYYMMDD_YYYYMMDD.tif. Resumable: a pair raster that "
        "already exists with the same parameters is skipped, so an interrupted run only "
        "computes the missing pairs. The images of each pair must be on the same grid.<br>"
        "<b>Pairs file</b>: pairs.csv with columns reference_date, secondary_date, "
        "reference_path, secondary_path, selected (relative paths are relative to the "
        "CSV's folder).<br>"
        "<b>Output folder</b>: the pair rasters go to its pairs/ sub-folder.<br>"
        + PARAMETERS_HELP)

    PAIRS = "PAIRS"
    OUTPUT = "OUTPUT_FOLDER"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterFile(
            self.PAIRS, self.tr("Pairs file (pairs.csv)"), extension="csv"))
        add_correlation_parameters(self)
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.OUTPUT, self.tr("Output folder")))
        self.addOutput(QgsProcessingOutputNumber("N_COMPUTED", self.tr("Pairs computed")))
        self.addOutput(QgsProcessingOutputNumber("N_SKIPPED",
                                                 self.tr("Pairs skipped (up to date)")))

    def compute(self, parameters, context, feedback, progress):
        from ..core.pair_correlation import correlate_pairs_csv

        csv_path = self.parameterAsFile(parameters, self.PAIRS, context)
        out = self.parameterAsString(parameters, self.OUTPUT, context)
        results = correlate_pairs_csv(csv_path, out, progress=progress,
                                      **correlation_parameters(self, parameters, context))
        skipped = sum(1 for r in results if r["skipped"])
        progress.info("%d pair(s): %d computed, %d up to date (skipped)" % (
            len(results), len(results) - skipped, skipped))
        return {self.OUTPUT: out, "N_COMPUTED": len(results) - skipped, "N_SKIPPED": skipped}
