"""Processing algorithm: write a synthetic image stack with known ground truth."""

from qgis.core import (QgsProcessingParameterBoolean, QgsProcessingParameterFolderDestination,
                       QgsProcessingParameterNumber)

from .base import SlideWatchAlgorithm, number_bounds

#: The dialog's stack is smaller than :class:`.core.synth.synthetic.SyntheticStackParams`'s
#: (40 dates of 512 x 512 px), deliberately: a quicker stack to try the plugin on. The
#: other defaults and every bound are the parameter object's.
QUICK_N_DATES = 24
QUICK_SIZE = 384


class SyntheticStackAlgorithm(SlideWatchAlgorithm):
    NAME = "synthetic_stack"
    DISPLAY_NAME = "Generate synthetic test stack"
    GROUP = "Tools"
    GROUP_ID = "tools"
    HELP = (
        "Writes a realistic synthetic Sentinel-2-like image stack with known displacement, "
        "for trying SlideWatch and measuring its accuracy against truth: real Sentinel-2 "
        "texture (fractal texture when the sample is not available), landslides with known "
        "time-varying displacement (one with an acceleration phase), clouds and cloud "
        "shadows, illumination changes, sensor noise, nodata borders and a small "
        "co-registration offset per date. The same seed always gives the same stack.<br>"
        "<b>Number of dates</b>: acquisitions in the stack.<br>"
        "<b>Size</b>: image width and height in pixels (10 m pixels).<br>"
        "<b>Seed</b>: random seed.<br>"
        "<b>Fraction of cloudy dates</b>: dates with partial clouds (one more date is fully "
        "clouded).<br>"
        "<b>Output folder</b>: receives one GeoTIFF per date, dem.tif, truth.npz and "
        "truth.json (the ground truth).")

    N_DATES = "N_DATES"
    SIZE = "SIZE"
    SEED = "SEED"
    CLOUDY = "CLOUDY_FRACTION"
    FULL_CLOUD = "FULLY_CLOUDED_DATE"
    OUTPUT = "OUTPUT_FOLDER"

    def initAlgorithm(self, config=None):  # noqa: N802
        from ..core.synth.synthetic import SyntheticStackParams as SP
        d = SP()
        Num = QgsProcessingParameterNumber
        self.addParameter(Num(self.N_DATES, self.tr("Number of dates"), Num.Integer,
                              QUICK_N_DATES, **number_bounds(SP, "n_dates")))
        self.addParameter(Num(self.SIZE, self.tr("Size (pixels)"), Num.Integer, QUICK_SIZE,
                              **number_bounds(SP, "shape")))
        self.addParameter(Num(self.SEED, self.tr("Seed"), Num.Integer, d.seed,
                              **number_bounds(SP, "seed")))
        self.addParameter(Num(self.CLOUDY, self.tr("Fraction of cloudy dates"), Num.Double,
                              d.cloudy_date_fraction,
                              **number_bounds(SP, "cloudy_date_fraction")))
        self.addParameter(QgsProcessingParameterBoolean(
            self.FULL_CLOUD, self.tr("Include one fully clouded date"),
            d.fully_clouded_dates > 0))
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.OUTPUT, self.tr("Output folder")))

    def compute(self, parameters, context, feedback, progress):
        from ..core.synth.synthetic import generate_stack

        size = self.parameterAsInt(parameters, self.SIZE, context)
        out = self.parameterAsString(parameters, self.OUTPUT, context)
        stack = generate_stack(
            out,
            n_dates=self.parameterAsInt(parameters, self.N_DATES, context),
            shape=(size, size),
            seed=self.parameterAsInt(parameters, self.SEED, context),
            cloudy_date_fraction=self.parameterAsDouble(parameters, self.CLOUDY, context),
            fully_clouded_dates=1 if self.parameterAsBool(parameters, self.FULL_CLOUD,
                                                          context) else 0,
            keep_images=False,
            progress=progress)
        progress.info("Wrote %d images from %s to %s into %s"
                      % (len(stack.paths), stack.dates[0], stack.dates[-1], out))
        return {self.OUTPUT: out}
