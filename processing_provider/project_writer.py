"""Write ``slidewatch.qgz``: a ready-to-open, styled QGIS project of a pipeline run.

Layers (top to bottom):

- ``detections`` (``detections.gpkg``): outlines categorised by validation status
  (unvalidated / confirmed / rejected / uncertain, the colours of ``overview.png``),
  labelled with their id;
- ``displacement direction`` (``velocity_arrows.gpkg``): arrows rotated to the azimuth of
  the mean velocity, sized by its magnitude;
- ``velocity (m/yr)`` (``timeseries/velocity.tif`` band ``v_m_per_yr``): pseudo-colour
  yellow-orange-red from 0 to the 99th percentile, transparent where NaN;
- group ``time series`` (unchecked): ``ts_east_m`` and ``ts_north_m`` (one band per date)
  for the time-series inspector dock, and ``velocity sigma (m/yr)``;
- group ``Quality`` (unchecked; only its first layer checked inside), the per-pixel quality
  layers of the inversion (``timeseries/quality_*.tif``, :mod:`..core.series.quality_layers`),
  when the pipeline wrote them, each with the ``.qml`` style written beside it (one
  definition, :func:`..core.series.quality_layers.style_items`): ``valid pairs (count)`` viridis
  from 0 to the number of pairs inverted; ``share of pairs with NCC >= t (0-1)``
  red-yellow-green from 0 to 1; ``longest gap (days)`` green (the median sampling
  interval) to red (the longest gap, at least twice that interval); ``first valid date`` /
  ``last valid date`` (YYYYMMDD, unchecked) viridis over the dates, labelled with ISO
  dates. Every legend entry carries its unit;
- ``reference image``: the first image of the stack in grey, as a base map.

Paths are stored relative to the project file, so the whole output folder can be moved
or shared. Only the QGIS API is used (no template file).
"""

import csv
import contextlib
import os
import uuid

from qgis.core import (Qgis, QgsCategorizedSymbolRenderer, QgsColorRampShader,
                       QgsFillSymbol, QgsGradientColorRamp,
                       QgsGradientStop, QgsMarkerSymbol, QgsPalLayerSettings, QgsProject,
                       QgsProperty, QgsRasterLayer, QgsRasterShader, QgsReferencedRectangle,
                       QgsRendererCategory, QgsSimpleMarkerSymbolLayer,
                       QgsSimpleMarkerSymbolLayerBase, QgsSingleBandPseudoColorRenderer,
                       QgsSymbolLayer, QgsTextFormat, QgsVectorLayer,
                       QgsVectorLayerSimpleLabeling)
from qgis.PyQt.QtGui import QColor

from ..core.errors import OutputError
from ..core import products as prod
from ..core.run.overview import STATUS_COLOURS, VELOCITY_RAMP

PROJECT_NAME = prod.PROJECT_QGZ

#: layer names the docks look for
LAYER_NAMES = dict(detections="detections", arrows="displacement direction",
                   velocity="velocity (m/yr)", sigma="velocity sigma (m/yr)",
                   ts_east="ts_east_m", ts_north="ts_north_m", background="reference image",
                   quality_group="Quality", n_valid_pairs="valid pairs (count)",
                   ncc_share="share of pairs with NCC >= %g (0-1)",
                   longest_gap_days="longest gap (days)",
                   first_valid_date="first valid date (YYYYMMDD)",
                   last_valid_date="last valid date (YYYYMMDD)")

#: the quality layers in the order of the Quality group (top to bottom); the first is the
#: one shown when the group is switched on
QUALITY_ORDER = ("n_valid_pairs", "ncc_share", "longest_gap_days", "first_valid_date",
                 "last_valid_date")


def _rgb(c, alpha=255):
    return QColor(int(c[0]), int(c[1]), int(c[2]), alpha)


def velocity_ramp():
    """The velocity colour ramp (same anchors as overview.png)."""
    first, last = VELOCITY_RAMP[0][1], VELOCITY_RAMP[-1][1]
    stops = [QgsGradientStop(p, _rgb(c)) for p, c in VELOCITY_RAMP[1:-1]]
    return QgsGradientColorRamp(_rgb(first), _rgb(last), False, stops)


def _percentile(path, band, q=99.0):
    import numpy as np
    import rasterio
    with rasterio.open(path) as src:
        factor = max(1, int(max(src.height, src.width) / 1500))
        a = src.read(band, out_shape=(max(1, src.height // factor),
                                      max(1, src.width // factor))).astype("float64")
    a = a[np.isfinite(a)]
    if a.size == 0:
        return 1.0
    v = float(np.percentile(a, q))
    return v if v > 0 else 1.0


def _band(path, description, default):
    import rasterio
    with rasterio.open(path) as src:
        for i, d in enumerate(src.descriptions, start=1):
            if d == description:
                return i
    return default


def _pseudocolor(layer, band, vmax, ramp):
    shader_fn = QgsColorRampShader(0.0, vmax, ramp, QgsColorRampShader.Interpolated)
    shader_fn.classifyColorRamp(band=band, input=layer.dataProvider())
    # classifyColorRamp with a provider may recompute bounds: set the items explicitly
    items = []
    n = 11
    for k in range(n):
        f = k / (n - 1)
        items.append(QgsColorRampShader.ColorRampItem(f * vmax, ramp.color(f), "%.3g" % (f * vmax)))
    shader_fn.setColorRampItemList(items)
    shader_fn.setMinimumValue(0.0)
    shader_fn.setMaximumValue(vmax)
    shader_fn.setClip(False)
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(shader_fn)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), band, shader)
    renderer.setClassificationMin(0.0)
    renderer.setClassificationMax(vmax)
    layer.setRenderer(renderer)


def _quality_tags(path):
    import rasterio
    with rasterio.open(path) as src:
        return src.tags()


def quality_layer_name(key, path):
    """Name of the quality layer ``key`` at ``path`` in the project (with its unit; the
    NCC share names its threshold, from the raster's NCC_THRESHOLD tag)."""
    if key != "ncc_share":
        return LAYER_NAMES[key]
    from ..core.series.quality_layers import DEFAULT_NCC_THRESHOLD
    try:
        t = float(_quality_tags(path).get("NCC_THRESHOLD", ""))
    except ValueError:
        t = DEFAULT_NCC_THRESHOLD
    return LAYER_NAMES[key] % t


def _quality_layers(ts):
    """[(key, styled layer)] of the quality layers present in ``ts`` (group order), each
    with the style that :mod:`..core.series.quality_layers` wrote beside it (its ``.qml``, the one
    definition of their ramps and legends; restored from the raster when missing)."""
    from ..core.series.quality_layers import quality_paths, restore_styles
    paths = quality_paths(ts)
    styles = restore_styles(ts)
    out = []
    for key in QUALITY_ORDER:
        p, qml = paths.get(key), styles.get(key)
        if not qml:
            continue
        layer = _raster(p, quality_layer_name(key, p))
        message, ok = layer.loadNamedStyle(qml)
        if not ok:
            raise OutputError("QGIS cannot read the style '%s' (%s). Delete it and write "
                              "the project again: it is rebuilt from the raster."
                              % (qml, message))
        out.append((key, layer))
    return out


@contextlib.contextmanager
def _quiet_gdal():
    try:
        from osgeo import gdal
    except ImportError:
        yield
        return
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        yield
    finally:
        gdal.PopErrorHandler()


def _raster(path, name):
    layer = QgsRasterLayer(path, name, "gdal")
    if not layer.isValid():
        raise OutputError("QGIS cannot open '%s' for the project; the run's outputs may be "
                          "incomplete. Run the pipeline again." % path)
    return layer


def _velocity_layer(path):
    layer = _raster(path, LAYER_NAMES["velocity"])
    band = _band(path, prod.BAND_V, prod.VELOCITY_BANDS.index(prod.BAND_V) + 1)
    vmax = _percentile(path, band)
    _pseudocolor(layer, band, vmax, velocity_ramp())
    layer.renderer().setOpacity(0.85)
    return layer, vmax


def _sigma_layer(path):
    layer = _raster(path, LAYER_NAMES["sigma"])
    band = _band(path, prod.BAND_V_SIGMA, prod.VELOCITY_BANDS.index(prod.BAND_V_SIGMA) + 1)
    vmax = _percentile(path, band, 95.0)
    ramp = QgsGradientColorRamp(QColor(247, 251, 255), QColor(8, 48, 107))
    _pseudocolor(layer, band, vmax, ramp)
    return layer


def _arrows_layer(path, vmax):
    layer = QgsVectorLayer("%s|layername=arrows" % path, LAYER_NAMES["arrows"], "ogr")
    if not layer.isValid():
        raise OutputError("QGIS cannot open the arrows layer '%s'." % path)
    sl = QgsSimpleMarkerSymbolLayer(QgsSimpleMarkerSymbolLayerBase.ArrowHeadFilled, 3.0)
    sl.setColor(QColor(20, 20, 110))
    sl.setStrokeColor(QColor(255, 255, 255))
    sl.setStrokeWidth(0.15)
    sl.setDataDefinedProperty(QgsSymbolLayer.PropertyAngle, QgsProperty.fromField("direction_deg"))
    sl.setDataDefinedProperty(QgsSymbolLayer.PropertySize, QgsProperty.fromExpression(
        'scale_linear("v_m_per_yr", 0, %r, 1.5, 6)' % float(vmax)))
    symbol = QgsMarkerSymbol()
    symbol.changeSymbolLayer(0, sl)
    layer.renderer().setSymbol(symbol)
    return layer


def _detections_layer(path):
    layer = QgsVectorLayer("%s|layername=%s" % (path, prod.DETECTIONS_LAYER),
                           LAYER_NAMES["detections"], "ogr")
    if not layer.isValid():
        raise OutputError("QGIS cannot open the detections layer '%s'." % path)
    cats = []
    for status in prod.DETECTION_STATUSES:
        c = STATUS_COLOURS[status]
        sym = QgsFillSymbol.createSimple({
            "color": "%d,%d,%d,40" % c, "outline_color": "%d,%d,%d,255" % c,
            "outline_width": "0.7", "outline_style": "dash" if status == "rejected" else "solid"})
        cats.append(QgsRendererCategory(status, sym, status))
    layer.setRenderer(QgsCategorizedSymbolRenderer("status", cats))
    settings = QgsPalLayerSettings()
    settings.fieldName = "id"
    fmt = QgsTextFormat()
    fmt.setSize(9)
    fmt.buffer().setEnabled(True)
    settings.setFormat(fmt)
    layer.setLabeling(QgsVectorLayerSimpleLabeling(settings))
    layer.setLabelsEnabled(True)
    return layer


def _background_path(output_folder):
    """The first image of catalog.csv (None if unknown or missing)."""
    path = os.path.join(output_folder, prod.CATALOG_CSV)
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError:
        return None
    rows = sorted((r for r in rows if r.get("path") and r.get("date")), key=lambda r: r["date"])
    for r in rows:
        p = r["path"]
        if not os.path.isabs(p):
            p = os.path.join(output_folder, p)
        if os.path.exists(p):
            return p
    return None


def write_project(output_folder, project_path=None, background_path=None):
    """Write the styled project of the outputs in ``output_folder``; return its path.

    Missing optional outputs (arrows, detections, background) are left out; the velocity
    raster is required.
    """
    output_folder = os.path.abspath(output_folder)
    project_path = project_path or os.path.join(output_folder, PROJECT_NAME)
    ts = os.path.join(output_folder, prod.TIMESERIES_FOLDER)
    velocity = os.path.join(ts, prod.VELOCITY_TIF)
    if not os.path.exists(velocity):
        raise OutputError("'%s' is missing: the project needs the inversion outputs. Run the "
                          "pipeline first." % velocity)
    project = QgsProject()
    project.setFileName(project_path)
    project.setTitle("SlideWatch - %s" % os.path.basename(output_folder))
    project.writeEntryBool("Paths", "/Absolute", False)
    if hasattr(project, "setFilePathStorage"):
        project.setFilePathStorage(Qgis.FilePathType.Relative)
    root = project.layerTreeRoot()

    vel_layer, vmax = _velocity_layer(velocity)
    crs = vel_layer.crs()
    if crs.isValid():
        project.setCrs(crs)
    layers_top_down = []
    det = os.path.join(output_folder, prod.DETECTIONS_GPKG)
    if os.path.exists(det):
        layers_top_down.append(_detections_layer(det))
    arrows = os.path.join(output_folder, prod.VELOCITY_ARROWS_GPKG)
    if os.path.exists(arrows):
        layers_top_down.append(_arrows_layer(arrows, vmax))
    layers_top_down.append(vel_layer)
    for layer in layers_top_down:
        project.addMapLayer(layer, False)
        root.addLayer(layer)

    group = root.addGroup("time series")
    for key, name in (("ts_east", prod.TS_EAST_TIF), ("ts_north", prod.TS_NORTH_TIF)):
        p = os.path.join(ts, name)
        if os.path.exists(p):
            # band 1 (the first date) is all zeros by definition: QGIS's default contrast
            # stretch asks GDAL for its histogram, which prints "ERROR 5 ... dfMax should
            # be strictly greater than dfMin" although nothing is wrong (issue 15)
            with _quiet_gdal():
                layer = _raster(p, LAYER_NAMES[key])
            project.addMapLayer(layer, False)
            group.addLayer(layer)
    sigma = _sigma_layer(velocity)
    project.addMapLayer(sigma, False)
    group.addLayer(sigma)
    group.setItemVisibilityChecked(False)
    group.setExpanded(False)

    quality = _quality_layers(ts)
    if quality:
        qgroup = root.addGroup(LAYER_NAMES["quality_group"])
        for i, (_key, layer) in enumerate(quality):
            project.addMapLayer(layer, False)
            node = qgroup.addLayer(layer)
            # one layer at a time: switching the group on shows the valid-pair count
            node.setItemVisibilityChecked(i == 0)
        qgroup.setItemVisibilityChecked(False)
        qgroup.setExpanded(False)

    bg = background_path or _background_path(output_folder)
    if bg and os.path.exists(bg):
        layer = QgsRasterLayer(bg, LAYER_NAMES["background"], "gdal")
        if layer.isValid():
            project.addMapLayer(layer, False)
            root.addLayer(layer)

    extent = vel_layer.extent()
    try:
        project.viewSettings().setDefaultViewExtent(QgsReferencedRectangle(extent, crs))
    except Exception:
        pass
    # atomic: write beside the target (same relative paths), then rename over it
    tmp = os.path.join(os.path.dirname(project_path),
                       ".%s.%s.qgz" % (os.path.splitext(os.path.basename(project_path))[0],
                                       uuid.uuid4().hex[:8]))
    project.setFileName(tmp)
    try:
        if not project.write(tmp):
            raise OutputError("Could not write the QGIS project '%s': %s" % (
                project_path, project.error()))
        _rename_members(tmp, os.path.splitext(os.path.basename(project_path))[0])
        os.replace(tmp, project_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return project_path


def _rename_members(qgz, stem):
    """Name the members of a .qgz written under a temporary name after the final name
    (QGIS names them after the file: ``<stem>.qgs``, ``<stem>.qgd``)."""
    import zipfile
    tmp = qgz + ".zip"
    try:
        with zipfile.ZipFile(qgz) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
            for info in zin.infolist():
                ext = info.filename[-4:].lower()
                name = stem + ext if ext in (".qgs", ".qgd") else info.filename
                zout.writestr(name, zin.read(info.filename))
        os.replace(tmp, qgz)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
