"""Pair-network dock: pairs.csv plotted by date or baseline, coloured by score, click loads."""

import csv
import os

import numpy as np
import pytest
from qgis.core import QgsProject
from qgis.PyQt.QtCore import QPointF

from ui_fixtures import make_output_folder


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("sw_pairs"))
    make_output_folder(folder, n_detections=3)
    rows = list(csv.DictReader(open(os.path.join(folder, "pairs.csv"))))
    return folder, rows


@pytest.fixture()
def dock(qgis_iface, qgis_new_project, outputs):
    from slidewatch.ui.pair_network_dock import PairNetworkDock

    d = PairNetworkDock(qgis_iface, qgis_iface.mainWindow())
    d.set_folder(outputs[0])
    assert d.wait()
    yield d
    d.cleanup()
    d.deleteLater()


def _points(dock):
    return dock.scatter.points() if dock.scatter is not None else []


def test_plots_every_candidate_and_selected_pair(dock, outputs):
    from slidewatch.ui.plot_helpers import date_seconds

    folder, rows = outputs
    assert len(dock.pairs) == len(rows)
    pts = _points(dock)
    assert len(pts) == len(rows)
    by_dates = {(p.data()["reference_date"], p.data()["secondary_date"]): p for p in pts}
    for row in rows:
        p = by_dates[(row["reference_date"], row["secondary_date"])]
        assert p.pos().x() == date_seconds(row["reference_date"])
        assert p.pos().y() == date_seconds(row["secondary_date"])
        assert p.data()["selected"] == (row["selected"] == "true")
        assert p.size() == (12 if row["selected"] == "true" else 9)
    dock.candidates_box.setChecked(False)
    assert len(_points(dock)) == sum(r["selected"] == "true" for r in rows)


def test_baseline_view(dock, outputs):
    _folder, rows = outputs
    dock.view_combo.setCurrentIndex(1)
    ys = sorted(p.pos().y() for p in _points(dock))
    assert ys == sorted(float(r["baseline_days"]) for r in rows)


def test_colour_follows_score(dock, outputs):
    from slidewatch.ui.pair_network_dock import score_colours

    rgba, lo, hi = score_colours([0.0, 0.5, 1.0, np.nan])
    assert (lo, hi) == (0.0, 1.0)
    assert tuple(rgba[0][:3]) == (68, 1, 84) and tuple(rgba[2][:3]) == (253, 231, 37)
    assert tuple(rgba[3][:3]) == (150, 150, 150)
    pts = _points(dock)
    best = max(pts, key=lambda p: p.data()["score"])
    worst = min(pts, key=lambda p: p.data()["score"])
    # viridis: brighter (more green+red) with higher score
    assert sum(best.brush().color().getRgb()[:3]) > sum(worst.brush().color().getRgb()[:3])


def test_click_loads_the_pair_raster(dock, outputs):
    folder, rows = outputs
    from qgis.PyQt.QtWidgets import QApplication

    dock.setFloating(True)
    dock.resize(700, 500)
    dock.show()
    QApplication.processEvents()
    dock.plot.grab()  # paint once: the scatter's hit-testing uses the painted symbol sizes
    QApplication.processEvents()
    selected = [p for p in _points(dock) if p.data()["selected"]][0]
    assert len(dock.scatter.pointsAt(QPointF(selected.pos()))) >= 1
    # a real mouse click on the view, at the point's position
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtTest import QTest

    scene_pos = dock.scatter.mapToScene(selected.pos())
    view_pos = dock.plot.mapFromScene(scene_pos)
    clicked = []
    dock.scatter.sigClicked.connect(lambda _item, pts, _ev: clicked.extend(pts))
    QTest.mouseClick(dock.plot.viewport(), Qt.MouseButton.LeftButton,
                     Qt.KeyboardModifier.NoModifier, view_pos)
    assert clicked, "the click did not reach the scatter"
    pair = dock.last_clicked
    assert pair is clicked[0].data(), dock.info.text()
    assert pair["selected"], (pair, dock.info.text())
    expected = os.path.join(folder, "pairs", "pair_%s_%s.tif" % (
        pair["reference_date"].replace("-", ""), pair["secondary_date"].replace("-", "")))
    layers = [layer for layer in QgsProject.instance().mapLayers().values()
              if layer.source() == expected]
    assert len(layers) == 1 and layers[0].isValid() and layers[0].bandCount() == 5, [
        (l.source(), expected) for l in QgsProject.instance().mapLayers().values()]
    # a second click does not add it twice
    dock.load_pair(pair)
    assert len([layer for layer in QgsProject.instance().mapLayers().values()
                if layer.source() == expected]) == 1
    # a candidate that was not selected has no raster: a message, no layer
    n = len(QgsProject.instance().mapLayers())
    unselected = [p for p in _points(dock) if not p.data()["selected"]][0]
    assert dock.load_pair(unselected.data()) is None
    assert "not selected" in dock.info.text()
    assert len(QgsProject.instance().mapLayers()) == n


def test_missing_pairs_csv_is_explained(qgis_iface, qgis_new_project, tmp_path):
    from slidewatch.ui.pair_network_dock import PairNetworkDock

    d = PairNetworkDock(qgis_iface, qgis_iface.mainWindow())
    try:
        assert d.set_folder(str(tmp_path)) is False
        assert "pairs.csv" in d.info.text()
        assert _points(d) == []
    finally:
        d.cleanup()
