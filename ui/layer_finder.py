"""Find SlideWatch outputs among the layers of the QGIS project.

Layers are recognised by their file name (SPEC names: ``ts_east_m.tif``,
``ts_north_m.tif``, ``velocity.tif``, ``detections.gpkg|layername=detections``) and, for
renamed copies, by their band descriptions / fields. When nothing is found the docks let the
user choose the output folder instead (``SeriesSources.from_folder``).
"""

import os

from ..core import products as prod
from ..core.series.timeseries_reader import SeriesSources

VELOCITY_DESCRIPTIONS = prod.VELOCITY_BANDS[:3]
DETECTION_FIELDS = ("score", "status", "area_m2")


def layer_path(layer):
    """File path of a file-based layer (without '|layername=...' options), or ''."""
    if layer is None:
        return ""
    source = layer.source()
    path = source.split("|", 1)[0]
    return path if os.path.exists(path) else ""


def _raster_descriptions(path):
    try:
        import rasterio

        with rasterio.open(path) as src:
            return list(src.descriptions)
    except Exception:
        return []


def _looks_like_dates(descriptions):
    import datetime

    if not descriptions:
        return False
    for d in descriptions:
        try:
            datetime.date.fromisoformat(str(d)[:10])
        except ValueError:
            return False
    return True


def classify_layer(layer):
    """'ts_east', 'ts_north', 'velocity', 'detections', 'pair' or None."""
    from qgis.core import QgsRasterLayer, QgsVectorLayer

    path = layer_path(layer)
    if not path:
        return None
    name = os.path.basename(path).lower()
    if isinstance(layer, QgsRasterLayer):
        if name == prod.TS_EAST_TIF:
            return "ts_east"
        if name == prod.TS_NORTH_TIF:
            return "ts_north"
        if name == prod.VELOCITY_TIF:
            return "velocity"
        if name.startswith(prod.PAIR_PREFIX) and name.endswith(prod.PAIR_EXTENSION):
            return "pair"
        descriptions = _raster_descriptions(path)
        if all(d in descriptions for d in VELOCITY_DESCRIPTIONS):
            return "velocity"
        if _looks_like_dates(descriptions):
            lname = layer.name().lower()
            if "east" in lname:
                return "ts_east"
            if "north" in lname:
                return "ts_north"
        return None
    if isinstance(layer, QgsVectorLayer):
        fields = [f.name() for f in layer.fields()]
        if all(f in fields for f in DETECTION_FIELDS):
            return "detections"
    return None


def find_layers(project=None):
    """Dict kind -> first matching layer of the project (kinds of :func:`classify_layer`)."""
    from qgis.core import QgsProject

    project = project or QgsProject.instance()
    found = {}
    for layer in project.mapLayers().values():
        kind = classify_layer(layer)
        if kind and kind not in found:
            found[kind] = layer
    return found


def detection_layers(project=None):
    """All vector layers of the project that look like SlideWatch detections."""
    from qgis.core import QgsProject

    project = project or QgsProject.instance()
    return [layer for layer in project.mapLayers().values()
            if classify_layer(layer) == "detections"]


def sources_from_project(project=None):
    """SeriesSources from the project layers; paths missing from the project are completed
    from the output folder the found layers live in (pairs/, pairs.csv, velocity.tif)."""
    found = find_layers(project)
    sources = SeriesSources(ts_east=layer_path(found.get("ts_east")) or None,
                            ts_north=layer_path(found.get("ts_north")) or None,
                            velocity=layer_path(found.get("velocity")) or None,
                            detections=layer_path(found.get("detections")) or None)
    folder = sources.folder
    if folder is None and sources.detections:
        folder = os.path.dirname(sources.detections)
    if folder is not None:
        complete = SeriesSources.from_folder(folder)
        for key in ("ts_east", "ts_north", "velocity", "pairs_dir", "pairs_csv", "detections",
                    "network_flags"):
            if getattr(sources, key) is None:
                setattr(sources, key, getattr(complete, key))
    return sources


def raster_crs(path):
    """QgsCoordinateReferenceSystem of a raster file (from its WKT)."""
    from qgis.core import QgsCoordinateReferenceSystem

    from ..core.series.timeseries_reader import raster_crs_wkt

    wkt = raster_crs_wkt(path)
    return QgsCoordinateReferenceSystem.fromWkt(wkt) if wkt else QgsCoordinateReferenceSystem()


def load_raster(path, name=None, project=None):
    """Add a raster file to the project (or return the layer already showing it)."""
    from qgis.core import QgsProject, QgsRasterLayer

    project = project or QgsProject.instance()
    for layer in project.mapLayers().values():
        if os.path.abspath(layer_path(layer) or "/nonexistent") == os.path.abspath(path):
            return layer
    layer = QgsRasterLayer(path, name or os.path.splitext(os.path.basename(path))[0])
    if not layer.isValid():
        return None
    if classify_layer(layer) == "pair":
        style_displacement(layer, 1)  # east_m
    project.addMapLayer(layer)
    return layer


def style_displacement(layer, band=1, percentile=98.0):
    """Diverging blue-white-red ramp on a displacement band, symmetric around 0 (the
    ``percentile`` of |values| sets the limits), so motion in both directions reads at once."""
    from qgis.core import (QgsColorRampShader, QgsRasterShader,
                           QgsSingleBandPseudoColorRenderer)
    from qgis.PyQt.QtGui import QColor

    import numpy as np

    limit = None
    try:
        import rasterio

        with rasterio.open(layer_path(layer)) as src:
            step = max(1, max(src.width, src.height) // 512)
            data = src.read(band, out_shape=(max(1, src.height // step),
                                             max(1, src.width // step))).astype(float)
        finite = np.abs(data[np.isfinite(data)])
        if finite.size:
            limit = float(np.percentile(finite, percentile))
    except Exception:
        limit = None
    if not limit or not np.isfinite(limit):
        limit = 1.0
    items = [QgsColorRampShader.ColorRampItem(-limit, QColor("#2166ac"), "%.2g m" % -limit),
             QgsColorRampShader.ColorRampItem(0.0, QColor("#f7f7f7"), "0"),
             QgsColorRampShader.ColorRampItem(limit, QColor("#b2182b"), "%.2g m" % limit)]
    fn = QgsColorRampShader(-limit, limit)
    fn.setColorRampType(QgsColorRampShader.Type.Interpolated)
    fn.setColorRampItemList(items)
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(fn)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), band, shader)
    renderer.setClassificationMin(-limit)
    renderer.setClassificationMax(limit)
    layer.setRenderer(renderer)
    layer.triggerRepaint()
    return limit
