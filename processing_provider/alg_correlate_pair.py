"""Processing algorithm: correlate one pair of co-registered rasters into a pair raster."""

from qgis.core import (QgsProcessingParameterBoolean, QgsProcessingParameterEnum,
                       QgsProcessingParameterNumber, QgsProcessingParameterRasterDestination,
                       QgsProcessingParameterRasterLayer, QgsProcessingParameterDefinition)

# core modules that import numba are imported in compute() only (the provider must load
# without it, tests/test_dependencies.py): correlation_params does not
from ..core.correlation_params import CorrelationParams as CP, DRIVER_DEFAULTS, STABLE_MODES
from .base import SlideWatchAlgorithm, number_bounds

#: menus, in the order of the parameter objects' choices (the enum indices scripts give)
SUBPIXEL = list(CP.CHOICES["subpixel"])
PREFILTER = list(CP.CHOICES["prefilter"])
STABLE = list(STABLE_MODES)


def _line(label, name):
    return "<b>%s</b>: %s.<br>" % (label, CP.describe(name))


PARAMETERS_HELP = (
    _line("Window", "window") + _line("Step", "step") + _line("Search", "search") +
    "<b>Maximum velocity (m/day)</b>: the fast-motion setting. 0 (default): displacements "
    "up to Search only. Otherwise the search follows the motion: a coarse level (1/4 "
    "resolution) finds where and how far things move, up to this velocity times the "
    "pair's baseline, and the fine search is centred there; stable ground keeps zero as a "
    "candidate. Give the fastest speed you expect (e.g. 30 for a fast tidewater glacier); "
    "it costs about 2x to 4x a plain run on a pair with fast motion.<br>"
    "<b>Band</b>: band of the input rasters to correlate.<br>" +
    _line("Sub-pixel method", "subpixel") + _line("Pre-filter", "prefilter") +
    _line("Minimum NCC", "min_ncc") + _line("Maximum nodata fraction", "max_nodata") +
    "<b>Zero is nodata</b>: treat 0 as nodata (Sentinel-2 L1C/L2A convention).<br>"
    "<b>Stable-ground correction</b>: median removes the median offset of valid windows "
    "over stable ground (co-registration error); plane removes a robust plane fitted to "
    "them (also the small rotation/scale part of the co-registration error; recommended "
    "for Sentinel-2 with window 64).<br>"
    "<b>Stable-ground mask</b>: optional raster on the same grid, non-zero = stable ground "
    "(default: the whole image).<br>"
    "Output bands: east_m, north_m (displacement in metres, secondary relative to "
    "reference), ncc, snr (peak-to-second-peak ratio), status (0 valid; 1 window outside "
    "the image; 2 too much nodata; 3 flat texture; 4 peak on the search border; 5 low NCC; "
    "6 ambiguous peak; 7 sub-pixel refinement failed).")


def add_correlation_parameters(alg):
    """Add the correlation parameters shared by the one-pair and list-of-pairs algorithms
    (defaults, bounds and menus from :class:`.core.correlation_params.CorrelationParams`
    and the pair driver's ``DRIVER_DEFAULTS``)."""
    Num = QgsProcessingParameterNumber
    tr = alg.tr
    alg.addParameter(Num("WINDOW", tr("Window (pixels)"), Num.Integer, CP.window,
                         **number_bounds(CP, "window")))
    alg.addParameter(Num("STEP", tr("Step (pixels)"), Num.Integer, CP.step,
                         **number_bounds(CP, "step")))
    alg.addParameter(Num("SEARCH", tr("Search (pixels)"), Num.Integer, CP.search,
                         **number_bounds(CP, "search")))
    alg.addParameter(Num("MAX_VELOCITY", tr("Maximum velocity, m/day (fast motion; 0 = "
                                            "search radius only)"), Num.Double, 0.0,
                         minValue=0.0, maxValue=1000.0))
    alg.addParameter(Num("BAND", tr("Band"), Num.Integer, DRIVER_DEFAULTS["band"], minValue=1))
    advanced = [
        QgsProcessingParameterEnum("SUBPIXEL", tr("Sub-pixel method"), SUBPIXEL,
                                   defaultValue=SUBPIXEL.index(CP.subpixel)),
        QgsProcessingParameterEnum("PREFILTER", tr("Pre-filter"), PREFILTER,
                                   defaultValue=PREFILTER.index(CP.prefilter)),
        Num("MIN_NCC", tr("Minimum NCC"), Num.Double, CP.min_ncc,
            **number_bounds(CP, "min_ncc")),
        Num("MAX_NODATA", tr("Maximum nodata fraction in a window"), Num.Double,
            CP.max_nodata, **number_bounds(CP, "max_nodata")),
        QgsProcessingParameterBoolean("ZERO_IS_NODATA", tr("Zero is nodata"),
                                      DRIVER_DEFAULTS["zero_is_nodata"]),
        QgsProcessingParameterEnum("STABLE", tr("Stable-ground correction"), STABLE,
                                   defaultValue=STABLE.index(DRIVER_DEFAULTS["stable"])),
        QgsProcessingParameterRasterLayer("STABLE_MASK", tr("Stable-ground mask"),
                                          optional=True),
    ]
    for p in advanced:
        p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        alg.addParameter(p)


def correlation_parameters(alg, parameters, context):
    """Keyword arguments for core.pair_correlation from the algorithm's parameters."""
    mask = alg.parameterAsRasterLayer(parameters, "STABLE_MASK", context)
    return dict(
        window=alg.parameterAsInt(parameters, "WINDOW", context),
        step=alg.parameterAsInt(parameters, "STEP", context),
        search=alg.parameterAsInt(parameters, "SEARCH", context),
        band=alg.parameterAsInt(parameters, "BAND", context),
        subpixel=SUBPIXEL[alg.parameterAsEnum(parameters, "SUBPIXEL", context)],
        prefilter=PREFILTER[alg.parameterAsEnum(parameters, "PREFILTER", context)],
        min_ncc=alg.parameterAsDouble(parameters, "MIN_NCC", context),
        max_nodata=alg.parameterAsDouble(parameters, "MAX_NODATA", context),
        zero_is_nodata=alg.parameterAsBool(parameters, "ZERO_IS_NODATA", context),
        stable=STABLE[alg.parameterAsEnum(parameters, "STABLE", context)],
        stable_mask=mask.source() if mask is not None else None,
        max_velocity_m_per_day=alg.parameterAsDouble(parameters, "MAX_VELOCITY", context)
        or None,
    )


class CorrelatePairAlgorithm(SlideWatchAlgorithm):
    NAME = "correlate_pair"
    DISPLAY_NAME = "Correlate image pair"
    GROUP = "Correlation"
    GROUP_ID = "correlation"
    HELP = (
        "Measures the displacement between two images on the same grid (reference, "
        "then secondary) by sub-pixel image correlation, window by window, and writes the "
        "pair raster (bands east_m, north_m, ncc, snr, status). Processed block by block "
        "(any raster size); cancel between blocks leaves no partial file.<br>"
        "<b>Reference / Secondary</b>: raster layers on the same grid (same size, "
        "geotransform and CRS); the earlier date is the reference.<br>"
        "<b>Output</b>: the pair raster; name it pair_YYYYMMDD_YYYYMMDD.tif so that the "
        "dates are recorded (otherwise they come from the input names).<br>"
        + PARAMETERS_HELP)

    REFERENCE = "REFERENCE"
    SECONDARY = "SECONDARY"
    OUTPUT = "OUTPUT"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.REFERENCE,
                                                            self.tr("Reference image")))
        self.addParameter(QgsProcessingParameterRasterLayer(self.SECONDARY,
                                                            self.tr("Secondary image")))
        add_correlation_parameters(self)
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUTPUT, self.tr("Pair raster")))

    def compute(self, parameters, context, feedback, progress):
        from ..core.errors import InputError
        from ..core.pair_correlation import correlate_pair_rasters

        ref = self.parameterAsRasterLayer(parameters, self.REFERENCE, context)
        sec = self.parameterAsRasterLayer(parameters, self.SECONDARY, context)
        if ref is None or sec is None:
            raise InputError("Choose a reference and a secondary raster layer.")
        out = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        info = correlate_pair_rasters(ref.source(), sec.source(), out, progress=progress,
                                      **correlation_parameters(self, parameters, context))
        progress.info("%d windows, %.1f %% valid; status counts %s" % (
            info["n_windows"], 100 * info["valid_fraction"], info["status_counts"]))
        if info["median_dx_px"] == info["median_dx_px"]:
            progress.info("stable-ground median offset removed: dx %.3f px, dy %.3f px "
                          "(%d windows)" % (info["median_dx_px"], info["median_dy_px"],
                                            info["n_stable"]))
        return {self.OUTPUT: out}
