"""Processing algorithm: import offsets of another correlator as SlideWatch pair rasters."""

from qgis.core import (QgsProcessing, QgsProcessingException, QgsProcessingOutputFolder,
                       QgsProcessingOutputNumber, QgsProcessingParameterBoolean,
                       QgsProcessingParameterDefinition, QgsProcessingParameterEnum,
                       QgsProcessingParameterFile, QgsProcessingParameterFolderDestination,
                       QgsProcessingParameterMultipleLayers, QgsProcessingParameterNumber,
                       QgsProcessingParameterString)

from .base import SlideWatchAlgorithm

#: (key of core.offset_import.FORMATS, label), in the enum's order
FORMAT_OPTIONS = [("auto", "Auto-detect"),
                  ("geotiff", "Plain east/north GeoTIFF pair"),
                  ("cosicorr", "COSI-Corr / geoCosiCorr3D (E/W, N/S, SNR)"),
                  ("micmac", "MicMac / MPIC-OPT (MEC/Px1, Px2, Correl)"),
                  ("itslive", "autoRIFT / ITS_LIVE NetCDF granule"),
                  ("carst", "CARST (*_eastxyz.tif, *_northxyz.tif)")]
UNIT_OPTIONS = [("m", "metres"), ("px", "pixels"), ("m/day", "metres per day"),
                ("m/yr", "metres per year")]
NORTH_OPTIONS = [("north", "positive northwards"), ("row", "positive down the image rows "
                                                           "(raw dy: north = -value)")]

_FILE_TYPE = getattr(QgsProcessing, "TypeFile", None)
if _FILE_TYPE is None:  # Qt6 / QGIS 4 scoped enum
    _FILE_TYPE = QgsProcessing.SourceType.TypeFile


class ImportOffsetsAlgorithm(SlideWatchAlgorithm):
    NAME = "import_offsets"
    DISPLAY_NAME = "Import offsets from another correlator"
    GROUP = "Correlation"
    GROUP_ID = "correlation"
    HELP = (
        "Turns the displacement maps of other correlators into SlideWatch pair rasters "
        "(<i>pairs/pair_YYYYMMDD_YYYYMMDD.tif</i>: east_m, north_m, ncc, snr, status), so that "
        "<b>Invert pair network into displacement time series</b>, the detection and the "
        "docks work on them. Units, sign convention, nodata and quality band are mapped and "
        "written to the tags (IMPORTED_FROM, ORIGINAL_UNITS, ORIGINAL_SIGN_CONVENTION, "
        "NCC_SOURCE...). See docs/importers.md.<br>"
        "<b>Input files</b> and/or <b>Input folder</b> (searched recursively): "
        "COSI-Corr / geoCosiCorr3D 3-band rasters (East/West, North/South in metres, SNR), "
        "MicMac / MPIC-OPT results (<i>MEC/Px1_Num*_DeZoom1_*.tif</i> with Px2 and Correl "
        "beside them, the images and param.xml one folder up), autoRIFT / ITS_LIVE NetCDF "
        "granules (vx, vy in m/yr), CARST <i>*_eastxyz.tif</i> / <i>*_northxyz.tif</i>, "
        "or plain east/north GeoTIFFs (one two-band file, or two files named "
        "<i>..._east...</i> / <i>..._north...</i>).<br>"
        "<b>Format</b>: auto-detect recognises each file by its name and bands; choose one "
        "to force it.<br>"
        "<b>Units</b> and <b>north component</b> (plain GeoTIFF only): metres, pixels "
        "(times the pixel size), m/day or m/yr (times the time between the dates); north "
        "positive northwards, or positive down the rows (a raw dy).<br>"
        "<b>Reference / secondary date</b> (single pair only): when the file name and "
        "metadata hold no dates.<br>"
        "<b>MicMac parallax step</b>: the Px1Pas of the last matching step when no MicMac "
        "parameter file lies beside MEC/ (1 = values in pixels). <b>MicMac reference "
        "image</b>: the first image of the matching, for the grid, when it is not found "
        "beside MEC/.<br>"
        "<b>Minimum quality</b> (optional): pixels whose correlation quality (COSI-Corr SNR, "
        "MicMac correlation, quality band) is below get status 'low NCC' and are not "
        "inverted.<br>"
        "<b>Output folder</b>: the pair rasters go to its <i>pairs/</i> sub-folder; give that "
        "folder to the inversion. Pairs on different extents of one pixel lattice are "
        "padded to a common grid; pairs in different projections or pixel sizes are refused "
        "(import them into separate folders).")

    INPUTS = "INPUTS"
    FOLDER = "INPUT_FOLDER"
    FORMAT = "FORMAT"
    UNITS = "UNITS"
    NORTH = "NORTH_CONVENTION"
    REF_DATE = "REFERENCE_DATE"
    SEC_DATE = "SECONDARY_DATE"
    PX_STEP = "PX_STEP"
    REF_IMAGE = "REFERENCE_IMAGE"
    MIN_QUALITY = "MIN_QUALITY"
    KEEP_INTERP = "KEEP_INTERPOLATED"
    OUTPUT = "OUTPUT_FOLDER"
    PAIRS = "PAIRS_FOLDER"
    N_PAIRS = "N_PAIRS"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.INPUTS, self.tr("Input files"), _FILE_TYPE, optional=True))
        self.addParameter(QgsProcessingParameterFile(
            self.FOLDER, self.tr("Input folder (searched recursively)"),
            behavior=QgsProcessingParameterFile.Folder, optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.FORMAT, self.tr("Format"), [self.tr(lab) for _k, lab in FORMAT_OPTIONS],
            defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum(
            self.UNITS, self.tr("Units (plain GeoTIFF)"),
            [self.tr(lab) for _k, lab in UNIT_OPTIONS], defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum(
            self.NORTH, self.tr("North component (plain GeoTIFF)"),
            [self.tr(lab) for _k, lab in NORTH_OPTIONS], defaultValue=0))
        self.addParameter(QgsProcessingParameterString(
            self.REF_DATE, self.tr("Reference date YYYY-MM-DD (single pair, when not in the "
                                   "name)"), optional=True))
        self.addParameter(QgsProcessingParameterString(
            self.SEC_DATE, self.tr("Secondary date YYYY-MM-DD (single pair, when not in the "
                                   "name)"), optional=True))
        Num = QgsProcessingParameterNumber
        advanced = [
            Num(self.PX_STEP, self.tr("MicMac parallax step (px; empty = from param.xml)"),
                Num.Double, None, optional=True, minValue=1e-6),
            QgsProcessingParameterFile(self.REF_IMAGE, self.tr("MicMac reference image (the "
                                                               "first image, for the grid)"),
                                       optional=True),
            Num(self.MIN_QUALITY, self.tr("Minimum quality (0-1; empty = keep all)"),
                Num.Double, None, optional=True, minValue=-1.0, maxValue=1.0),
            QgsProcessingParameterBoolean(self.KEEP_INTERP, self.tr(
                "Keep ITS_LIVE interpolated values (interp_mask = 1)"), False),
        ]
        for p in advanced:
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.OUTPUT, self.tr("Output folder")))
        self.addOutput(QgsProcessingOutputFolder(self.PAIRS, self.tr("Pair rasters folder")))
        self.addOutput(QgsProcessingOutputNumber(self.N_PAIRS, self.tr("Pairs imported")))

    def _files(self, parameters, context):
        if hasattr(self, "parameterAsFileList"):
            files = self.parameterAsFileList(parameters, self.INPUTS, context)
        else:  # pragma: no cover - very old QGIS
            files = parameters.get(self.INPUTS) or []
        files = [str(f) for f in (files or []) if str(f)]
        folder = self.parameterAsFile(parameters, self.FOLDER, context)
        if folder:
            files.append(folder)
        return files

    def compute(self, parameters, context, feedback, progress):
        from ..core.outputs.offset_import import import_offsets

        inputs = self._files(parameters, context)
        if not inputs:
            raise QgsProcessingException(self.tr(
                "No input: choose the offset files (Input files) or the folder holding them "
                "(Input folder)."))
        fmt = FORMAT_OPTIONS[self.parameterAsEnum(parameters, self.FORMAT, context)][0]
        options = dict(
            units=UNIT_OPTIONS[self.parameterAsEnum(parameters, self.UNITS, context)][0],
            north_convention=NORTH_OPTIONS[self.parameterAsEnum(parameters, self.NORTH,
                                                                context)][0],
            reference_date=self.parameterAsString(parameters, self.REF_DATE, context) or None,
            secondary_date=self.parameterAsString(parameters, self.SEC_DATE, context) or None,
            reference_image=self.parameterAsFile(parameters, self.REF_IMAGE, context) or None,
            keep_interpolated=self.parameterAsBool(parameters, self.KEEP_INTERP, context))
        for key, name in ((self.PX_STEP, "px_step"), (self.MIN_QUALITY, "min_quality")):
            if parameters.get(key) not in (None, ""):
                options[name] = self.parameterAsDouble(parameters, key, context)
        if bool(options["reference_date"]) != bool(options["secondary_date"]):
            raise QgsProcessingException(self.tr(
                "Give both the reference and the secondary date (YYYY-MM-DD), or neither."))
        out = self.parameterAsString(parameters, self.OUTPUT, context)
        res = import_offsets(inputs, out, fmt=fmt, progress=progress, **options)
        progress.info("Imported %d pair(s) into %s (%d file(s) skipped). Give this folder to "
                      "'Invert pair network into displacement time series'."
                      % (len(res.paths), res.pairs_folder, len(res.skipped)))
        return {self.OUTPUT: out, self.PAIRS: res.pairs_folder, self.N_PAIRS: len(res.paths)}
