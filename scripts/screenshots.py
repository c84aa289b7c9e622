"""Runs inside real QGIS desktop (``qgis --code scripts/screenshots.py``): opens a SlideWatch
output folder, uses each dock as an analyst would, and saves PNGs of the main window.

Environment (set by scripts/screenshots.sh):
  SLIDEWATCH_SHOT_FOLDER  the output folder to open (a working copy: decisions are written)
  SLIDEWATCH_SHOT_OUT     where the PNGs go (docs/screenshots)
  SLIDEWATCH_SHOT_LOG     a log file (the shell script prints it)
Every step is driven by a QTimer so that QGIS paints between steps; the script ends QGIS
itself (os._exit) once the images are written, or after a failure (exit code 1).
"""

import json
import os
import sys
import traceback

from qgis.core import (QgsApplication, QgsCategorizedSymbolRenderer, QgsColorRampShader,
                       QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsFillSymbol,
                       QgsPointXY, QgsProject, QgsProjectBadLayerHandler, QgsRasterLayer,
                       QgsRasterShader,
                       QgsRendererCategory, QgsSingleBandPseudoColorRenderer, QgsVectorLayer)
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import QDockWidget
from qgis.utils import iface, plugins

FOLDER = os.environ.get("SLIDEWATCH_SHOT_FOLDER", "demo_output")
OUT = os.environ.get("SLIDEWATCH_SHOT_OUT", "docs/screenshots")
LOG = os.environ.get("SLIDEWATCH_SHOT_LOG", "")
#: "learning": only the learned-ranking picture (needs >= 20 validated: fixture folder);
#: "accuracy": only the accuracy sample dock
ONLY = os.environ.get("SLIDEWATCH_SHOT_ONLY", "")
STATUS_STYLE = {"unvalidated": ("#ffd400", "unvalidated"), "confirmed": ("#1a9850", "confirmed"),
                "rejected": ("#d73027", "rejected"), "uncertain": ("#4575b4", "uncertain")}


def log(message):
    line = "[screenshots] %s" % message
    print(line, flush=True)
    if LOG:
        with open(LOG, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


# ------------------------------------------------------------------------ layers
def velocity_layer(path):
    layer = QgsRasterLayer(path, "velocity (m/yr)")
    stats = layer.dataProvider().bandStatistics(3)
    top = max(stats.maximumValue, 1e-6)
    ramp = [QgsColorRampShader.ColorRampItem(0.0, QColor("#f7f7f7"), "0"),
            QgsColorRampShader.ColorRampItem(top * 0.25, QColor("#fee08b"), "%.1f" % (top * 0.25)),
            QgsColorRampShader.ColorRampItem(top * 0.6, QColor("#f46d43"), "%.1f" % (top * 0.6)),
            QgsColorRampShader.ColorRampItem(top, QColor("#a50026"), "%.1f m/yr" % top)]
    fn = QgsColorRampShader(0.0, top)
    fn.setColorRampType(QgsColorRampShader.Type.Interpolated)
    fn.setColorRampItemList(ramp)
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(fn)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 3, shader)
    renderer.setClassificationMin(0.0)
    renderer.setClassificationMax(top)
    layer.setRenderer(renderer)
    return layer


def detections_layer(path):
    layer = QgsVectorLayer(path + "|layername=detections", "detections", "ogr")
    categories = []
    for value, (colour, label) in STATUS_STYLE.items():
        symbol = QgsFillSymbol.createSimple({"color": "0,0,0,0", "outline_color": colour,
                                             "outline_width": "0.8"})
        categories.append(QgsRendererCategory(value, symbol, label))
    layer.setRenderer(QgsCategorizedSymbolRenderer("status", categories))
    return layer


class _QuietBadLayers(QgsProjectBadLayerHandler):
    """Layers the project cannot find (e.g. the input images of a moved copy) stay
    unavailable instead of opening QGIS's modal "Handle unavailable layers" dialog."""

    def handleBadLayers(self, layers):  # noqa: N802
        log("%d layer(s) of the project not found (left unavailable)" % len(layers))


def open_outputs():
    project = QgsProject.instance()
    qgz = os.path.join(FOLDER, "slidewatch.qgz")
    if os.path.exists(qgz):
        global _HANDLER
        _HANDLER = _QuietBadLayers()
        project.setBadLayerHandler(_HANDLER)
        project.read(qgz)
        log("opened project %s" % qgz)
    else:
        vel = velocity_layer(os.path.join(FOLDER, "timeseries", "velocity.tif"))
        det = detections_layer(os.path.join(FOLDER, "detections.gpkg"))
        for layer in (vel, det):
            if not layer.isValid():
                raise RuntimeError("cannot open %s" % layer.source())
            project.addMapLayer(layer)
        project.setCrs(vel.crs())
        iface.mapCanvas().setDestinationCrs(vel.crs())
        iface.mapCanvas().setExtent(vel.extent())
        log("added velocity and detections layers")
    iface.mapCanvas().refresh()


# --------------------------------------------------------------------- helpers
def plugin():
    p = plugins.get("slidewatch")
    if p is None:
        raise RuntimeError("the SlideWatch plugin is not loaded in this QGIS profile "
                           "(run 'make install', which enables it)")
    return p


def show_only(dock_class):
    """Show the given SlideWatch dock (creating it), hide the other SlideWatch docks and
    QGIS's own panels except the layer list."""
    from slidewatch.ui.dock_registry import DOCKS

    win = iface.mainWindow()
    for dock in win.findChildren(QDockWidget):
        name = dock.objectName()
        if name.startswith("SlideWatch") or name in ("Layers",):
            continue
        dock.hide()
    shown = None
    for module_name, class_name, title in DOCKS:
        if class_name == dock_class:
            shown = plugin().show_dock(module_name, class_name, title)
        elif class_name in plugin().docks:
            plugin().docks[class_name].hide()
    win.resizeDocks([shown], [720], Qt.Orientation.Horizontal)
    return shown


def grab(name):
    iface.messageBar().clearWidgets()  # start-up notices (fonts of a style...) hide the map
    QgsApplication.processEvents()
    path = os.path.join(OUT, name)
    image = iface.mainWindow().grab()
    if not image.save(path, "PNG"):
        raise RuntimeError("could not write %s" % path)
    log("wrote %s (%dx%d)" % (path, image.width(), image.height()))


def detections():
    from slidewatch.ui.validation_model import load_detections

    return load_detections(os.path.join(FOLDER, "detections.gpkg"))


def raster_crs():
    from slidewatch.ui.layer_finder import raster_crs as crs_of

    return crs_of(os.path.join(FOLDER, "timeseries", "ts_east_m.tif"))


def fastest_pixel():
    """Map point (raster CRS) of the fastest pixel of velocity.tif (v_m_per_yr)."""
    import numpy as np
    import rasterio

    with rasterio.open(os.path.join(FOLDER, "timeseries", "velocity.tif")) as src:
        band = list(src.descriptions).index("v_m_per_yr") + 1
        v = src.read(band).astype(float)
        row, col = np.unravel_index(np.nanargmax(v), v.shape)
        x, y = src.xy(row, col)
    return QgsPointXY(x, y)


def centre_of(rec):
    from qgis.core import QgsGeometry

    return QgsGeometry.fromWkt(rec["geometry_wkt"]).centroid().asPoint()


def to_canvas(point, crs):
    canvas_crs = iface.mapCanvas().mapSettings().destinationCrs()
    if crs == canvas_crs:
        return QgsPointXY(point)
    return QgsCoordinateTransform(crs, canvas_crs, QgsProject.instance()).transform(point)


def stable_box():
    """(row0, row1, col0, col1) of the quietest corner of velocity.tif (a sixth of each
    side, the corner with the smallest median speed): a stable area for the reference."""
    import numpy as np
    import rasterio

    with rasterio.open(os.path.join(FOLDER, "timeseries", "velocity.tif")) as src:
        v = src.read(list(src.descriptions).index("v_m_per_yr") + 1).astype(float)
    h, w = v.shape
    bh, bw = max(3, h // 6), max(3, w // 6)
    boxes = [(2, 2 + bh, 2, 2 + bw), (2, 2 + bh, w - 2 - bw, w - 2),
             (h - 2 - bh, h - 2, 2, 2 + bw), (h - 2 - bh, h - 2, w - 2 - bw, w - 2)]
    return min(boxes, key=lambda b: np.nanmedian(v[b[0]:b[1], b[2]:b[3]]))


def inspector_models(ts, recs, crs):
    """Inspector, analysis view: the accelerating detection's mean with a piecewise fit
    (onset, residuals), re-referenced on a stable area drawn on the map."""
    import rasterio

    accelerating = [r for r in recs if r.get("accel_flag")] or recs
    det = accelerating[0]
    ts.clear()
    canvas_crs = iface.mapCanvas().mapSettings().destinationCrs()
    # the stable area: drawn with the dock's polygon tool, as an analyst would
    r0, r1, c0, c1 = stable_box()
    with rasterio.open(os.path.join(FOLDER, "timeseries", "velocity.tif")) as src:
        corners = [src.xy(r, c) for r, c in ((r0, c0), (r0, c1), (r1, c1), (r1, c0))]
    ts.activate_reference_area(True)
    for x, y in corners:
        ts.area_tool.add_point(to_canvas(QgsPointXY(x, y), crs))
    ts.area_tool.finish()
    ts.wait()
    yield 500
    ts.activate_tool(True)
    ts.map_tool.handle_point(to_canvas(centre_of(det), crs), canvas_crs)
    ts.wait()
    yield 500
    ts.component_combo.setCurrentIndex(0)
    ts.model_combo.setCurrentIndex(3)  # piecewise (onset)
    label = "detection %s (mean)" % det["id"]
    if ts.fit_combo.findText(label) >= 0:
        ts.set_fit_target(label)
    log("models: %s; reference: %s" % (ts.fit_label.text()[:160],
                                       ts.reference_label.text()[:120]))
    yield 1500
    grab("timeseries_models.png")
    ts.model_combo.setCurrentIndex(0)
    ts.clear_reference()


def reference_labels(sample_path, share=0.68):
    """The labels an analyst gives to the first ``share`` of the sample's points, from the
    truth when the folder is a demo run (its images folder keeps the generator's
    truth.npz: moving = inside a known landslide, unsure on the edge of one), else from
    the velocity (moving above 0.5 m/yr, unsure between 0.35 and 0.5 m/yr). Written at
    once in the sample file (core.accuracy_assessment.set_labels); returns (labels, what
    they came from)."""
    import numpy as np
    import rasterio

    from slidewatch.core.outputs import accuracy_assessment as aa

    images = os.path.join(os.path.dirname(os.path.abspath(FOLDER)), "images")
    truth = os.path.join(images, "truth.npz")
    if os.path.exists(truth) and os.path.exists(os.path.join(images, "dem.tif")):
        moving = np.load(truth)["landslide_labels"] > 0
        with rasterio.open(os.path.join(images, "dem.tif")) as src:  # the image grid
            inv = ~src.transform
        source = "the demo's known landslides (images/truth.npz)"

        def label_at(r, c):
            near = moving[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2]
            return ("unsure" if near.any() and not near.all() else
                    "moving" if moving[r, c] else "not_moving")
    else:
        with rasterio.open(os.path.join(FOLDER, "timeseries", "velocity.tif")) as src:
            v = src.read(list(src.descriptions).index("v_m_per_yr") + 1).astype(float)
            inv = ~src.transform
        source = "the velocity (moving above 0.5 m/yr)"

        def label_at(r, c):
            speed = v[r, c]
            return ("unsure" if 0.35 < speed < 0.5 else
                    "moving" if speed >= 0.5 else "not_moving")
    samples = aa.read_samples(sample_path).samples
    labels = {}
    for s in samples[:int(share * len(samples))]:
        c, r = inv * (s["x"], s["y"])
        labels[s["id"]] = label_at(int(r), int(c))
    aa.set_labels(sample_path, labels, analyst="demo analyst")
    return labels, source


def accuracy_sample():
    """Accuracy sample dock: a stratified sample of the run's detection map drawn by the
    Processing algorithm (seed 1, default design), two thirds of it labelled, the estimate
    so far, and the dock back on the first point not labelled yet."""
    import processing

    iface.mapCanvas().zoomToFullExtent()
    sample = os.path.join(FOLDER, "accuracy_samples.gpkg")
    res = processing.run("slidewatch:accuracy_sampling",
                         {"DETECTION_FOLDER": FOLDER, "SEED": 1, "OUTPUT": sample})
    log("accuracy sampling: %s" % {k: v for k, v in res.items() if k != "OUTPUT"})
    labels, source = reference_labels(sample)
    log("accuracy sample: %d of %d points labelled from %s"
        % (len(labels), res["N_SAMPLES"], source))
    dock = show_only("AccuracySampleDock")
    dock.zoom_combo.setCurrentIndex(0)  # 40 pixels wide: the point and its surroundings
    dock.analyst.setText("demo analyst")
    if dock.open_file(sample) is None:
        raise RuntimeError("accuracy sample dock: %s" % dock.status_label.text())
    yield 1000
    report = dock.estimate()
    if report is None:
        raise RuntimeError("accuracy estimate: %s" % dock.status_label.text())
    log("accuracy estimate: %s" % report.summary())
    dock.first_unlabelled()
    dock.comment.setText("compare with the images before labelling")
    iface.mapCanvas().refresh()
    yield 3000
    grab("accuracy_sample_dock.png")


# ------------------------------------------------------------------------ steps
def steps():
    win = iface.mainWindow()
    win.resize(1600, 1000)
    win.showMaximized()
    open_outputs()
    yield 2500
    recs = sorted(detections(), key=lambda r: -(r.get("score") or 0))
    crs = raster_crs()

    if ONLY == "accuracy":
        yield from accuracy_sample()
        return
    if not ONLY:
        # 1. time-series inspector: click the fastest pixel, pin it, then click inside the
        #    second-best detection (which also pins the detection's mean series)
        ts = show_only("TimeSeriesDock")
        ts.set_folder(FOLDER)
        ts.activate_tool(True)
        canvas_crs = iface.mapCanvas().mapSettings().destinationCrs()
        ts.map_tool.handle_point(to_canvas(fastest_pixel(), crs), canvas_crs)
        ts.wait()
        yield 500
        ts.pin_current()
        second = recs[1] if len(recs) > 1 else recs[0]
        ts.map_tool.handle_point(to_canvas(centre_of(second), crs), canvas_crs)
        ts.wait()
        yield 1500
        grab("timeseries_inspector.png")
        yield from inspector_models(ts, recs, crs)

    # 2. validation: a session in progress (learning active when enough is validated)
    val = show_only("ValidationDock")
    if val.model is None:
        raise RuntimeError("validation dock has no detections layer: %s"
                           % val.status_label.text())
    val.analyst.setText("demo analyst")
    if not ONLY:
        # (a) at work: the best detection confirmed, now looking at the second one
        val.select(recs[0]["id"])
        val.comment.setText("scarp and cracks visible on the images")
        val.decide("confirmed")
        val.select(recs[1]["id"] if len(recs) > 1 else recs[0]["id"])
        val.comment.setText("compare with the images before deciding")
        val.wait()
        yield 2500
        grab("validation_dock.png")

    # (b) learning: once >= 20 detections are confirmed/rejected, the unvalidated ones are
    #     ranked by the probability learned from the decisions
    truth_path = os.path.join(FOLDER, "screenshot_truth.json")
    if os.path.exists(truth_path):  # fixture data: validate like a careful analyst would
        truth = {int(k): v for k, v in json.load(open(truth_path)).items()}
        order = [r["id"] for r in val.model.visible()]
        for ident in order[:22] + order[-3:]:
            rec = val.model.by_id[ident]
            if rec["status"] != "unvalidated":
                continue
            val.model.select(ident)
            val.model.decide("confirmed" if truth.get(ident) else "rejected",
                             "checked on the images" if truth.get(ident) else "",
                             "demo analyst", advance=False)
        val.comment.clear()
        val.reload()
        val.status_combo.setCurrentText("unvalidated")
        val.order_combo.setCurrentIndex(1)  # by learned probability
        val.model.first()
        val.fill_table()
        val.show_current()
        val.wait()
        yield 2500
        grab("validation_learning.png")

    if ONLY:
        return
    # 3. accuracy assessment: a stratified sample being labelled, the estimate so far
    yield from accuracy_sample()
    # 4. pair network: click a selected pair (loads its raster)
    iface.mapCanvas().zoomToFullExtent()
    pn = show_only("PairNetworkDock")
    pn.set_folder(FOLDER)
    pn.wait()
    yield 500
    selected = [p for p in pn.pairs if p["selected"]]
    if selected:
        best = max(selected, key=lambda p: p["score"] if p["score"] == p["score"] else -1)
        layer = pn.load_pair(best)
        if layer is not None:
            iface.mapCanvas().refresh()
    yield 2500
    grab("pair_network.png")


def run():
    os.makedirs(OUT, exist_ok=True)
    gen = steps()

    def step():
        try:
            delay = next(gen)
        except StopIteration:
            log("done")
            QgsProject.instance().setDirty(False)
            sys.stdout.flush()
            os._exit(0)
        except Exception:
            log("FAILED:\n" + traceback.format_exc())
            os._exit(1)
        QTimer.singleShot(delay, step)

    QTimer.singleShot(3000, step)  # let QGIS finish starting (plugins, welcome page)


run()
