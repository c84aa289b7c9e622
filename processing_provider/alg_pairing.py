"""Processing algorithm: choose the correlation pairs (pairs.csv + network summary)."""

import os

from qgis.core import (QgsProcessingOutputNumber, QgsProcessingOutputString,
                       QgsProcessingParameterBoolean, QgsProcessingParameterEnum,
                       QgsProcessingParameterFile, QgsProcessingParameterFolderDestination,
                       QgsProcessingParameterNumber)

from ..core import products as prod
from ..core.network.pairing import CRITERIA, STRATEGIES, PairingParams
from .base import SlideWatchAlgorithm, number_bounds


def _bounds(name):
    """minValue / maxValue of a number parameter from :data:`PairingParams.BOUNDS`."""
    return number_bounds(PairingParams, name)


class SelectPairsAlgorithm(SlideWatchAlgorithm):
    NAME = "select_pairs"
    DISPLAY_NAME = "Select correlation pairs"
    GROUP = "Stack"
    GROUP_ID = "stack"
    HELP = (
        "Chooses which image pairs to correlate and writes <code>pairs.csv</code> (every "
        "candidate pair, with <i>selected</i> and the <i>reason</i> it was selected or "
        "rejected), <code>network_summary.json</code> and <code>network_dates.csv</code> "
        "(pairs per date, connected components, predicted quality).<br>"
        "The <b>optimal</b> strategy predicts the quality of every candidate from cheap "
        "features (cloud and valid fractions, sun angles, baseline, season) and from quick "
        "low-resolution preview correlations of a small sample (a small model fitted on the "
        "previews predicts the others, so fully clouded dates are found even without cloud "
        "masks), then picks, within the budget, the pairs that most reduce the expected "
        "error of the displacement time series (greedy A- or D-optimal design on the "
        "inversion's network), keeping the network connected (bridges first) and giving "
        "each date at least the minimum number of pairs where possible. Other strategies "
        "are there to compare: sequential (each date with the next ones), seasonal (short "
        "and anniversary pairs, best predicted quality), random, all.<br>"
        "<b>Catalog</b>: catalog.csv from 'Catalog image stack'.<br>"
        "<b>Strategy</b>: optimal, sequential, seasonal, all, random.<br>"
        "<b>Pairs per date</b>: budget as an average number of pairs per date (0 = none).<br>"
        "<b>Maximum number of pairs</b>: total budget (0 = none).<br>"
        "<b>CPU budget (s)</b>: seconds of full-resolution correlation (the time per pair is "
        "measured on a crop; 0 = none). The smallest of the budgets applies.<br>"
        "<b>Minimum pairs per date</b>: k, honoured where usable pairs exist.<br>"
        "<b>Minimum baseline</b>, <b>Maximum baseline</b> (days): candidate range.<br>"
        "<b>Seasonal window (days)</b>: also allow anniversary pairs (baseline within this "
        "many days of whole years; 0 = none); width of the season for 'seasonal'.<br>"
        "<b>Preview correlations</b>: run the quick previews (needs all images on one "
        "grid).<br>"
        "<b>Number of previews</b>: 0 = about two per date.<br>"
        "<b>Expected maximum velocity (m/yr)</b>: pairs over which this motion exceeds the "
        "search range are rejected (0 = no limit).<br>"
        "<b>Correlation window</b>, <b>Correlation step</b>, <b>Correlation search range</b> "
        "(px): the correlation parameters you will use (for the cost estimate and the motion "
        "check).<br>"
        "<b>Design criterion</b>: D (log det of the network information, default: many "
        "independent paths between dates) or A (mean variance of the time series).<br>"
        "<b>Seed</b>: same seed, same selection.<br>"
        "<b>Output folder</b>: receives pairs.csv and the summaries; its "
        "<code>pairs/pair_*.tif</code> from earlier runs, if any, train the quality model "
        "(kept in quality_training.csv).")

    CATALOG = "CATALOG"
    STRATEGY = "STRATEGY"
    PER_DATE = "PAIRS_PER_DATE"
    MAX_PAIRS = "MAX_PAIRS"
    CPU = "CPU_BUDGET_S"
    KMIN = "MIN_PAIRS_PER_DATE"
    MIN_BL = "MIN_BASELINE_DAYS"
    MAX_BL = "MAX_BASELINE_DAYS"
    SEASON = "SEASONAL_WINDOW_DAYS"
    PREVIEWS = "PREVIEWS"
    SAMPLE = "PREVIEW_SAMPLE"
    VEL = "EXPECTED_VELOCITY"
    WINDOW = "WINDOW"
    STEP = "STEP"
    SEARCH = "SEARCH"
    CRITERION = "CRITERION"
    SEED = "SEED"
    OUTPUT = "OUTPUT_FOLDER"
    STRATEGIES = list(STRATEGIES)
    CRITERIA = list(CRITERIA)

    def initAlgorithm(self, config=None):  # noqa: N802
        """Parameters with the defaults and bounds of :class:`.pairing.PairingParams`
        (0 stands for its None: no limit / automatic)."""
        Num = QgsProcessingParameterNumber
        d = PairingParams()

        def num(key, label, kind, field, default):
            self.addParameter(Num(key, self.tr(label), kind, default, **_bounds(field)))

        self.addParameter(QgsProcessingParameterFile(
            self.CATALOG, self.tr("Catalog (catalog.csv)"), extension="csv"))
        self.addParameter(QgsProcessingParameterEnum(
            self.STRATEGY, self.tr("Strategy"), self.STRATEGIES,
            defaultValue=self.STRATEGIES.index(d.strategy)))
        num(self.PER_DATE, "Pairs per date (budget)", Num.Double, "budget_pairs_per_date",
            float(d.budget_pairs_per_date or 0))
        num(self.MAX_PAIRS, "Maximum number of pairs (0 = none)", Num.Integer, "budget_pairs",
            d.budget_pairs or 0)
        num(self.CPU, "CPU budget (s, 0 = none)", Num.Double, "budget_cpu_s",
            float(d.budget_cpu_s or 0))
        num(self.KMIN, "Minimum pairs per date", Num.Integer, "min_pairs_per_date",
            d.min_pairs_per_date)
        num(self.MIN_BL, "Minimum baseline (days)", Num.Integer, "min_baseline_days",
            d.min_baseline_days)
        num(self.MAX_BL, "Maximum baseline (days)", Num.Integer, "max_baseline_days",
            d.max_baseline_days)
        num(self.SEASON, "Seasonal window (days, 0 = none)", Num.Integer,
            "seasonal_window_days", d.seasonal_window_days or 0)
        self.addParameter(QgsProcessingParameterBoolean(
            self.PREVIEWS, self.tr("Preview correlations"), d.previews))
        num(self.SAMPLE, "Number of previews (0 = automatic)", Num.Integer, "preview_sample",
            d.preview_sample or 0)
        num(self.VEL, "Expected maximum velocity (m/yr, 0 = no limit)", Num.Double,
            "expected_velocity_m_per_yr", float(d.expected_velocity_m_per_yr or 0))
        num(self.WINDOW, "Correlation window (px)", Num.Integer, "window", d.window)
        num(self.STEP, "Correlation step (px)", Num.Integer, "step", d.step)
        num(self.SEARCH, "Correlation search range (px)", Num.Integer, "search", d.search)
        self.addParameter(QgsProcessingParameterEnum(
            self.CRITERION, self.tr("Design criterion"), self.CRITERIA,
            defaultValue=self.CRITERIA.index(d.criterion)))
        num(self.SEED, "Seed", Num.Integer, "seed", d.seed)
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.OUTPUT, self.tr("Output folder")))
        self.addOutput(QgsProcessingOutputString("PAIRS", self.tr(prod.PAIRS_CSV)))
        self.addOutput(QgsProcessingOutputString("SUMMARY", self.tr("network_summary.json")))
        self.addOutput(QgsProcessingOutputNumber("N_SELECTED", self.tr("Selected pairs")))

    def pairing_params(self, parameters, context):
        """The :class:`.pairing.PairingParams` of the parameter values (0 = None)."""
        num = lambda key: self.parameterAsDouble(parameters, key, context)  # noqa: E731
        inum = lambda key: self.parameterAsInt(parameters, key, context)  # noqa: E731
        enum = lambda key, values: values[self.parameterAsEnum(parameters, key,  # noqa: E731
                                                                context)]
        return PairingParams(
            strategy=enum(self.STRATEGY, self.STRATEGIES),
            budget_pairs_per_date=num(self.PER_DATE) or None,
            budget_pairs=inum(self.MAX_PAIRS) or None,
            budget_cpu_s=num(self.CPU) or None,
            min_pairs_per_date=inum(self.KMIN),
            min_baseline_days=inum(self.MIN_BL), max_baseline_days=inum(self.MAX_BL),
            seasonal_window_days=inum(self.SEASON) or None,
            previews=self.parameterAsBool(parameters, self.PREVIEWS, context),
            preview_sample=inum(self.SAMPLE) or None,
            expected_velocity_m_per_yr=num(self.VEL) or None,
            window=inum(self.WINDOW), step=inum(self.STEP), search=inum(self.SEARCH),
            criterion=enum(self.CRITERION, self.CRITERIA), seed=inum(self.SEED))

    def compute(self, parameters, context, feedback, progress):
        from ..core.stack.catalog import read_catalog_csv
        from ..core.network.pairing import (network_summary, select_pairs, write_network_summary,
                                            write_pairs_csv)
        from ..core.raster_io import ensure_writable_folder

        cat = read_catalog_csv(self.parameterAsFile(parameters, self.CATALOG, context))
        for line in cat.problems:
            progress.info("catalog: " + line)
        out = self.parameterAsString(parameters, self.OUTPUT, context)
        ensure_writable_folder(out)
        sel = select_pairs(cat, self.pairing_params(parameters, context), history_folder=out,
                           progress=progress)
        for line in sel.report().splitlines():
            progress.info(line)
        pairs_path = write_pairs_csv(sel, os.path.join(out, prod.PAIRS_CSV))
        summary = network_summary(sel)
        summary_path = write_network_summary(summary, os.path.join(out, "network_summary.json"),
                                             os.path.join(out, "network_dates.csv"))
        progress.update(1.0, "%d pairs selected" % len(sel.selected))
        return {self.OUTPUT: out, "PAIRS": pairs_path, "SUMMARY": summary_path,
                "N_SELECTED": len(sel.selected)}
