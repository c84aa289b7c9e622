"""Accuracy sample dock (issue 17, the labelling pass): a sample written by
core.accuracy_assessment on a small synthetic map, labelled through the dock's buttons,
keys and methods; every label in the file at once (GeoPackage and CSV) and after
re-opening; progress per stratum; the canvas on the point in another CRS; the estimate
shown equals core's estimator; the layer from the project; a label that cannot be saved
is reported; the plugin adds and removes the dock's action."""

import os

import pytest
from qgis.core import (QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsPointXY,
                       QgsProject, QgsVectorLayer)

from slidewatch.core.outputs import accuracy_assessment as aa
from ui_fixtures import CRS, make_output_folder


def _stored(path):
    return {s["id"]: s for s in aa.read_samples(path, check_labels=False).samples}


@pytest.fixture(scope="module")
def map_folder(tmp_path_factory):
    """A small SlideWatch output folder: velocity.tif grid + 12 detections."""
    folder = str(tmp_path_factory.mktemp("acc_dock") / "out")
    make_output_folder(folder, n_detections=12, with_pairs=False)
    return folder


def make_sample(folder, path, n_total=24, min_per_stratum=10, seed=5):
    _p, design, samples = aa.create_sample(path, folder, n_total=n_total,
                                           min_per_stratum=min_per_stratum, seed=seed)
    return sorted(samples, key=lambda s: s["id"]), design


@pytest.fixture()
def dock_factory(qgis_iface, qgis_new_project):
    from slidewatch.ui.accuracy_sample_dock import AccuracySampleDock

    docks = []

    def make(path=None, add_layer=True):
        d = AccuracySampleDock(qgis_iface, qgis_iface.mainWindow())
        docks.append(d)
        if path is not None:
            assert d.open_file(path, add_layer=add_layer) == os.path.abspath(path), \
                d.status_label.text()
        return d

    yield make
    for d in docks:
        d.cleanup()
        d.deleteLater()


# ------------------------------------------------------------------ labelling
@pytest.mark.parametrize("ext", [".gpkg", ".csv"])
def test_labels_are_in_the_file_after_each_click_and_after_reopening(map_folder, tmp_path,
                                                                     dock_factory, ext):
    path = str(tmp_path / ("samples" + ext))
    samples, design = make_sample(map_folder, path)
    n = len(samples)
    dock = dock_factory(path)
    assert dock.index == 0 and dock.current()["id"] == samples[0]["id"]
    text = dock.info.text()
    assert "Point 1 / %d" % n in text and samples[0]["stratum"] in text
    assert dock.index_spin.value() == 1 and dock.count_label.text() == "/ %d" % n
    assert dock.progress.value() == 0 and dock.progress.maximum() == n
    assert dock.layer is not None and dock.layer.isValid()  # the points are on the map

    dock.analyst.setText("ana")
    dock.comment.setText("scarp on the image")
    dock.moving_button.click()
    got = _stored(path)[samples[0]["id"]]          # a fresh read of the file
    assert got["label"] == "moving" and got["labelled_by"] == "ana"
    assert got["comment"] == "scarp on the image" and got["labelled_at"].endswith("Z")
    assert dock.index == 1 and dock.comment.text() == ""   # moved on, comment cleared
    dock.not_moving_button.click()
    assert _stored(path)[samples[1]["id"]]["label"] == "not_moving"
    dock.unsure_button.click()
    stored = _stored(path)
    assert [stored[s["id"]]["label"] for s in samples[:4]] == ["moving", "not_moving",
                                                               "unsure", None]
    assert dock.index == 3 and dock.progress.value() == 3
    # back to the third point, clear its label: in the file at once, no move
    assert dock.previous()["id"] == samples[2]["id"]
    dock.clear_button.click()
    assert _stored(path)[samples[2]["id"]]["label"] is None
    assert dock.index == 2 and dock.progress.value() == 2
    dock.next()
    dock.next()
    assert dock.index == 4
    assert dock.first_unlabelled()["id"] == samples[2]["id"]
    # a point further on, then the index box
    dock.index_spin.setValue(n)
    assert dock.current()["id"] == samples[-1]["id"]
    dock.moving_button.click()          # the last one: goes back to the first unlabelled
    assert _stored(path)[samples[-1]["id"]]["label"] == "moving"
    assert dock.current()["id"] == samples[2]["id"]
    assert dock.next() is not None and dock.go(10 ** 6)["id"] == samples[-1]["id"]  # clamped
    dock.cleanup()

    again = dock_factory(path)
    labels = {s["id"]: s.get("label") for s in again.samples}
    assert labels[samples[0]["id"]] == "moving" and labels[samples[1]["id"]] == "not_moving"
    assert labels[samples[2]["id"]] is None and labels[samples[-1]["id"]] == "moving"
    assert again.current()["id"] == samples[2]["id"]  # opens on the first unlabelled point
    assert again.progress.value() == 3
    again.go(0)
    assert "by ana" in again.info.text() and "moving" in again.info.text()


def test_progress_per_stratum(map_folder, tmp_path, dock_factory):
    path = str(tmp_path / "s.gpkg")
    samples, design = make_sample(map_folder, path)
    dock = dock_factory(path)
    n_of = {r["stratum"]: r["n_samples"] for r in design.strata}
    assert {k: v["n"] for k, v in dock.counts().items() if k != "total"} == n_of
    moving = [s for s in samples if s["stratum"] == "moving"]
    other = [s for s in samples if s["stratum"] == "not_moving"]
    plan = [(moving[0], "moving"), (moving[1], "not_moving"), (moving[2], "unsure"),
            (other[0], "not_moving"), (other[1], "not_moving")]
    for s, lab in plan:
        dock.go_to_id(s["id"])
        assert dock.label(lab) is not None
    c = dock.counts()
    assert c["moving"] == dict(n=n_of["moving"], labelled=3, moving=1, not_moving=1, unsure=1,
                               unlabelled=n_of["moving"] - 3)
    assert c["not_moving"]["labelled"] == 2 and c["not_moving"]["not_moving"] == 2
    assert c["total"]["labelled"] == 5 and dock.progress.value() == 5
    # the table: one row per stratum and the total
    rows = {dock.table.item(r, 0).text(): [dock.table.item(r, k).text() for k in range(1, 6)]
            for r in range(dock.table.rowCount())}
    assert rows["moving"] == ["3", str(n_of["moving"]), "1", "1", "1"]
    assert rows["not moving"][:2] == ["2", str(n_of["not_moving"])]
    assert rows["total"][:2] == ["5", str(len(samples))]
    assert dock.progress_text() == "moving: 3 of %d labelled; not moving: 2 of %d labelled" % (
        n_of["moving"], n_of["not_moving"])
    # the same counts as core's bookkeeping once estimated
    rep = aa.assess(path)
    assert rep.per_stratum["moving"]["unsure"] == 1 and rep.n_used == 4


def test_keyboard_shortcuts(map_folder, tmp_path, dock_factory):
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtTest import QTest
    from qgis.PyQt.QtWidgets import QApplication

    path = str(tmp_path / "s.gpkg")
    samples, _d = make_sample(map_folder, path)
    ids = [s["id"] for s in samples]
    dock = dock_factory(path)
    dock.setFloating(True)
    dock.show()
    dock.activateWindow()
    dock.progress.setFocus()
    QApplication.processEvents()
    target = dock.progress
    QTest.keyClick(target, Qt.Key.Key_N)
    assert dock.current()["id"] == ids[1]
    QTest.keyClick(target, Qt.Key.Key_P)
    assert dock.current()["id"] == ids[0]
    QTest.keyClick(target, Qt.Key.Key_M)
    QTest.keyClick(target, Qt.Key.Key_S)
    QTest.keyClick(target, Qt.Key.Key_U)
    stored = _stored(path)
    assert [stored[i]["label"] for i in ids[:3]] == ["moving", "not_moving", "unsure"]
    QTest.keyClick(target, Qt.Key.Key_P)
    QTest.keyClick(target, Qt.Key.Key_Delete)
    assert _stored(path)[ids[2]]["label"] is None
    QTest.keyClick(target, Qt.Key.Key_N)
    QTest.keyClick(target, Qt.Key.Key_F)
    assert dock.current()["id"] == ids[2]
    # typing a comment does not label
    dock.comment.setFocus()
    QTest.keyClicks(dock.comment, "mud")
    assert dock.comment.text() == "mud"
    assert _stored(path)[ids[2]]["label"] is None


def test_canvas_centred_on_the_point_in_another_crs(map_folder, tmp_path, dock_factory,
                                                    qgis_canvas):
    path = str(tmp_path / "s.gpkg")
    samples, _d = make_sample(map_folder, path)
    qgis_canvas.resize(600, 400)
    qgis_canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    dock = dock_factory(path)
    dock.show()
    assert dock.zoom_combo.currentIndex() == 0  # 40 pixels wide
    s = dock.go(3)
    to_canvas = QgsCoordinateTransform(QgsCoordinateReferenceSystem(CRS),
                                       qgis_canvas.mapSettings().destinationCrs(),
                                       QgsProject.instance())
    p = to_canvas.transform(QgsPointXY(s["x"], s["y"]))
    ext = qgis_canvas.extent()
    assert ext.contains(p)
    assert abs(ext.center().x() - p.x()) < 0.01 * ext.width()
    assert abs(ext.center().y() - p.y()) < 0.01 * ext.height()
    # 40 pixels of 10 m, in Web Mercator metres (scale factor ~1.5 at 46 deg N)
    assert 300 < min(ext.width(), ext.height()) < 2000
    # the marker on the point, the pixel outline around it
    assert dock.marker.center().distance(p) < 1e-3
    assert dock.marker.isVisible()
    band = dock.pixel_band.asGeometry()
    assert band.contains(QgsPointXY(p))
    assert dock.marker.color().name() == "#2b83ba"  # not labelled yet
    dock.label("moving")                           # -> the next point, marker moved
    q = to_canvas.transform(QgsPointXY(dock.current()["x"], dock.current()["y"]))
    assert dock.marker.center().distance(q) < 1e-3
    dock.previous()
    assert dock.marker.color().name() == "#d7301f"  # labelled moving
    # pan only: the scale stays, the centre follows
    dock.zoom_combo.setCurrentIndex(dock.zoom_combo.count() - 1)
    scale = qgis_canvas.scale()
    s = dock.go(7)
    p = to_canvas.transform(QgsPointXY(s["x"], s["y"]))
    assert qgis_canvas.scale() == pytest.approx(scale, rel=1e-6)
    assert qgis_canvas.extent().center().distance(p) < 0.01 * qgis_canvas.extent().width()
    dock.zoom_combo.setCurrentIndex(0)
    # the blind mode hides the stratum
    dock.blind_box.setChecked(True)
    assert "hidden" in dock.info.text() and "map class" not in dock.info.text()
    dock.blind_box.setChecked(False)
    assert "map class" in dock.info.text()
    # hiding the dock hides the marker
    dock.hide()
    assert not dock.marker.isVisible()


# ------------------------------------------------------------------ estimates
def test_estimate_shown_equals_core_estimator_and_links_the_report(map_folder, tmp_path,
                                                                   dock_factory):
    path = str(tmp_path / "samples.csv")
    samples, _d = make_sample(map_folder, path, n_total=40, min_per_stratum=15)
    dock = dock_factory(path)
    # too early: the reason is shown, nothing crashes
    assert dock.estimate() is None
    assert "No estimate yet" in dock.results.toHtml()
    # label everything: the map class, wrong for a few, and one unsure
    for k, s in enumerate(samples):
        assert dock.current()["id"] == s["id"]
        other = [c for c in aa.CLASSES if c != s["stratum"]][0]
        lab = "unsure" if k == 5 else (other if k % 7 == 3 else s["stratum"])
        assert dock.label(lab) is not None
    assert dock.progress.value() == len(samples)
    assert "All %d points are labelled" % len(samples) in dock.status_label.text()
    dock.estimate_button.click()
    rep = dock.report
    assert rep is not None
    core = aa.assess(path)
    e, c = rep.estimates, core.estimates
    assert e.overall.value == pytest.approx(c.overall.value)
    assert e.overall.low == pytest.approx(c.overall.low)
    for i in range(2):
        assert e.users[i].value == pytest.approx(c.users[i].value)
        assert e.producers[i].high == pytest.approx(c.producers[i].high)
        assert e.area[i].low == pytest.approx(c.area[i].low)
    assert core.n_unsure == 1 and core.n_used == len(samples) - 1
    shown = dock.results.toPlainText()
    assert "%.3f" % c.overall.value in shown
    assert "%.3f" % c.users[0].value in shown and "%.3f" % c.producers[0].value in shown
    assert "%.3f – %.3f" % (c.users[0].low, c.users[0].high) in shown
    a = c.area[0]
    for v in (a.value, a.low, a.high):
        assert "{:,.0f}".format(v).replace(",", " ") in shown
    assert "95 %" in shown and "unsure" in shown
    # the written report, linked from the results
    html, csv_path, json_path = [os.path.join(str(tmp_path), "samples_accuracy" + x)
                                 for x in (".html", ".csv", ".json")]
    assert dock.report_files == [html, csv_path, json_path]
    for f in dock.report_files:
        assert os.path.getsize(f) > 0
    assert "Olofsson" in open(html, encoding="utf-8").read()
    from qgis.PyQt.QtCore import QUrl

    assert QUrl.fromLocalFile(html).toString() in dock.results.toHtml()
    assert dock.results.openExternalLinks()
    # the same numbers as the Processing algorithm's output (it calls the same estimator)
    import json

    js = json.load(open(json_path))
    assert js["overall_accuracy"]["estimate"] == pytest.approx(c.overall.value)


def test_dock_estimate_equals_the_processing_algorithm(map_folder, tmp_path, dock_factory,
                                                       provider):
    import processing

    sample = str(tmp_path / "alg.gpkg")
    res = processing.run("slidewatch:accuracy_sampling",
                         {"DETECTION_FOLDER": map_folder, "SAMPLE_SIZE": 30,
                          "MIN_PER_STRATUM": 12, "SEED": 4, "OUTPUT": sample})
    assert res["N_SAMPLES"] == 30 and res["N_MOVING"] >= 12
    dock = dock_factory(sample)
    assert len(dock.samples) == 30
    for k in range(30):
        s = dock.current()
        dock.label(s["stratum"] if k % 6 else [c for c in aa.CLASSES if c != s["stratum"]][0])
    rep = dock.estimate()
    out = processing.run("slidewatch:accuracy_estimate",
                         {"INPUT": sample, "CONFIDENCE": 0.95,
                          "OUTPUT_CSV": str(tmp_path / "alg_estimates.csv")})
    e = rep.estimates
    assert out["OVERALL_ACCURACY"] == pytest.approx(e.overall.value)
    assert out["USERS_ACCURACY_MOVING"] == pytest.approx(e.users[0].value)
    assert out["PRODUCERS_ACCURACY_MOVING"] == pytest.approx(e.producers[0].value)
    assert out["AREA_MOVING_CI_LOW_M2"] == pytest.approx(e.area[0].low)
    assert out["AREA_MOVING_CI_HIGH_M2"] == pytest.approx(e.area[0].high)
    assert out["N_USED"] == 30 and out["N_UNLABELLED"] == 0


# ------------------------------------------------------------- project layers
def test_sample_layer_from_the_project(map_folder, tmp_path, dock_factory):
    path = str(tmp_path / "s.gpkg")
    samples, _d = make_sample(map_folder, path)
    other = QgsVectorLayer("Point?crs=%s&field=name:string" % CRS, "not a sample", "memory")
    layer = QgsVectorLayer("%s|layername=%s" % (path, aa.SAMPLES_LAYER), "samples", "ogr")
    assert layer.isValid()
    QgsProject.instance().addMapLayers([other, layer])
    dock = dock_factory()
    assert dock.path == os.path.abspath(path) and dock.layer is layer
    assert dock.layer_combo.currentLayer() is layer
    assert other in dock.layer_combo.exceptedLayerList()
    first = dock.current()["id"]
    dock.label("moving")
    # the project layer shows the new label (the provider re-read the file)
    labels = {f["id"]: f["label"] for f in layer.getFeatures()}
    assert labels[first] == "moving"
    # a CSV opened with the file chooser's path: added as a layer, then picked by a new dock
    csv_path = str(tmp_path / "c.csv")
    make_sample(map_folder, csv_path, seed=9)
    dock.open_file(csv_path)
    assert dock.path == os.path.abspath(csv_path)
    csv_layer = dock.layer
    assert csv_layer.providerType() == "delimitedtext" and csv_layer.featureCount() == 24
    assert csv_layer.crs().authid() == CRS
    first_csv = dock.current()["id"]
    dock.label("not_moving")
    assert _stored(csv_path)[first_csv]["label"] == "not_moving"
    dock.layer_combo.setLayer(layer)              # back to the GeoPackage
    assert dock.path == os.path.abspath(path)
    # a file that is not a sample: a clear message, the loaded sample stays
    bad = str(tmp_path / "bad.csv")
    with open(bad, "w") as fh:
        fh.write("a,b\n1,2\n")
    n_layers = len(QgsProject.instance().mapLayers())
    assert dock.open_file(bad) is None
    assert "Cannot label" in dock.status_label.text()
    assert dock.path == os.path.abspath(path)
    assert len(QgsProject.instance().mapLayers()) == n_layers  # not added to the project
    QgsProject.instance().removeMapLayer(layer.id())
    assert dock.layer is None
    assert dock.label("unsure") is not None       # still labels the file


def test_a_label_that_cannot_be_saved_is_reported(map_folder, tmp_path, dock_factory,
                                                  monkeypatch):
    from slidewatch.core.errors import OutputError

    path = str(tmp_path / "s.gpkg")
    samples, _d = make_sample(map_folder, path)
    dock = dock_factory(path)

    def locked(*_a, **_k):
        raise OutputError("'%s' stayed locked by another writer" % path)

    monkeypatch.setattr(aa, "set_label", locked)
    assert dock.label("moving") is None
    assert "NOT saved" in dock.status_label.text()
    assert dock.current()["id"] == samples[0]["id"] and dock.current()["label"] is None
    assert dock.progress.value() == 0
    monkeypatch.undo()
    assert dock.label("moving") is not None
    assert _stored(path)[samples[0]["id"]]["label"] == "moving"


# -------------------------------------------------------------------- plugin
def test_plugin_adds_and_removes_the_dock_action(recording_iface, qgis_processing,
                                                 qgis_new_project, map_folder, tmp_path):
    import slidewatch

    path = str(tmp_path / "s.gpkg")
    make_sample(map_folder, path)
    layer = QgsVectorLayer("%s|layername=%s" % (path, aa.SAMPLES_LAYER), "samples", "ogr")
    QgsProject.instance().addMapLayer(layer)
    plugin = slidewatch.classFactory(recording_iface)
    plugin.initGui()
    try:
        actions = [a for a in plugin.actions if a.text() == "Accuracy sample"]
        assert len(actions) == 1
        action = actions[0]
        assert ("&SlideWatch", action) in recording_iface.menu_actions
        assert action in plugin.toolbar.actions()
        action.trigger()
        dock = plugin.docks["AccuracySampleDock"]
        assert dock in recording_iface.docks and not dock.isHidden()
        assert dock.path == os.path.abspath(path)  # picked the sample layer of the project
        assert dock.marker is not None
        canvas = recording_iface.mapCanvas()
        assert dock.marker in canvas.scene().items()
    finally:
        plugin.unload()
    assert recording_iface.docks == [] and recording_iface.menu_actions == []
    assert plugin.actions == [] and plugin.docks == {}
    assert dock.marker is None  # the marker left the canvas
