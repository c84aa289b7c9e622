"""Processing algorithm: catalog a stack of images into catalog.csv."""

import os

from qgis.core import (QgsProcessingOutputNumber, QgsProcessingOutputString,
                       QgsProcessingParameterBoolean, QgsProcessingParameterEnum,
                       QgsProcessingParameterFile, QgsProcessingParameterFolderDestination,
                       QgsProcessingParameterString)

from ..core import products as prod
from .base import SlideWatchAlgorithm


class CatalogAlgorithm(SlideWatchAlgorithm):
    NAME = "catalog"
    DISPLAY_NAME = "Catalog image stack"
    GROUP = "Stack"
    GROUP_ID = "stack"
    HELP = (
        "Lists the images of a stack, one per acquisition date, and writes "
        "<code>catalog.csv</code> (path, date, sensor, valid and cloud fractions, sun angles, "
        "band, grid) in the output folder.<br>"
        "Dates come from Sentinel-2 product or band file names (SAFE folders, "
        "<code>T32TLR_20190101T103421_B08.jp2</code>), Landsat names "
        "(<code>LC08_L1TP_195028_20190101_..._B8.TIF</code>), any YYYYMMDD or YYYY-MM-DD in "
        "the file name, or raster tags (ACQUISITION_DATE, TIFFTAG_DATETIME...). Undatable or "
        "ambiguous files and duplicate dates are reported in the log, never guessed.<br>"
        "Sentinel-2: 0 is nodata, the -1000 radiometric offset of processing baseline 04.00+ "
        "is read from the metadata. Cloud fraction comes from a cloud mask / SCL / QA_PIXEL "
        "band, from the metadata, or is estimated from the images themselves (pixels much "
        "brighter than the same pixel over the stack).<br>"
        "<b>Input folder</b>: folder of images (searched recursively; SAFE folders are "
        "recognised).<br>"
        "<b>Band</b>: empty = per-sensor default (Sentinel-2 B08 then B04 at 10 m, Landsat "
        "B8 then B4, otherwise band 1); a band name (B04, B8) for product band files or a "
        "band description; or a 1-based band number for multi-band rasters.<br>"
        "<b>Duplicate dates</b>: keep the image with the largest valid fraction (and report "
        "the others), or stop with an error.<br>"
        "<b>Use cloud percentages from metadata</b>: uncheck to rely only on masks and on "
        "the image-based estimate.<br>"
        "<b>Images on different grids</b>: stop with a report, or warp every image onto the "
        "grid of the most common image (intersection or union of the footprints); the warped "
        "copies are written to <code>common_grid/</code> in the output folder and listed in "
        "the catalog instead of the originals.<br>"
        "<b>Output folder</b>: receives catalog.csv.")

    INPUT = "INPUT"
    BAND = "BAND"
    DUPLICATES = "DUPLICATES"
    CLOUD_META = "USE_CLOUD_METADATA"
    COMMON = "COMMON_GRID"
    OUTPUT = "OUTPUT_FOLDER"
    DUP_OPTIONS = ["keep_best", "error"]
    GRID_OPTIONS = ["report", "intersection", "union"]

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterFile(
            self.INPUT, self.tr("Input folder"), QgsProcessingParameterFile.Folder))
        self.addParameter(QgsProcessingParameterString(
            self.BAND, self.tr("Band (empty = sensor default)"), "", optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.DUPLICATES, self.tr("Duplicate dates"),
            [self.tr("Keep the image with the largest valid fraction"), self.tr("Stop")],
            defaultValue=0))
        self.addParameter(QgsProcessingParameterBoolean(
            self.CLOUD_META, self.tr("Use cloud percentages from metadata"), True))
        self.addParameter(QgsProcessingParameterEnum(
            self.COMMON, self.tr("Images on different grids"),
            [self.tr("Stop with a report"), self.tr("Warp onto a common grid (intersection)"),
             self.tr("Warp onto a common grid (union)")], defaultValue=0))
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.OUTPUT, self.tr("Output folder")))
        self.addOutput(QgsProcessingOutputString("CATALOG", self.tr(prod.CATALOG_CSV)))
        self.addOutput(QgsProcessingOutputNumber("N_IMAGES", self.tr("Number of images")))
        self.addOutput(QgsProcessingOutputNumber("N_PROBLEMS", self.tr("Number of problems")))

    def compute(self, parameters, context, feedback, progress):
        from ..core.stack.catalog import build_catalog, write_catalog_csv
        from ..core.stack.common_grid import check_grids, require_common_grid, to_common_grid
        from ..core.errors import InputError
        from ..core.raster_io import ensure_writable_folder

        folder = self.parameterAsFile(parameters, self.INPUT, context)
        band = (self.parameterAsString(parameters, self.BAND, context) or "").strip() or None
        dup = self.DUP_OPTIONS[self.parameterAsEnum(parameters, self.DUPLICATES, context)]
        grid = self.GRID_OPTIONS[self.parameterAsEnum(parameters, self.COMMON, context)]
        out = self.parameterAsString(parameters, self.OUTPUT, context)
        ensure_writable_folder(out)
        cat = build_catalog(folder, band=band, duplicates=dup,
                            use_cloud_metadata=self.parameterAsBool(parameters,
                                                                    self.CLOUD_META, context),
                            progress=progress.sub(0.0, 0.6))
        for line in cat.report().splitlines():
            progress.info(line)
        if len(cat) == 0:
            raise InputError("No dated image found in '%s'. Check the problems listed in the "
                             "log (undatable names, unreadable files, missing band)." % folder)
        if not check_grids(cat).ok:
            if grid == "report":
                require_common_grid(cat)          # raises with the full report
            cat = to_common_grid(cat, os.path.join(out, "common_grid"), extent=grid,
                                 progress=progress.sub(0.6, 0.95))
            progress.info(cat.notes[-1])
        path = write_catalog_csv(cat, os.path.join(out, prod.CATALOG_CSV))
        progress.update(1.0, "catalog.csv written")
        return {self.OUTPUT: out, "CATALOG": path, "N_IMAGES": len(cat),
                "N_PROBLEMS": len(cat.problems)}
