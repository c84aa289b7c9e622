"""Detect images on different grids and bring them onto one common grid.

Correlating two images on different grids would silently measure the grid offset
as ground motion, so :func:`check_grids` reports every mismatch and
:func:`require_common_grid` refuses to go on; :func:`to_common_grid` warps every
image (``rasterio.warp.reproject``) onto one grid and returns a new catalog of
the warped copies (float32 GeoTIFFs, NaN = nodata, radiometric offset applied).

Target grid:

* CRS and pixel size of the *reference* image (``reference``: index, path or date
  string; default: the grid holding the most images, then the largest image),
* extent ``"intersection"`` (only the area every image covers, the default),
  ``"union"`` (every image's footprint; uncovered parts are NaN) or ``"reference"``
  (exactly the reference grid), snapped to the reference pixel lattice.
"""

import math
import os
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import InputError, ParameterError
from ..progress import as_progress

__all__ = ["GridReport", "check_grids", "require_common_grid", "common_grid_spec",
           "to_common_grid"]


@dataclass
class GridReport:
    n_grids: int
    groups: dict = field(default_factory=dict)      # grid_id -> list of paths
    message: str = ""

    @property
    def ok(self):
        return self.n_grids <= 1


def check_grids(catalog):
    """Report the grids of a catalog (``ok`` when every image shares one grid)."""
    groups = {}
    desc = {}
    for r in catalog.records:
        groups.setdefault(r.grid_id, []).append(r.path)
        desc[r.grid_id] = "%s %dx%d px, pixel %.3g, origin (%.3f, %.3f)" % (
            r.crs or "no CRS", r.width, r.height, abs(r.transform[0]) if r.transform else 0,
            r.transform[2] if r.transform else 0, r.transform[5] if r.transform else 0)
    if len(groups) <= 1:
        msg = "all %d image(s) share one grid" % len(catalog.records)
    else:
        msg = "images are on %d different grids:\n" % len(groups) + "\n".join(
            "  %s (%s): %d image(s), e.g. %s" % (g, desc[g], len(p), os.path.basename(p[0]))
            for g, p in groups.items())
    return GridReport(len(groups), groups, msg)


def require_common_grid(catalog):
    """Raise :class:`InputError` if the images are not all on one grid."""
    rep = check_grids(catalog)
    if not rep.ok:
        raise InputError("The images are not on one common grid, so they cannot be correlated "
                         "directly. " + rep.message + "\nEnable 'bring onto a common grid' in "
                         "the catalog step (or call core.common_grid.to_common_grid).")
    return rep


def _pick_reference(catalog, reference):
    recs = catalog.records
    if reference is None:
        groups = {}
        for i, r in enumerate(recs):
            groups.setdefault(r.grid_id, []).append(i)
        best = max(groups.values(), key=lambda idx: (len(idx), recs[idx[0]].width * recs[idx[0]].height))
        return best[0]
    if isinstance(reference, (int, np.integer)):
        if not 0 <= reference < len(recs):
            raise ParameterError("Reference image index %d out of range (0..%d)." % (
                reference, len(recs) - 1))
        return int(reference)
    for i, r in enumerate(recs):
        if os.path.abspath(str(reference)) == os.path.abspath(r.path) or str(reference) == r.iso:
            return i
    raise ParameterError("Reference image '%s' is not in the catalog (give a path or ISO date "
                         "of one of its images)." % reference)


def _bounds(r):
    from rasterio.transform import Affine, array_bounds
    return array_bounds(r.height, r.width, Affine(*r.transform))


def common_grid_spec(catalog, reference=None, extent="intersection"):
    """(crs, Affine transform, width, height) of the common grid."""
    from rasterio.crs import CRS
    from rasterio.transform import Affine
    from rasterio.warp import transform_bounds
    if extent not in ("intersection", "union", "reference"):
        raise ParameterError("extent must be 'intersection', 'union' or 'reference', not %r"
                             % extent)
    if not catalog.records:
        raise InputError("The catalog is empty: no image to put on a grid.")
    ref = catalog.records[_pick_reference(catalog, reference)]
    crs = CRS.from_string(ref.crs) if ref.crs else None
    t = Affine(*ref.transform)
    if abs(t.b) > 0 or abs(t.d) > 0:
        raise InputError("Reference image '%s' is rotated; choose a north-up image as "
                         "reference." % ref.path)
    if extent == "reference":
        return crs, t, ref.width, ref.height
    boxes = []
    for r in catalog.records:
        b = _bounds(r)
        if r.crs and crs is not None and r.crs != ref.crs:
            b = transform_bounds(CRS.from_string(r.crs), crs, *b, densify_pts=21)
        boxes.append(b)
    boxes = np.array(boxes)
    if extent == "intersection":
        left, bottom = boxes[:, 0].max(), boxes[:, 1].max()
        right, top = boxes[:, 2].min(), boxes[:, 3].min()
        if right <= left or top <= bottom:
            rb = boxes[_pick_reference(catalog, reference)]
            apart = [r.path for r, b in zip(catalog.records, boxes)
                     if b[0] >= rb[2] or b[2] <= rb[0] or b[1] >= rb[3] or b[3] <= rb[1]]
            raise InputError("The images do not overlap: there is no common area%s. Remove the "
                             "images outside the area of interest or use extent='union'." % (
                                 (" (%s do(es) not overlap the reference image '%s')" % (
                                     ", ".join("'%s'" % a for a in apart), ref.path))
                                 if apart else ""))
    else:
        left, bottom = boxes[:, 0].min(), boxes[:, 1].min()
        right, top = boxes[:, 2].max(), boxes[:, 3].max()
    xres, yres = t.a, t.e  # yres < 0 for north-up
    # snap to the reference lattice (inwards for intersection, outwards for union)
    def snap(x, fn):
        return int(round(x)) if abs(x - round(x)) < 1e-6 else int(fn(x))

    lo_fn, hi_fn = (math.ceil, math.floor) if extent == "intersection" else (math.floor, math.ceil)
    c0 = snap((left - t.c) / xres, lo_fn)
    c1 = snap((right - t.c) / xres, hi_fn)
    r0 = snap((top - t.f) / yres, lo_fn)
    r1 = snap((bottom - t.f) / yres, hi_fn)
    width, height = int(c1 - c0), int(r1 - r0)
    if width < 1 or height < 1:
        raise InputError("The common area of the images is smaller than one pixel.")
    return crs, Affine(xres, 0, t.c + c0 * xres, 0, yres, t.f + r0 * yres), width, height


def to_common_grid(catalog, out_folder, reference=None, extent="intersection",
                   resampling="cubic", progress=None, overwrite=False):
    """Warp every image of ``catalog`` onto one grid; return the catalog of the copies.

    Copies are written atomically as ``<out_folder>/<YYYYMMDD>_<original stem>.tif``
    (float32, NaN nodata, radiometric offset applied, tag ``ACQUISITION_DATE`` and
    ``SOURCE_PATH``). Existing up-to-date copies are reused unless ``overwrite``.
    Images already on the target grid are copied too so that the stack is uniform.
    """
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.warp import reproject
    from ..raster_io import write_bands
    from .catalog import Catalog, load_image

    progress = as_progress(progress)
    try:
        rs = getattr(Resampling, resampling)
    except AttributeError:
        raise ParameterError("Unknown resampling '%s' (use nearest, bilinear, cubic, "
                             "lanczos, average)." % resampling)
    crs, transform, width, height = common_grid_spec(catalog, reference, extent)
    os.makedirs(out_folder, exist_ok=True)
    out = []
    n = len(catalog.records)
    for k, r in enumerate(catalog.records):
        progress.check()
        progress.update(k / max(n, 1), "warping %s" % os.path.basename(r.path))
        stem = os.path.splitext(os.path.basename(r.path))[0]
        dst_path = os.path.join(out_folder, "%s_%s.tif" % (r.date.strftime("%Y%m%d"), stem))
        if overwrite or not (os.path.exists(dst_path) and
                             os.path.getmtime(dst_path) >= os.path.getmtime(r.path)):
            src_arr = load_image(r)
            dst = np.full((height, width), np.nan, np.float32)
            reproject(src_arr, dst, src_transform=rasterio.Affine(*r.transform),
                      src_crs=r.crs or crs, src_nodata=np.nan, dst_transform=transform,
                      dst_crs=crs, dst_nodata=np.nan, resampling=rs)
            write_bands(dst_path, [dst], transform, crs, descriptions=[r.band or "band 1"],
                        tags={"ACQUISITION_DATE": r.iso, "SOURCE_PATH": r.path,
                              "SENSOR": r.sensor})
        else:
            with rasterio.open(dst_path) as s:
                dst = s.read(1)
        valid = float(np.isfinite(dst).mean())
        out.append(replace(r, path=os.path.abspath(dst_path), band_index=1,
                           crs=crs.to_string() if crs else "", width=width, height=height,
                           transform=tuple(transform)[:6], grid_id="common",
                           nodata=float("nan"), zero_is_nodata=False, radiometric_offset=0.0,
                           valid_fraction=round(valid, 4)))
    progress.update(1.0, "%d image(s) on the common grid %dx%d" % (n, width, height))
    return Catalog(out, list(catalog.problems), list(catalog.notes) + [
        "warped onto a common grid (%s, %dx%d px, extent=%s) in %s" % (
            crs.to_string() if crs else "no CRS", width, height, extent, out_folder)])
