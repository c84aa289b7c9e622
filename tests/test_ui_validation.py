"""Validation dock and model: decisions in the GeoPackage, undo, re-open, concurrency,
report, learning from validations."""

import csv
import datetime as dt
import os
import sqlite3
import threading

import numpy as np
import pytest
from qgis.core import QgsProject, QgsVectorLayer

from ui_fixtures import make_detections, make_output_folder


def _read(gpkg):
    from slidewatch.ui.validation_model import load_detections

    return {r["id"]: r for r in load_detections(gpkg)}


@pytest.fixture()
def folder(tmp_path):
    truth = make_output_folder(str(tmp_path), n_detections=12, with_pairs=False)
    return str(tmp_path), truth


@pytest.fixture()
def dock_factory(qgis_iface, qgis_new_project):
    from slidewatch.ui.validation_dock import ValidationDock

    docks = []

    def make(gpkg):
        layer = QgsVectorLayer(gpkg + "|layername=detections", "detections", "ogr")
        assert layer.isValid()
        QgsProject.instance().addMapLayer(layer)
        d = ValidationDock(qgis_iface, qgis_iface.mainWindow())
        d.layer_combo.setLayer(layer)
        assert d.model is not None, d.status_label.text()
        docks.append(d)
        return d

    yield make
    for d in docks:
        d.wait()
        d.cleanup()
        d.deleteLater()


# ------------------------------------------------------------------ pure model
def test_model_order_filters_navigation(folder):
    from slidewatch.ui.validation_model import ValidationModel

    gpkg = os.path.join(folder[0], "detections.gpkg")
    m = ValidationModel(gpkg, writer=lambda *a: pytest.fail("no write expected"))
    items = m.visible()
    scores = [r["score"] for r in items]
    assert len(items) == 12 and scores == sorted(scores, reverse=True)
    m.set_filters(min_score=np.median(scores))
    assert all(r["score"] >= np.median(scores) for r in m.visible())
    assert 0 < len(m.visible()) < 12
    m.set_filters(min_area=1000.0)
    assert all(r["area_m2"] >= 1000 for r in m.visible())
    m.set_filters("confirmed")
    assert m.visible() == [] and m.first() is None
    m.set_filters()
    first = m.first()
    assert first["id"] == items[0]["id"]
    assert m.next()["id"] == items[1]["id"]
    assert m.previous()["id"] == items[0]["id"]
    assert m.previous()["id"] == items[0]["id"]  # stays at the start
    assert m.counts() == dict(unvalidated=12, confirmed=0, rejected=0, uncertain=0, total=12,
                              validated=0)
    assert m.precision() is None


def test_timestamp_normalisation():
    from slidewatch.ui.validation_model import normalize_timestamp

    assert normalize_timestamp("2026/11/21 23:20:16.791+00") == "2026-11-21T23:20:16.791Z"
    assert normalize_timestamp("2026-11-21T23:20:16Z") == "2026-11-21T23:20:16.000Z"
    assert normalize_timestamp(None) is None


# ---------------------------------------------------------------------- dock
def test_decisions_written_at_once_and_read_back(folder, dock_factory, qgis_canvas):
    gpkg = os.path.join(folder[0], "detections.gpkg")
    dock = dock_factory(gpkg)
    order = [r["id"] for r in dock.model.visible()]
    assert dock.model.current_id == order[0]
    assert dock.table.rowCount() == 12
    dock.analyst.setText("alice")
    dock.comment.setText("clear scarp on the image")
    before = dt.datetime.now(dt.timezone.utc)
    dock.decide("confirmed")
    # in the file at once, read with a fresh connection
    rec = _read(gpkg)[order[0]]
    assert rec["status"] == "confirmed"
    assert rec["comment"] == "clear scarp on the image"
    assert rec["validated_by"] == "alice"
    stamp = dt.datetime.fromisoformat(rec["validated_at"].replace("Z", "+00:00"))
    assert abs((stamp - before).total_seconds()) < 60
    assert dock.model.current_id == order[1]  # moved on to the next detection
    assert dock.comment.text() == ""
    dock.decide("rejected")
    dock.decide("uncertain")
    stored = _read(gpkg)
    assert [stored[i]["status"] for i in order[:4]] == ["confirmed", "rejected", "uncertain",
                                                        "unvalidated"]
    assert dock.progress.value() == 3 and dock.progress.maximum() == 12
    assert "3 / 12 validated" in dock.status_label.text()
    # the status is shown in the table
    statuses = {dock.table.item(r, 0).text(): dock.table.item(r, 5).text()
                for r in range(dock.table.rowCount())}
    assert statuses[str(order[0])] == "confirmed"
    from qgis.core import QgsSettings

    assert QgsSettings().value("SlideWatch/analyst") == "alice"


def test_select_zooms_flashes_and_shows_series_and_explanation(folder, dock_factory, qgis_canvas):
    gpkg = os.path.join(folder[0], "detections.gpkg")
    truth = folder[1]
    qgis_canvas.resize(600, 400)
    dock = dock_factory(gpkg)
    ident = truth["detections"][1]["id"]  # the accelerating slide
    dock.select(ident)
    assert dock.wait()
    from qgis.core import QgsCoordinateTransform

    geom = dock.current_geometry()
    to_canvas = QgsCoordinateTransform(dock.layer.crs(),
                                       qgis_canvas.mapSettings().destinationCrs(),
                                       QgsProject.instance())
    box = to_canvas.transformBoundingBox(geom.boundingBox())
    assert qgis_canvas.extent().contains(box)
    assert qgis_canvas.extent().width() < 20 * box.width()
    html = dock.explanation.toPlainText()
    assert "velocity significance" in html and "accelerating" in html
    assert dock.series is not None and dock.series["label"] == "detection %s" % ident
    assert dock.series["n_pixels"] > 20
    # mean series = mean of the time-series pixels inside (last date, strong motion)
    r0, c0, r1, c1 = truth["detections"][1]["box"]
    inner = truth["east"][-1, r0 + 1:r1, c0 + 1:c1].mean()
    assert abs(dock.series["east"][-1] - inner) < 0.25 * abs(inner)


def test_undo_restores_the_previous_state(folder, dock_factory):
    gpkg = os.path.join(folder[0], "detections.gpkg")
    dock = dock_factory(gpkg)
    first = dock.model.current_id
    dock.comment.setText("first look")
    dock.decide("rejected")
    second = dock.model.current_id
    dock.decide("confirmed")
    assert _read(gpkg)[second]["status"] == "confirmed"
    dock.undo()
    stored = _read(gpkg)
    assert stored[second]["status"] == "unvalidated" and not stored[second]["validated_by"]
    assert stored[second]["validated_at"] is None      # back to never-validated, not stamped
    assert stored[first]["status"] == "rejected" and stored[first]["comment"] == "first look"
    assert dock.model.current_id == second
    dock.undo()
    stored = _read(gpkg)
    assert stored[first]["status"] == "unvalidated" and not stored[first]["comment"]
    assert not dock.model.can_undo() and not dock.undo_button.isEnabled()
    assert dock.undo() is None  # nothing left: no error


def test_reopen_dock_finds_the_decisions(folder, dock_factory):
    gpkg = os.path.join(folder[0], "detections.gpkg")
    dock = dock_factory(gpkg)
    decided = []
    for status in ("confirmed", "confirmed", "rejected"):
        decided.append((dock.model.current_id, status))
        dock.decide(status)
    dock.cleanup()
    again = dock_factory(gpkg)
    for ident, status in decided:
        assert again.model.by_id[ident]["status"] == status
    assert again.progress.value() == 3
    again.status_combo.setCurrentText("confirmed")
    assert again.table.rowCount() == 2
    assert again.model.precision() == pytest.approx(2 / 3)


def test_keyboard_shortcuts(folder, dock_factory, qgis_iface):
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtTest import QTest
    from qgis.PyQt.QtWidgets import QApplication

    gpkg = os.path.join(folder[0], "detections.gpkg")
    dock = dock_factory(gpkg)
    dock.setFloating(True)
    dock.show()
    dock.activateWindow()
    dock.table.setFocus()
    QApplication.processEvents()
    order = [r["id"] for r in dock.model.visible()]
    QTest.keyClick(dock.table, Qt.Key.Key_N)
    assert dock.model.current_id == order[1]
    QTest.keyClick(dock.table, Qt.Key.Key_P)
    assert dock.model.current_id == order[0]
    QTest.keyClick(dock.table, Qt.Key.Key_C)
    QTest.keyClick(dock.table, Qt.Key.Key_R)
    QTest.keyClick(dock.table, Qt.Key.Key_U)
    stored = _read(gpkg)
    assert [stored[i]["status"] for i in order[:3]] == ["confirmed", "rejected", "uncertain"]
    QTest.keyClick(dock.table, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert _read(gpkg)[order[2]]["status"] == "unvalidated"
    # typing a comment does not trigger the single-letter shortcuts
    dock.comment.setFocus()
    QTest.keyClicks(dock.comment, "crn")
    assert dock.comment.text() == "crn"
    assert _read(gpkg)[order[2]]["status"] == "unvalidated"


def test_two_docks_on_one_file(folder, dock_factory):
    gpkg = os.path.join(folder[0], "detections.gpkg")
    a = dock_factory(gpkg)
    b = dock_factory(gpkg)
    ids = [r["id"] for r in a.model.visible()]
    a.select(ids[0])
    a.decide("confirmed")
    b.select(ids[1])
    b.decide("rejected")  # b re-reads the file before and after writing
    assert b.model.by_id[ids[0]]["status"] == "confirmed"
    a.reload()
    assert a.model.by_id[ids[1]]["status"] == "rejected"
    # b overrides a's decision on ids[0]; a's undo must not silently erase it
    b.select(ids[0])
    b.analyst.setText("bob")
    b.decide("uncertain")
    a.model.undo_stack = a.model.undo_stack[-1:]
    assert a.undo() is None
    assert _read(gpkg)[ids[0]]["status"] == "uncertain"
    assert "bob" in a.status_label.text()


def test_concurrent_writers_do_not_corrupt(folder):
    """Several sessions writing at the same time (threads, own connections)."""
    from slidewatch.ui.validation_model import ValidationModel

    gpkg = os.path.join(folder[0], "detections.gpkg")
    models = [ValidationModel(gpkg) for _ in range(3)]
    ids = [r["id"] for r in models[0].visible()]
    errors = []

    def work(k):
        try:
            for ident in ids[k::3]:
                models[k].select(ident)
                models[k].decide(("confirmed", "rejected", "uncertain")[k], "t%d" % k,
                                 "analyst%d" % k, advance=False)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    stored = _read(gpkg)
    for k in range(3):
        for ident in ids[k::3]:
            assert stored[ident]["status"] == ("confirmed", "rejected", "uncertain")[k]
            assert stored[ident]["validated_by"] == "analyst%d" % k
    with sqlite3.connect(gpkg) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_report(folder, dock_factory, tmp_path):
    gpkg = os.path.join(folder[0], "detections.gpkg")
    dock = dock_factory(gpkg)
    for status in ("confirmed", "confirmed", "confirmed", "rejected", "uncertain"):
        dock.decide(status)
    path, summary = dock.export_report(str(tmp_path / "report.csv"))
    rows = list(csv.DictReader(open(path)))
    assert len(rows) == 12
    assert sum(r["status"] == "confirmed" for r in rows) == 3
    values = {r["key"]: r["value"] for r in csv.DictReader(open(summary))}
    assert values["validated"] == "5" and values["rejected"] == "1"
    assert float(values["precision"]) == pytest.approx(0.75)
    assert float(values["precision_ci95_low"]) < 0.75 < float(values["precision_ci95_high"])


# ------------------------------------------------------------------- learning
def test_classifier_learns_evidence():
    from slidewatch.core.detect.validation_learning import EvidenceClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] * 2 - X[:, 1] + rng.normal(0, 0.5, 200) > 0).astype(float)
    clf = EvidenceClassifier(l2=0.1).fit(X, y, names=["a", "b", "c"])
    assert clf.coef_[0] > 1 and clf.coef_[1] < -0.5
    assert abs(clf.coef_[2]) < 0.15 * clf.coef_[0]  # the noise feature matters little
    acc = ((clf.predict_proba(X) > 0.5) == y).mean()
    assert acc > 0.85
    contrib = clf.contributions(X[:5])
    np.testing.assert_allclose(contrib.sum(axis=1) + clf.intercept_, clf.decision_function(X[:5]))
    assert clf.explain(np.array([[3.0, 0.0, 0.0]]))[0][0] == "a"
    # NaN evidence contributes nothing
    assert clf.contributions(np.array([[np.nan, 0, 0]]))[0, 0] == 0


def test_learning_reranks_unvalidated_after_20(tmp_path, dock_factory):
    from slidewatch.ui.validation_model import ValidationModel

    gpkg = str(tmp_path / "detections.gpkg")
    truth = {t["id"]: t for t in make_detections(gpkg, 60, seed=7)}
    model = ValidationModel(gpkg)
    by_score = [r["id"] for r in model.visible()]
    # the analyst validates 19 detections in score order: not enough yet
    for ident in by_score[:19]:
        model.select(ident)
        model.decide("confirmed" if truth[ident]["real"] else "rejected", analyst="t",
                     advance=False)
    assert not model.learning_active and "19 of 20" in model.learning_message
    # and a 20th (plus a few random ones so both outcomes are represented)
    for ident in by_score[19:20] + by_score[-4:]:
        model.select(ident)
        model.decide("confirmed" if truth[ident]["real"] else "rejected", analyst="t",
                     advance=False)
    assert model.learning_active
    todo = [r["id"] for r in model.records if r["status"] == "unvalidated"]
    assert set(model.predictions) == set(todo)
    p = np.array([model.probability(i) for i in todo])
    real = np.array([truth[i]["real"] for i in todo])
    assert real.any() and (~real).any()
    # ranking quality: AUC of the learned probability on the unvalidated detections
    auc = np.mean([pi > pj for pi in p[real] for pj in p[~real]])
    assert auc > 0.75, auc
    model.set_order("probability")
    ranked = [r["id"] for r in model.visible()]
    assert ranked[:len(todo)] == sorted(todo, key=lambda i: -model.probability(i))
    drivers = model.drivers(todo[0])
    assert len(drivers) == 3 and all(name.startswith("ev_") for name, _c in drivers)
    # the dock shows it
    dock = dock_factory(gpkg)
    dock.order_combo.setCurrentIndex(1)
    dock.select(ranked[0])
    assert "P(confirm)" in dock.explanation.toPlainText()
    assert dock.table.item(0, 2).text() == "%.2f" % model.probability(ranked[0])


_SESSION = """
import sys
from slidewatch.ui.validation_model import ValidationModel
gpkg, who = sys.argv[1], sys.argv[2]
ids = [int(i) for i in sys.argv[3].split(",")]
m = ValidationModel(gpkg)
for ident in ids:
    m.select(ident)
    m.decide("rejected", "from " + who, who, advance=False)
print("ok", len(ids))
"""


def test_two_processes_write_the_same_file(folder):
    """Another QGIS session (a separate process) writing decisions at the same time."""
    import subprocess
    import sys

    from conftest import qgis_process_env
    from slidewatch.ui.validation_model import ValidationModel

    gpkg = os.path.join(folder[0], "detections.gpkg")
    model = ValidationModel(gpkg)
    ids = [r["id"] for r in model.visible()]
    theirs, ours = ids[::2], ids[1::2]
    env = qgis_process_env()
    proc = subprocess.Popen([sys.executable, "-c", _SESSION, gpkg, "other",
                             ",".join(str(i) for i in theirs)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for ident in ours:
        model.select(ident)
        model.decide("confirmed", "from us", "us", advance=False)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    model.reload()
    for ident in theirs:
        assert model.by_id[ident]["status"] == "rejected"
        assert model.by_id[ident]["validated_by"] == "other"
    for ident in ours:
        assert model.by_id[ident]["status"] == "confirmed"
    assert model.counts()["validated"] == len(ids)
    with sqlite3.connect(gpkg) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
