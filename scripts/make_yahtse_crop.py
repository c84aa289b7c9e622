"""Cut the small real-data crop of tests/data/yahtse/ from ../shared/data (run once).

Landsat 8 B8 pair of Yahtse glacier (2016-07-18, 2016-08-03; 15 m; CARST's example data,
credits in tests/data/yahtse/SOURCE_CREDITS.txt): rows 520-1087, columns 800-1200 of the
1087 x 1698 crops, i.e. the fast lower tongue (up to ~20 m/day = 21 px in 16 days) with
stable rock beside it; the rock polygons rasterised on that grid (rock.tif, 1 = rock);
CARST's raw east/north offsets cropped on their own 120 m grid.

    .venv/bin/python scripts/make_yahtse_crop.py
"""
import os
import shutil
import sys

import numpy as np
import rasterio
from rasterio.windows import Window, from_bounds

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import bench_yahtse as B  # noqa: E402

OUT = os.path.join(ROOT, "tests", "data", "yahtse")
WIN = Window(800, 520, 400, 567)


def main():
    os.makedirs(OUT, exist_ok=True)
    for src_path, name in ((B.REF, "LC08_20160718_B8.tif"), (B.SEC, "LC08_20160803_B8.tif")):
        with rasterio.open(src_path) as src:
            a = src.read(1, window=WIN)
            prof = dict(driver="GTiff", width=WIN.width, height=WIN.height, count=1,
                        dtype=a.dtype, crs=src.crs, transform=src.window_transform(WIN),
                        compress="deflate", predictor=2)
        with rasterio.open(os.path.join(OUT, name), "w", **prof) as dst:
            dst.write(a, 1)
            T = prof["transform"]
            crs = prof["crs"]
    from rasterio.features import rasterize
    m = rasterize(((dict(type="Polygon", coordinates=[r]), 1)
                   for r in B.read_gmt_polygons(B.ROCK)), out_shape=(WIN.height, WIN.width),
                  transform=T, dtype="uint8")
    with rasterio.open(os.path.join(OUT, "rock.tif"), "w", driver="GTiff", width=WIN.width,
                       height=WIN.height, count=1, dtype="uint8", crs=crs, transform=T,
                       compress="deflate") as dst:
        dst.write(m, 1)
    bounds = rasterio.transform.array_bounds(WIN.height, WIN.width, T)
    for path, name in ((B.EAST, "carst_east_m.tif"), (B.NORTH, "carst_north_m.tif")):
        with rasterio.open(path) as src:
            w = from_bounds(*(bounds[0], bounds[1], bounds[2], bounds[3]),
                            transform=src.transform).round_offsets().round_lengths()
            a = src.read(1, window=w)
            prof = dict(driver="GTiff", width=a.shape[1], height=a.shape[0], count=1,
                        dtype=a.dtype, crs=src.crs, transform=src.window_transform(w),
                        nodata=src.nodata, compress="deflate")
        with rasterio.open(os.path.join(OUT, name), "w", **prof) as dst:
            dst.write(a, 1)
    shutil.copy(os.path.join(B.DATA, "SOURCE_CREDITS.txt"), OUT)
    print("written", sorted(os.listdir(OUT)))


if __name__ == "__main__":
    main()
