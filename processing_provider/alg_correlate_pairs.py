"""Processing algorithm: correlate every selected pair of a pairs.csv (resumable)."""

from qgis.core import (QgsProcessingOutputNumber, QgsProcessingParameterFile,
                       QgsProcessingParameterFolderDestination)

from .alg_correlate_pair import PARAMETERS_HELP, add_correlation_parameters, \
    correlation_parameters
from .base import SlideWatchAlgorithm
from .executor_params import EXECUTOR_HELP, add_executor_parameters, executor_from


class CorrelatePairsAlgorithm(SlideWatchAlgorithm):
    NAME = "correlate_pairs"
    DISPLAY_NAME = "Correlate pairs from pairs.csv"
    GROUP = "Correlation"
    GROUP_ID = "correlation"
    HELP = (
        "Correlates every pair of a pairs.csv whose 'selected' column is 1/true into "
        "OUTPUT_FOLDER/pairs/pair_YYYYMMDD_YYYYMMDD.tif. Resumable: a pair raster that "
        "already exists with the same parameters is skipped, so an interrupted run only "
        "computes the missing pairs; cancel stops between pairs (and between the blocks of "
        "the pairs under way). The images of each pair must be on the same grid. The same "
        "correlation step as the pipeline's (one task per pair, local threads or Dask).<br>"
        "<b>Pairs file</b>: pairs.csv with columns reference_date, secondary_date, "
        "reference_path, secondary_path, selected (relative paths are relative to the "
        "CSV's folder).<br>"
        "<b>Output folder</b>: the pair rasters go to its pairs/ sub-folder.<br>"
        + PARAMETERS_HELP + "<br>" + EXECUTOR_HELP)

    PAIRS = "PAIRS"
    OUTPUT = "OUTPUT_FOLDER"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterFile(
            self.PAIRS, self.tr("Pairs file (pairs.csv)"), extension="csv"))
        add_correlation_parameters(self)
        add_executor_parameters(self)
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.OUTPUT, self.tr("Output folder")))
        self.addOutput(QgsProcessingOutputNumber("N_COMPUTED", self.tr("Pairs computed")))
        self.addOutput(QgsProcessingOutputNumber("N_SKIPPED",
                                                 self.tr("Pairs skipped (up to date)")))

    def compute(self, parameters, context, feedback, progress):
        from ..core.correlation_driver import correlate_pairs, jobs_from_pairs_csv

        csv_path = self.parameterAsFile(parameters, self.PAIRS, context)
        out = self.parameterAsString(parameters, self.OUTPUT, context)
        jobs = jobs_from_pairs_csv(csv_path, out,
                                   correlation_parameters(self, parameters, context))
        with executor_from(self, parameters, context) as executor:
            run = correlate_pairs(jobs, executor, progress=progress,
                                  missing_hint=" (listed in '%s')." % csv_path)
        progress.info("%d pair(s): %d computed, %d up to date (skipped), on %s" % (
            len(run.pairs), run.computed, run.reused, run.executor))
        return {self.OUTPUT: out, "N_COMPUTED": run.computed, "N_SKIPPED": run.reused}
