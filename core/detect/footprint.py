"""Window footprint of the estimates, for counting independent observations (issue 18).

The correlator's wide-window pass (``wide_sigma``, core/correlation.py) correlates the
windows it predicts imprecise again with a window twice as high and wide. Those estimates
share image content with four times as many neighbours: their noise is correlated over
about four times the area. Each pair's footprint file records it per window
(``pairs/footprint/<pair name>.npy``, :func:`.products.pair_footprint_path`: window area
relative to the nominal window, 1 or 4, NaN where not valid, on the pair raster's grid;
the pair rasters keep the five SPEC bands).

The detector measures the noise correlation area on stable ground (``A``, pixels,
:func:`.noise_model.correlation_area`) and divides an object's pixels by it to count its
independent observations. When the windows of the stable ground and of the object were not
widened alike (Yahtse: 13 % of the rock windows, 3 % of the glacier's), one scene-wide
area over- or under-counts. With the footprint ``f`` of each pixel, the stable ground's
area is taken as the footprint-weighted mix of one base area ``A1`` (nominal windows):
``A = A1 * mean(f over stable ground)``, and each pixel of an object counts for
``1 / (A1 * f)`` independent cells. Without footprints (imported pairs, older runs),
``f = 1`` everywhere and the count is the scene-wide one.

``timeseries/footprint.tif`` (:data:`.products.FOOTPRINT_TIF`) holds, per pixel, the mean
footprint of the pairs inverted (over the pairs valid there), written beside the series.
"""

import os

import numpy as np

from .. import products as prod


def save_pair_footprint(pair_path, footprint):
    """Save the window footprints of the pair raster ``pair_path`` (2-D, on its grid) as
    float32 ``.npy`` at :func:`.products.pair_footprint_path`, atomically
    (:func:`.raster_io.atomic_output`). A numpy file and not a GeoTIFF: a further GDAL write
    by each pair thread while the others wrote their blocks crashed the process (GDAL's
    process-wide state; tests/test_step_drivers.py, tests/test_stable_area.py)."""
    from ..raster_io import atomic_output
    path = prod.pair_footprint_path(pair_path)
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(footprint, np.float32), allow_pickle=False)
    return path


def read_pair_footprint(pair_path):
    """The window footprints of a pair raster (2-D float32, :func:`.products.pair_footprint_path`),
    or None when it has none (imported pairs, older runs)."""
    path = prod.pair_footprint_path(pair_path)
    if not os.path.isfile(path):
        return None
    return np.load(path, allow_pickle=False)


def mean_footprint(pair_paths, shape):
    """Per-pixel mean footprint (float32 of ``shape``) over the pairs ``pair_paths`` that
    have footprints, where each is valid; 1 where none is. None when no pair has any
    (imported pairs, older runs) or one is not on the grid ``shape``."""
    total = np.zeros(shape, np.float64)
    count = np.zeros(shape, np.int32)
    found = False
    for p in pair_paths:
        f = read_pair_footprint(p)
        if f is None:
            continue
        if f.shape != tuple(shape):
            return None
        found = True
        ok = np.isfinite(f)
        total[ok] += f[ok]
        count += ok
    if not found:
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(count > 0, total / np.maximum(count, 1), 1.0)
    return out.astype(np.float32)


def write_footprint(pair_paths, timeseries_dir, shape, transform, crs):
    """Write ``timeseries_dir/footprint.tif`` (:func:`mean_footprint` of the pairs);
    returns its path, or None (and removes a stale file) when no pair has footprints."""
    from ..raster_io import write_bands
    path = os.path.join(timeseries_dir, prod.FOOTPRINT_TIF)
    fp = mean_footprint(pair_paths, shape)
    if fp is None:
        if os.path.exists(path):
            os.remove(path)
        return None
    write_bands(path, [fp], transform, crs, descriptions=[prod.BAND_FOOTPRINT],
                tags={"CONTENT": "mean window area of the inverted pairs relative to the "
                                 "nominal window (1 = nominal; 4 = the wide-window pass)"})
    return path


def read_footprint(timeseries_folder, shape):
    """The footprint map of a series folder (2-D float64 of ``shape``), or None when absent
    or on another grid."""
    path = os.path.join(timeseries_folder, prod.FOOTPRINT_TIF)
    if not os.path.isfile(path):
        return None
    import rasterio
    with rasterio.open(path) as src:
        if (src.height, src.width) != tuple(shape):
            return None
        return src.read(1).astype(np.float64)


def cells_per_pixel(footprint, stable, corr_area, shape):
    """Independent noise cells each pixel counts for: ``1 / (A1 * f)`` with the base area
    ``A1 = corr_area / mean(f over stable)`` (module doc). ``footprint`` None gives the
    scene-wide ``1 / corr_area``. Footprints are clipped to >= 1 (NaN -> 1)."""
    if footprint is None:
        return np.full(shape, 1.0 / corr_area)
    f = np.clip(np.nan_to_num(np.asarray(footprint, np.float64), nan=1.0), 1.0, None)
    fs = f[np.asarray(stable, bool)] if stable is not None else f.ravel()
    fbar = float(fs.mean()) if fs.size else 1.0
    base = max(corr_area / fbar, 1.0)
    return 1.0 / (base * f)
