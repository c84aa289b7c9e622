"""Validation of user inputs, shared by the entry points (pipeline, Processing algorithms).

Every helper either returns quietly or raises a :class:`~.errors.SlideWatchError`
subclass whose message names the file or parameter concerned and says what to do, so
that a user never sees a traceback as the only output, nor a silently wrong result.

Helpers
-------
- :func:`scan_image_folder`: which files of a folder are not rasters, and which rasters
  are corrupted or truncated (header and every block read at reduced resolution).
- :func:`require_images`: at least two usable dated images in a catalog, else a message
  listing every skipped file and why (undatable, duplicate date, missing band, ...).
- :func:`check_window_search`: window / search range against the image size.
- :func:`check_band_index`: the band exists in the raster.
- :func:`sanitize_array`: float32 copy with NaN for every non-finite value.
- :func:`check_writable_folder`, :func:`check_free_space`: the output folder can be
  written (really tried, so that read-only file systems are caught even as root) and
  has room for what is about to be written.
- :func:`validate_pairs_csv`: a hand-edited ``pairs.csv`` checked row by row, every bad
  row reported with its line number.
- :func:`check_detections_layer`: a detections layer has the validation fields.
"""

import errno
import os
import shutil
import uuid

import numpy as np

from .network import pairs_file
from .errors import InputError, OutputError, ParameterError
from .products import BAND_V, PAIRS_FOLDER, TIMESERIES_FOLDER
from .raster_io import ensure_writable_folder

__all__ = ["scan_image_folder", "require_images", "check_window_search",
           "check_band_index", "sanitize_array", "check_writable_folder",
           "check_free_space", "validate_pairs_csv", "check_detections_layer",
           "PAIRS_REQUIRED_COLUMNS", "MAX_LISTED"]

#: at most this many problems are spelled out in one message (the rest are counted)
MAX_LISTED = 10

#: columns a pairs.csv must have (:data:`.pairs_file.REQUIRED_COLUMNS`)
PAIRS_REQUIRED_COLUMNS = pairs_file.REQUIRED_COLUMNS


def _listing(items, limit=MAX_LISTED):
    items = list(items)
    text = "; ".join(str(i).rstrip(". ") for i in items[:limit])
    if len(items) > limit:
        text += "; ... and %d more" % (len(items) - limit)
    return text


# ----------------------------------------------------------------------------- images

def _raster_problem(path):
    """None when ``path`` is a readable raster, else a short reason."""
    import rasterio
    from rasterio.enums import Resampling
    try:
        with rasterio.open(path) as src:
            if src.count < 1 or src.width < 1 or src.height < 1:
                return "has no pixel"
            # read every block at reduced resolution: a truncated file fails here
            shape = (max(1, min(src.height, 64)), max(1, min(src.width, 64)))
            src.read(1, out_shape=shape, resampling=Resampling.nearest)
    except rasterio.errors.RasterioIOError as exc:
        text = str(exc)
        if "not recognized as a supported file format" in text or \
                "not recognised as" in text:
            return "is not a raster GDAL can read (wrong format or corrupted)"
        return "is corrupted or truncated (%s)" % text.splitlines()[0][:200]
    except Exception as exc:  # any GDAL/driver failure is a bad file, not a crash
        return "cannot be read (%s: %s)" % (type(exc).__name__, str(exc)[:200])
    return None


def scan_image_folder(folder, extensions=None):
    """Report the files of ``folder`` (recursively) that cannot be used as images.

    Returns a dict with ``rasters`` (readable raster files), ``not_raster`` (files that
    are not rasters by name, e.g. notes.txt) and ``unreadable`` (list of
    ``(path, reason)`` for corrupted, truncated or mis-named files). Hidden files and
    SlideWatch's own output sub-folders (pairs/, timeseries/) are ignored.
    """
    from .stack.catalog import RASTER_EXTENSIONS
    exts = tuple(e.lower() for e in (extensions or RASTER_EXTENSIONS))
    if not os.path.isdir(folder):
        raise InputError("Input folder '%s' does not exist or is not a folder. Choose the "
                         "folder holding the images." % folder)
    out = {"rasters": [], "not_raster": [], "unreadable": []}
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and d not in (PAIRS_FOLDER, TIMESERIES_FOLDER))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = os.path.join(root, name)
            if not name.lower().endswith(exts):
                out["not_raster"].append(path)
                continue
            problem = _raster_problem(path)
            if problem:
                out["unreadable"].append((path, problem))
            else:
                out["rasters"].append(path)
    return out


def require_images(catalog, source, catalog_csv=None, minimum=2):
    """Raise :class:`InputError` unless ``catalog`` holds at least ``minimum`` images.

    The message lists every file the catalog skipped and why (undatable name, duplicate
    date, band missing, unreadable, no valid pixel) and what to do.
    """
    n = len(catalog.records)
    if n >= minimum:
        return
    problems = list(getattr(catalog, "problems", []) or [])
    msg = ("Only %d usable dated image(s) found in '%s': at least %d are needed (3 or more "
           "for a time series)." % (n, source, minimum))
    if problems:
        msg += " Skipped: %s." % _listing(problems)
    hints = []
    text = " ".join(problems).lower()
    if "undatable" in text or "no date" in text:
        hints.append("put the acquisition date in each file name (YYYYMMDD or YYYY-MM-DD, or "
                     "a Sentinel-2/Landsat product name) or in a DATE tag")
    if "duplicate" in text:
        hints.append("keep one image per date")
    if "band" in text:
        hints.append("choose a band that exists in the images")
    if "read" in text or "corrupt" in text or "truncated" in text:
        hints.append("replace the unreadable files (download them again)")
    if "valid pixel" in text or "nodata" in text:
        hints.append("remove the empty images or add images with data")
    hints.append("add more images to the folder")
    msg += " To fix: " + "; ".join(hints) + "."
    if catalog_csv:
        msg += " The catalog is in %s." % catalog_csv
    raise InputError(msg)


def check_window_search(image_shape, window, search, path=None, step=None):
    """Check the correlation window and search range against the image size.

    ``window``: int or (height, width); ``search``: largest displacement searched (px).
    Raises :class:`ParameterError` when the window is larger than the image, when the
    search range is larger than the window (the peak would be ambiguous: a displacement
    larger than the window cannot be told from another feature) or when a window plus
    the search range on both sides does not fit in the image.
    """
    H, W = (int(image_shape[0]), int(image_shape[1]))
    if isinstance(window, (tuple, list, np.ndarray)):
        wh, ww = int(window[0]), int(window[1])
    else:
        wh = ww = int(window)
    search = int(search)
    what = ("image '%s'" % path) if path else "the image"
    if wh > H or ww > W:
        raise ParameterError(
            "Correlation window %d x %d px is larger than %s (%d x %d px). Choose a "
            "window of at most %d px (16 to 64 is usual)." % (wh, ww, what, H, W, min(H, W)))
    if search > max(wh, ww):
        raise ParameterError(
            "Search range %d px is larger than the window (%d px): displacements larger than "
            "the window cannot be matched reliably. Use a search of at most %d px, or a "
            "window of at least %d px." % (search, max(wh, ww), max(wh, ww), search))
    if wh + 2 * search > H or ww + 2 * search > W:
        largest = max(0, (min(H - wh, W - ww)) // 2)
        raise ParameterError(
            "Search range %d px with a %d px window does not fit in %s (%d x %d px): no "
            "window could be searched over the whole range. Use a search of at most %d px "
            "or a smaller window." % (search, max(wh, ww), what, H, W, largest))
    if step is not None and int(step) < 1:
        raise ParameterError("Correlation step must be >= 1 pixel (got %r)." % (step,))


def check_band_index(path, band):
    """Raise :class:`InputError` when raster ``path`` has no band ``band`` (1-based)."""
    import rasterio
    try:
        band = int(band)
    except (TypeError, ValueError):
        raise ParameterError("Band must be a whole number >= 1 (got %r)." % (band,)) from None
    try:
        with rasterio.open(path) as src:
            count = src.count
    except rasterio.errors.RasterioIOError as exc:
        raise InputError("Cannot read raster '%s': %s. Check that the file is a complete, "
                         "valid raster." % (path, exc)) from exc
    if band < 1 or band > count:
        raise InputError("'%s' has %d band(s); band %d does not exist. Choose a band between "
                         "1 and %d." % (path, count, band, count))
    return count


def sanitize_array(a, name="array"):
    """A float32 copy of 2-D ``a`` with NaN for every NaN/+Inf/-Inf; returns (array, n_bad).

    Raises :class:`InputError` for non-numeric, empty or non-2-D input.
    """
    a = np.asarray(a)
    if a.ndim != 2:
        raise InputError("%s must be a 2-D array (got %d dimension(s))." % (name, a.ndim))
    if a.size == 0:
        raise InputError("%s is empty." % name)
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise InputError("%s must be numeric (got %s)." % (name, a.dtype))
    with np.errstate(over="ignore", invalid="ignore"):
        out = a.astype(np.float32)
    bad = ~np.isfinite(out)
    out[bad] = np.nan
    return out, int(bad.sum())


# ----------------------------------------------------------------------------- outputs

def check_writable_folder(folder):
    """Create ``folder`` if needed and really write (then delete) a probe file in it.

    Unlike a permission-bit check this also catches read-only file systems and
    running as root. Raises :class:`OutputError` naming the folder and the remedy.
    """
    folder = os.path.abspath(str(folder))
    ensure_writable_folder(folder)  # creates it; permission bits
    probe = os.path.join(folder, ".slidewatch_write_test_%s" % uuid.uuid4().hex[:8])
    try:
        with open(probe, "wb") as fh:
            fh.write(b"0")
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise OutputError("The disk holding '%s' is full. Free some space or choose "
                              "another output folder." % folder) from exc
        raise OutputError("Output folder '%s' is not writable (%s). Choose a folder you can "
                          "write to, or fix its permissions." % (folder, exc.strerror or exc)
                          ) from exc
    finally:
        try:
            os.remove(probe)
        except OSError:
            pass
    return folder


def check_free_space(folder, needed_bytes, what="the outputs", margin=1.1):
    """Raise :class:`OutputError` when ``folder`` has less than ``needed_bytes * margin``
    free (checked before a heavy write, so that a full disk is reported up front)."""
    folder = os.path.abspath(str(folder))
    probe = folder
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    free = shutil.disk_usage(probe).free
    need = int(needed_bytes * margin)
    if free < need:
        raise OutputError("Not enough free disk space in '%s' for %s: %.1f MB needed, %.1f MB "
                          "free. Free some space or choose another output folder."
                          % (folder, what, need / 1e6, free / 1e6))
    return free


# ----------------------------------------------------------------------------- pairs.csv

def validate_pairs_csv(path, check_paths=True):
    """Check a (possibly hand-edited) ``pairs.csv`` row by row.

    The cells are parsed by :mod:`.pairs_file` (the one pairs.csv contract, also used by
    every reader): the columns, both dates (``YYYY-MM-DD`` or ``YYYYMMDD``, real dates),
    the secondary date after the reference date, ``selected`` 1/0 (or true/false, see
    :func:`.products.parse_bool`), ``baseline_days`` and ``score`` numbers (or empty), no
    pair listed twice; on top of that the image paths of the selected rows are filled in
    and (with ``check_paths``) exist (relative paths are relative to the CSV's folder).
    Raises :class:`InputError` listing every bad row with its line number and what to
    write instead; returns the selected rows (dicts with ``line``, ``selected``, ISO
    dates and absolute paths) when all rows are good.
    """
    def paths(row):
        return pairs_file.image_path_problems(row, check_paths) if row.selected else []

    rows, bad = pairs_file.scan_pairs(path, (paths,))
    if bad:
        raise InputError(pairs_file.bad_rows_message(path, bad))
    return [dict(line=r.line, selected=r.selected, reference_path=r.reference_path,
                 secondary_path=r.secondary_path, reference_date=r.reference_date,
                 secondary_date=r.secondary_date) for r in rows if r.selected]


# ----------------------------------------------------------------------------- detections

def check_detections_layer(gpkg, layer="detections", require_validation=True):
    """Check that ``layer`` of GeoPackage ``gpkg`` exists and has the validation fields.

    Returns the list of missing SPEC fields (empty when complete). With
    ``require_validation`` raises :class:`InputError` when a validation field
    (status, comment, validated_by, validated_at) is missing, saying how to add them.
    """
    import sqlite3

    from .detect.detections_store import SPEC_FIELDS, VALIDATION_FIELDS
    if not os.path.isfile(gpkg):
        raise InputError("Detections file '%s' does not exist. Run the detection first."
                         % gpkg)
    try:
        conn = sqlite3.connect("file:%s?mode=ro" % os.path.abspath(gpkg), uri=True,
                               timeout=10)
        try:
            cols = [r[1] for r in conn.execute('PRAGMA table_info("%s")' % layer)]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise InputError("'%s' is not a readable GeoPackage (%s). Choose the detections.gpkg "
                         "written by SlideWatch." % (gpkg, exc)) from exc
    if not cols:
        raise InputError("'%s' has no layer '%s'. Choose the detections.gpkg written by "
                         "SlideWatch, or the layer holding the detections." % (gpkg, layer))
    missing = [name for name, _ in SPEC_FIELDS if name not in cols]
    no_val = [f for f in VALIDATION_FIELDS if f not in cols]
    if require_validation and no_val:
        raise InputError("Layer '%s' of '%s' has no validation field(s) %s. Open it in the "
                         "SlideWatch validation panel (which adds them) or call "
                         "core.detections_store.ensure_validation_fields('%s')."
                         % (layer, gpkg, ", ".join(no_val), gpkg))
    return missing


# ----------------------------------------------------------------------------- time series

def check_velocity_has_data(velocity_path, n_pairs=None, n_dates=None, min_obs=None):
    """Raise :class:`InputError` when the velocity raster has no finite pixel at all
    (``min_obs``, for the message: the inversion's, None = ``InversionParams.min_obs``).

    Called before the detection so that an empty inversion (too few pairs per pixel,
    clouded or empty images, a window too large for the image) is explained instead of
    failing later with an unclear message.
    """
    import rasterio
    try:
        with rasterio.open(velocity_path) as src:
            idx = 1
            for i, d in enumerate(src.descriptions, start=1):
                if d == BAND_V:
                    idx = i
            any_valid = False
            for _, win in src.block_windows(idx):
                if np.isfinite(src.read(idx, window=win)).any():
                    any_valid = True
                    break
    except rasterio.errors.RasterioIOError as exc:
        raise InputError("Cannot read the velocity raster '%s': %s. Run the inversion again."
                         % (velocity_path, exc)) from exc
    if any_valid:
        return
    if min_obs is None:
        from .series.inversion import InversionParams
        min_obs = InversionParams.min_obs
    extra = ""
    if n_pairs is not None and n_dates is not None:
        extra = " (%d pair(s) over %d date(s))" % (n_pairs, n_dates)
    raise InputError(
        "The inversion gave no valid pixel in '%s'%s: every pixel has fewer than %d usable "
        "pair measurements. Add images (each pixel needs at least %d valid pairs), remove "
        "clouded or empty images, check the 'status' band of the pair rasters (nodata, "
        "flat texture, low NCC), or lower the inversion option min_obs."
        % (velocity_path, extra, min_obs, min_obs))
