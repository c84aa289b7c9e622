"""Acquisition dates from satellite product names, file names or raster tags.

Order of precedence (the first that gives an unambiguous date wins):

1. Sentinel-2 product names: SAFE folders / product ids
   ``S2A_MSIL1C_20190101T103421_N0207_R108_T32TLR_20190101T123456`` (the first
   date/time is the sensing time, the second the product discriminator, which is
   *not* the acquisition date), band files ``T32TLR_20190101T103421_B08.jp2`` /
   ``T32TLR_20190101T103421_B08_10m.jp2`` and the old (2015-2016) long names
   ``S2A_OPER_MSI_L1C_TL_SGS__20160608T153121_A...``.
2. Landsat Collection 1/2 names ``LC08_L1TP_195028_20190101_20190130_01_T1_B4.TIF``
   (``LC09``, ``LE07``, ``LT05``... ; first date = acquisition, second = processing)
   and pre-collection scene ids ``LC81950282019001LGN00`` (year + day of year).
3. Any ``YYYYMMDD`` / ``YYYYMMDDThhmmss`` / ``YYYY-MM-DD`` / ``YYYY_MM_DD`` in the
   file name. If several *different* dates appear, the name is ambiguous: it is
   reported, never guessed.
4. Raster tags: ``ACQUISITION_DATE``, ``DATE_ACQUIRED``, ``SENSING_TIME``,
   ``DATE``, ``TIFFTAG_DATETIME`` (``YYYY:MM:DD hh:mm:ss``) and a few aliases.

Everything here is pure Python (the tag reader uses rasterio lazily).
"""

import datetime as _dt
import os
import re
from dataclasses import dataclass, field

__all__ = ["ParsedDate", "parse_name", "parse_tags", "date_from_path", "parse_iso",
           "S2_BANDS", "processing_baseline_value"]

#: Sentinel-2 band names in the order of the ``band_id`` attribute of the MTD metadata.
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09",
            "B10", "B11", "B12")

_MIN_YEAR, _MAX_YEAR = 1972, 2100

_S2_SAFE = re.compile(
    r"(?<![A-Za-z0-9])(S2[A-D])_MSI(L1C|L2A|L1B)_(\d{8})T(\d{6})_N(\d{4})_R(\d{3})_T(\d{2}[A-Z]{3})"
    r"(?:_(\d{8})T(\d{6}))?(?:_(B\d[\dA]|SCL|TCI))?(?![A-Za-z0-9])")
_S2_OLD = re.compile(
    r"(?<![A-Za-z0-9])(S2[A-D])_OPER_(?:MSI|PRD)_(L1C|L2A|MSIL1C|MSIL2A)_\w*?_(\d{8})T(\d{6})")
_S2_BAND = re.compile(
    r"(?<![A-Za-z0-9])(?:L2A_)?T(\d{2}[A-Z]{3})_(\d{8})T(\d{6})_(B\d[\dA]|SCL|TCI|AOT|WVP|CLD|SNW)"
    r"(?:_(\d{2})m)?(?![A-Za-z0-9])")
_LANDSAT = re.compile(
    r"(?<![A-Za-z0-9])L([COTEM])(\d{2})_(L1TP|L1GT|L1GS|L2SP|L2SR)_(\d{3})(\d{3})_(\d{8})_(\d{8})"
    r"_(\d{2})_(T1|T2|RT)(?:_(B\d{1,2}|SR_B\d|ST_B\d{1,2}|QA_PIXEL|QA_RADSAT|BQA|ANG))?",
    re.IGNORECASE)
_LANDSAT_PRE = re.compile(
    r"(?<![A-Za-z0-9])L([COTEM])(\d)(\d{3})(\d{3})(\d{4})(\d{3})[A-Z]{3}\d{2}(?:_(B\d{1,2}|BQA))?",
    re.IGNORECASE)
# generic: 8 digits not part of a longer number (optionally followed by Thhmmss)
_GENERIC_COMPACT = re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?:T\d{4,6})?(?!\d)")
_GENERIC_SEP = re.compile(r"(?<!\d)(\d{4})([-_.])(\d{2})\2(\d{2})(?!\d)")

_TAG_KEYS = ("ACQUISITION_DATE", "ACQUISITIONDATE", "DATE_ACQUIRED", "SENSING_TIME",
             "SENSING_DATE", "PRODUCT_START_TIME", "DATATAKE_SENSING_START", "DATE_TIME",
             "DATETIME", "DATE", "TIFFTAG_DATETIME")


@dataclass
class ParsedDate:
    """Result of date parsing for one file.

    ``date`` is a :class:`datetime.date` or None; when None, ``problem`` says why
    (undatable or ambiguous) and ``candidates`` lists the conflicting dates.
    """

    date: object = None
    source: str = ""            # "sentinel2-safe", "sentinel2-band", "landsat", "name", "tag:KEY"
    sensor: str = ""            # "S2A", "S2B", "L8", "L9", ... or ""
    time: str = ""              # "hhmmss" when known
    tile: str = ""              # S2 MGRS tile "32TLR" or Landsat path/row "195028"
    band: str = ""              # band named in the file name, e.g. "B08", "B4"
    level: str = ""             # "L1C", "L2A", "L1TP", "L2SP"...
    processing_baseline: str = ""   # S2 "02.07", "04.00"
    candidates: list = field(default_factory=list)
    problem: str = ""

    @property
    def iso(self):
        return self.date.isoformat() if self.date else ""

    @property
    def ok(self):
        return self.date is not None


def _mkdate(y, m, d):
    try:
        y, m, d = int(y), int(m), int(d)
    except (TypeError, ValueError):
        return None
    if not (_MIN_YEAR <= y <= _MAX_YEAR):
        return None
    try:
        return _dt.date(y, m, d)
    except ValueError:
        return None


def _ymd(s):
    return _mkdate(s[0:4], s[4:6], s[6:8])


def parse_iso(text):
    """``YYYY-MM-DD`` (or a datetime string starting with it) -> date, else None."""
    if text is None:
        return None
    if isinstance(text, _dt.datetime):
        return text.date()
    if isinstance(text, _dt.date):
        return text
    m = re.match(r"\s*(\d{4})[-:_/.]?(\d{2})[-:_/.]?(\d{2})", str(text))
    return _mkdate(*m.groups()) if m else None


def processing_baseline_value(text):
    """``"N0400"`` / ``"04.00"`` / ``"0400"`` -> 4.0 (float), None if unknown."""
    if not text:
        return None
    m = re.search(r"(\d{2})\.?(\d{2})", str(text))
    if not m:
        return None
    return int(m.group(1)) + int(m.group(2)) / 100.0


def parse_name(name):
    """Parse a file or folder name (or a full path: only the base name is used).

    Returns a :class:`ParsedDate`; never raises.
    """
    base = os.path.basename(os.path.normpath(str(name)))
    m = _S2_SAFE.search(base)
    if m:
        sat, level, d, t, nb, _orbit, tile = m.group(1, 2, 3, 4, 5, 6, 7)
        date = _ymd(d)
        if date:
            out = ParsedDate(date, "sentinel2-safe", sat, t, tile, "", level,
                             "%s.%s" % (nb[:2], nb[2:]))
            b = _S2_BAND.search(base)
            if b:
                out.band = b.group(4)
            elif m.group(10):
                out.band = m.group(10)
            return out
    m = _S2_BAND.search(base)
    if m:
        tile, d, t, band, _res = m.groups()
        date = _ymd(d)
        if date:
            return ParsedDate(date, "sentinel2-band", "S2", t, tile, band,
                              "L2A" if base.startswith("L2A_") or _res else "")
    m = _S2_OLD.search(base)
    if m:
        date = _ymd(m.group(3))
        if date:
            level = m.group(2).replace("MSI", "")
            return ParsedDate(date, "sentinel2-safe", m.group(1), m.group(4), "", "", level)
    m = _LANDSAT.search(base)
    if m:
        sensor_letter, num, level, path, row, acq, _proc, _coll, _tier, band = m.groups()
        date = _ymd(acq)
        if date:
            return ParsedDate(date, "landsat", "L%d" % int(num), "", path + row,
                              (band or "").upper(), level.upper())
    m = _LANDSAT_PRE.search(base)
    if m:
        _s, num, path, row, year, doy, band = m.groups()
        try:
            y, j = int(year), int(doy)
            date = _dt.date(y, 1, 1) + _dt.timedelta(days=j - 1) if (
                _MIN_YEAR <= y <= _MAX_YEAR and 1 <= j <= 366) else None
        except ValueError:
            date = None
        if date and date.year == y:
            return ParsedDate(date, "landsat", "L%d" % int(num), "", path + row,
                              (band or "").upper(), "")
    return _parse_generic(base)


def _parse_generic(base):
    stem = base
    found = []
    for m in _GENERIC_SEP.finditer(stem):
        d = _mkdate(m.group(1), m.group(3), m.group(4))
        if d:
            found.append(d)
    for m in _GENERIC_COMPACT.finditer(stem):
        d = _mkdate(m.group(1), m.group(2), m.group(3))
        if d:
            found.append(d)
    distinct = sorted(set(found))
    sensor = ""
    ms = re.search(r"(?<![A-Za-z0-9])(S2[A-D])(?![A-Za-z0-9])", stem) or re.search(
        r"(?i)sentinel-?2", stem)
    if ms:
        sensor = ms.group(1) if ms.lastindex else "S2"
    else:
        ml = re.search(r"(?i)(?<![A-Za-z0-9])(?:L[COTEM]0?|landsat-?)(\d{1,2})(?![0-9])", stem)
        if ml:
            sensor = "L%d" % int(ml.group(1))
    if len(distinct) == 1:
        return ParsedDate(distinct[0], "name", sensor)
    if len(distinct) > 1:
        return ParsedDate(None, "name", candidates=distinct,
                          problem="ambiguous date in name '%s': %s (rename the file so that it "
                                  "contains only the acquisition date, or set an "
                                  "ACQUISITION_DATE tag)" % (base, ", ".join(
                                      d.isoformat() for d in distinct)))
    return ParsedDate(None, "", problem="no date in name '%s'" % base)


def parse_tags(tags):
    """Date from a dict of raster metadata tags, or a :class:`ParsedDate` with a problem."""
    if not tags:
        return ParsedDate(None, "", problem="no date tag")
    upper = {str(k).upper(): v for k, v in tags.items()}
    for key in _TAG_KEYS:
        if key in upper and upper[key]:
            d = parse_iso(upper[key])
            if d:
                sensor = str(upper.get("SENSOR", upper.get("SPACECRAFT_NAME", "")) or "")
                return ParsedDate(d, "tag:%s" % key, sensor)
    return ParsedDate(None, "", problem="no date tag (looked for %s)" % ", ".join(_TAG_KEYS))


def _read_tags(path):
    try:
        import rasterio
        with rasterio.open(path) as src:
            tags = dict(src.tags())
            try:
                tags.update(src.tags(ns="IMAGE_STRUCTURE") or {})
            except Exception:
                pass
            return tags
    except Exception:
        return {}


def date_from_path(path, tags=None, read_tags=True):
    """Best date for a raster path: product/file name, then SAFE ancestors, then tags.

    A date found in the name wins over tags; an *ambiguous* name is resolved by a
    tag when one exists, otherwise reported. Returns a :class:`ParsedDate`.
    """
    parsed = parse_name(path)
    if parsed.ok:
        return parsed
    # a band file inside a SAFE product (e.g. IMG_DATA/xxx.jp2 without a date)
    parts = os.path.normpath(os.path.abspath(str(path))).split(os.sep)
    for part in reversed(parts[:-1]):
        if part.upper().endswith(".SAFE") or _S2_SAFE.search(part) or _LANDSAT.search(part):
            anc = parse_name(part)
            if anc.ok:
                return anc
    if tags is None and read_tags:
        tags = _read_tags(path)
    from_tags = parse_tags(tags)
    if from_tags.ok:
        return from_tags
    if parsed.candidates:
        return parsed
    return ParsedDate(None, "", problem="undatable: no date in the name of '%s' and no date "
                                        "tag (rename it with YYYYMMDD or YYYY-MM-DD in the "
                                        "name, or add an ACQUISITION_DATE tag)"
                      % os.path.basename(str(path)))
