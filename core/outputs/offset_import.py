"""Offsets from other correlators -> SlideWatch pair rasters (``pairs/pair_*.tif``).

Each reader returns an :class:`ImportedPair` (east/north displacement in metres over the
pair, a quality band, a status band, the grid and the two dates) and
:func:`write_imported_pair` writes it exactly as the correlation driver writes its own
pairs (bands ``east_m, north_m, ncc, snr, status`` described, ``UNITS=m`` on the
displacement bands, ``STATUS_<code>`` on the status band, tags ``REFERENCE_DATE``,
``SECONDARY_DATE``, ``STATUS_CODES``, ``CONVENTION``) plus ``IMPORTED_FROM`` and the
original units / sign convention / nodata / quality source. The inversion, detection and
the docks then read them like any pair.

SlideWatch convention (SPEC): a feature at (row, col) in the reference image (earlier
date) is at (row + dy, col + dx) in the secondary one; ``east_m`` / ``north_m`` are that
motion in metres, east and north positive. Status: 0 (``STATUS_VALID``) where both
components are finite, ``STATUS_NODATA`` where the file has no value (nodata, NaN, masked,
not correlated), ``STATUS_LOW_NCC`` where a quality band exists and is below the optional
``min_quality``. The ``ncc`` band holds the format's correlation-like quality in [0, 1]
when it has one, else the constant :data:`NEUTRAL_NCC` (the inversion's default ``ncc``
weighting needs a finite value; every pixel of such a pair then weighs the same); ``snr``
is NaN (no format provides SlideWatch's peak-to-second-peak ratio) except CARST, whose
ampcor SNR goes there. The ``NCC_SOURCE`` / ``SNR_SOURCE`` tags say which.

Formats (details, sources and commands in docs/importers.md):

``geotiff``
    Plain east/north rasters: two single-band files or one file with two (or three, the
    third a quality in [0, 1]) bands. Units ``m``, ``px`` (times the pixel size),
    ``m/day`` or ``m/yr`` (times the pair's time span, 365.25-day years); the north
    component is ``north`` positive (default) or ``row`` positive (image row downwards,
    as a raw dy: north = -value). East is always positive eastwards.
``cosicorr``
    COSI-Corr / geoCosiCorr3D correlation raster: bands ``East/West`` (or ``E/W``),
    ``North/South`` (``N/S``), ``SNR``; metres, east and north positive; blank windows
    are NaN with SNR 0 (geoCosiCorr3D ``core_correlation.py``). SNR (in [0, 1]) -> ncc.
``micmac``
    MicMac (MM2DPosSism / MICMAC 2-D matching, MPIC-OPT): ``MEC/Px1_Num<k>_DeZoom1_*.tif``
    (column offset), ``Px2_...`` (row offset), ``Correl_LeChantier_Num_<k-1>.tif``
    (uint8 correlation). Stored values times the parallax step ``Px1Pas``/``Px2Pas`` of
    the MicMac parameter file (or ``px_step``) are pixels of the first image (``Im1``);
    east = Px1 * step * xres, north = -Px2 * step * |yres| (the column/row convention of
    MPIC-OPT's post-processing and of published MicMac wrappers:
    ``NS = -Px2 * pas * res``, ``EW = Px1 * pas * res``); correlation = (v - 127.5) /
    127.5, 0 = not correlated. The Px grids are not georeferenced: the grid is the
    ``reference_image`` (default: the georeferenced ``Im1`` image, or the one raster of the
    same size, beside ``MEC/``). If ``Im1`` is the later image the signs are reversed.
``itslive``
    autoRIFT / ITS_LIVE NetCDF granule: ``vx``, ``vy`` (int16, ``_FillValue`` -32767,
    ``meter/year`` (V2) or ``m/y`` (V1), map x/y i.e. east/north of the projection of the
    ``mapping`` variable), dates from ``img_pair_info`` (``acquisition_date_img1``,
    ``acquisition_date_img2``, ``date_dt`` in days) or from the granule name
    ``<image1>_X_<image2>_G0120V02_P095.nc``. Displacement = v * date_dt / 365 (autoRIFT
    converts offsets with a 365-day year, ``netcdf_output.py``). ``interp_mask`` = 1
    (interpolated, not measured) -> ``STATUS_NODATA``. No correlation: ncc = NEUTRAL_NCC.
``carst``
    CARST (ampcor pixel tracking) ``*_eastxyz.tif`` / ``*_northxyz.tif``: offsets in
    metres over the pair (landsatPX: "E-W and N-S OFFSETS in METERS (NOT velocities)"),
    nodata -32768. East is negated on import (CARST's note "E-W velocities (NOTE: MAY NEED
    TO MULTIPLY BY -1)"; on the Yahtse pair the flow direction agrees with two independent
    correlators only with the flip, see bench/bench_yahtse.py), north is kept. Dates from
    the name: ``YYYYDDD_YYYYDDD`` (year + day of year) or ``YYYYMMDDhhmmss_YYYYMMDDhhmmss``
    (CARST writes the later date first). ``*_snrxyz.tif`` beside them -> snr band.

Dates come from the file's metadata or its name; when neither gives two dates an
:class:`~slidewatch.core.errors.InputError` names the file and says how to give them
(``reference_date`` / ``secondary_date``). So does a unit that cannot be determined.
"""

import datetime as _dt
import glob
import json
import os
import re
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..matching.correlation import STATUS_LOW_NCC, STATUS_MEANINGS, STATUS_NODATA, STATUS_VALID
from ..stack.dates import parse_name
from ..errors import InputError, ParameterError
from ..matching.pair_correlation import BANDS, pair_output_name
from .. import products as prod
from ..products import DAYS_PER_YEAR
from ..progress import as_progress
from ..raster_io import write_bands

__all__ = ["FORMATS", "FORMAT_LABELS", "NEUTRAL_NCC", "ImportedPair", "ImportResult",
           "read_geotiff_pair", "read_cosicorr", "read_micmac", "read_itslive", "read_carst",
           "detect_format", "find_import_jobs", "write_imported_pair", "import_offsets",
           "pair_dates_from_name"]

#: Format keys, in the order of the Processing algorithm's enum.
FORMATS = ("auto", "geotiff", "cosicorr", "micmac", "itslive", "carst")
FORMAT_LABELS = {
    "auto": "auto-detect",
    "geotiff": "plain east/north GeoTIFF",
    "cosicorr": "COSI-Corr / geoCosiCorr3D",
    "micmac": "MicMac / MPIC-OPT",
    "itslive": "autoRIFT / ITS_LIVE NetCDF",
    "carst": "CARST (ampcor) eastxyz/northxyz",
}
#: ncc written where the format has no correlation quality (uniform weight in the pair).
NEUTRAL_NCC = 0.5
#: autoRIFT's year (its offsets -> m/yr use 365 days; SlideWatch's: DAYS_PER_YEAR).
AUTORIFT_DAYS_PER_YEAR = 365.0
#: plain-GeoTIFF units accepted
GEOTIFF_UNITS = ("m", "px", "m/day", "m/yr")
NORTH_CONVENTIONS = ("north", "row")

SLIDEWATCH_CONVENTION = ("feature at (row, col) in the reference is at (row+dy, col+dx) in "
                         "the secondary; east_m/north_m from dx, dy with the source affine")


@dataclass
class ImportedPair:
    """One foreign pair mapped onto SlideWatch's bands (float32 2-D arrays)."""

    east_m: np.ndarray
    north_m: np.ndarray
    ncc: np.ndarray
    snr: np.ndarray
    status: np.ndarray
    transform: object
    crs: object
    reference_date: str
    secondary_date: str
    fmt: str
    sources: list
    tags: dict = field(default_factory=dict)

    @property
    def name(self):
        return pair_output_name(self.reference_date, self.secondary_date)

    @property
    def n_valid(self):
        return int(np.count_nonzero(self.status == STATUS_VALID))


@dataclass
class ImportResult:
    paths: list
    pairs: list            # (reference_date, secondary_date, format, n_valid, sources)
    skipped: list          # (path, reason)
    pairs_folder: str


# ----------------------------------------------------------------------------- helpers
def _open(path):
    import rasterio
    if not str(path).startswith("NETCDF:") and not os.path.exists(str(path)):
        raise InputError("File '%s' does not exist. Check the path." % path)
    try:
        with warnings.catch_warnings():
            # MicMac's Px maps and NetCDF containers carry no geotransform: handled here
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            return rasterio.open(path)
    except Exception as exc:
        raise InputError("Cannot read '%s' as a raster: %s. Check that it is a complete "
                         "GeoTIFF / NetCDF file." % (path, exc)) from exc


def _float(arr, nodata=None, extra_nodata=()):
    """float64 copy with NaN where nodata (and any of ``extra_nodata``)."""
    a = np.asarray(arr, dtype=np.float64).copy()
    if nodata is not None and np.isfinite(nodata):
        a[a == nodata] = np.nan
    for v in extra_nodata:
        a[a == v] = np.nan
    return a


def _check_iso(value, what, path):
    try:
        return _dt.date.fromisoformat(str(value).strip()[:10]).isoformat()
    except ValueError as exc:
        raise ParameterError("%s '%s' for '%s' is not an ISO date (YYYY-MM-DD)."
                             % (what, value, path)) from exc


def _north_up(T, path):
    if T.b != 0 or T.d != 0:
        raise InputError("'%s' is on a rotated grid (transform %s): only north-up grids can "
                         "be imported. Warp it to a north-up grid first (gdalwarp)."
                         % (path, tuple(T)[:6]))
    if T.is_identity:
        raise InputError("'%s' is not georeferenced: without pixel size and position its "
                         "offsets cannot be turned into east/north metres. Give a "
                         "georeferenced raster (or, for MicMac, the reference image)." % path)


_DATE_SPLITS = re.compile(r"(?i)_X_|_VS_|-VS-|_vs_|__")


def pair_dates_from_name(path):
    """(earlier, later) ISO dates found in a file or folder name, or None.

    Exactly two distinct dates (``YYYYMMDD``, ``YYYY-MM-DD``...) in the name; or a name
    made of two product names joined by ``_X_`` (ITS_LIVE), ``_VS_`` (COSI-Corr) or
    ``__``, each giving one acquisition date (Sentinel-2 / Landsat product names hold a
    second, processing date that is not the acquisition).
    """
    base = os.path.basename(os.path.normpath(str(path)))
    stem = re.sub(r"\.(tif|tiff|nc|img|hdr|vrt)$", "", base, flags=re.I)
    parts = [p for p in _DATE_SPLITS.split(stem) if p]
    if len(parts) == 2:
        d = [parse_name(p) for p in parts]
        if all(x.ok for x in d) and d[0].date != d[1].date:
            a, b = sorted([d[0].date, d[1].date])
            return a.isoformat(), b.isoformat()
    parsed = parse_name(stem)
    cands = list(parsed.candidates or [])
    if len(cands) == 2:
        return cands[0].isoformat(), cands[1].isoformat()
    return None


def _resolve_dates(path, reference_date, secondary_date, found=None, names=()):
    """ISO (reference, secondary): given > found (metadata) > names."""
    if reference_date and secondary_date:
        ref = _check_iso(reference_date, "reference_date", path)
        sec = _check_iso(secondary_date, "secondary_date", path)
    else:
        got = found
        for n in names:
            if got:
                break
            got = pair_dates_from_name(n)
        if not got:
            raise InputError(
                "Cannot determine the two dates of '%s': no date metadata and its name does "
                "not hold exactly two dates (YYYYMMDD or YYYY-MM-DD). Rename it, e.g. "
                "'<name>_20200105_20200117.tif', or give the reference and secondary dates "
                "(reference_date / secondary_date, 'Reference date' / 'Secondary date' in "
                "the Processing dialog)." % path)
        ref, sec = got
        ref = _check_iso(reference_date, "reference_date", path) if reference_date else ref
        sec = _check_iso(secondary_date, "secondary_date", path) if secondary_date else sec
    if ref >= sec:
        raise InputError("'%s': the reference date %s is not before the secondary date %s. "
                         "Give the earlier date as reference (the displacement is taken from "
                         "the earlier to the later image)." % (path, ref, sec))
    return ref, sec


def _days(ref, sec):
    return float((_dt.date.fromisoformat(sec) - _dt.date.fromisoformat(ref)).days)


def _finish(east, north, quality, fmt, sources, T, crs, ref, sec, tags, min_quality=None,
            snr=None, extra_invalid=None, quality_source=None, snr_source=None):
    """Status, ncc and snr bands of an import (float32 arrays)."""
    east = np.asarray(east, np.float64)
    north = np.asarray(north, np.float64)
    valid = np.isfinite(east) & np.isfinite(north)
    if extra_invalid is not None:
        valid &= ~extra_invalid
    status = np.where(valid, STATUS_VALID, STATUS_NODATA).astype(np.float32)
    if quality is None:
        ncc = np.full(east.shape, NEUTRAL_NCC, np.float32)
        tags["NCC_SOURCE"] = ("constant %.2f: %s has no correlation quality (uniform weight "
                              "within the pair)" % (NEUTRAL_NCC, FORMAT_LABELS[fmt]))
    else:
        ncc = np.clip(np.asarray(quality, np.float64), -1.0, 1.0).astype(np.float32)
        tags["NCC_SOURCE"] = quality_source or "quality band of the input"
        if min_quality is not None:
            with np.errstate(invalid="ignore"):
                low = valid & ~(ncc >= float(min_quality))
            status[low] = STATUS_LOW_NCC
            tags["IMPORT_MIN_QUALITY"] = repr(float(min_quality))
    if snr is None:
        snr = np.full(east.shape, np.nan, np.float32)
        tags["SNR_SOURCE"] = ("none (NaN): %s has no peak-to-second-peak ratio; do not use "
                              "min_snr on imported pairs" % FORMAT_LABELS[fmt])
    else:
        tags["SNR_SOURCE"] = snr_source or "snr of the input"
    east = np.where(valid, east, np.nan).astype(np.float32)
    north = np.where(valid, north, np.nan).astype(np.float32)
    tags.setdefault("IMPORTED_FROM", FORMAT_LABELS[fmt])
    tags["IMPORT_FORMAT"] = fmt
    tags["IMPORTED_SOURCE"] = json.dumps([os.path.basename(str(s)) for s in sources if s])
    return ImportedPair(east, north, ncc, np.asarray(snr, np.float32), status, T, crs, ref,
                        sec, fmt, [str(s) for s in sources if s], tags)


# ----------------------------------------------------------------------------- geotiff
def _partner(path, pairs):
    """The file named like ``path`` with the first matching token swapped, if it exists."""
    folder, base = os.path.split(path)
    for a, b in pairs:
        for m in re.finditer(a, base):
            cand = os.path.join(folder, base[:m.start()] + b(m.group(0)) + base[m.end():])
            if cand != path and os.path.exists(cand):
                return cand
    return None


def _swap_case(repl):
    def f(found):
        return repl.upper() if found.isupper() else (repl.capitalize() if found[0].isupper()
                                                     else repl)
    return f


_EAST_NORTH_TOKENS = [
    (r"(?i)east", _swap_case("north")), (r"(?i)(?<![a-z])ew(?![a-z])", _swap_case("ns")),
    (r"(?i)(?<![a-z])dx(?![a-z])", _swap_case("dy")), (r"(?i)(?<![a-z])e(?![a-z])",
                                                        _swap_case("n")),
    (r"(?i)(?<![a-z])vx(?![a-z])", _swap_case("vy"))]


def read_geotiff_pair(east_path, north_path=None, units="m", north_convention="north",
                      quality_path=None, reference_date=None, secondary_date=None,
                      min_quality=None, east_band=1, north_band=None):
    """Plain east/north rasters -> :class:`ImportedPair`.

    ``east_path`` alone: a raster with the east component in band ``east_band`` and north
    in ``north_band`` (default the next band; a third band, if any, is a quality in
    [0, 1]). With ``north_path``: two single-band rasters on the same grid. ``units``: one
    of ``m``, ``px``, ``m/day``, ``m/yr``; ``north_convention``: ``north`` (positive
    northwards) or ``row`` (positive down the image rows: north = -value).
    Dates: ``reference_date``/``secondary_date``, else REFERENCE_DATE/SECONDARY_DATE tags,
    else two dates in the file name.
    """
    if units not in GEOTIFF_UNITS:
        raise ParameterError("units must be one of %s (got %r): the unit of the offsets "
                             "cannot be guessed." % (", ".join(GEOTIFF_UNITS), units))
    if north_convention not in NORTH_CONVENTIONS:
        raise ParameterError("north_convention must be 'north' (north positive) or 'row' "
                             "(image rows positive) (got %r)." % north_convention)
    quality = None
    with _open(east_path) as src:
        T, crs, shape = src.transform, src.crs, (src.height, src.width)
        _north_up(T, east_path)
        tags = src.tags()
        e = _float(src.read(east_band), src.nodata)
        if north_path is None:
            nb = north_band or east_band + 1
            if nb > src.count:
                raise InputError("'%s' has %d band(s): give the north component as a second "
                                 "band or as a second file." % (east_path, src.count))
            n = _float(src.read(nb), src.nodata)
            if src.count >= 3 and quality_path is None and nb == 2:
                quality = _float(src.read(3), src.nodata)
    if north_path is not None:
        with _open(north_path) as src:
            if (src.height, src.width) != shape or src.transform != T:
                raise InputError("'%s' and '%s' are not on the same grid (size or transform "
                                 "differ). Give two rasters of the same grid."
                                 % (east_path, north_path))
            n = _float(src.read(north_band or 1), src.nodata)
    if quality_path is not None:
        with _open(quality_path) as src:
            if (src.height, src.width) != shape:
                raise InputError("Quality raster '%s' does not have the size of '%s'."
                                 % (quality_path, east_path))
            quality = _float(src.read(1), src.nodata)
    found = _tag_dates(tags)
    ref, sec = _resolve_dates(east_path, reference_date, secondary_date, found,
                              [east_path, north_path or east_path])
    if units == "px":
        east, north_raw = e * abs(T.a), n * abs(T.e)
    elif units == "m":
        east, north_raw = e, n
    else:
        span = _days(ref, sec) / (1.0 if units == "m/day" else DAYS_PER_YEAR)
        east, north_raw = e * span, n * span
    north = -north_raw if north_convention == "row" else north_raw
    out_tags = {"IMPORTED_FROM": FORMAT_LABELS["geotiff"], "ORIGINAL_UNITS": units,
                "ORIGINAL_SIGN_CONVENTION": "east positive eastwards; north %s" % (
                    "positive northwards" if north_convention == "north" else
                    "positive down the image rows (north = -value)"),
                "ORIGINAL_NODATA": "band nodata value and NaN"}
    if units in ("m/day", "m/yr"):
        out_tags["IMPORT_TIME_SPAN_DAYS"] = repr(_days(ref, sec))
    return _finish(east, north, quality, "geotiff", [east_path, north_path, quality_path], T,
                   crs, ref, sec, out_tags, min_quality,
                   quality_source="quality raster/band of the input (expected in [0, 1])")


# ---------------------------------------------------------------------------- cosicorr
_COSI_EW = ("east/west", "e/w", "ew", "east-west")
_COSI_NS = ("north/south", "n/s", "ns", "north-south")


def _cosicorr_bands(src):
    d = [(x or "").strip().lower() for x in src.descriptions]
    try:
        return d.index(next(x for x in d if x in _COSI_EW)) + 1, \
            d.index(next(x for x in d if x in _COSI_NS)) + 1, \
            (d.index("snr") + 1 if "snr" in d else None)
    except StopIteration:
        return None


def read_cosicorr(path, reference_date=None, secondary_date=None, min_quality=None):
    """COSI-Corr / geoCosiCorr3D correlation raster (E/W, N/S, SNR) -> :class:`ImportedPair`."""
    with _open(path) as src:
        bands = _cosicorr_bands(src)
        if bands is None:
            if src.count < 3:
                raise InputError("'%s' is not a COSI-Corr correlation raster: it has %d "
                                 "band(s), COSI-Corr writes 3 (East/West, North/South, SNR)."
                                 % (path, src.count))
            bands = (1, 2, 3)  # COSI-Corr's band order
        T, crs = src.transform, src.crs
        _north_up(T, path)
        tags = src.tags()
        e = _float(src.read(bands[0]), src.nodata)
        n = _float(src.read(bands[1]), src.nodata)
        snr = _float(src.read(bands[2]), src.nodata) if bands[2] else None
    found = _tag_dates(tags)
    ref, sec = _resolve_dates(path, reference_date, secondary_date, found, [path])
    blank = None
    if snr is not None:
        with np.errstate(invalid="ignore"):
            blank = ~(snr > 0)   # COSI-Corr writes SNR 0 where nothing was correlated
    out_tags = {"IMPORTED_FROM": "COSI-Corr / geoCosiCorr3D", "ORIGINAL_UNITS": "m",
                "ORIGINAL_SIGN_CONVENTION": "East/West positive eastwards, North/South "
                                            "positive northwards (kept)",
                "ORIGINAL_NODATA": "NaN displacement or SNR 0 (window not correlated)"}
    return _finish(e, n, snr, "cosicorr", [path], T, crs, ref, sec, out_tags, min_quality,
                   extra_invalid=blank,
                   quality_source="COSI-Corr SNR (0-1 correlation quality)")


# ------------------------------------------------------------------------------ micmac
_PX1 = re.compile(r"^Px1_Num(\d+)_DeZoom(\d+)_(.+)\.tif$", re.I)


def _micmac_params(folder):
    """(Px1Pas, Px2Pas, Im1, Im2) from a MicMac parameter XML in ``folder`` (or Nones)."""
    for xml in sorted(glob.glob(os.path.join(folder, "*.xml"))):
        try:
            with open(xml, encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        except OSError:
            continue
        p1 = re.findall(r"<Px1Pas>\s*([-+0-9.eE]+)\s*</Px1Pas>", text)
        if not p1:
            continue
        p2 = re.findall(r"<Px2Pas>\s*([-+0-9.eE]+)\s*</Px2Pas>", text)
        im1 = re.search(r"<Im1>\s*([^<]+?)\s*</Im1>", text)
        im2 = re.search(r"<Im2>\s*([^<]+?)\s*</Im2>", text)
        return (float(p1[-1]), float(p2[-1]) if p2 else float(p1[-1]),
                im1.group(1) if im1 else None, im2.group(1) if im2 else None, xml)
    return None, None, None, None, None


def _micmac_correl(px1):
    """The correlation map of a MicMac result (MPIC-OPT: Num_<k-1> for Px1_Num<k>)."""
    folder = os.path.dirname(px1)
    m = _PX1.match(os.path.basename(px1))
    cands = sorted(glob.glob(os.path.join(folder, "Correl_*Num_*.tif")))
    if m:
        k = int(m.group(1))
        for want in (k - 1, k):
            hit = [c for c in cands if re.search(r"Num_%d\.tif$" % want, c)]
            if hit:
                return hit[0]
    return cands[-1] if cands else None


def _georeferenced_same_size(folder, shape, exclude=()):
    import rasterio
    out = []
    for p in sorted(glob.glob(os.path.join(folder, "*"))):
        if not os.path.isfile(p) or p in exclude or not re.search(r"\.(tif|tiff|jp2|img)$",
                                                                   p, re.I):
            continue
        try:
            with rasterio.open(p) as s:
                if (s.height, s.width) == shape and s.crs is not None and \
                        not s.transform.is_identity:
                    out.append(p)
        except Exception:
            continue
    return out


def read_micmac(px1_path, px2_path=None, correl_path=None, reference_image=None,
                px_step=None, reference_date=None, secondary_date=None, min_quality=None):
    """MicMac / MPIC-OPT 2-D matching result -> :class:`ImportedPair`.

    ``px1_path``: ``.../MEC/Px1_Num<k>_DeZoom1_<name>.tif``; ``px2_path`` and
    ``correl_path`` default to the files beside it. ``px_step``: parallax step in pixels
    (default: ``Px1Pas``/``Px2Pas`` of the MicMac parameter XML beside ``MEC/``; an
    InputError when neither exists). ``reference_image``: the raster whose grid the Px
    maps are on (the first image, ``Im1``); default ``Im1`` of the parameter file, or the
    one georeferenced raster of the same size beside ``MEC/``.
    """
    mec = os.path.dirname(os.path.abspath(px1_path))
    base = os.path.basename(px1_path)
    if px2_path is None:
        px2_path = os.path.join(mec, re.sub(r"(?i)^Px1", "Px2", base))
        if not os.path.exists(px2_path):
            raise InputError("MicMac result '%s' has no Px2 file beside it ('%s'): both the "
                             "column (Px1) and row (Px2) offsets are needed."
                             % (px1_path, os.path.basename(px2_path)))
    if correl_path is None:
        correl_path = _micmac_correl(px1_path)
    pair_dir = os.path.dirname(mec) if os.path.basename(mec).upper().startswith("MEC") \
        else mec
    step1, step2, im1, im2, xml = _micmac_params(pair_dir)
    if xml is None and pair_dir != mec:
        step1, step2, im1, im2, xml = _micmac_params(mec)
    if px_step is not None:
        step1 = step2 = float(px_step)
        step_source = "given (%g px)" % float(px_step)
    elif step1 is not None:
        step_source = "Px1Pas/Px2Pas of %s" % os.path.basename(xml)
    else:
        raise InputError(
            "Cannot determine the unit of the MicMac offsets '%s': no MicMac parameter file "
            "(*.xml with <Px1Pas>) beside MEC/. Give the parallax step (px_step, 'MicMac "
            "parallax step' in the dialog): 1 if Px1/Px2 are in pixels, else the Px1Pas of "
            "the last matching step." % px1_path)
    with _open(px1_path) as s1, _open(px2_path) as s2:
        if (s1.height, s1.width) != (s2.height, s2.width):
            raise InputError("'%s' and '%s' do not have the same size." % (px1_path, px2_path))
        shape = (s1.height, s1.width)
        p1 = _float(s1.read(1), s1.nodata)
        p2 = _float(s2.read(1), s2.nodata)
        own_T, own_crs = s1.transform, s1.crs
    # the grid: given reference image, Im1 of the parameter file, the Px file's own
    # georeferencing, or the one georeferenced raster of that size beside MEC/
    grid_path = reference_image
    if grid_path is None and im1 and os.path.exists(os.path.join(pair_dir, im1)):
        grid_path = os.path.join(pair_dir, im1)
    if grid_path is None and (own_crs is None or own_T.is_identity):
        cands = _georeferenced_same_size(pair_dir, shape)
        if len(cands) == 1 or (len(cands) == 2 and im1 is None):
            grid_path = cands[0]
        elif len(cands) > 2:
            raise InputError("MicMac result '%s' is not georeferenced and %d rasters of its "
                             "size lie beside MEC/: give the first image (Im1) as the "
                             "reference image." % (px1_path, len(cands)))
    if grid_path is not None:
        with _open(grid_path) as g:
            if (g.height, g.width) != shape:
                raise InputError("Reference image '%s' (%d x %d) is not the size of the "
                                 "MicMac offsets '%s' (%d x %d): give the first image of the "
                                 "matching (DeZoom1)." % (grid_path, g.width, g.height,
                                                          px1_path, shape[1], shape[0]))
            T, crs = g.transform, g.crs
    else:
        T, crs = own_T, own_crs
    _north_up(T, grid_path or px1_path)
    quality = None
    if correl_path:
        with _open(correl_path) as sc:
            if (sc.height, sc.width) == shape:
                c = sc.read(1).astype(np.float64)
                quality = np.where(c > 0, (c - 127.5) / 127.5, np.nan)
            else:
                correl_path = None
    # dates: given > the two images of the parameter file > the pair folder's name >
    # the georeferenced images beside MEC/
    found = None
    sign = 1.0
    if im1 and im2:
        d1, d2 = parse_name(im1), parse_name(im2)
        if d1.ok and d2.ok and d1.date != d2.date:
            found = tuple(sorted([d1.date.isoformat(), d2.date.isoformat()]))
            if d1.date > d2.date:
                sign = -1.0  # Im1 (the grid of the offsets) is the later image
    names = [pair_dir, px1_path]
    if found is None and not (reference_date and secondary_date):
        ims = _georeferenced_same_size(pair_dir, shape)
        ds = sorted({parse_name(p).date for p in ims if parse_name(p).ok})
        if len(ds) == 2:
            found = (ds[0].isoformat(), ds[1].isoformat())
    ref, sec = _resolve_dates(px1_path, reference_date, secondary_date, found, names)
    east = sign * p1 * step1 * abs(T.a)
    north = -sign * p2 * step2 * abs(T.e)
    out_tags = {"IMPORTED_FROM": "MicMac / MPIC-OPT",
                "ORIGINAL_UNITS": "px x parallax step (%s)" % step_source,
                "ORIGINAL_SIGN_CONVENTION": "Px1 = column offset (east positive), Px2 = row "
                                            "offset (down positive: north = -Px2)%s" % (
                                                "; Im1 is the later image: signs reversed"
                                                if sign < 0 else ""),
                "ORIGINAL_NODATA": "correlation 0 (not correlated / masked)" if correl_path
                else "none",
                "MICMAC_PX_STEP": json.dumps([step1, step2])}
    invalid = None if quality is None else ~np.isfinite(quality)
    return _finish(east, north, quality, "micmac",
                   [px1_path, px2_path, correl_path, grid_path], T, crs, ref, sec, out_tags,
                   min_quality, extra_invalid=invalid,
                   quality_source="MicMac correlation map (v - 127.5) / 127.5")


# ----------------------------------------------------------------------------- itslive
def _nc(path, var):
    return 'NETCDF:"%s":%s' % (path, var)


def _netcdf_attributes(path, variable):
    """Attributes of a NetCDF (scalar) variable, e.g. ``img_pair_info``.

    GDAL's raster netCDF driver does not report the attributes of scalar variables, so the
    multidimensional API of GDAL's Python bindings is used when present; otherwise the
    ``<variable>#<attr>`` metadata items rasterio reports (other GDAL builds), else {}.
    """
    try:
        from osgeo import gdal
    except ImportError:
        gdal = None
    if gdal is not None:
        try:
            ds = gdal.OpenEx(path, gdal.OF_MULTIDIM_RASTER)
            arr = ds.GetRootGroup().OpenMDArray(variable) if ds is not None else None
            if arr is not None:
                return {a.GetName(): a.Read() for a in arr.GetAttributes()}
        except Exception:
            pass
    import rasterio
    try:
        with rasterio.open(_nc(path, "vx")) as src:
            pre = variable + "#"
            return {k[len(pre):]: v for k, v in src.tags().items() if k.startswith(pre)}
    except Exception:
        return {}


def _itslive_date(value):
    """'20190429T21:08:09.' / '20190429T210809' / '2019-04-29...' -> datetime."""
    s = str(value).strip()
    m = re.match(r"(\d{4})-?(\d{2})-?(\d{2})(?:[T ](\d{2}):?(\d{2}):?(\d{2})?)?", s)
    if not m:
        return None
    y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    hh, mm, ss = (int(m.group(i)) if m.group(i) else 0 for i in (4, 5, 6))
    try:
        return _dt.datetime(y, mo, d, hh, mm, ss)
    except ValueError:
        return None


def _velocity_scale(units, path):
    u = (units or "").strip().lower().replace(" ", "")
    if u in ("m/y", "m/yr", "meter/year", "meters/year", "m/year", "ma-1", "m a-1", "my-1",
             "m.yr-1", "myr-1", "m/a"):
        return 1.0 / AUTORIFT_DAYS_PER_YEAR
    if u in ("m/d", "m/day", "meter/day", "meters/day", "md-1"):
        return 1.0
    raise InputError("Cannot determine the unit of vx/vy in '%s' (units attribute %r): "
                     "expected meter/year or m/y as ITS_LIVE writes. Fix the attribute or "
                     "convert the granule to east/north GeoTIFFs and import those."
                     % (path, units))


def read_itslive(path, reference_date=None, secondary_date=None, keep_interpolated=False):
    """autoRIFT / ITS_LIVE NetCDF granule -> :class:`ImportedPair` (read through GDAL)."""
    import rasterio
    if not os.path.exists(path):
        raise InputError("File '%s' does not exist. Check the path." % path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            top = rasterio.open(path)
        with top:
            subs = [s.rsplit(":", 1)[-1] for s in top.subdatasets]
    except Exception as exc:
        raise InputError("Cannot read '%s' as NetCDF: %s. Is it a complete ITS_LIVE granule?"
                         % (path, exc)) from exc
    if "vx" not in subs or "vy" not in subs:
        raise InputError("'%s' has no vx and vy variables (found: %s): it is not an "
                         "autoRIFT / ITS_LIVE velocity granule." % (path, ", ".join(subs)
                                                                     or "none"))
    data = {}
    for var in ("vx", "vy"):
        with _open(_nc(path, var)) as src:
            tags = src.tags()
            units = tags.get("%s#units" % var, "")
            data[var] = (_float(src.read(1), src.nodata, extra_nodata=(-32767.0,)), units)
            T, crs = src.transform, src.crs
    if crs is None:
        raise InputError("'%s' has no projection GDAL can read (mapping variable without "
                         "spatial_ref / crs_wkt). Cannot place its vx/vy on the map." % path)
    _north_up(T, path)
    interp = None
    if "interp_mask" in subs and not keep_interpolated:
        with _open(_nc(path, "interp_mask")) as src:
            interp = src.read(1) == 1
    info = _netcdf_attributes(path, "img_pair_info")
    t1 = _itslive_date(info.get("acquisition_date_img1", "")) if info else None
    t2 = _itslive_date(info.get("acquisition_date_img2", "")) if info else None
    found = None
    if t1 and t2 and t1.date() != t2.date():
        found = tuple(sorted([t1.date().isoformat(), t2.date().isoformat()]))
    ref, sec = _resolve_dates(path, reference_date, secondary_date, found, [path])
    dt_days = None
    if not (reference_date or secondary_date):
        try:
            dt_days = float(info.get("date_dt")) if info and info.get("date_dt") is not None \
                else None
        except (TypeError, ValueError):
            dt_days = None
        if dt_days is None and t1 and t2:
            dt_days = abs((t2 - t1).total_seconds()) / 86400.0
    if dt_days is None or not np.isfinite(dt_days) or dt_days <= 0:
        dt_days = _days(ref, sec)
    scale = [_velocity_scale(data[v][1], path) for v in ("vx", "vy")]
    east = data["vx"][0] * scale[0] * dt_days
    north = data["vy"][0] * scale[1] * dt_days
    out_tags = {"IMPORTED_FROM": "autoRIFT / ITS_LIVE",
                "ORIGINAL_UNITS": "%s (vx), %s (vy); x days %.6g / %g" % (
                    data["vx"][1], data["vy"][1], dt_days, AUTORIFT_DAYS_PER_YEAR),
                "ORIGINAL_SIGN_CONVENTION": "vx, vy along the map x (east) and y (north) "
                                            "axes of the projection (kept)",
                "ORIGINAL_NODATA": "_FillValue -32767%s" % (
                    "; interp_mask = 1 (interpolated) treated as nodata"
                    if interp is not None else ""),
                "IMPORT_TIME_SPAN_DAYS": repr(dt_days)}
    if info:
        for k in ("acquisition_date_img1", "acquisition_date_img2", "date_center",
                  "satellite_img1", "satellite_img2"):
            if k in info:
                out_tags["ITSLIVE_" + k.upper()] = str(info[k])
    return _finish(east, north, None, "itslive", [path], T, crs, ref, sec, out_tags,
                   extra_invalid=interp)


# ------------------------------------------------------------------------------- carst
_CARST_DATES = re.compile(r"(?<!\d)(\d{14}|\d{8}|\d{7})_(\d{14}|\d{8}|\d{7})(?!\d)")


def _carst_date(s):
    try:
        if len(s) == 7:   # year + day of year
            return _dt.date(int(s[:4]), 1, 1) + _dt.timedelta(days=int(s[4:]) - 1)
        return _dt.date(int(s[:4]), int(s[4:6]), int(s[6:8]))
    except ValueError:
        return None


def carst_dates(path):
    """(earlier, later) ISO dates of a CARST file name (either order), or None."""
    m = _CARST_DATES.search(os.path.basename(str(path)))
    if not m:
        return None
    a, b = _carst_date(m.group(1)), _carst_date(m.group(2))
    if not a or not b or a == b or a.year < 1972 or b.year < 1972:
        return None
    lo, hi = sorted([a, b])
    return lo.isoformat(), hi.isoformat()


def read_carst(east_path, north_path=None, snr_path=None, reference_date=None,
               secondary_date=None):
    """CARST ``*_eastxyz.tif`` (+ ``*_northxyz.tif``, ``*_snrxyz.tif``) -> :class:`ImportedPair`."""
    if north_path is None:
        north_path = re.sub(r"eastxyz", "northxyz", east_path)
        if north_path == east_path or not os.path.exists(north_path):
            raise InputError("CARST east offsets '%s' have no '*_northxyz' file beside them: "
                             "both components are needed." % east_path)
    if snr_path is None:
        cand = re.sub(r"eastxyz", "snrxyz", east_path)
        snr_path = cand if cand != east_path and os.path.exists(cand) else None
    with _open(east_path) as se, _open(north_path) as sn:
        if (se.height, se.width) != (sn.height, sn.width) or se.transform != sn.transform:
            raise InputError("'%s' and '%s' are not on the same grid." % (east_path, north_path))
        T, crs = se.transform, se.crs
        _north_up(T, east_path)
        e = _float(se.read(1), se.nodata, extra_nodata=(-32768.0,))
        n = _float(sn.read(1), sn.nodata, extra_nodata=(-32768.0,))
    snr = None
    if snr_path:
        with _open(snr_path) as ss:
            snr = _float(ss.read(1), ss.nodata, extra_nodata=(-32768.0,)).astype(np.float32) \
                if (ss.height, ss.width) == e.shape else None
    ref, sec = _resolve_dates(east_path, reference_date, secondary_date,
                              carst_dates(east_path), [east_path])
    out_tags = {"IMPORTED_FROM": "CARST (ampcor pixel tracking)", "ORIGINAL_UNITS": "m",
                "ORIGINAL_SIGN_CONVENTION": "eastxyz positive westwards (negated on import), "
                                            "northxyz positive northwards (kept)",
                "ORIGINAL_NODATA": "-32768"}
    return _finish(-e, n, None, "carst", [east_path, north_path, snr_path], T, crs, ref, sec,
                   out_tags, snr=snr,
                   snr_source="ampcor SNR (*_snrxyz; not SlideWatch's peak ratio)")


# ------------------------------------------------------------------ detection / grouping
def detect_format(path):
    """Format key of one input file (None when it is not an importable offset file)."""
    base = os.path.basename(path)
    low = base.lower()
    if low.endswith(".nc"):
        return "itslive"
    if re.search(r"_(east|north|snr)xyz", low):
        return "carst"
    if _PX1.match(base) or re.match(r"(?i)^(px2_|correl_)", base):
        return "micmac"
    envi = os.path.exists(os.path.splitext(path)[0] + ".hdr") and not low.endswith(".hdr")
    if not (re.search(r"\.(tif|tiff|img|vrt)$", low) or envi):
        return None   # (classic COSI-Corr writes ENVI files: no extension + .hdr)
    try:
        import rasterio
        with rasterio.open(path) as src:
            d = [(x or "").strip().lower() for x in src.descriptions]
            if list(BANDS) == d[:len(BANDS)]:
                return "slidewatch"
            if _cosicorr_bands(src) is not None:
                return "cosicorr"
            if src.count >= 2:
                return "geotiff"
            return "geotiff-single"
    except Exception:
        return None


def _expand(inputs):
    out = []
    for p in inputs:
        p = os.path.abspath(str(p))
        if os.path.isdir(p):
            for root, dirs, files in os.walk(p):
                dirs.sort()
                if os.path.basename(root) == prod.PAIRS_FOLDER and any(
                        f.startswith(prod.PAIR_PREFIX) for f in files):
                    continue  # SlideWatch's own pairs (an earlier import's output)
                out += [os.path.join(root, f) for f in sorted(files)
                        if not f.startswith(".") and not f.endswith(".aux.xml")]
        elif os.path.exists(p):
            out.append(p)
        else:
            raise InputError("Input '%s' does not exist. Check the path." % p)
    seen = set()
    return [p for p in out if not (p in seen or seen.add(p))]


def find_import_jobs(inputs, fmt="auto"):
    """Group input files (or folders, searched recursively) into one job per pair.

    Returns ``(jobs, skipped)``: jobs are ``(format, kwargs for its reader)``; skipped
    are ``(path, reason)`` for files that are not offsets (or are consumed by a job).
    """
    if fmt not in FORMATS:
        raise ParameterError("format must be one of %s (got %r)." % (", ".join(FORMATS), fmt))
    files = _expand(inputs)
    jobs, skipped, used = [], [], set()
    kinds = {p: (detect_format(p) if fmt == "auto" else fmt) for p in files}
    for p in files:
        if p in used:
            continue
        kind = kinds[p]
        base = os.path.basename(p)
        if kind == "itslive" and p.lower().endswith(".nc"):
            jobs.append(("itslive", dict(path=p)))
        elif kind == "carst" and re.search(r"_eastxyz", base, re.I) and \
                re.search(r"\.(tif|tiff)$", base, re.I):
            north = re.sub("eastxyz", "northxyz", p)
            snr = re.sub("eastxyz", "snrxyz", p)
            used.update({north, snr})
            jobs.append(("carst", dict(east_path=p)))
        elif kind == "micmac" and _PX1.match(base):
            m = _PX1.match(base)
            # only the last matching step of a folder (highest Num at DeZoom1)
            siblings = [f for f in glob.glob(os.path.join(os.path.dirname(p), "Px1_Num*"))
                        if _PX1.match(os.path.basename(f))]
            best = max(siblings, key=lambda f: (-int(_PX1.match(os.path.basename(f)).group(2)),
                                                int(_PX1.match(os.path.basename(f)).group(1))))
            if os.path.abspath(best) != p:
                skipped.append((p, "earlier MicMac step (the last step, %s, is imported)"
                                % os.path.basename(best)))
                continue
            if m.group(2) != "1":
                skipped.append((p, "MicMac result at DeZoom%s: only DeZoom1 is on the image "
                                   "grid" % m.group(2)))
                continue
            jobs.append(("micmac", dict(px1_path=p)))
        elif kind == "cosicorr" and not base.lower().endswith((".hdr", ".xml", ".txt")):
            jobs.append(("cosicorr", dict(path=p)))
        elif kind in ("geotiff", "geotiff-single") and os.path.isdir(
                os.path.join(os.path.dirname(p), "MEC")):
            skipped.append((p, "image of a MicMac matching (used for its grid and date)"))
        elif kind in ("geotiff", "geotiff-single") and re.search(r"\.(tif|tiff|img|vrt)$",
                                                                  base, re.I):
            east_like = re.search(r"(?i)east|(?<![a-z])(ew|dx|e|vx)(?![a-z])", base)
            north_like = re.search(r"(?i)north|(?<![a-z])(ns|dy|n|vy)(?![a-z])", base)
            if north_like and not east_like:
                continue  # read with its east partner (or reported below when alone)
            nb = _band_count(p)
            partner = _partner(p, _EAST_NORTH_TOKENS) if nb == 1 else None
            if partner:
                used.add(partner)
                jobs.append(("geotiff", dict(east_path=p, north_path=partner)))
            elif nb >= 2:
                jobs.append(("geotiff", dict(east_path=p)))
            else:
                skipped.append((p, "single-band raster without a north partner (name "
                                   "them like '..._east_...tif' / '..._north_...tif')"))
        elif kind == "slidewatch":
            skipped.append((p, "already a SlideWatch pair raster"))
        elif kind in ("carst", "micmac"):
            continue  # partners (northxyz, snrxyz, Px2, Correl) are read with their job
        else:
            skipped.append((p, "not an offset file of a known format"))
    return jobs, skipped


def _band_count(path):
    import rasterio
    try:
        with rasterio.open(path) as s:
            return s.count
    except Exception:
        return 0


READERS = {"geotiff": read_geotiff_pair, "cosicorr": read_cosicorr, "micmac": read_micmac,
           "itslive": read_itslive, "carst": read_carst}
#: reader options each format accepts (the rest of import_offsets' options are ignored)
_OPTIONS = {
    "geotiff": ("units", "north_convention", "reference_date", "secondary_date",
                "min_quality"),
    "cosicorr": ("reference_date", "secondary_date", "min_quality"),
    "micmac": ("reference_image", "px_step", "reference_date", "secondary_date",
               "min_quality"),
    "itslive": ("reference_date", "secondary_date", "keep_interpolated"),
    "carst": ("reference_date", "secondary_date"),
}


def _tag_dates(tags):
    """(reference, secondary) ISO dates of SlideWatch's date tags, or None."""
    ref, sec = tags.get(prod.TAG_REFERENCE_DATE), tags.get(prod.TAG_SECONDARY_DATE)
    return (ref[:10], sec[:10]) if ref and sec else None


# ------------------------------------------------------------------------------ writing
def write_imported_pair(pair, output_folder):
    """Write ``pair`` as ``<output_folder>/pairs/pair_YYYYMMDD_YYYYMMDD.tif`` (atomically)."""
    path = os.path.join(os.path.abspath(str(output_folder)), prod.PAIRS_FOLDER, pair.name)
    T = pair.transform
    tags = {prod.TAG_REFERENCE_DATE: pair.reference_date,
            prod.TAG_SECONDARY_DATE: pair.secondary_date,
            "STATUS_CODES": json.dumps({str(k): v for k, v in STATUS_MEANINGS.items()}),
            "SOURCE_PIXEL_SIZE": json.dumps([T.a, T.e]),
            "CONVENTION": SLIDEWATCH_CONVENTION}
    tags.update(pair.tags)
    band_tags = [{"UNITS": "m"}, {"UNITS": "m"}, {}, {},
                 {"STATUS_%d" % k: v for k, v in STATUS_MEANINGS.items()}]
    write_bands(path, [pair.east_m, pair.north_m, pair.ncc, pair.snr, pair.status], T,
                pair.crs, descriptions=list(BANDS), tags=tags, band_tags=band_tags)
    return path


def _same_grid(a, b):
    return (a.east_m.shape == b.east_m.shape and a.transform == b.transform
            and a.crs == b.crs)


def align_pairs(pairs, progress=None):
    """Put every pair on one grid (the inversion needs it): the union of their extents on
    the first pair's pixel lattice. Only padding, never resampling: pairs in another
    projection, of another pixel size or off the lattice raise an InputError."""
    if len(pairs) < 2 or all(_same_grid(pairs[0], p) for p in pairs[1:]):
        return pairs
    T0, crs0 = pairs[0].transform, pairs[0].crs
    for p in pairs[1:]:
        T = p.transform
        if p.crs != crs0:
            raise InputError(
                "Pairs %s (%s) and %s (%s) are in different projections: east/north "
                "components would rotate between them. Import them into separate output "
                "folders, or reproject the foreign rasters to one projection first."
                % (pairs[0].name, crs0, p.name, p.crs))
        if not (np.isclose(T.a, T0.a) and np.isclose(T.e, T0.e)):
            raise InputError("Pairs %s (pixel %g m) and %s (pixel %g m) have different pixel "
                             "sizes: import them into separate output folders, or resample "
                             "them to one grid first." % (pairs[0].name, T0.a, p.name, T.a))
        for off, res in ((T.c - T0.c, T0.a), (T.f - T0.f, T0.e)):
            k = off / res
            if abs(k - round(k)) > 1e-3:
                raise InputError("Pair %s is not on the pixel lattice of %s (shifted by %.3f "
                                 "pixel): resample it onto that grid first."
                                 % (p.name, pairs[0].name, k - round(k)))
    cols, rows = [], []
    for p in pairs:
        c0 = int(round((p.transform.c - T0.c) / T0.a))
        r0 = int(round((p.transform.f - T0.f) / T0.e))
        h, w = p.east_m.shape
        cols += [c0, c0 + w]
        rows += [r0, r0 + h]
    cmin, cmax, rmin, rmax = min(cols), max(cols), min(rows), max(rows)
    from affine import Affine
    Tu = Affine(T0.a, 0.0, T0.c + cmin * T0.a, 0.0, T0.e, T0.f + rmin * T0.e)
    H, W = rmax - rmin, cmax - cmin
    out = []
    for p in pairs:
        c0 = int(round((p.transform.c - T0.c) / T0.a)) - cmin
        r0 = int(round((p.transform.f - T0.f) / T0.e)) - rmin
        h, w = p.east_m.shape
        arrays = {}
        for name, fill in ((prod.BAND_EAST, np.nan), (prod.BAND_NORTH, np.nan),
                           (prod.BAND_NCC, np.nan), (prod.BAND_SNR, np.nan),
                           (prod.BAND_STATUS, float(STATUS_NODATA))):
            a = np.full((H, W), fill, np.float32)
            a[r0:r0 + h, c0:c0 + w] = getattr(p, name)
            arrays[name] = a
        tags = dict(p.tags, IMPORT_PADDED_TO_COMMON_GRID="offset %d rows, %d columns" % (r0, c0))
        out.append(ImportedPair(transform=Tu, crs=crs0, reference_date=p.reference_date,
                                secondary_date=p.secondary_date, fmt=p.fmt, sources=p.sources,
                                tags=tags, **arrays))
    if progress is not None:
        progress.info("import: %d pairs padded to one common grid (%d x %d pixels)"
                      % (len(pairs), W, H))
    return out


def import_offsets(inputs, output_folder, fmt="auto", progress=None, align=True, **options):
    """Import foreign offset files into ``<output_folder>/pairs/``.

    ``inputs``: files and/or folders (searched recursively). ``fmt``: a key of
    :data:`FORMATS`. ``options`` go to the readers that accept them (``units``,
    ``north_convention``, ``reference_date``, ``secondary_date``, ``min_quality``,
    ``px_step``, ``reference_image``, ``keep_interpolated``). ``align``: pad every pair to
    one common grid (default; the inversion needs it). Returns an :class:`ImportResult`.
    """
    progress = as_progress(progress)
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if not inputs:
        raise InputError("No input given: choose offset files or a folder holding them.")
    jobs, skipped = find_import_jobs(inputs, fmt)
    for path, why in skipped:
        progress.info("import: skipped %s (%s)" % (path, why))
    if not jobs:
        raise InputError("No importable offset file found in %s (format %s). %s" % (
            ", ".join(str(i) for i in inputs), FORMAT_LABELS.get(fmt, fmt),
            "Choose the format explicitly, or check the names: *_eastxyz.tif (CARST), "
            "MEC/Px1_*.tif (MicMac), *.nc (ITS_LIVE), 3-band E/W N/S SNR (COSI-Corr), "
            "east/north GeoTIFFs."))
    if (options.get("reference_date") or options.get("secondary_date")) and len(jobs) > 1:
        raise ParameterError("Reference and secondary dates can only be given for a single "
                             "pair (%d pairs found): put the dates in the file names instead."
                             % len(jobs))
    pairs = []
    for i, (kind, kw) in enumerate(jobs):
        progress.check()
        opts = {k: v for k, v in options.items() if k in _OPTIONS[kind] and v is not None}
        pair = READERS[kind](**kw, **opts)
        progress.info("import: %s -> %s (%s, %d valid of %d)" % (
            ", ".join(os.path.basename(s) for s in pair.sources), pair.name,
            FORMAT_LABELS[kind], pair.n_valid, pair.status.size))
        pairs.append(pair)
        progress.update(0.7 * (i + 1) / len(jobs), "import: read %d/%d" % (i + 1, len(jobs)))
    names = [p.name for p in pairs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError("Several inputs give the same pair dates (%s): import them into "
                         "separate output folders." % ", ".join(dup))
    if align:
        pairs = align_pairs(pairs, progress)
    paths = []
    for i, pair in enumerate(pairs):
        progress.check()
        paths.append(write_imported_pair(pair, output_folder))
        progress.update(0.7 + 0.3 * (i + 1) / len(pairs), "import: wrote %s" % pair.name)
    return ImportResult(paths, [(p.reference_date, p.secondary_date, p.fmt, p.n_valid,
                                 p.sources) for p in pairs], skipped,
                        os.path.join(os.path.abspath(str(output_folder)), prod.PAIRS_FOLDER))
