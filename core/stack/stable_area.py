"""Stable-area mask: ground the analyst knows does not move, on the images' grid.

A user's stable area (rock outcrops, roads, villages, forest known not to move) is the
surest reference when the moving part of a scene is large: a glacier, a whole valley
flank. Without it, each pair's co-registration offset and the detection's bias model are
estimated from the data alone (:mod:`.stable_offset`, :mod:`.detection`), which fails
when almost everything moves.

:func:`rasterise_stable_area` accepts either

* a **raster** (any grid and CRS): non-zero, finite, not-nodata pixels are stable; it is
  resampled with nearest neighbour onto the grid, or
* a **polygon layer** (GeoPackage, shapefile, GeoJSON, FlatGeobuf, KML, GML, any OGR
  format; ``path|layername=name`` picks one layer of a multi-layer file): the inside of
  the polygons is stable; the polygons are reprojected to the grid's CRS and burnt with
  ``all_touched=False`` (a pixel is stable when its centre is inside).

and writes a ``uint8`` GeoTIFF (1 = stable, 0 = unknown) on the images' grid, which
:func:`.pair_correlation.correlate_pair_rasters` (``stable_mask``) and
:func:`.detection.detect_from_folder` (``stable_mask_path``) read.

:func:`find_stable_source` is the pipeline's ``stable_mask="auto"``: a raster or polygon
file of the input folder whose name holds the word *stable* (``stable_mask.tif``,
``stable_area.gpkg``, ``rock_stable.shp``).
"""

import hashlib
import json
import os
import re

import numpy as np

from ..errors import InputError

__all__ = ["VECTOR_EXTENSIONS", "MIN_STABLE_PIXELS", "find_stable_source",
           "rasterise_stable_area", "split_layer_source", "stable_mask_name"]

#: polygon-layer file extensions recognised (any OGR vector format can be given explicitly)
VECTOR_EXTENSIONS = (".gpkg", ".shp", ".geojson", ".json", ".fgb", ".kml", ".gml",
                     ".sqlite")
RASTER_EXTENSIONS = (".tif", ".tiff", ".vrt", ".img", ".jp2")

#: fewer stable pixels than this on the image grid is an error: no robust median from it
MIN_STABLE_PIXELS = 100

_STABLE_WORD = re.compile(r"(?i)(?<![a-z])stable")


def split_layer_source(source):
    """``(path, layer name or None)`` of ``path|layername=name`` (QGIS's OGR source)."""
    text = os.fspath(source)
    path, _, rest = text.partition("|")
    layer = None
    for part in rest.split("|"):
        key, _, value = part.partition("=")
        if key.strip().lower() == "layername" and value:
            layer = value.strip()
    return path, layer


def _is_vector(path):
    return os.path.splitext(path)[1].lower() in VECTOR_EXTENSIONS


def find_stable_source(folder):
    """The stable-area file of ``folder`` (its own files, not sub-folders), or None.

    A raster or polygon file whose name holds the word *stable*. Several candidates: the
    polygon layer first (drawn by a person), then the first by name; the others are
    returned as the second item so that the caller can say which one was taken.
    """
    if not folder or not os.path.isdir(folder):
        return None, []
    cands = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        ext = os.path.splitext(name)[1].lower()
        if not os.path.isfile(path) or not _STABLE_WORD.search(name):
            continue
        if ext in VECTOR_EXTENSIONS or ext in RASTER_EXTENSIONS:
            cands.append(path)
    if not cands:
        return None, []
    cands.sort(key=lambda p: (not _is_vector(p), os.path.basename(p).lower()))
    return cands[0], cands[1:]


def _grid_of(grid):
    """(crs, transform, height, width) of a raster path or a dict with those keys."""
    if isinstance(grid, dict):
        return grid["crs"], grid["transform"], int(grid["height"]), int(grid["width"])
    import rasterio
    with rasterio.open(grid) as src:
        return src.crs, src.transform, src.height, src.width


def stable_mask_name(source, grid):
    """File name of the rasterised mask: changes when the source file or the grid does
    (so that outputs made with another mask are never taken as up to date)."""
    path, layer = split_layer_source(source)
    crs, transform, height, width = _grid_of(grid)
    files = [path]
    if path.lower().endswith(".shp"):
        stem = path[:-4]
        files += [stem + e for e in (".dbf", ".shx", ".prj")]
    stamp = []
    for f in files:
        try:
            st = os.stat(f)
            stamp.append([os.path.abspath(f), st.st_size, st.st_mtime_ns])
        except OSError:
            stamp.append([f, None])
    key = json.dumps([stamp, layer, str(crs), list(transform)[:6], height, width])
    return "stable_mask_%s.tif" % hashlib.sha256(key.encode()).hexdigest()[:12]


def _raster_on_grid(path, crs, transform, height, width):
    import rasterio
    from rasterio.warp import Resampling, reproject
    try:
        src = rasterio.open(path)
    except Exception as exc:
        raise InputError("Cannot read the stable-area raster '%s': %s" % (path, exc))
    with src:
        a = src.read(1, masked=True)
        valid = ~np.ma.getmaskarray(a)
        data = np.asarray(a.filled(0), dtype=np.float64)
        stable = (valid & np.isfinite(data) & (data != 0)).astype(np.uint8)
        same = (src.crs == crs and src.transform == transform
                and (src.height, src.width) == (height, width))
        if same:
            return stable
        if src.crs is None:
            raise InputError("The stable-area raster '%s' has no CRS: it cannot be placed on "
                             "the images' grid." % path)
        out = np.zeros((height, width), np.uint8)
        reproject(stable, out, src_transform=src.transform, src_crs=src.crs,
                  dst_transform=transform, dst_crs=crs, resampling=Resampling.nearest,
                  src_nodata=None, dst_nodata=0)
        return out


def _polygons_on_grid(path, layer_name, crs, transform, height, width):
    try:
        from osgeo import ogr, osr
    except ImportError as exc:      # GDAL's Python bindings come with QGIS and rasterio
        raise InputError("Reading the polygon layer '%s' needs GDAL's Python bindings "
                         "(python3-gdal): %s" % (path, exc))
    from rasterio import features
    ogr.UseExceptions()
    try:
        ds = ogr.Open(path)
    except Exception as exc:
        ds = None
        why = str(exc)
    else:
        why = "not a vector file GDAL can read"
    if ds is None:
        raise InputError("Cannot read the stable-area polygons '%s': %s." % (path, why))
    if layer_name:
        layer = ds.GetLayerByName(layer_name)
        if layer is None:
            names = [ds.GetLayerByIndex(i).GetName() for i in range(ds.GetLayerCount())]
            raise InputError("The file '%s' has no layer '%s' (layers: %s)."
                             % (path, layer_name, ", ".join(names)))
        layers = [layer]
    else:
        layers = [ds.GetLayerByIndex(i) for i in range(ds.GetLayerCount())]
    dst = osr.SpatialReference()
    dst.ImportFromWkt(crs.to_wkt())
    dst.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    shapes, n_other = [], 0
    for layer in layers:
        srs = layer.GetSpatialRef()
        tr = None
        if srs is not None:
            srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
            if not srs.IsSame(dst):
                tr = osr.CoordinateTransformation(srs, dst)
        layer.ResetReading()
        for feat in layer:
            geom = feat.GetGeometryRef()
            if geom is None:
                continue
            flat = ogr.GT_Flatten(geom.GetGeometryType())
            if flat not in (ogr.wkbPolygon, ogr.wkbMultiPolygon, ogr.wkbCurvePolygon,
                            ogr.wkbMultiSurface):
                n_other += 1
                continue
            geom = geom.Clone()
            if flat in (ogr.wkbCurvePolygon, ogr.wkbMultiSurface):
                geom = geom.GetLinearGeometry()
            if tr is not None:
                geom.Transform(tr)
            shapes.append((json.loads(geom.ExportToJson()), 1))
    if not shapes:
        raise InputError("The stable-area layer '%s' holds no polygon (%d feature(s) of "
                         "another geometry type): draw polygons around ground known not to "
                         "move." % (path, n_other))
    return features.rasterize(shapes, out_shape=(height, width), transform=transform,
                              fill=0, dtype=np.uint8, all_touched=False)


def rasterise_stable_area(source, grid, out_path, min_pixels=MIN_STABLE_PIXELS):
    """Write ``source`` (raster or polygon layer) as a 0/1 mask on ``grid``.

    Parameters
    ----------
    source : raster or polygon-layer path (``path|layername=name`` accepted)
    grid : a raster on the images' grid, or a dict with ``crs``, ``transform``,
        ``height``, ``width``
    out_path : the GeoTIFF to write (``uint8``, 1 = stable); reused when it exists
        (its name should come from :func:`stable_mask_name`, which changes with the
        source and the grid)
    min_pixels : fewer stable pixels than this is an :class:`InputError`

    Returns a dict: ``path``, ``source``, ``kind`` ("raster" | "polygons"),
    ``n_stable`` (pixels), ``share`` (of the grid).
    """
    from ..raster_io import write_bands
    import rasterio

    path, layer = split_layer_source(source)
    if not os.path.exists(path):
        raise InputError("The stable-area mask '%s' does not exist. Give a raster (non-zero "
                         "= stable) or a polygon layer of ground known not to move, or leave "
                         "it empty." % path)
    kind = "polygons" if _is_vector(path) or layer else "raster"
    crs, transform, height, width = _grid_of(grid)
    if crs is None:
        raise InputError("The images have no CRS: a stable-area mask cannot be placed on "
                         "them.")
    if os.path.exists(out_path):
        with rasterio.open(out_path) as src:
            n = int(np.count_nonzero(src.read(1)))
        return dict(path=out_path, source=os.fspath(source), kind=kind, n_stable=n,
                    share=n / float(height * width))
    if kind == "raster":
        try:
            m = _raster_on_grid(path, crs, transform, height, width)
        except InputError:
            raise
        except Exception as exc:
            # a vector file with an unknown extension: try it as polygons
            try:
                m = _polygons_on_grid(path, layer, crs, transform, height, width)
                kind = "polygons"
            except InputError:
                raise InputError("Cannot read the stable-area mask '%s' as a raster (%s) "
                                 "or as polygons." % (path, exc))
    else:
        m = _polygons_on_grid(path, layer, crs, transform, height, width)
    n = int(np.count_nonzero(m))
    if n < min_pixels:
        raise InputError("The stable-area mask '%s' marks %d pixel(s) of the images' grid "
                         "as stable (at least %d are needed): it does not overlap the images "
                         "enough%s." % (path, n, min_pixels,
                                        " (check its CRS)" if n == 0 else ""))
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    write_bands(out_path, [m], transform, crs, dtype="uint8", nodata=None,
                descriptions=["stable"],
                tags={"STABLE_SOURCE": os.path.abspath(path) + ("|layername=%s" % layer
                                                                 if layer else ""),
                      "STABLE_KIND": kind})
    return dict(path=out_path, source=os.fspath(source), kind=kind, n_stable=n,
                share=n / float(height * width))
