"""Raster reading and atomic GeoTIFF writing.

Every output of SlideWatch is written under a temporary name in the destination
folder and renamed over the final name only once complete (``os.replace`` is
atomic on POSIX within a file system). A crash, a cancel or a full disk never
leaves a truncated file under the final name.
"""

import contextlib
import errno
import os
import time
import uuid

import numpy as np

from .errors import InputError, OutputError

#: Creation options for float outputs: tiled, compressed, predictor for floats.
GTIFF_FLOAT_OPTIONS = dict(driver="GTiff", tiled=True, blockxsize=256, blockysize=256,
                           compress="deflate", predictor=3, zlevel=4, bigtiff="if_safer")


def temporary_name(final_path):
    """A hidden temporary path beside ``final_path`` (same file system)."""
    folder, name = os.path.split(os.path.abspath(final_path))
    return os.path.join(folder, ".%s.%s.partial" % (name, uuid.uuid4().hex[:8]))


def remove_stale_partials(folder, older_than_s=3600.0):
    """Delete hidden temporary files (``.<name>.<id>.partial*``) left in ``folder`` and its
    sub-folders by a run that was killed before it could clean up.

    Only files older than ``older_than_s`` seconds are removed, so the temporary files of a
    run still writing into the same folder are left alone. Returns the removed paths.
    """
    removed = []
    if not os.path.isdir(folder):
        return removed
    now = time.time()
    for root, _dirs, files in os.walk(folder):
        for name in files:
            if not (name.startswith(".") and ".partial" in name):
                continue
            path = os.path.join(root, name)
            try:
                if now - os.path.getmtime(path) >= older_than_s:
                    os.remove(path)
                    removed.append(path)
            except OSError:
                pass  # vanished or not ours to remove: leave it
    return removed


def ensure_writable_folder(folder):
    """Create ``folder`` if needed and check that files can be written in it."""
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise OutputError("Cannot create output folder '%s': %s. Choose a folder you can "
                          "write to." % (folder, exc.strerror or exc)) from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError("Output folder '%s' is not writable. Choose a folder you can "
                          "write to, or fix its permissions." % folder)


def _describe_os_error(exc, path):
    if getattr(exc, "errno", None) == errno.ENOSPC:
        return ("The disk is full while writing '%s'. Free some space (or choose another "
                "output folder) and run again: finished outputs are kept and reused." % path)
    if getattr(exc, "errno", None) in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "Permission denied while writing '%s'. Choose a writable output folder." % path
    return "Could not write '%s': %s" % (path, exc)


@contextlib.contextmanager
def atomic_output(final_path):
    """Context manager yielding a temporary path; renamed to ``final_path`` on success.

    On any exception (including :class:`~slidewatch.core.errors.Cancelled`), the
    temporary file is removed and the final path is left untouched.
    """
    final_path = os.path.abspath(final_path)
    ensure_writable_folder(os.path.dirname(final_path))
    tmp = temporary_name(final_path)
    try:
        yield tmp
        _verify_complete(tmp, final_path)
        os.replace(tmp, final_path)
    except OSError as exc:
        _remove_quietly(tmp)
        raise OutputError(_describe_os_error(exc, final_path)) from exc
    except BaseException:
        _remove_quietly(tmp)
        raise
    finally:
        # rasterio may leave an .aux.xml beside the temporary file
        _remove_quietly(tmp + ".aux.xml")


_RASTER_EXTS = (".tif", ".tiff")


def _verify_complete(tmp, final_path):
    """Make sure ``tmp`` is completely on disk before it gets its final name.

    GDAL reports some write failures (a full disk in particular) only as logged errors,
    and a file system may report ENOSPC only when the data is flushed: so the file is
    fsync'ed (an OSError here becomes an :class:`OutputError`) and GeoTIFFs are read back
    block by block; a file that cannot be read back is never renamed.
    """
    if not os.path.isfile(tmp):
        return  # the writer produced nothing: os.replace reports it
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if not final_path.lower().endswith(_RASTER_EXTS):
        return
    import rasterio
    try:
        with rasterio.open(tmp) as src:
            for i in range(1, src.count + 1):
                for _, win in src.block_windows(i):
                    src.read(i, window=win)
    except Exception as exc:
        import shutil
        folder = os.path.dirname(final_path)
        try:
            full = shutil.disk_usage(folder).free < 1024 * 1024
        except OSError:
            full = False
        if full:
            raise OSError(errno.ENOSPC, "No space left on device") from exc
        raise OutputError("Writing '%s' did not complete (%s). Check free disk space and "
                          "permissions, then run again." % (final_path, exc)) from exc


def _remove_quietly(path):
    try:
        os.remove(path)
    except OSError:
        pass


def write_text_atomic(path, text):
    """Write a text file atomically (CSV, JSON, logs)."""
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())


def write_bands(path, bands, transform, crs, descriptions=None, tags=None,
                band_tags=None, dtype="float32", nodata=np.nan):
    """Write a multi-band GeoTIFF atomically in one go.

    Parameters
    ----------
    bands : sequence of 2-D arrays or a 3-D array (band, row, col)
    descriptions : list of str, one per band (GDAL band descriptions)
    tags : dict of dataset-level metadata (values converted to str)
    band_tags : list of dicts, one per band, or None
    """
    import rasterio

    bands = [np.asarray(b) for b in bands]
    if not bands:
        raise ValueError("write_bands needs at least one band")
    height, width = bands[0].shape
    profile = dict(GTIFF_FLOAT_OPTIONS, height=height, width=width, count=len(bands),
                   dtype=dtype, crs=crs, transform=transform, nodata=nodata)
    if height < 256 or width < 256:
        profile.update(tiled=False)
        profile.pop("blockxsize"), profile.pop("blockysize")
    if not np.issubdtype(np.dtype(dtype), np.floating):
        profile["predictor"] = 2
    with atomic_output(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            for i, band in enumerate(bands, start=1):
                dst.write(band.astype(dtype, copy=False), i)
                if descriptions:
                    dst.set_band_description(i, descriptions[i - 1])
                if band_tags and band_tags[i - 1]:
                    dst.update_tags(i, **{k: str(v) for k, v in band_tags[i - 1].items()})
            if tags:
                dst.update_tags(**{k: str(v) for k, v in tags.items()})


def band_index_by_description(src, description):
    """1-based index of the band whose description is ``description`` (rasterio dataset)."""
    for i, d in enumerate(src.descriptions, start=1):
        if d == description:
            return i
    raise InputError("'%s' has no band described as '%s' (bands: %s). Is it a SlideWatch "
                     "output?" % (src.name, description, ", ".join(str(d) for d in src.descriptions)))
