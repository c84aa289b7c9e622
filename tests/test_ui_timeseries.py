"""Time-series inspector dock, map tool, reader and layer finder, in real QGIS."""

import csv
import os

import numpy as np
import pytest
from qgis.core import (QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsPointXY,
                       QgsProject, QgsRasterLayer, QgsRectangle, QgsVectorLayer)

from ui_fixtures import CRS, PIX, X0, Y0, make_output_folder, pixel_centre


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("sw_out"))
    truth = make_output_folder(folder, n_detections=6)
    return folder, truth


@pytest.fixture()
def dock(qgis_iface, qgis_new_project, outputs):
    from slidewatch.ui.timeseries_dock import TimeSeriesDock

    d = TimeSeriesDock(qgis_iface, qgis_iface.mainWindow())
    d.set_folder(outputs[0])
    yield d
    d.cleanup()
    d.deleteLater()


def _to(crs_from, crs_to, x, y):
    tr = QgsCoordinateTransform(QgsCoordinateReferenceSystem(crs_from),
                                QgsCoordinateReferenceSystem(crs_to), QgsProject.instance())
    return tr.transform(QgsPointXY(x, y))


def test_pyqtgraph_uses_the_qgis_binding():
    from slidewatch.ui.pyqtgraph_import import pg, qt_lib_name

    mod = pg()
    assert os.environ["PYQTGRAPH_QT_LIB"] == qt_lib_name() == "PyQt5"
    assert mod.Qt.QT_LIB == "PyQt5"
    assert pg() is mod


def test_reader_pixel_equals_raster(outputs):
    from slidewatch.ui.timeseries_reader import SeriesSources, read_pixel_series

    folder, truth = outputs
    r, c = 22, 25
    x, y = pixel_centre(r, c)
    s = read_pixel_series(SeriesSources.from_folder(folder), x, y)
    assert (s["row"], s["col"]) == (r, c)
    assert s["dates"] == truth["dates"]
    np.testing.assert_allclose(s["east"], truth["east"][:, r, c], rtol=1e-6)
    np.testing.assert_allclose(s["north"], truth["north"][:, r, c], rtol=1e-6)
    np.testing.assert_allclose(s["velocity"]["v_m_per_yr"], truth["velocity"][2, r, c], rtol=1e-6)
    n_selected_rasters = len(os.listdir(os.path.join(folder, "pairs")))
    assert len(s["pairs"]) == n_selected_rasters > 0
    assert s["network_flags"] == 4  # the fixture flags outliers on this slide
    # where the first pair's status says "rejected", that measurement did not feed the
    # inversion and is not shown
    far = read_pixel_series(SeriesSources.from_folder(folder), *pixel_centre(30, 75))
    assert len(far["pairs"]) == n_selected_rasters - 1 and far["network_flags"] == 0
    assert all(p["status"] == 0 for p in far["pairs"])
    first = s["pairs"][0]
    i, j = truth["dates"].index(first["reference_date"]), truth["dates"].index(first["secondary_date"])
    # pair measurement ~ difference of the cumulative series (noise 3 cm)
    assert abs(first["east_m"] - (truth["east"][j, r, c] - truth["east"][i, r, c])) < 0.2


def test_reader_polygon_mean(outputs):
    from slidewatch.ui.timeseries_reader import SeriesSources, read_polygon_series

    folder, truth = outputs
    # pixels rows 20..24, cols 23..27: polygon on their outer edges, inset by 1 m
    x0, x1 = X0 + 23 * PIX + 1, X0 + 28 * PIX - 1
    y0, y1 = Y0 - 25 * PIX + 1, Y0 - 20 * PIX - 1
    poly = {"type": "Polygon", "coordinates": [[(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]]}
    s = read_polygon_series(SeriesSources.from_folder(folder), poly, "box")
    assert s["n_pixels"] == 25
    np.testing.assert_allclose(s["east"], truth["east"][:, 20:25, 23:28].mean(axis=(1, 2)),
                               rtol=1e-5, atol=1e-6)


def test_polygon_mean_of_opposite_velocities_is_still(tmp_path):
    """A detection's mean averages east/north first (issue 17): two pixels moving 3 m/yr
    in opposite directions average to a speed of ~0, not to the mean of their speeds (3);
    the area's v_sigma is the mean of the pixels' sigma (correlated errors), not /sqrt(n)."""
    from rasterio.transform import from_origin

    from slidewatch.core.raster_io import write_bands
    from slidewatch.ui.timeseries_reader import SeriesSources, read_polygon_series

    ts = tmp_path / "timeseries"
    ts.mkdir()
    tr = from_origin(0.0, 10.0, 10.0, 10.0)  # one row of two 10 m pixels
    ve = np.array([[3.0, -3.0]])
    vn = np.array([[0.5, -0.5]])
    write_bands(str(ts / "velocity.tif"),
                [ve, vn, np.hypot(ve, vn), np.array([[0.1, 0.3]]), np.full((1, 2), 8.0),
                 np.full((1, 2), 0.02)], tr, "EPSG:32633",
                descriptions=["ve_m_per_yr", "vn_m_per_yr", "v_m_per_yr", "v_sigma_m_per_yr",
                              "n_obs", "rmse_m"])
    years = np.array([0.0, 0.5, 1.0])
    dates = ["2020-01-01", "2020-07-02", "2020-12-31"]
    for name, v in (("ts_east_m.tif", ve), ("ts_north_m.tif", vn)):
        write_bands(str(ts / name), years[:, None, None] * v[None], tr, "EPSG:32633",
                    descriptions=dates)
    both = {"type": "Polygon", "coordinates": [[(1, 1), (19, 1), (19, 9), (1, 9), (1, 1)]]}
    s = read_polygon_series(SeriesSources.from_folder(str(tmp_path)), both, "two")
    assert s["n_pixels"] == 2 and s["dates"] == dates
    v = s["velocity"]
    assert v["v_m_per_yr"] == pytest.approx(0.0, abs=1e-6)  # the old mean of speeds: 3.04
    assert v["ve_m_per_yr"] == pytest.approx(0.0, abs=1e-6)
    assert v["mean_of_speeds_m_per_yr"] == pytest.approx(np.hypot(3.0, 0.5), rel=1e-6)
    assert v["v_sigma_m_per_yr"] == pytest.approx(0.2, rel=1e-6)
    np.testing.assert_allclose(s["magnitude"], 0.0, atol=1e-6)
    # one pixel: the polygon mean is the pixel itself
    one = {"type": "Polygon", "coordinates": [[(1, 1), (9, 1), (9, 9), (1, 9), (1, 1)]]}
    p = read_polygon_series(SeriesSources.from_folder(str(tmp_path)), one)
    assert p["velocity"]["v_m_per_yr"] == pytest.approx(np.hypot(3.0, 0.5), rel=1e-6)
    assert p["velocity"]["v_sigma_m_per_yr"] == pytest.approx(0.1, rel=1e-6)
    np.testing.assert_allclose(p["magnitude"], years * np.hypot(3.0, 0.5), rtol=1e-6)


def test_map_tool_click_in_another_crs_plots_the_pixel(dock, outputs, qgis_canvas):
    folder, truth = outputs
    from slidewatch.ui.plot_helpers import dates_seconds

    qgis_canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    r, c = 42, 58  # the accelerating slide
    x, y = pixel_centre(r, c)
    p = _to(CRS, "EPSG:4326", x, y)
    target = dock.map_tool.handle_point(p, QgsCoordinateReferenceSystem("EPSG:4326"))
    assert abs(target.x() - x) < 0.01 and abs(target.y() - y) < 0.01
    assert dock.wait()
    assert dock.last_error is None
    xs, east = dock.curves["east"].getData()
    _x, north = dock.curves["north"].getData()
    _x, mag = dock.curves["magnitude"].getData()
    np.testing.assert_allclose(xs, dates_seconds(truth["dates"]))
    np.testing.assert_allclose(east, truth["east"][:, r, c], rtol=1e-6)
    np.testing.assert_allclose(north, truth["north"][:, r, c], rtol=1e-6)
    np.testing.assert_allclose(mag, np.hypot(truth["east"][:, r, c], truth["north"][:, r, c]),
                               rtol=1e-6)
    # the pair observations are drawn as segments (2 points each) and the fitted velocity
    n_pairs = len(dock.current_series["pairs"])
    assert len(dock.curves["pairs_east"].getData()[0]) == 2 * n_pairs
    fit = dock.curves["fit_east"].getData()[1]
    slope = (fit[-1] - fit[0]) / ((xs[-1] - xs[0]) / 86400 / 365.25)
    assert slope == pytest.approx(truth["velocity"][0, r, c], rel=1e-4)
    assert len(dock.map_tool.markers) == 1


def test_canvas_release_event(dock, outputs, qgis_canvas):
    from qgis.gui import QgsMapMouseEvent
    from qgis.PyQt.QtCore import QEvent, QPoint, Qt

    folder, truth = outputs
    qgis_canvas.resize(600, 400)
    qgis_canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    lo = _to(CRS, "EPSG:3857", X0, Y0 - 60 * PIX)
    hi = _to(CRS, "EPSG:3857", X0 + 80 * PIX, Y0)
    qgis_canvas.setExtent(QgsRectangle(lo, hi))
    qgis_canvas.refresh()
    r, c = 30, 40
    p = _to(CRS, "EPSG:3857", *pixel_centre(r, c))
    device = qgis_canvas.getCoordinateTransform().transform(p)
    dock.activate_tool(True)
    assert qgis_canvas.mapTool() is dock.map_tool
    event = QgsMapMouseEvent(qgis_canvas, QEvent.Type.MouseButtonRelease,
                             QPoint(int(round(device.x())), int(round(device.y()))),
                             Qt.MouseButton.LeftButton)
    dock.map_tool.canvasReleaseEvent(event)
    assert dock.wait()
    assert dock.last_error is None, dock.last_error
    assert dock.map_tool.canvas is qgis_canvas
    s = dock.current_series
    # a click resolves to within one screen pixel: the raster pixel is the one clicked
    assert abs(s["row"] - r) <= 1 and abs(s["col"] - c) <= 1
    np.testing.assert_allclose(dock.curves["east"].getData()[1],
                               truth["east"][:, s["row"], s["col"]], rtol=1e-6)
    dock.activate_tool(False)
    assert qgis_canvas.mapTool() is not dock.map_tool


def test_pin_compare_export(dock, outputs, tmp_path):
    folder, truth = outputs
    crs = QgsCoordinateReferenceSystem(CRS)
    dock.map_tool.handle_point(QgsPointXY(*pixel_centre(22, 25)), crs)
    assert dock.wait()
    dock.pin_current()
    dock.map_tool.handle_point(QgsPointXY(*pixel_centre(50, 10)), crs)
    assert dock.wait()
    assert len(dock.pinned) == 1 and "pin0_magnitude" in dock.curves and "east" in dock.curves
    # one cross per pinned pixel (in its colour) plus the current one
    assert len(dock.map_tool.markers) == 2
    assert dock.pinned[0]["_marker"].color().name().upper() == "#E69F00"
    np.testing.assert_allclose(dock.curves["pin0_magnitude"].getData()[1],
                               np.hypot(truth["east"][:, 22, 25], truth["north"][:, 22, 25]),
                               rtol=1e-6)
    dock.component_combo.setCurrentIndex(1)  # east only: pinned and current east curves
    assert set(dock.curves) >= {"pin0_east", "east"} and "north" not in dock.curves
    np.testing.assert_allclose(dock.curves["pin0_east"].getData()[1], truth["east"][:, 22, 25],
                               rtol=1e-6)
    dock.component_combo.setCurrentIndex(0)
    path = dock.export_csv(str(tmp_path / "series.csv"))
    rows = list(csv.DictReader(open(path)))
    assert len(rows) == 2 * len(truth["dates"])
    last = [r for r in rows if r["row"] == "50"]
    assert [r["date"] for r in last] == truth["dates"]
    assert float(last[-1]["east_m"]) == pytest.approx(truth["east"][-1, 50, 10], rel=1e-4)
    png = dock.export_png(str(tmp_path / "series.png"))
    from qgis.PyQt.QtGui import QImage

    img = QImage(png)
    assert not img.isNull() and img.width() > 50 and img.height() > 50
    dock.map_tool.handle_point(QgsPointXY(*pixel_centre(40, 40)), crs)
    assert dock.wait() and len(dock.map_tool.markers) == 2  # the previous current one went
    dock.clear()
    assert dock.map_tool.markers == [] and dock.pinned == [] and dock.curves == {}


def test_click_inside_detection_pins_its_mean(dock, outputs):
    folder, truth = outputs
    layer = QgsVectorLayer(os.path.join(folder, "detections.gpkg") + "|layername=detections",
                           "detections", "ogr")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    r0, c0, r1, c1 = truth["detections"][0]["box"]
    dock.map_tool.handle_point(QgsPointXY(*pixel_centre((r0 + r1) // 2, (c0 + c1) // 2)),
                               QgsCoordinateReferenceSystem(CRS))
    assert dock.wait()
    labels = [s["label"] for s in dock.pinned]
    assert labels == ["detection %d (mean)" % truth["detections"][0]["id"]]
    mean = dock.pinned[0]
    assert mean["n_pixels"] >= (r1 - r0 - 1) * (c1 - c0 - 1)
    inner = truth["east"][-1, r0 + 1:r1, c0 + 1:c1].mean()
    assert abs(mean["east"][-1] - inner) < 0.25 * abs(inner)


def test_click_outside_reports_and_keeps_running(dock):
    dock.map_tool.handle_point(QgsPointXY(X0 - 5000, Y0 + 5000), QgsCoordinateReferenceSystem(CRS))
    assert dock.wait()
    assert "outside" in str(dock.last_error)


def test_layer_finder_finds_project_layers(qgis_new_project, outputs):
    from slidewatch.ui import layer_finder

    folder, _truth = outputs
    for name in ("ts_east_m", "ts_north_m", "velocity"):
        layer = QgsRasterLayer(os.path.join(folder, "timeseries", name + ".tif"), "my " + name)
        assert layer.isValid()
        QgsProject.instance().addMapLayer(layer)
    sources = layer_finder.sources_from_project()
    assert sources.complete()
    assert sources.ts_north.endswith("ts_north_m.tif")
    assert sources.pairs_dir == os.path.join(folder, "pairs")
    assert sources.pairs_csv == os.path.join(folder, "pairs.csv")
    assert layer_finder.raster_crs(sources.ts_east).authid() == CRS


def test_plugin_opens_every_dock_and_unloads_clean(recording_iface, qgis_processing,
                                                    qgis_new_project, outputs):
    import slidewatch
    from slidewatch.ui.dock_registry import DOCKS

    plugin = slidewatch.classFactory(recording_iface)
    plugin.initGui()
    try:
        for module_name, class_name, title in DOCKS:
            dock = plugin.show_dock(module_name, class_name, title)
            assert dock is not None and dock in recording_iface.docks
        ts = plugin.docks["TimeSeriesDock"]
        ts.activate_tool(True)
        assert recording_iface.mapCanvas().mapTool() is ts.map_tool
    finally:
        plugin.unload()
    assert recording_iface.docks == []
    assert recording_iface.mapCanvas().mapTool() is None


def test_new_project_forgets_the_outputs(dock, outputs):
    dock.map_tool.handle_point(QgsPointXY(*pixel_centre(22, 25)), QgsCoordinateReferenceSystem(CRS))
    assert dock.wait() and dock.current_series is not None
    QgsProject.instance().clear()
    assert dock.current_series is None and dock.map_tool.markers == []
    assert not dock.sources.complete()
    # no SlideWatch layers in the new project and no remembered folder: the click explains
    from qgis.core import QgsSettings

    QgsSettings().remove("SlideWatch/timeseries_folder")
    dock.map_tool.handle_point(QgsPointXY(*pixel_centre(22, 25)), QgsCoordinateReferenceSystem(CRS))
    assert dock.wait()
    assert "not found among the project layers" in dock.info.text()


def test_hover_shows_the_values_of_the_nearest_date(dock, outputs):
    from qgis.PyQt.QtCore import QPointF
    from qgis.PyQt.QtWidgets import QApplication
    from slidewatch.ui.plot_helpers import date_seconds

    folder, truth = outputs
    dock.setFloating(True)
    dock.resize(700, 500)
    dock.show()
    QApplication.processEvents()
    dock.map_tool.handle_point(QgsPointXY(*pixel_centre(22, 25)), QgsCoordinateReferenceSystem(CRS))
    assert dock.wait()
    QApplication.processEvents()
    k = 4
    vb = dock.plot.getPlotItem().vb
    vb.autoRange()
    scene = vb.mapViewToScene(QPointF(date_seconds(truth["dates"][k]) + 3 * 86400, 0.0))
    dock._on_mouse_moved((scene,))
    text = dock.hover.text()
    assert text.startswith(truth["dates"][k])
    assert "east %.3f m" % truth["east"][k, 22, 25] in text
    dock.hide()


def test_quick_clicks_show_the_last_pixel(dock, outputs):
    crs = QgsCoordinateReferenceSystem(CRS)
    for rc in ((10, 10), (20, 20), (30, 31)):
        dock.map_tool.handle_point(QgsPointXY(*pixel_centre(*rc)), crs)
    assert dock.wait()
    assert (dock.current_series["row"], dock.current_series["col"]) == (30, 31)
    assert len(dock.map_tool.markers) == 1


def test_missing_pyqtgraph_says_how_to_install(monkeypatch):
    import sys

    from slidewatch.ui import pyqtgraph_import

    monkeypatch.setattr(pyqtgraph_import, "_module", None)
    monkeypatch.setitem(sys.modules, "pyqtgraph", None)  # makes the import fail
    with pytest.raises(ImportError, match="python3-pyqtgraph"):
        pyqtgraph_import.pg()


# ------------------------------------------------------------ analysis (issue 17)
def _legend_labels(plot):
    return [label.text for _sample, label in plot.getPlotItem().legend.items]


def test_models_on_the_clicked_pixel_with_parameters_and_residuals(dock, outputs):
    folder, truth = outputs
    crs = QgsCoordinateReferenceSystem(CRS)
    dock.map_tool.handle_point(QgsPointXY(*pixel_centre(42, 58)), crs)  # accelerating slide
    assert dock.wait() and dock.last_error is None
    assert not dock.residual_plot.isVisibleTo(dock) and "model_east" not in dock.curves
    dock.model_combo.setCurrentIndex(1)  # linear
    assert dock.fit is not None and dock.fit.model == "linear"
    assert "velocity" in dock.fit_label.text() and "±" in dock.fit_label.text()
    assert dock.residual_plot.isVisibleTo(dock)
    e = truth["east"][:, 42, 58]
    np.testing.assert_allclose(dock.curves["resid_east"].getData()[1],
                               e - dock.fit.fitted[:, 0], atol=1e-9)
    np.testing.assert_allclose(dock.curves["model_east"].getData()[1], dock.fit.fitted[:, 0])
    dock.model_combo.setCurrentIndex(3)  # piecewise
    fit = dock.fit
    assert fit.model == "piecewise" and "onset" in dock.fit_label.text()
    onset = (np.datetime64(fit.onset) - np.datetime64("2020-06-01")).astype(int)
    assert abs(onset) <= 35  # one acquisition of the fixture's sampling
    v1, _s1 = fit.value("velocity_before", "east")
    v2, _s2 = fit.value("velocity_after", "east")
    assert v2 > 3 * v1 > 0
    assert "onset" in dock.curves
    assert "piecewise linear (onset) fit" in _legend_labels(dock.plot)
    dock.model_combo.setCurrentIndex(2)
    assert "annual amplitude" in dock.fit_label.text()
    dock.model_combo.setCurrentIndex(0)
    assert dock.fit is None and not dock.residual_plot.isVisibleTo(dock)


def test_fit_on_a_detection_mean(dock, outputs):
    folder, truth = outputs
    layer = QgsVectorLayer(os.path.join(folder, "detections.gpkg") + "|layername=detections",
                           "detections", "ogr")
    QgsProject.instance().addMapLayer(layer)
    r0, c0, r1, c1 = truth["detections"][0]["box"]
    dock.map_tool.handle_point(QgsPointXY(*pixel_centre((r0 + r1) // 2, (c0 + c1) // 2)),
                               QgsCoordinateReferenceSystem(CRS))
    assert dock.wait()
    label = "detection %d (mean)" % truth["detections"][0]["id"]
    dock.model_combo.setCurrentIndex(1)
    dock.set_fit_target(label)
    assert label in dock.fit_label.text()
    mean = dock.pinned[0]
    # the area's velocity is the speed of the mean vector, not the mean of the speeds
    v = mean["velocity"]
    assert v["v_m_per_yr"] == pytest.approx(np.hypot(v["ve_m_per_yr"], v["vn_m_per_yr"]))
    ve, se = dock.fit.value("velocity", "east")
    assert abs(ve - v["ve_m_per_yr"]) < 0.15 * abs(v["ve_m_per_yr"])


def test_several_pixels_in_one_plot_with_a_legend(dock, outputs):
    crs = QgsCoordinateReferenceSystem(CRS)
    for rc in ((22, 25), (42, 58), (10, 70)):
        dock.map_tool.handle_point(QgsPointXY(*pixel_centre(*rc)), crs)
        assert dock.wait()
        dock.pin_current()
    labels = _legend_labels(dock.plot)
    for rc in ((22, 25), (42, 58), (10, 70)):
        assert "pixel (row %d, col %d)" % rc in labels
    assert {"pin0_magnitude", "pin1_magnitude", "pin2_magnitude"} <= set(dock.curves)
    assert len(dock.map_tool.markers) == 3


def test_help_says_why_components_are_averaged(dock):
    from slidewatch.ui.timeseries_dock import HELP

    dock.help_button.setChecked(True)
    assert dock.help_label.isVisibleTo(dock)
    text = dock.help_label.text()
    assert "never of speeds" in text and "biased up" in text and "east and north" in text
    assert dock.whatsThis() == HELP


@pytest.fixture(scope="module")
def offset_outputs(tmp_path_factory):
    from series_fixtures import make_offset_stack

    folder = str(tmp_path_factory.mktemp("sw_offsets"))
    return folder, make_offset_stack(folder)


def test_rereferencing_on_a_drawn_stable_area(dock, offset_outputs, qgis_canvas):
    """Issue 17 target, in the dock: a stable area drawn on the map (canvas in another
    CRS) re-references every curve; stable pixels come back within their sigma of zero."""
    import series_fixtures as sf

    folder, truth = offset_outputs
    dock.set_folder(folder)
    crs = QgsCoordinateReferenceSystem(sf.CRS)
    stable = [(r, c) for r in (2, 12, 20, 35) for c in (25, 33, 41, 48)]

    def z_values():
        out = []
        for r, c in stable:
            dock.map_tool.handle_point(QgsPointXY(*sf.pixel_centre(r, c)), crs)
            assert dock.wait() and dock.last_error is None
            s = dock.displayed(dock.current_series)
            np.testing.assert_allclose(dock.curves["east"].getData()[1], s["east"])
            sig = s["sigma"][1:]
            out += list(np.abs(np.concatenate([s["east"][1:], s["north"][1:]]))
                        / np.concatenate([sig, sig]))
        return np.array(out)

    z_raw = z_values()
    assert np.mean(z_raw <= 1) < 0.15  # the per-date offsets move the stable ground
    # draw the stable area in the canvas CRS (web mercator), as an analyst would
    qgis_canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    r0, r1, c0, c1 = sf.STABLE_BOX
    corners = [(r0, c0), (r0, c1 - 1), (r1 - 1, c1 - 1), (r1 - 1, c0)]
    dock.activate_reference_area(True)
    assert qgis_canvas.mapTool() is dock.area_tool
    for r, c in corners:
        dock.area_tool.add_point(_to(sf.CRS, "EPSG:3857", *sf.pixel_centre(r, c)))
    assert dock.area_tool.finish() is not None
    assert dock.wait() and dock.last_error is None, dock.last_error
    assert dock.reference is not None and dock.reference["n_pixels"] >= (r1 - r0 - 2) * (c1 - c0 - 2)
    assert "re-referenced" in dock.reference_label.text()
    assert qgis_canvas.mapTool() is not dock.area_tool
    z_ref = z_values()
    assert np.mean(z_ref <= 1) >= 0.6 and np.mean(z_ref <= 3) >= 0.99
    # the slide keeps its velocity (3, -2 m/yr) once the shared offsets are removed
    dock.model_combo.setCurrentIndex(1)
    rs, cs = 10, 10
    dock.map_tool.handle_point(QgsPointXY(*sf.pixel_centre(rs, cs)), crs)
    assert dock.wait()
    assert dock.fit.value("velocity", "east")[0] == pytest.approx(3.0, abs=0.06)
    assert dock.fit.value("velocity", "north")[0] == pytest.approx(-2.0, abs=0.06)
    assert "re-referenced" in dock.fit_label.text()
    dock.clear_reference()
    assert dock.reference is None
    np.testing.assert_allclose(dock.curves["east"].getData()[1], truth["east"][:, rs, cs],
                               rtol=1e-5)
    dock.model_combo.setCurrentIndex(0)


def test_reference_pixel(dock, offset_outputs):
    import series_fixtures as sf

    folder, truth = offset_outputs
    dock.set_folder(folder)
    crs = QgsCoordinateReferenceSystem(sf.CRS)
    dock.activate_reference_pixel(True)
    dock.reference_tool.handle_point(QgsPointXY(*sf.pixel_centre(30, 45)), crs)
    assert dock.wait() and dock.reference["label"].startswith("reference pixel")
    assert len(dock.reference_tool.markers) == 1
    dock.map_tool.handle_point(QgsPointXY(*sf.pixel_centre(3, 40)), crs)
    assert dock.wait()
    want = truth["east"][:, 3, 40] - truth["east"][:, 30, 45]
    np.testing.assert_allclose(dock.curves["east"].getData()[1], want, atol=1e-6)
    s = dock.displayed(dock.current_series)
    np.testing.assert_allclose(s["sigma"][1:], np.sqrt(2) * sf.NOISE_M, rtol=1e-5)
    # the CSV exports what is plotted
    rows = series_to_rows_of(dock)
    assert rows[-1][0].endswith("− ref")
    dock.clear_reference()
    assert dock.reference_tool.markers == []


def series_to_rows_of(dock):
    from slidewatch.ui.timeseries_reader import series_to_rows

    return series_to_rows(dock.series_for_export())


def test_second_click_in_the_same_detection_does_not_pin_it_twice(dock, outputs):
    folder, truth = outputs
    layer = QgsVectorLayer(os.path.join(folder, "detections.gpkg") + "|layername=detections",
                           "detections", "ogr")
    QgsProject.instance().addMapLayer(layer)
    r0, c0, r1, c1 = truth["detections"][0]["box"]
    for dr in (0, 1):
        dock.map_tool.handle_point(QgsPointXY(*pixel_centre((r0 + r1) // 2 + dr,
                                                            (c0 + c1) // 2)),
                                   QgsCoordinateReferenceSystem(CRS))
        assert dock.wait()
    assert [s["label"] for s in dock.pinned] == ["detection %d (mean)"
                                                 % truth["detections"][0]["id"]]
