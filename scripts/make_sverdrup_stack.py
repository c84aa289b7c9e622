"""Rebuild the Sverdrup Glacier stack (8 Landsat 7 dates, summer 2000) used by
bench/bench_sverdrup.py, from github.com/yaramohajerani/FrontLearning (MIT; Landsat 7 ETM+
band 2 is public domain).

FrontLearning ships calving-front training crops as 8-bit PNGs in
`data/greenland_training.dir/data/{train,test}/images/`, named after their Landsat scene
(`LE07_L1TP_PPPRRR_YYYYMMDD_..._B2_Subset.png`). Its Sverdrup crops come from four WRS-2
path/rows (020007, 021006, 022006, 023006), resampled by its authors onto one common,
rotated 200 x 300 px grid; this script keeps the Landsat 7 band-2 crops of those path/rows
dated 2000-06-15 .. 2000-09-03 that have that shape (the summer stack, 8 dates), and writes
each as a single-band uint8 GeoTIFF `YYYY-MM-DD_LE07_PPPRRR.tif` without georeference
(bench_sverdrup.py gives them an assumed one). A README.txt in OUT records the source.

    python3 scripts/make_sverdrup_stack.py /work/.mirror/yaramohajerani+FrontLearning/repo \
        /work/realdata/sverdrup_l7

`repo` is a git directory (as `fetch` leaves it) or a work tree. With ``--assumed-grid``
the files get the assumed georeference of tests/data/sverdrup/regions.json (40 m pixels
in EPSG:3413, nodata 0, DEFLATE) and are named ``LE07_YYYYMMDD.tif``: that is how the
shipped copy in tests/data/sverdrup/ (8 x 45 kB) was made:

    python3 scripts/make_sverdrup_stack.py --assumed-grid <repo> tests/data/sverdrup
"""
from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import numpy as np

PATH_ROWS = ("020007", "021006", "022006", "023006")
FIRST, LAST = "20000615", "20000903"
SHAPE = (300, 200)          # rows, columns
NAME = re.compile(r"LE07_L1TP_(\d{6})_(\d{8})_\d{8}_01_T\d_B2_Subset\.png$")
FOLDERS = ("data/greenland_training.dir/data/train/images",
           "data/greenland_training.dir/data/test/images")


def _pngs(repo):
    """(file name, bytes) of the candidate crops, from a git dir or a work tree."""
    out = []
    if os.path.isdir(os.path.join(repo, FOLDERS[0])):
        for fo in FOLDERS:
            for name in sorted(os.listdir(os.path.join(repo, fo))):
                with open(os.path.join(repo, fo, name), "rb") as f:
                    out.append((name, f.read()))
        return out
    for fo in FOLDERS:
        names = subprocess.run(["git", "--git-dir", repo, "ls-tree", "--name-only",
                                "HEAD", fo + "/"], check=True, capture_output=True,
                               text=True).stdout.split()
        for path in names:
            blob = subprocess.run(["git", "--git-dir", repo, "show", "HEAD:" + path],
                                  check=True, capture_output=True).stdout
            out.append((os.path.basename(path), blob))
    return out


def _read_png(blob):
    import rasterio
    from rasterio.io import MemoryFile
    with MemoryFile(blob) as mf, mf.open() as s:
        a = s.read()
    return a[0] if a.shape[0] in (1, 2) else a[:3].mean(axis=0).round().astype(np.uint8)


REGIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data",
                       "sverdrup", "regions.json")


def _profile(a, assumed_grid):
    prof = dict(driver="GTiff", width=a.shape[1], height=a.shape[0], count=1, dtype="uint8")
    if assumed_grid:
        import json
        from rasterio.transform import from_origin
        with open(REGIONS) as f:
            g = json.load(f)["assumed_grid"]
        prof.update(crs=g["crs"], nodata=0, compress="deflate", predictor=2,
                    transform=from_origin(g["origin_x"], g["origin_y"], g["pixel_m"],
                                          g["pixel_m"]))
    return prof


def main(argv):
    assumed_grid = "--assumed-grid" in argv
    argv = [a for a in argv if a != "--assumed-grid"]
    if len(argv) != 3:
        print(__doc__)
        return 2
    repo, out = argv[1], argv[2]
    import rasterio
    os.makedirs(out, exist_ok=True)
    kept = []
    for name, blob in _pngs(repo):
        m = NAME.match(name)
        if not m or m.group(1) not in PATH_ROWS or not FIRST <= m.group(2) <= LAST:
            continue
        a = _read_png(blob)
        if a.shape != SHAPE:
            print("skipped %s: shape %s" % (name, a.shape))
            continue
        d = m.group(2)
        fn = ("LE07_%s.tif" % d if assumed_grid else
              "%s-%s-%s_LE07_%s.tif" % (d[:4], d[4:6], d[6:], m.group(1)))
        with rasterio.open(os.path.join(out, fn), "w", **_profile(a, assumed_grid)) as dst:
            dst.write(a.astype(np.uint8), 1)
        kept.append((fn, name))
    with open(os.path.join(out, "README.txt"), "w") as f:
        f.write("Sverdrup Glacier (NW Greenland), Landsat 7 ETM+ band 2, summer 2000.\n"
                "Source: github.com/yaramohajerani/FrontLearning (commit 70f0e4c, MIT,\n"
                "Copyright (c) 2020 Yara Mohajerani; Landsat data public domain, USGS),\n"
                "training crops on one common rotated 200 x 300 px grid, %s.\n"
                "Made by scripts/make_sverdrup_stack.py%s. Files:\n"
                % ("an ASSUMED georeference (40 m, EPSG:3413; the true one is unknown)"
                   if assumed_grid else "no georeference",
                   " --assumed-grid" if assumed_grid else ""))
        for fn, name in sorted(kept):
            f.write("  %s <- %s\n" % (fn, name))
    print("%d dates written to %s" % (len(kept), out))
    return 0 if kept else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
