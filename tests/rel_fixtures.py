"""Small rasters for the reliability tests (issue 9): a textured scene, shifted per date.

Kept tiny (120 x 120 px) so that a whole pipeline run takes a second or two.
"""

import os

import numpy as np

SIZE = 120
#: columns shift of date k relative to date 0 (pixels): k * SHIFT_PX
SHIFT_PX = 0.3
#: a "landslide" patch moving by k * SLIDE_PX extra pixels (rows, cols)
SLIDE = (slice(40, 80), slice(40, 80))
SLIDE_PX = 0.8


def _base(seed=0, n=SIZE + 20):
    from scipy.ndimage import gaussian_filter
    rng = np.random.default_rng(seed)
    return gaussian_filter(rng.normal(size=(n, n)), 1.5) * 1000 + 3000


_BASE = {}


def image(k, seed=0, slide=False, noise=5.0):
    """Date k of the scene: the whole image shifted by k * SHIFT_PX columns (and the
    landslide patch by k * SLIDE_PX more when ``slide``)."""
    from scipy.ndimage import shift as ndshift
    if seed not in _BASE:
        _BASE[seed] = _base(seed)
    base = _BASE[seed]
    a = ndshift(base, (0, SHIFT_PX * k), order=3)
    if slide and k:
        moved = ndshift(base, (0.5 * SLIDE_PX * k, SHIFT_PX * k + SLIDE_PX * k), order=3)
        r, c = SLIDE
        a[r.start + 10:r.stop + 10, c.start + 10:c.stop + 10] = \
            moved[r.start + 10:r.stop + 10, c.start + 10:c.stop + 10]
    a = a[10:10 + SIZE, 10:10 + SIZE]
    rng = np.random.default_rng(1000 * seed + k)
    return (a + rng.normal(size=a.shape) * noise).astype(np.float32)


def write(path, arr, crs="EPSG:32633", x0=500000.0, y0=5000000.0, res=10.0, dtype="float32",
          nodata=None, tags=None):
    import rasterio
    from rasterio.transform import from_origin
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[None]
    with rasterio.open(path, "w", driver="GTiff", height=arr.shape[1], width=arr.shape[2],
                       count=arr.shape[0], dtype=dtype, crs=crs,
                       transform=from_origin(x0, y0, res, res), nodata=nodata) as dst:
        dst.write(arr.astype(dtype))
        if tags:
            dst.update_tags(**tags)
    return str(path)


DATES = ("20200101", "20200301", "20200501", "20200701", "20200901")


def stack(folder, n=3, slide=False, seed=0, **kw):
    """``n`` dated images img_YYYYMMDD.tif in ``folder``; returns their paths."""
    os.makedirs(folder, exist_ok=True)
    return [write(os.path.join(folder, "img_%s.tif" % d), image(k, seed, slide), **kw)
            for k, d in enumerate(DATES[:n])]


def fast_params(**kw):
    """Pipeline parameters for the tiny stacks (all pairs, small windows, no overview)."""
    from slidewatch.core.run.pipeline import PipelineParams
    base = dict(window=16, step=8, search=4, pair_strategy="all", write_overview=False,
                max_workers=1, dem_path="")
    base.update(kw)
    return PipelineParams(**base)


def read_all(path):
    """Every band of a raster as one float64 array (NaN kept)."""
    import rasterio
    with rasterio.open(path) as src:
        return src.read().astype(np.float64)
