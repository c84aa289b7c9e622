"""Processing algorithm: correlate one pair of co-registered rasters into a pair raster."""

from qgis.core import (QgsProcessingParameterBoolean, QgsProcessingParameterEnum,
                       QgsProcessingParameterNumber, QgsProcessingParameterRasterDestination,
                       QgsProcessingParameterRasterLayer, QgsProcessingParameterDefinition)

from .base import SlideWatchAlgorithm

SUBPIXEL = ["iterative", "parabola", "none"]
PREFILTER = ["none", "gaussian_hp", "wallis", "orientation"]
STABLE = ["none", "median", "plane"]

PARAMETERS_HELP = (
    "<b>Window</b>: correlation window size in pixels (16 to 64 usual; larger = more robust, "
    "smoother).<br>"
    "<b>Step</b>: spacing of the window centres in pixels; the output pixel is step x the "
    "input pixel.<br>"
    "<b>Search</b>: largest displacement looked for, in pixels, per axis (around the seed "
    "when a maximum velocity is given).<br>"
    "<b>Maximum velocity (m/day)</b>: the fast-motion setting. 0 (default): displacements "
    "up to Search only. Otherwise the search follows the motion: a coarse level (1/4 "
    "resolution) finds where and how far things move, up to this velocity times the "
    "pair's baseline, and the fine search is centred there; stable ground keeps zero as a "
    "candidate. Give the fastest speed you expect (e.g. 30 for a fast tidewater glacier); "
    "it costs about 2x to 4x a plain run on a pair with fast motion.<br>"
    "<b>Band</b>: band of the input rasters to correlate.<br>"
    "<b>Sub-pixel method</b>: iterative (Lucas-Kanade refinement, ~0.01 px, default), "
    "parabola (fast preview, biased towards whole pixels), none (whole pixels).<br>"
    "<b>Pre-filter</b>: none, gaussian_hp (default, sigma 1 px: removes haze/illumination "
    "gradients; clearly better on real Sentinel-2 pairs), wallis "
    "(local contrast equalisation), orientation (gradient orientation, robust to "
    "illumination changes).<br>"
    "<b>Minimum NCC</b>: windows whose correlation peak is lower get status 5 (no value).<br>"
    "<b>Maximum nodata fraction</b>: windows with more invalid pixels get status 2.<br>"
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
    """Add the correlation parameters shared by the one-pair and list-of-pairs algorithms."""
    Num = QgsProcessingParameterNumber
    tr = alg.tr
    alg.addParameter(Num("WINDOW", tr("Window (pixels)"), Num.Integer, 32, minValue=4,
                         maxValue=512))
    alg.addParameter(Num("STEP", tr("Step (pixels)"), Num.Integer, 8, minValue=1,
                         maxValue=512))
    alg.addParameter(Num("SEARCH", tr("Search (pixels)"), Num.Integer, 8, minValue=1,
                         maxValue=256))
    alg.addParameter(Num("MAX_VELOCITY", tr("Maximum velocity, m/day (fast motion; 0 = "
                                            "search radius only)"), Num.Double, 0.0,
                         minValue=0.0, maxValue=1000.0))
    alg.addParameter(Num("BAND", tr("Band"), Num.Integer, 1, minValue=1))
    advanced = [
        QgsProcessingParameterEnum("SUBPIXEL", tr("Sub-pixel method"), SUBPIXEL,
                                   defaultValue=0),
        QgsProcessingParameterEnum("PREFILTER", tr("Pre-filter"), PREFILTER, defaultValue=1),
        Num("MIN_NCC", tr("Minimum NCC"), Num.Double, 0.3, minValue=-1.0, maxValue=1.0),
        Num("MAX_NODATA", tr("Maximum nodata fraction in a window"), Num.Double, 0.1,
            minValue=0.0, maxValue=0.99),
        QgsProcessingParameterBoolean("ZERO_IS_NODATA", tr("Zero is nodata"), True),
        QgsProcessingParameterEnum("STABLE", tr("Stable-ground correction"), STABLE,
                                   defaultValue=0),
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
