"""Convert GIV's Perito Moreno example (23 JPEG dates) into a SlideWatch input folder.

Source: github.com/MaxVWDV/glacier-image-velocimetry (GPL-3.0), folder `Perito_Moreno/`:
8-bit RGB JPEGs named YYYYMMDD.jpg, no georeference, no cloud mask, no metadata, black
outside the glacier polygon. Nothing of it is shipped in this repository (licence, size);
this script rebuilds the folder used by bench/bench_giv.py and docs/benchmarks.md:

    python3 scripts/make_giv_stack.py /work/.mirror/MaxVWDV+glacier-image-velocimetry/repo OUT

`repo` is a git directory (as `fetch` leaves it) or a work tree. Each image becomes a grey
single-band uint8 GeoTIFF `S2_YYYYMMDD.tif` (mean of R, G, B) on an assumed 10 m grid in
EPSG:32718 (UTM 18S, Perito Moreno's zone), origin arbitrary but the same for every date;
pure black pixels (the outside of GIV's glacier mask) are nodata 0.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import rasterio
from PIL import Image
from rasterio.transform import from_origin

PIXEL_M = 10.0
ORIGIN = (400000.0, 4420000.0)       # arbitrary, inside UTM 18S
CRS = "EPSG:32718"


def _list_jpegs(repo: str) -> list[tuple[str, bytes]]:
    """(name, bytes) of Perito_Moreno/YYYYMMDD.jpg from a git dir or a work tree."""
    folder = os.path.join(repo, "Perito_Moreno")
    out = []
    if os.path.isdir(folder):
        for name in sorted(os.listdir(folder)):
            if name[:8].isdigit() and name.endswith(".jpg"):
                with open(os.path.join(folder, name), "rb") as f:
                    out.append((name, f.read()))
        return out
    names = subprocess.run(["git", "--git-dir", repo, "ls-tree", "--name-only", "HEAD",
                            "Perito_Moreno/"], check=True, capture_output=True,
                           text=True).stdout.split()
    for path in sorted(names):
        name = os.path.basename(path)
        if name[:8].isdigit() and name.endswith(".jpg"):
            data = subprocess.run(["git", "--git-dir", repo, "show", f"HEAD:{path}"],
                                  check=True, capture_output=True).stdout
            out.append((name, data))
    return out


def main(repo: str, out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    jpegs = _list_jpegs(repo)
    if not jpegs:
        raise SystemExit(f"no Perito_Moreno/YYYYMMDD.jpg found in {repo}")
    transform = from_origin(ORIGIN[0], ORIGIN[1], PIXEL_M, PIXEL_M)
    for name, data in jpegs:
        rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32)
        grey = np.clip(np.round(rgb.mean(axis=2)), 0, 255).astype(np.uint8)
        path = os.path.join(out_dir, f"S2_{name[:8]}.tif")
        with rasterio.open(path, "w", driver="GTiff", width=grey.shape[1],
                           height=grey.shape[0], count=1, dtype="uint8", crs=CRS,
                           transform=transform, nodata=0, compress="deflate") as dst:
            dst.write(grey, 1)
    print(f"{len(jpegs)} dates written to {out_dir}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
