"""Exports (core/outputs/exports.py, slidewatch:export): InSAR Explorer point layers, reports."""

import csv
import os
import re

import numpy as np
import pytest

from slidewatch.core.outputs import exports as ex
from slidewatch.core.errors import InputError, ParameterError
from ui_fixtures import CRS, DATES, make_output_folder, pixel_centre


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("sw_exports"))
    truth = make_output_folder(folder, n_detections=6)
    # one decision recorded, so the reports show a validation
    from slidewatch.core.detect.detections_store import record_decision

    record_decision(os.path.join(folder, "detections.gpkg"), truth["detections"][0]["id"],
                    "confirmed", "scarp visible", "tester")
    return folder, truth


def _gpkg_rows(path):
    from osgeo import ogr

    ds = ogr.Open(path)
    lyr = ds.GetLayer(0)
    names = [lyr.GetLayerDefn().GetFieldDefn(i).GetName()
             for i in range(lyr.GetLayerDefn().GetFieldCount())]
    rows = []
    for f in lyr:
        g = f.GetGeometryRef()
        rows.append(dict({n: f.GetField(n) for n in names}, _x=g.GetX(), _y=g.GetY(),
                         _type=g.GetGeometryName()))
    srs = lyr.GetSpatialRef()
    return names, rows, srs


def test_detection_points_follow_the_insar_explorer_convention(outputs, tmp_path):
    folder, truth = outputs
    res = ex.export_detection_points(folder, str(tmp_path / "det"), ("gpkg", "csv"),
                                     component="east", units="m")
    assert [os.path.basename(p) for p in res.paths] == ["det.gpkg", "det.csv"]
    names, rows, srs = _gpkg_rows(str(tmp_path / "det.gpkg"))
    date_fields = [n for n in names if re.match(r"^D\d{8}$", n)]
    assert date_fields == ["D" + d.replace("-", "") for d in DATES]
    assert "velocity" in names and {"id", "status", "score"} <= set(names)
    assert srs.GetAuthorityCode(None) == CRS.split(":")[1]
    assert len(rows) == res.n_points == len(truth["detections"])
    # the first detection: the mean of the east series of its pixels, point inside it
    det = truth["detections"][0]
    row = [r for r in rows if r["id"] == det["id"]][0]
    assert row["_type"] == "POINT" and row["status"] == "confirmed"
    from slidewatch.core.detect.detections_store import read_detections
    from osgeo import ogr

    rec = [r for r in read_detections(os.path.join(folder, "detections.gpkg"))
           if r["id"] == det["id"]][0]
    poly = ogr.CreateGeometryFromWkt(rec["geometry_wkt"])
    pt = ogr.Geometry(ogr.wkbPoint)
    pt.AddPoint_2D(row["_x"], row["_y"])
    assert poly.Contains(pt)
    from slidewatch.core.series.series_models import read_area_series
    import json

    s = read_area_series(os.path.join(folder, "timeseries", "ts_east_m.tif"),
                         os.path.join(folder, "timeseries", "ts_north_m.tif"),
                         json.loads(poly.ExportToJson()),
                         os.path.join(folder, "timeseries", "velocity.tif"))
    np.testing.assert_allclose([row[n] for n in date_fields], s["east"], rtol=1e-9)
    assert row["velocity"] == pytest.approx(s["velocity"]["ve_m_per_yr"])
    # the CSV has the same values, x/y and lon/lat
    with open(str(tmp_path / "det.csv"), newline="") as fh:
        crow = [r for r in csv.DictReader(fh) if r["id"] == str(det["id"])][0]
    assert float(crow["x"]) == pytest.approx(row["_x"], abs=1e-3)
    assert 0 < float(crow["lon"]) < 40 and 40 < float(crow["lat"]) < 50  # UTM 33N
    assert float(crow[date_fields[-1]]) == pytest.approx(row[date_fields[-1]], rel=1e-5)


def test_components_and_units(outputs, tmp_path):
    folder, _truth = outputs
    got = {}
    for comp in ex.COMPONENTS:
        res = ex.export_detection_points(folder, str(tmp_path / comp), ("gpkg",),
                                         component=comp, units="mm")
        _n, rows, _s = _gpkg_rows(res.paths[0])
        got[comp] = sorted(rows, key=lambda r: r["id"])
    last = "D" + DATES[-1].replace("-", "")
    for a, e, n, m in zip(got["along"], got["east"], got["north"], got["magnitude"]):
        assert a["units"] == "mm" and a["component"] == "along"
        # along the mean direction: the projection; never more than the magnitude
        ve, vn = e["velocity"], n["velocity"]
        u = np.array([ve, vn]) / np.hypot(ve, vn)
        assert a[last] == pytest.approx(u[0] * e[last] + u[1] * n[last], rel=1e-6)
        assert abs(a[last]) <= m[last] + 1e-6
        assert a["velocity"] == pytest.approx(np.hypot(ve, vn), rel=1e-6)
    # mm = 1000 x m
    res = ex.export_detection_points(folder, str(tmp_path / "east_m"), ("gpkg",), "east", "m")
    _n, rows_m, _s = _gpkg_rows(res.paths[0])
    rows_m.sort(key=lambda r: r["id"])
    assert got["east"][0][last] == pytest.approx(1000 * rows_m[0][last], rel=1e-9)
    with pytest.raises(ParameterError):
        ex.export_detection_points(folder, str(tmp_path / "x"), ("gpkg",), "vertical")
    with pytest.raises(ParameterError):
        ex.export_detection_points(folder, str(tmp_path / "x"), ("shp",))


def test_pixel_points(outputs, tmp_path):
    folder, truth = outputs
    res = ex.export_pixel_points(folder, str(tmp_path / "px"), ("gpkg", "csv"),
                                 component="north", units="m", block_rows=7)
    h, w = truth["east"].shape[1:]
    assert res.n_points == h * w - 9  # the fixture's 3 x 3 nodata corner is left out
    names, rows, _srs = _gpkg_rows(res.paths[0])
    by_rc = {(r["row"], r["col"]): r for r in rows}
    r, c = 42, 58
    x, y = pixel_centre(r, c)
    row = by_rc[(r, c)]
    assert (row["_x"], row["_y"]) == pytest.approx((x, y))
    np.testing.assert_allclose([row["D" + d.replace("-", "")] for d in DATES],
                               truth["north"][:, r, c], rtol=1e-6)
    assert row["velocity"] == pytest.approx(truth["velocity"][1, r, c], rel=1e-6)
    with open(res.paths[1]) as fh:
        assert sum(1 for _ in fh) == res.n_points + 1
    # step, minimum velocity, inside detections
    res2 = ex.export_pixel_points(folder, str(tmp_path / "px2"), ("gpkg",), step=4)
    assert res2.n_points == len(range(0, h, 4)) * len(range(0, w, 4)) - 1
    res3 = ex.export_pixel_points(folder, str(tmp_path / "px3"), ("gpkg",), min_velocity=2.0)
    assert 0 < res3.n_points == int(np.sum(truth["velocity"][2] >= 2.0))
    res4 = ex.export_pixel_points(folder, str(tmp_path / "px4"), ("gpkg",),
                                  inside_detections=True)
    r0, c0, r1, c1 = truth["detections"][0]["box"]
    _n, rows4, _s = _gpkg_rows(res4.paths[0])
    rc4 = {(r["row"], r["col"]) for r in rows4}
    assert ((r0 + r1) // 2, (c0 + c1) // 2) in rc4 and (0, w - 1) not in rc4
    assert res4.n_points < res.n_points / 3


def test_pixel_export_cancel_leaves_nothing(outputs, tmp_path):
    from slidewatch.core.errors import Cancelled
    from slidewatch.core.progress import Progress

    folder, _truth = outputs
    calls = []
    with pytest.raises(Cancelled):
        ex.export_pixel_points(folder, str(tmp_path / "c"), ("gpkg", "csv"), block_rows=5,
                               progress=Progress(is_cancelled=lambda: len(calls.append(1) or
                                                                          calls) > 3))
    assert os.listdir(str(tmp_path)) == []


def test_reports(outputs, tmp_path):
    folder, truth = outputs
    res = ex.write_detection_reports(folder, str(tmp_path / "rep"))
    assert res.n_points == len(truth["detections"])
    assert os.path.basename(res.paths[-1]) == "index.html"
    det = truth["detections"][0]
    text = open(str(tmp_path / "rep" / ("detection_%d.html" % det["id"])), encoding="utf-8").read()
    pngs = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(pngs) == 2  # map thumbnail and curves, embedded
    import base64

    from qgis.PyQt.QtGui import QImage

    for b64 in pngs:
        img = QImage.fromData(base64.b64decode(b64), "PNG")
        assert not img.isNull() and img.width() >= 400
    for needle in ("confirmed", "tester", "scarp visible", "Evidence behind the score",
                   "significance", "piecewise linear (onset)", "velocity"):
        assert needle in text, needle
    index = open(res.paths[-1], encoding="utf-8").read()
    assert all(("detection_%d.html" % d["id"]) in index for d in truth["detections"])
    only = ex.write_detection_reports(folder, str(tmp_path / "one"), ids=[det["id"]])
    assert only.n_points == 1



def _labelled_sample(folder, name, share=1.0):
    """An accuracy sample of ``folder``'s detection map, the first ``share`` of its points
    labelled from the velocity (moving above 0.5 m/yr)."""
    import rasterio

    from slidewatch.core.outputs import accuracy_assessment as aa

    path = os.path.join(folder, name)
    _p, _design, samples = aa.create_sample(path, folder, seed=2, min_per_stratum=20)
    with rasterio.open(os.path.join(folder, "timeseries", "velocity.tif")) as src:
        v = src.read(3)
        inv = ~src.transform
    labels = {}
    for smp in samples[:int(round(share * len(samples)))]:
        c, r = inv * (smp["x"], smp["y"])
        labels[smp["id"]] = "moving" if v[int(r), int(c)] > 0.5 else "not_moving"
    aa.set_labels(path, labels, analyst="tester")
    return path


def test_reports_index_gives_the_accuracy_assessment(outputs, tmp_path):
    """Issue 17: the accuracy estimates (user's and producer's accuracy, moving area, 95 %
    intervals) are exported in the report: index.html gives the assessment of every
    labelled sample file of the folder (or of the one given), a sample not ready yet says
    why, and a folder without a sample gets no section."""
    import shutil

    from slidewatch.core.outputs import accuracy_assessment as aa

    folder = str(tmp_path / "out")
    shutil.copytree(outputs[0], folder)
    res = ex.write_detection_reports(folder, str(tmp_path / "none"))
    assert "Accuracy assessment" not in open(res.paths[-1], encoding="utf-8").read()
    gpkg = _labelled_sample(folder, "accuracy_samples.gpkg")
    assert ex.find_accuracy_samples(folder) == [gpkg]
    rep = aa.assess(gpkg)
    res = ex.write_detection_reports(folder, str(tmp_path / "rep"))
    index = open(res.paths[-1], encoding="utf-8").read()
    assert "Accuracy assessment of the detection map" in index
    assert "accuracy_samples.gpkg" in index and rep.html_section() in index
    a = rep.moving_area
    assert "{:,.0f}".format(a.low) in index and "{:,.0f}".format(a.high) in index
    # a CSV sample half labelled: both are found; one stratum may lack labels -> reason
    csv_path = _labelled_sample(folder, "second_sample.csv", share=0.02)
    assert ex.find_accuracy_samples(folder) == [gpkg, csv_path]
    res = ex.write_detection_reports(folder, str(tmp_path / "rep2"))
    index = open(res.paths[-1], encoding="utf-8").read()
    assert "second_sample.csv</code>: not assessed yet" in index
    assert "fewer than 2 labelled samples" in index
    only = ex.write_detection_reports(folder, str(tmp_path / "rep3"), accuracy_samples=[])
    assert "Accuracy assessment" not in open(only.paths[-1], encoding="utf-8").read()

def test_errors_are_actionable(tmp_path):
    with pytest.raises(InputError, match="ts_east_m.tif"):
        ex.export_detection_points(str(tmp_path))
    folder = str(tmp_path / "nodet")
    make_output_folder(folder, n_detections=2)
    os.remove(os.path.join(folder, "detections.gpkg"))
    with pytest.raises(InputError, match="detection step"):
        ex.write_detection_reports(folder)
    res = ex.export_pixel_points(folder, None, ("csv",), step=10)  # no detections needed
    assert res.paths == [os.path.join(folder, "exports", "pixels_insar_explorer.csv")]


# ------------------------------------------------------------------ in QGIS
def test_exported_points_read_as_insar_explorer_does(outputs, tmp_path, qgis_new_project):
    """The checks InSAR Explorer makes on a layer (vector_layer.py of luhipi/insar-explorer:
    a point layer, a 'velocity' field, fields matching ^D(\\d{8})$)."""
    from qgis.core import QgsVectorLayer, QgsWkbTypes

    folder, _truth = outputs
    res = ex.export_detection_points(folder, str(tmp_path / "ie"), ("gpkg", "csv"))
    layer = QgsVectorLayer(res.paths[0], "ie", "ogr")
    assert layer.isValid() and layer.geometryType() == QgsWkbTypes.GeometryType.PointGeometry
    assert layer.fields().lookupField("velocity") != -1
    dates = [f.name() for f in layer.fields() if re.match(r"^D(\d{8})$", f.name())]
    assert len(dates) == len(DATES)
    feature = next(layer.getFeatures())
    assert isinstance(feature[dates[-1]], float)
    uri = "file://%s?type=csv&xField=x&yField=y&crs=%s&detectTypes=yes" % (res.paths[1], CRS)
    csv_layer = QgsVectorLayer(uri, "ie_csv", "delimitedtext")
    assert csv_layer.isValid() and csv_layer.featureCount() == layer.featureCount()
    assert csv_layer.geometryType() == QgsWkbTypes.GeometryType.PointGeometry


def _run(alg_id, params, context=None):
    from qgis.core import (QgsApplication, QgsProcessingAlgorithm, QgsProcessingContext,
                           QgsProcessingFeedback)

    class Feedback(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.errors = []

        def reportError(self, error, fatalError=False):  # noqa: N802
            self.errors.append(error)

    alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
    assert alg is not None, alg_id
    feedback = Feedback()
    res, ok = QgsProcessingAlgorithm.run(alg, params, context or QgsProcessingContext(),
                                         feedback)
    return res, ok, feedback


def test_processing_algorithm(provider, outputs, tmp_path, qgis_new_project):
    from qgis.core import QgsProcessingContext, QgsProject

    folder, truth = outputs
    out = str(tmp_path / "alg")
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    res, ok, fb = _run("slidewatch:export", {"INPUT": folder, "PIXEL_POINTS": True,
                                             "PIXEL_STEP": 5, "OUTPUT_FOLDER": out}, context)
    assert ok, fb.errors
    assert res["N_DETECTIONS"] == len(truth["detections"]) == res["N_REPORTS"]
    assert res["N_PIXELS"] > 0
    names = sorted(os.listdir(out))
    assert names == ["detections_insar_explorer.csv", "detections_insar_explorer.gpkg",
                     "pixels_insar_explorer.csv", "pixels_insar_explorer.gpkg", "reports"]
    assert os.path.exists(os.path.join(res["REPORT_INDEX"], "index.html"))
    assert len(context.layersToLoadOnCompletion()) == 2
    _res, ok, fb = _run("slidewatch:export", {"INPUT": folder, "DETECTION_POINTS": False,
                                              "REPORTS": False, "OUTPUT_FOLDER": out})
    assert not ok and any("Nothing to export" in e for e in fb.errors)


def test_processing_reports_with_an_accuracy_sample(provider, outputs, tmp_path):
    from slidewatch.core.outputs import accuracy_assessment as aa

    import shutil

    work = str(tmp_path / "out")
    shutil.copytree(outputs[0], work)
    moved = str(tmp_path / "elsewhere.gpkg")   # a sample outside the output folder
    shutil.move(_labelled_sample(work, "accuracy_samples.gpkg"), moved)
    assert ex.find_accuracy_samples(work) == []
    res, ok, fb = _run("slidewatch:export", {"INPUT": work, "DETECTION_POINTS": False,
                                             "ACCURACY_SAMPLE": moved,
                                             "OUTPUT_FOLDER": str(tmp_path / "alg")})
    assert ok, fb.errors
    index = open(os.path.join(res["REPORT_INDEX"], "index.html"), encoding="utf-8").read()
    assert "elsewhere.gpkg" in index and aa.assess(moved).html_section() in index
