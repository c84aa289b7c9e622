"""The product contract of SPEC in one place: file and folder names, band names, tags,
the pair-raster name (builder and parser), the boolean vocabulary of the CSV files and
the units.

Every module of ``core/``, ``processing_provider/`` and ``ui/`` takes these names from
here instead of restating them (``tests/test_products.py`` greps the code tree for
restated file names and year lengths). Change a name here only where an issue changes
SPEC.

Layout of an output folder (SPEC)::

    catalog.csv
    pairs.csv
    pairs/pair_YYYYMMDD_YYYYMMDD.tif        bands PAIR_BANDS, tags REFERENCE_DATE, ...
    timeseries/ts_east_m.tif, ts_north_m.tif  one band per date (ISO date)
    timeseries/velocity.tif                 bands VELOCITY_BANDS
    timeseries/network_flags.tif            band network_flags
    detections.gpkg                         layer detections
    slidewatch.qgz, overview.png, velocity_arrows.gpkg, slidewatch.log
"""

import datetime as _dt
import os
import re

__all__ = [
    "DAYS_PER_YEAR", "DATE_FORMAT", "CATALOG_CSV", "PAIRS_CSV", "PAIRS_FOLDER",
    "TIMESERIES_FOLDER", "TS_EAST_TIF", "TS_NORTH_TIF", "VELOCITY_TIF", "NETWORK_FLAGS_TIF",
    "DETECTIONS_GPKG", "DETECTIONS_LAYER", "PROJECT_QGZ", "OVERVIEW_PNG",
    "VELOCITY_ARROWS_GPKG", "LOG_FILE", "CATALOG_COLUMNS", "PAIRS_COLUMNS", "PAIR_BANDS",
    "BAND_FOOTPRINT", "FOOTPRINT_EXTENSION", "FOOTPRINT_FOLDER", "FOOTPRINT_TIF", "pair_footprint_path",
    "BAND_EAST", "BAND_NORTH", "BAND_NCC", "BAND_SNR", "BAND_STATUS", "VELOCITY_BANDS",
    "BAND_VE", "BAND_VN", "BAND_V", "BAND_V_SIGMA", "BAND_N_OBS", "BAND_RMSE",
    "NETWORK_FLAGS_BAND", "DETECTION_STATUSES", "TAG_REFERENCE_DATE",
    "TAG_SECONDARY_DATE", "TAG_PARAMS", "TAG_STABLE_GROUND", "STABLE_GROUND_MASK",
    "STABLE_GROUND_CLUSTER", "STABLE_GROUND_NONE", "TAG_STABLE_GROUND_PAIRS",
    "PAIR_PREFIX", "PAIR_EXTENSION", "PAIR_GLOB",
    "PAIR_NAME_RE", "pair_stem", "pair_file_name", "parse_pair_name", "is_pair_file_name",
    "TRUE_WORDS", "FALSE_WORDS", "BOOL_WORDS_TEXT", "parse_bool", "format_bool",
    "timeseries_paths",
]

# ----------------------------------------------------------------------------- units
#: length of the year of every velocity (m/yr) and every "years since" (SPEC)
DAYS_PER_YEAR = 365.25
#: dates are ISO 8601 calendar dates
DATE_FORMAT = "%Y-%m-%d"

# ----------------------------------------------------------------------------- files
CATALOG_CSV = "catalog.csv"
PAIRS_CSV = "pairs.csv"
PAIRS_FOLDER = "pairs"
TIMESERIES_FOLDER = "timeseries"
TS_EAST_TIF = "ts_east_m.tif"
TS_NORTH_TIF = "ts_north_m.tif"
VELOCITY_TIF = "velocity.tif"
NETWORK_FLAGS_TIF = "network_flags.tif"
#: timeseries/footprint.tif: per pixel, the mean relative window area of the pairs inverted
FOOTPRINT_TIF = "footprint.tif"
DETECTIONS_GPKG = "detections.gpkg"
DETECTIONS_LAYER = "detections"
PROJECT_QGZ = "slidewatch.qgz"
OVERVIEW_PNG = "overview.png"
VELOCITY_ARROWS_GPKG = "velocity_arrows.gpkg"
LOG_FILE = "slidewatch.log"

# ----------------------------------------------------------------------------- columns
#: SPEC columns of catalog.csv (any further columns follow)
CATALOG_COLUMNS = ("path", "date", "sensor", "valid_fraction", "cloud_fraction",
                   "sun_azimuth", "sun_elevation")
#: SPEC columns of pairs.csv (any further columns follow)
PAIRS_COLUMNS = ("reference_date", "secondary_date", "reference_path", "secondary_path",
                 "baseline_days", "score", "selected", "reason")

# ----------------------------------------------------------------------------- bands
#: bands of a pair raster (band descriptions): east and north offset (m), normalised
#: cross-correlation peak, signal-to-noise ratio, correlation status
BAND_EAST = "east_m"
BAND_NORTH = "north_m"
BAND_NCC = "ncc"
BAND_SNR = "snr"
BAND_STATUS = "status"
#: bands of a pair raster, in order (band descriptions)
PAIR_BANDS = (BAND_EAST, BAND_NORTH, BAND_NCC, BAND_SNR, BAND_STATUS)
#: a pair's window footprints (:func:`pair_footprint_path`, a float32 ``.npy`` array on the
#: pair raster's grid) and the band of timeseries/footprint.tif: area of the window each
#: estimate was made with, relative to the nominal window (1; 4 where the wide-window pass
#: took a twice higher and wider window; NaN where not valid). Pair rasters keep the SPEC
#: five bands; the detector counts independent observations with it
#: (core/detect/footprint.py).
BAND_FOOTPRINT = "footprint"
FOOTPRINT_EXTENSION = ".npy"
#: bands of timeseries/velocity.tif (band descriptions): east, north velocity, speed,
#: speed uncertainty (m/yr), number of observations, residual RMSE (m)
BAND_VE = "ve_m_per_yr"
BAND_VN = "vn_m_per_yr"
BAND_V = "v_m_per_yr"
BAND_V_SIGMA = "v_sigma_m_per_yr"
BAND_N_OBS = "n_obs"
BAND_RMSE = "rmse_m"
#: bands of timeseries/velocity.tif, in order (band descriptions)
VELOCITY_BANDS = (BAND_VE, BAND_VN, BAND_V, BAND_V_SIGMA, BAND_N_OBS, BAND_RMSE)
#: the one band of timeseries/network_flags.tif
NETWORK_FLAGS_BAND = "network_flags"
#: values of the ``status`` field of the detections layer
DETECTION_STATUSES = ("unvalidated", "confirmed", "rejected", "uncertain")

# ----------------------------------------------------------------------------- tags
TAG_REFERENCE_DATE = "REFERENCE_DATE"
TAG_SECONDARY_DATE = "SECONDARY_DATE"
#: JSON of every parameter used (pair rasters, time series)
TAG_PARAMS = "SLIDEWATCH_PARAMS"
#: pair raster tag: how its co-registration offset was found (``STABLE_GROUND_*`` values)
TAG_STABLE_GROUND = "STABLE_GROUND"
STABLE_GROUND_MASK = "stable-area mask"
STABLE_GROUND_CLUSTER = "tight cluster nearest zero"
STABLE_GROUND_NONE = "not identified: no offset removed"
#: time-series tag: JSON counts of the inverted pairs by STABLE_GROUND (``identified``,
#: ``not_identified``, ``unknown``), read by the detector's "no stable ground" test
TAG_STABLE_GROUND_PAIRS = "STABLE_GROUND_PAIRS"

# ----------------------------------------------------------------------------- pair names
PAIR_PREFIX = "pair_"
PAIR_EXTENSION = ".tif"
#: glob pattern of the pair rasters of a pairs/ folder
PAIR_GLOB = PAIR_PREFIX + "*" + PAIR_EXTENSION
#: subfolder of the pairs folder holding each pair's footprint raster (same file name)
FOOTPRINT_FOLDER = "footprint"
#: the one parser of pair names: ``pair_YYYYMMDD_YYYYMMDD`` with or without ``.tif``/``.tiff``
#: (any case), nothing before or after
PAIR_NAME_RE = re.compile(r"^pair_(\d{8})_(\d{8})(?:\.tiff?)?$", re.IGNORECASE)


def _compact(date):
    """``YYYYMMDD`` of an ISO date (``YYYY-MM-DD``, ``YYYYMMDD``, a date/datetime or a
    numpy datetime64); ValueError for anything else."""
    if hasattr(date, "isoformat"):
        date = date.isoformat()
    text = str(date).strip().replace("-", "")[:8]
    if len(text) != 8 or not text.isdigit():
        raise ValueError("%r is not a date YYYY-MM-DD" % (date,))
    return text


def pair_stem(reference_date, secondary_date):
    """``pair_YYYYMMDD_YYYYMMDD`` (no extension) of two dates."""
    return "%s%s_%s" % (PAIR_PREFIX, _compact(reference_date), _compact(secondary_date))


def pair_footprint_path(pair_path):
    """Window footprints of the pair raster ``pair_path``: its stem in the ``footprint/``
    subfolder of its folder (``pairs/footprint/pair_YYYYMMDD_YYYYMMDD.npy``)."""
    folder, name = os.path.split(os.path.abspath(str(pair_path)))
    return os.path.join(folder, FOOTPRINT_FOLDER, os.path.splitext(name)[0] + FOOTPRINT_EXTENSION)


def pair_file_name(reference_date, secondary_date):
    """``pair_YYYYMMDD_YYYYMMDD.tif`` of two dates (ISO strings, dates or datetime64)."""
    return pair_stem(reference_date, secondary_date) + PAIR_EXTENSION


def parse_pair_name(name):
    """(reference, secondary) ISO dates of a pair raster's file name or path (only its
    base name counts), or None if it is not ``pair_YYYYMMDD_YYYYMMDD[.tif]`` with two real
    calendar dates."""
    m = PAIR_NAME_RE.match(os.path.basename(str(name)))
    if not m:
        return None
    out = []
    for s in m.groups():
        try:
            out.append(_dt.date(int(s[:4]), int(s[4:6]), int(s[6:8])).isoformat())
        except ValueError:
            return None
    return tuple(out)


def is_pair_file_name(name):
    """True for a pair raster's file name (``pair_YYYYMMDD_YYYYMMDD.tif``)."""
    return parse_pair_name(name) is not None and str(name).lower().endswith((".tif", ".tiff"))


# ----------------------------------------------------------------------------- booleans
#: the one vocabulary of boolean cells (``selected`` of pairs.csv, ``in_range``, ...),
#: compared after stripping blanks and ignoring case; anything else is an error
TRUE_WORDS = ("1", "true")
FALSE_WORDS = ("0", "false")
BOOL_WORDS_TEXT = "1 or 0 (or true/false)"


def parse_bool(value):
    """True/False from a CSV cell of :data:`TRUE_WORDS` / :data:`FALSE_WORDS` (any case,
    blanks stripped; a bool passes through). ValueError naming the value otherwise: a
    cell such as ``t``, ``yes`` or an empty one has no single meaning, so it is refused
    rather than guessed."""
    if isinstance(value, bool):
        return value
    text = "" if value is None else str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ValueError("must be %s, not %r" % (BOOL_WORDS_TEXT, value))


def format_bool(value):
    """The written form of a boolean cell: ``1`` or ``0``."""
    return "1" if value else "0"


# ----------------------------------------------------------------------------- paths
def timeseries_paths(timeseries_folder):
    """The four files of a ``timeseries/`` folder: dict ts_east, ts_north, velocity,
    flags."""
    return dict(ts_east=os.path.join(timeseries_folder, TS_EAST_TIF),
                ts_north=os.path.join(timeseries_folder, TS_NORTH_TIF),
                velocity=os.path.join(timeseries_folder, VELOCITY_TIF),
                flags=os.path.join(timeseries_folder, NETWORK_FLAGS_TIF))
