"""Time-series inspector dock: click a pixel, see its displacement history.

Shows the east, north and magnitude cumulative displacement against date, the uncertainty
band (± the residual RMSE of the inversion at that pixel), the pairwise observations that fed
the inversion (segments between their two dates, hung on the inverted series at the first
date) and the fitted mean velocity. Several pixels can be pinned to compare them; a click
inside a detection also shows the detection's mean series. Hovering shows the values.
Export the curves as CSV or PNG. Reading runs in a QgsTask, off the main thread.

Analysis (issue 17): a model fitted to the clicked pixel or a detection mean (linear,
linear + annual, piecewise linear with an onset; ``core.series_models``) with its
parameters and a residual plot; a reference (a stable pixel, or a stable area drawn on the
map) subtracted date by date from every curve with the sigmas added in quadrature; area
means average the east and north components, never the speeds (see :data:`HELP`).
"""

import os

import numpy as np
from qgis.core import (QgsCoordinateTransform, QgsGeometry, QgsPointXY, QgsProject,
                       QgsSettings, QgsWkbTypes)
from qgis.gui import QgsMapTool, QgsRubberBand
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import (QComboBox, QFileDialog, QHBoxLayout, QLabel, QPushButton,
                                 QSplitter, QToolButton)

from . import layer_finder
from .dock_base import SlideWatchDock
from .pixel_map_tool import PixelMapTool

from ..core.series import series_models as sm
from ..core.series.timeseries_reader import (SeriesSources, describe_network_flags,
                                             fitted_velocity_line, read_area,
                                             read_pixel_with_quality, rows_to_csv_text,
                                             series_to_rows)
from ..core.products import (BAND_EAST, BAND_N_OBS, BAND_NORTH, BAND_RMSE, BAND_V,
                             BAND_V_SIGMA, BAND_VE, BAND_VN)

COMPONENTS = ("all", "east", "north", "magnitude")
#: model combo entries: (key of core.series_models.MODELS or None, label)
MODEL_CHOICES = ((None, "No model"), ("linear", "Linear"), ("seasonal", "Linear + annual"),
                 ("piecewise", "Piecewise (onset)"))
REFERENCE_COLOUR = "#009E73"
HELP = """<p><b>Time-series inspector.</b> <b>Pick pixel</b>, then click the map: the cumulative
east, north and magnitude displacement of that pixel since the first date, ± its
uncertainty (the inversion's residual RMSE), the pair measurements that fed the inversion
and the fitted velocity. <b>Pin</b> keeps a pixel to compare several in one plot (each in
its colour, named in the legend and marked on the map). A click inside a detection also
pins the detection's mean series.</p>
<p><b>Model</b> fits the chosen series (<b>Fit</b>): <i>linear</i> (velocity),
<i>linear + annual</i> (velocity and the amplitude of an annual cycle), <i>piecewise</i>
(two velocities and the onset date between them, found by a search over every day). East
and north are fitted together; each parameter is given with its σ (least-squares
covariance scaled by the residual scatter). The residuals are plotted under the curves.</p>
<p><b>Reference pixel</b> / <b>Stable area</b> (click a pixel, or draw a polygon: left
clicks add vertices, right click closes it) re-reference every curve: the reference's
series is subtracted date by date and the σ add in quadrature
(σ' = √(σ² + σ<sub>ref</sub>²)). Use ground known not to move to remove what all pixels
share (co-registration, illumination). <b>No reference</b> goes back to the raw curves.</p>
<p><b>Averages are of components, never of speeds.</b> The mean series of a detection or
of a stable area (and of a detection in the validation dock) averages the east and north
displacements and the east and north velocities first, and takes the magnitude of the
mean vector: the area's speed is √(mean v<sub>E</sub>² + mean v<sub>N</sub>²). Averaging
magnitudes (speeds) would be wrong: the magnitude of a noisy vector is biased up — on
ground that does not move every pixel's speed is about 1.25 σ, and so is the mean of any
number of them, while the speed of the mean vector goes to zero as pixels are added.
The area's velocity σ is the mean of its pixels' σ, not σ/√n: neighbouring pixels share
correlation windows and each pair's co-registration, so their errors are not
independent (an upper bound). The σ of the mean curves at each date is the scatter of
the pixels over √n.</p>"""
VELOCITY_OF = {"east": BAND_VE, "north": BAND_VN, "magnitude": BAND_V}
SETTINGS_FOLDER = "SlideWatch/timeseries_folder"


class AreaMapTool(QgsMapTool):
    """Draw a polygon on the canvas: left clicks add vertices, right click (or
    :meth:`finish`) closes it, Escape cancels. Emits ``areaDrawn(QgsGeometry)`` in the
    canvas CRS."""

    areaDrawn = pyqtSignal(object)

    def __init__(self, canvas):
        super().__init__(canvas)
        self.canvas = canvas
        self.points = []
        self.band = QgsRubberBand(canvas, QgsWkbTypes.GeometryType.PolygonGeometry)
        colour = QColor(REFERENCE_COLOUR)
        self.band.setStrokeColor(colour)
        colour.setAlpha(50)
        self.band.setFillColor(colour)
        self.band.setWidth(2)

    def add_point(self, point):
        self.points.append(QgsPointXY(point))
        self.band.addPoint(QgsPointXY(point), True)

    def finish(self):
        if len(self.points) < 3:
            self.reset()
            return None
        geometry = QgsGeometry.fromPolygonXY([self.points + [self.points[0]]])
        self.areaDrawn.emit(geometry)
        return geometry

    def reset(self):
        self.points = []
        self.band.reset(QgsWkbTypes.GeometryType.PolygonGeometry)

    def show_geometry(self, geometry):
        """Keep the drawn area visible on the map (the reference in use)."""
        self.band.setToGeometry(geometry, None)

    def canvasReleaseEvent(self, event):  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton:
            self.add_point(self.toMapCoordinates(event.pos()))
        elif event.button() == Qt.MouseButton.RightButton:
            self.finish()

    def keyPressEvent(self, event):  # noqa: N802
        if event.key() == Qt.Key.Key_Escape:
            self.reset()

    def cleanup(self):
        self.reset()
        try:
            self.canvas.scene().removeItem(self.band)
        except RuntimeError:
            pass
        if self.canvas.mapTool() is self:
            self.canvas.unsetMapTool(self)


class TimeSeriesDock(SlideWatchDock):
    def __init__(self, iface, parent=None):
        super().__init__("SlideWatch time series", iface, parent)
        self.sources = SeriesSources()
        self.current_series = None
        self.current_marker = None
        self.pinned = []
        self.curves = {}
        #: the reference series (pixel or area) subtracted from every curve, or None
        self.reference = None
        self.fit = None
        self.fit_error = None
        self._fit_cache = {}
        self._build()
        self.map_tool = PixelMapTool(self.canvas)
        self.map_tool.pixelClicked.connect(self.on_pixel_clicked)
        self.map_tool.deactivated.connect(lambda: self.pick_button.setChecked(False))
        self.reference_tool = PixelMapTool(self.canvas)
        self.reference_tool.pixelClicked.connect(self.set_reference_pixel)
        self.reference_tool.deactivated.connect(lambda: self.ref_pixel_button.setChecked(False))
        self.area_tool = AreaMapTool(self.canvas)
        self.area_tool.areaDrawn.connect(self._on_area_drawn)
        self.area_tool.deactivated.connect(lambda: self.ref_area_button.setChecked(False))
        self._connect(QgsProject.instance().cleared, self._on_project_cleared)
        self.refresh_sources()

    # ------------------------------------------------------------------------ ui
    def _build(self):
        body, layout = self._new_body()
        row = QHBoxLayout()
        self.pick_button = QToolButton(body)
        self.pick_button.setText("Pick pixel")
        self.pick_button.setCheckable(True)
        self.pick_button.setToolTip("Click a pixel on the map to plot its displacement history")
        self.pick_button.toggled.connect(self.activate_tool)
        row.addWidget(self.pick_button)
        self.pin_button = QPushButton("Pin", body)
        self.pin_button.setToolTip("Keep the current pixel on the plot to compare with others")
        self.pin_button.clicked.connect(self.pin_current)
        row.addWidget(self.pin_button)
        self.clear_button = QPushButton("Clear", body)
        self.clear_button.clicked.connect(self.clear)
        row.addWidget(self.clear_button)
        self.component_combo = QComboBox(body)
        self.component_combo.addItems(["East, north, magnitude", "East", "North", "Magnitude"])
        self.component_combo.currentIndexChanged.connect(lambda _i: self.redraw())
        row.addWidget(self.component_combo)
        row.addStretch(1)
        row.addWidget(self._folder_button(
            body, "Choose the SlideWatch output folder (when the time-series rasters are not "
            "among the project layers)"))
        self.csv_button = QPushButton("CSV…", body)
        self.csv_button.clicked.connect(lambda: self.export_csv())
        row.addWidget(self.csv_button)
        self.png_button = QPushButton("PNG…", body)
        self.png_button.clicked.connect(lambda: self.export_png())
        row.addWidget(self.png_button)
        self.help_button = QToolButton(body)
        self.help_button.setText("?")
        self.help_button.setCheckable(True)
        self.help_button.setToolTip("How the inspector works (models, reference, averages)")
        self.help_button.toggled.connect(lambda on: self.help_label.setVisible(on))
        row.addWidget(self.help_button)
        layout.addLayout(row)

        row2 = QHBoxLayout()
        row2.addWidget(QLabel("Model", body))
        self.model_combo = QComboBox(body)
        self.model_combo.addItems([label for _k, label in MODEL_CHOICES])
        self.model_combo.setToolTip("Fit a model to the series chosen in 'Fit' (east and north "
                                    "together); parameters with their σ, residuals below")
        self.model_combo.currentIndexChanged.connect(lambda _i: self.redraw())
        row2.addWidget(self.model_combo)
        row2.addWidget(QLabel("Fit", body))
        self.fit_combo = QComboBox(body)
        self.fit_combo.setToolTip("The series the model is fitted to: the clicked pixel or a "
                                  "pinned one (a detection mean, another pixel)")
        self.fit_combo.setMinimumContentsLength(14)
        self.fit_combo.activated.connect(lambda _i: self.redraw())
        row2.addWidget(self.fit_combo)
        row2.addStretch(1)
        self.ref_pixel_button = QToolButton(body)
        self.ref_pixel_button.setText("Reference pixel")
        self.ref_pixel_button.setCheckable(True)
        self.ref_pixel_button.setToolTip("Click a pixel of stable ground: its series is "
                                         "subtracted from every curve")
        self.ref_pixel_button.toggled.connect(self.activate_reference_pixel)
        row2.addWidget(self.ref_pixel_button)
        self.ref_area_button = QToolButton(body)
        self.ref_area_button.setText("Stable area")
        self.ref_area_button.setCheckable(True)
        self.ref_area_button.setToolTip("Draw a polygon over stable ground (left clicks, right "
                                        "click to close): its mean series is subtracted from "
                                        "every curve")
        self.ref_area_button.toggled.connect(self.activate_reference_area)
        row2.addWidget(self.ref_area_button)
        self.no_ref_button = QPushButton("No reference", body)
        self.no_ref_button.clicked.connect(self.clear_reference)
        row2.addWidget(self.no_ref_button)
        layout.addLayout(row2)

        self.help_label = QLabel(HELP, body)
        self.help_label.setWordWrap(True)
        self.help_label.setTextFormat(Qt.TextFormat.RichText)
        self.help_label.setVisible(False)
        self.help_label.setStyleSheet("QLabel { background: #fffff0; padding: 4px; }")
        layout.addWidget(self.help_label)
        self.setWhatsThis(HELP)
        self.info = QLabel(body)
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.info)
        self.reference_label = QLabel(body)
        self.reference_label.setWordWrap(True)
        self.reference_label.setVisible(False)
        layout.addWidget(self.reference_label)
        splitter = QSplitter(Qt.Orientation.Vertical, body)
        self.plot = self.ph.date_plot_widget(splitter, "cumulative displacement (m)")
        self.residual_plot = self.ph.date_plot_widget(splitter, "residual (m)")
        self.residual_plot.setXLink(self.plot)
        self.residual_plot.setVisible(False)
        self.residual_plot.setMinimumHeight(110)
        splitter.addWidget(self.plot)
        splitter.addWidget(self.residual_plot)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        self.splitter = splitter
        layout.addWidget(splitter, 1)
        self.fit_label = QLabel(body)
        self.fit_label.setWordWrap(True)
        self.fit_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.fit_label.setVisible(False)
        layout.addWidget(self.fit_label)
        self.hover = QLabel(body)
        layout.addWidget(self.hover)
        self.setWidget(body)
        self._proxy = self.pg.SignalProxy(self.plot.scene().sigMouseMoved, rateLimit=30,
                                          slot=self._on_mouse_moved)

    # ------------------------------------------------------------------- sources
    def refresh_sources(self):
        """Find the time-series rasters in the project, else use the remembered folder."""
        sources = layer_finder.sources_from_project()
        if not sources.complete():
            folder = QgsSettings().value(SETTINGS_FOLDER, "", type=str)
            if folder and os.path.isdir(folder):
                candidate = SeriesSources.from_folder(folder)
                if candidate.complete():
                    sources = candidate
        self.set_sources(sources)
        return sources

    def _on_project_cleared(self):
        """Another project: forget the outputs found in the previous one (found again on
        the next click)."""
        self.sources = SeriesSources()
        self.clear_reference()
        self.clear()
        self.info.setText("")

    def set_sources(self, sources):
        self.sources = sources
        if sources.complete():
            crs = layer_finder.raster_crs(sources.ts_east)
            for tool in (self.map_tool, self.reference_tool):
                tool.set_target_crs(crs)
            self.info.setText("Time series: %s" % os.path.dirname(sources.ts_east))
        else:
            self.info.setText(sources.missing_message())

    def set_folder(self, folder):
        sources = SeriesSources.from_folder(folder)
        if sources.complete():
            QgsSettings().setValue(SETTINGS_FOLDER, folder)
        self.set_sources(sources)
        return sources

    def _set_tool(self, tool, button, on):
        if on:
            if not self.sources.complete():
                self.refresh_sources()
            self.canvas.setMapTool(tool)
        elif self.canvas.mapTool() is tool:
            self.canvas.unsetMapTool(tool)
        if button.isChecked() != bool(on):
            button.setChecked(bool(on))

    def activate_tool(self, on=True):
        self._set_tool(self.map_tool, self.pick_button, on)

    def activate_reference_pixel(self, on=True):
        self._set_tool(self.reference_tool, self.ref_pixel_button, on)

    def activate_reference_area(self, on=True):
        if on:
            self.area_tool.reset()
        self._set_tool(self.area_tool, self.ref_area_button, on)

    # --------------------------------------------------------------------- reads
    def _have_sources(self):
        """True when the time-series rasters are known: looked for again when not, and
        said when still missing."""
        if not self.sources.complete():
            self.refresh_sources()
            if not self.sources.complete():
                self._message(self.sources.missing_message())
                return False
        return True

    def on_pixel_clicked(self, point, canvas_point=None):
        """``point`` in the raster CRS (from the map tool)."""
        if not self._have_sources():
            return
        self.map_tool.clear_markers(keep=[s["_marker"] for s in self.pinned if s.get("_marker")])
        self.current_marker = None
        if canvas_point is not None:
            self.current_marker = self.map_tool.add_marker(canvas_point, "#FF00FF")
        self.info.setText("Reading pixel at (%.1f, %.1f)…" % (point.x(), point.y()))
        self._request = getattr(self, "_request", 0) + 1
        request = self._request
        self.runner.run("SlideWatch: reading a pixel's time series",
                        lambda result, error: self._on_series(result, error, request),
                        read_pixel_with_quality, self.sources, point.x(), point.y())
        geometry, label = self._detection_at(point)
        if geometry is not None:
            self.show_polygon_mean(geometry, label)

    def show_polygon_mean(self, geojson, label):
        """Read (in a task) and pin the mean series of a polygon given in the raster CRS
        (east and north averaged, magnitude of the mean vector)."""
        self.runner.run("SlideWatch: reading a detection's mean series", self._on_polygon,
                        read_area, self.sources, geojson, label)

    def _detection_at(self, point):
        """GeoJSON (raster CRS) and label of the detection containing ``point``, if any."""
        import json

        found = layer_finder.find_layers().get("detections")
        if found is None or not self.map_tool.target_crs.isValid():
            return None, None
        to_layer = QgsCoordinateTransform(self.map_tool.target_crs, found.crs(),
                                          QgsProject.instance())
        to_raster = QgsCoordinateTransform(found.crs(), self.map_tool.target_crs,
                                           QgsProject.instance())
        p = to_layer.transform(QgsPointXY(point))
        probe = QgsGeometry.fromPointXY(p)
        for feature in found.getFeatures(probe.boundingBox()):
            geom = QgsGeometry(feature.geometry())
            if geom.contains(probe):
                geom.transform(to_raster)
                ident = feature["id"] if "id" in feature.fields().names() else feature.id()
                return json.loads(geom.asJson()), "detection %s (mean)" % ident
        return None, None

    def _on_series(self, result, error, request=None):
        if request is not None and request != self._request:
            return  # a later click superseded this read (results may arrive out of order)
        if self._failed(error):
            return
        self.last_error = None
        self.current_series = result
        v = result["velocity"]
        self.info.setText("%s at (%.1f, %.1f): velocity %.3g m/yr (σ %.2g), E %.3g N %.3g "
                          "m/yr, %s observations, RMSE %.2g m, %d pair measurements here"
                          % (result["label"], result["x"], result["y"], v[BAND_V],
                             v[BAND_V_SIGMA], v[BAND_VE], v[BAND_VN],
                             "?" if not np.isfinite(v[BAND_N_OBS]) else int(v[BAND_N_OBS]),
                             v[BAND_RMSE], len(result["pairs"])))
        quality = describe_quality(result.get("quality"))
        if quality:
            self.info.setText(self.info.text() + ". Quality: " + quality)
        flags = describe_network_flags(result.get("network_flags"))
        if flags:
            self.info.setText(self.info.text() + ". Network: " + "; ".join(flags) + ".")
        self.redraw()

    def _on_polygon(self, result, error):
        if self._failed(error):
            return
        if any(p.get("kind") == "area" and p["label"] == result["label"] for p in self.pinned):
            return  # this detection's mean is already on the plot
        self.pinned.append(result)
        self.redraw()

    # ------------------------------------------------------------------ reference
    def set_reference_pixel(self, point, canvas_point=None):
        """Use the pixel at ``point`` (raster CRS) as the reference (read in a task)."""
        if not self._have_sources():
            return
        self._clear_reference_marks()
        if canvas_point is not None:
            self.reference_tool.add_marker(canvas_point, REFERENCE_COLOUR)
        self.runner.run("SlideWatch: reading the reference pixel", self._on_reference,
                        read_pixel_with_quality, self.sources, point.x(), point.y())

    def _on_area_drawn(self, geometry):
        """A polygon drawn on the canvas (canvas CRS) becomes the reference area."""
        import json

        geom = QgsGeometry(geometry)
        canvas_crs = self.canvas.mapSettings().destinationCrs()
        target = self.map_tool.target_crs
        if target.isValid() and canvas_crs.isValid() and canvas_crs != target:
            geom.transform(QgsCoordinateTransform(canvas_crs, target, QgsProject.instance()))
        self.activate_reference_area(False)
        self.area_tool.show_geometry(geometry)
        self.set_reference_area(json.loads(geom.asJson()))

    def set_reference_area(self, geojson, label="stable area"):
        """Use the mean series of a polygon (GeoJSON mapping, raster CRS) as reference."""
        if not self.sources.complete():
            self.refresh_sources()
        self.reference_tool.clear_markers()
        self.runner.run("SlideWatch: reading the stable area", self._on_reference,
                        read_area, self.sources, geojson, label)

    def _on_reference(self, result, error):
        if self._failed(error):
            return
        result = dict(result)
        if result.get("kind") == "pixel":
            result["label"] = "reference " + result["label"]
            self.activate_reference_pixel(False)
        else:
            result["label"] = "%s (%d pixels)" % (result["label"], result["n_pixels"])
        self.reference = result
        self._fit_cache = {}
        ref_sigma = np.nanmedian(result["sigma"][1:]) if len(result["sigma"]) > 1 else np.nan
        self.reference_label.setText(
            "<span style='color:%s'>■</span> Curves re-referenced to <b>%s</b>: its series is "
            "subtracted at every date, σ added in quadrature (reference σ ≈ %.2g m)."
            % (REFERENCE_COLOUR, result["label"], ref_sigma))
        self.reference_label.setVisible(True)
        self.redraw()

    def _clear_reference_marks(self):
        self.reference_tool.clear_markers()
        self.area_tool.reset()

    def clear_reference(self):
        self.reference = None
        self._fit_cache = {}
        self._clear_reference_marks()
        self.reference_label.setVisible(False)
        self.reference_label.setText("")
        self.redraw()

    def displayed(self, s):
        """The series as plotted: re-referenced when a reference is set (a new dict;
        ``s`` itself is never changed)."""
        if s is None:
            return None
        sigma = s.get("sigma")
        if sigma is None:
            sigma = sm.pixel_sigma(len(s["dates"]), s["velocity"].get("rmse_m"))
        ref = self.reference
        if ref is None or ref is s:
            out = dict(s)
            out["sigma"] = np.asarray(sigma, float)
            return out
        e, n, sig = sm.rereference(s["dates"], s["east"], s["north"], sigma, ref["dates"],
                                   ref["east"], ref["north"], ref["sigma"])
        out = dict(s, east=e, north=n, magnitude=np.hypot(e, n), sigma=sig,
                   label=s["label"] + " − ref")
        v = dict(s["velocity"])
        rv = ref["velocity"]
        for key in (BAND_VE, BAND_VN):
            v[key] = v.get(key, np.nan) - rv.get(key, np.nan)
        v[BAND_V] = float(np.hypot(v[BAND_VE], v[BAND_VN]))
        out["velocity"] = v
        index = {d: i for i, d in enumerate(ref["dates"])}
        pairs = []
        for obs in s.get("pairs", []):
            i, j = index.get(obs["reference_date"]), index.get(obs["secondary_date"])
            if i is None or j is None:
                continue
            pairs.append(dict(obs, east_m=obs[BAND_EAST] - (ref["east"][j] - ref["east"][i]),
                              north_m=obs[BAND_NORTH] - (ref["north"][j] - ref["north"][i])))
        out["pairs"] = pairs
        return out

    # ----------------------------------------------------------------------- fits
    def model(self):
        return MODEL_CHOICES[self.model_combo.currentIndex()][0]

    def fit_candidates(self):
        """The series a model can be fitted to (pinned ones, then the current one)."""
        return self.series_for_export(displayed=False)

    def _refresh_fit_combo(self):
        series = self.fit_candidates()
        labels = [s["label"] for s in series]
        previous = self.fit_combo.currentText()
        self.fit_combo.blockSignals(True)
        self.fit_combo.clear()
        self.fit_combo.addItems(labels)
        if previous in labels and getattr(self, "_fit_choice_sticky", False):
            self.fit_combo.setCurrentIndex(labels.index(previous))
        elif labels:
            # default: the clicked pixel, else the last pinned series
            self.fit_combo.setCurrentIndex(len(labels) - 1)
        self.fit_combo.blockSignals(False)
        return series

    def set_fit_target(self, label):
        """Fit the series with this label (as in the Fit list)."""
        i = self.fit_combo.findText(label)
        if i < 0:
            raise KeyError(label)
        self.fit_combo.setCurrentIndex(i)
        self._fit_choice_sticky = True
        self.redraw()

    def fit_target(self):
        series = self.fit_candidates()
        i = self.fit_combo.currentIndex()
        return series[i] if 0 <= i < len(series) else None

    def compute_fit(self, s):
        """The chosen model on the displayed (re-referenced) series ``s`` (cached)."""
        model = self.model()
        if model is None or s is None:
            return None
        key = (id(s), model, id(self.reference))
        if key not in self._fit_cache:
            d = self.displayed(s)
            try:
                fit = sm.fit_model(d["dates"], np.column_stack([d["east"], d["north"]]),
                                   model, components=("east", "north"))
                self._fit_cache[key] = (fit, None)
            except Exception as exc:  # too few dates, ...: said in the fit line
                self._fit_cache[key] = (None, exc)
        fit, error = self._fit_cache[key]
        self.fit_error = error
        return fit

    # ------------------------------------------------------------------ plotting
    def component(self):
        return COMPONENTS[self.component_combo.currentIndex()]

    def pin_current(self):
        if self.current_series is not None and self.current_series not in self.pinned:
            self.pinned.append(self.current_series)
            marker = getattr(self, "current_marker", None)
            if marker is not None and marker in self.map_tool.markers:
                marker.setColor(self._pin_colour(len(self.pinned) - 1))
                self.current_series["_marker"] = marker
                self.current_marker = None
            self.redraw()

    def _pin_colour(self, i):
        return QColor(self.ph.PIN_COLOURS[i % len(self.ph.PIN_COLOURS)])

    def clear(self):
        self.pinned = []
        self.current_series = None
        self.current_marker = None
        self.map_tool.clear_markers()
        self._fit_choice_sticky = False
        self.redraw()

    def redraw(self, target=None):
        """Draw the pinned and current series into ``target`` (default: the dock's plot,
        whose items are kept in ``self.curves``), with the reference subtracted and the
        chosen model."""
        pg = self.pg
        plot = target if target is not None else self.plot
        plot.clear()
        if plot.getPlotItem().legend is not None:
            plot.getPlotItem().legend.clear()  # also the style entries added below
        curves = {}
        if target is None:
            self.curves = curves
            self._refresh_fit_combo()
        comps = ("east", "north", "magnitude") if self.component() == "all" else (self.component(),)
        # pinned series: magnitude only when all components are shown (keeps it readable)
        pin_comps = ("magnitude",) if self.component() == "all" else comps
        for i, raw in enumerate(self.pinned):
            s = self.displayed(raw)
            x = self.ph.dates_seconds(s["dates"])
            colour = self.ph.PIN_COLOURS[i % len(self.ph.PIN_COLOURS)]
            for comp in pin_comps:
                pen = pg.mkPen(colour, width=2, style=Qt.PenStyle.SolidLine
                               if comp == "magnitude" else Qt.PenStyle.DotLine)
                name = s["label"] if len(pin_comps) == 1 else "%s %s" % (s["label"], comp)
                curves["pin%d_%s" % (i, comp)] = plot.plot(
                    x, s[comp], pen=pen, name=name, symbol="s", symbolSize=5,
                    symbolBrush=colour, symbolPen=colour)
        self._draw_model(plot, curves, comps, pin_comps, target)
        raw = self.current_series
        if raw is None or raw in self.pinned:
            return
        s = self.displayed(raw)
        x = self.ph.dates_seconds(s["dates"])
        sigma = np.asarray(s["sigma"], float)
        for comp in comps:
            colour = self.ph.COMPONENT_COLOURS[comp]
            y = np.asarray(s[comp], dtype=float)
            if np.isfinite(sigma).any() and np.nanmax(sigma) > 0:
                band = np.nan_to_num(sigma, nan=0.0)
                upper = plot.plot(x, y + band, pen=pg.mkPen(None))
                lower = plot.plot(x, y - band, pen=pg.mkPen(None))
                fill = pg.FillBetweenItem(upper, lower, brush=pg.mkBrush(
                    self._alpha(colour, 28)))
                plot.addItem(fill)
            if comp in ("east", "north"):
                self._draw_pairs(plot, curves, s, comp, colour)
            line = fitted_velocity_line(s["dates"], y, s["velocity"].get(VELOCITY_OF[comp],
                                                                          np.nan))
            if np.isfinite(line).any():
                curves["fit_" + comp] = plot.plot(
                    x, line, pen=pg.mkPen(colour, width=1, style=Qt.PenStyle.DashLine),
                    name=None)
            curves[comp] = plot.plot(x, y, pen=pg.mkPen(colour, width=2), symbol="o",
                                     symbolSize=6, symbolBrush=colour, symbolPen=colour,
                                     name=comp)
        if len(comps):
            # legend entries explaining the line styles once (not per component)
            key = comps[-1]
            colour = self.ph.COMPONENT_COLOURS[key]
            legend = plot.getPlotItem().legend
            if legend is not None:
                legend.addItem(pg.PlotDataItem(pen=pg.mkPen(colour, width=1,
                                                            style=Qt.PenStyle.DashLine)),
                               "fitted velocity")
                if s["pairs"]:
                    legend.addItem(pg.PlotDataItem(pen=pg.mkPen(self._alpha("#555555", 140))),
                                   "pair observations")
                if np.isfinite(sigma).any() and np.nanmax(sigma) > 0:
                    legend.addItem(pg.BarGraphItem(x=[0], height=[1], width=1,
                                                   brush=self._alpha("#555555", 60),
                                                   pen=pg.mkPen(None)),
                                   "± σ %.2g m" % np.nanmax(sigma))

    def _draw_model(self, plot, curves, comps, pin_comps, target):
        """The chosen model of the Fit series (thick translucent line), its residuals in
        the residual plot and its parameters below."""
        pg = self.pg
        raw = self.fit_target()
        fit = self.compute_fit(raw)
        if target is None:
            self.fit = fit
            self.residual_plot.clear()
            show = self.model() is not None
            was_visible = self.residual_plot.isVisibleTo(self)
            self.residual_plot.setVisible(show and fit is not None)
            if show and fit is not None and not was_visible:
                total = max(sum(self.splitter.sizes()), 400)
                self.splitter.setSizes([int(total * 0.72), int(total * 0.28)])
            self.fit_label.setVisible(show)
            if show and fit is None:
                self.fit_label.setText(
                    "No fit: %s" % (self.fit_error if self.fit_error is not None
                                    else "click a pixel first."))
        if fit is None:
            return
        s = self.displayed(raw)
        x = self.ph.dates_seconds(s["dates"])
        model_e, model_n = fit.fitted[:, 0], fit.fitted[:, 1]
        values = {"east": model_e, "north": model_n, "magnitude": np.hypot(model_e, model_n)}
        # the model of the components drawn for that series (a pinned one: magnitude only
        # when all components are shown)
        pinned = raw in self.pinned
        for comp in (pin_comps if pinned else comps):
            base = (self.ph.PIN_COLOURS[self.pinned.index(raw) % len(self.ph.PIN_COLOURS)]
                    if pinned else self.ph.COMPONENT_COLOURS[comp])
            colour = self._alpha(base, 150)
            curves["model_" + comp] = plot.plot(x, values[comp], pen=pg.mkPen(colour, width=4),
                                                name=None)
        legend = plot.getPlotItem().legend
        if legend is not None:
            legend.addItem(pg.PlotDataItem(pen=pg.mkPen(self._alpha("#000000", 150), width=4)),
                           "%s fit" % sm.MODEL_LABELS[fit.model])
        if fit.onset is not None:
            onset = pg.InfiniteLine(pos=self.ph.date_seconds(fit.onset), angle=90,
                                    pen=pg.mkPen("#CC0000", width=1, style=Qt.PenStyle.DashLine))
            plot.addItem(onset)
            curves["onset"] = onset
        if target is not None:
            return
        resid_comps = ("east", "north") if self.component() in ("all", "magnitude") \
            else (self.component(),)
        for comp in resid_comps:
            k = fit.components.index(comp)
            colour = self.ph.COMPONENT_COLOURS[comp]
            curves["resid_" + comp] = self.residual_plot.plot(
                x, fit.residuals[:, k], pen=pg.mkPen(colour, width=1), symbol="o",
                symbolSize=4, symbolBrush=colour, symbolPen=colour, name=comp)
        zero = pg.InfiniteLine(pos=0.0, angle=0, pen=pg.mkPen("#888888"))
        self.residual_plot.addItem(zero)
        title, lines = sm.fit_summary(fit)
        ref = " (re-referenced)" if self.reference is not None and raw is not self.reference \
            else ""
        self.fit_label.setText("<b>%s fit of %s%s</b>: %s" % (title, raw["label"], ref,
                                                            "; ".join(lines)))

    @staticmethod
    def _alpha(colour, alpha):
        c = QColor(colour)
        c.setAlpha(alpha)
        return c

    def _draw_pairs(self, plot, curves, s, comp, colour):
        """Each pair as a segment from (t1, D(t1)) to (t2, D(t1) + pair displacement)."""
        if not s["pairs"]:
            return
        index = {d: i for i, d in enumerate(s["dates"])}
        key = comp + "_m"
        xs, ys = [], []
        for obs in s["pairs"]:
            i = index.get(obs["reference_date"])
            if i is None or obs["secondary_date"] not in index:
                continue
            start = s[comp][i]
            if not np.isfinite(start):
                continue
            xs += [self.ph.date_seconds(obs["reference_date"]),
                   self.ph.date_seconds(obs["secondary_date"])]
            ys += [start, start + obs[key]]
        if xs:
            curves["pairs_" + comp] = plot.plot(
                np.array(xs), np.array(ys), connect="pairs",
                pen=self.pg.mkPen(self._alpha(colour, 110), width=1), name=None)

    def _on_mouse_moved(self, event):
        pos = event[0]
        s = self.current_series or (self.pinned[-1] if self.pinned else None)
        if s is None or not self.plot.sceneBoundingRect().contains(pos):
            return
        s = self.displayed(s)
        x = self.plot.getPlotItem().vb.mapSceneToView(pos).x()
        xs = self.ph.dates_seconds(s["dates"])
        i = int(np.argmin(np.abs(xs - x)))
        text = ("%s: east %.3f m, north %.3f m, magnitude %.3f m"
                % (s["dates"][i], s["east"][i], s["north"][i], s["magnitude"][i]))
        if np.isfinite(s["sigma"][i]):
            text += " (σ %.2g m)" % s["sigma"][i]
        self.hover.setText(text)

    # ------------------------------------------------------------------- export
    def series_for_export(self, displayed=True):
        out = list(self.pinned)
        if self.current_series is not None and self.current_series not in out:
            out.append(self.current_series)
        return [self.displayed(s) for s in out] if displayed else out

    def export_csv(self, path=None):
        from ..core.raster_io import write_text_atomic

        series = self.series_for_export()
        if not series:
            self._message("Nothing to export: click a pixel first.")
            return None
        if path is None:
            path, _f = QFileDialog.getSaveFileName(self, "Export time series", "",
                                                   "CSV (*.csv)")
            if not path:
                return None
        write_text_atomic(path, rows_to_csv_text(series_to_rows(series)))
        return path

    def export_png(self, path=None):
        if path is None:
            path, _f = QFileDialog.getSaveFileName(self, "Export plot", "", "PNG (*.png)")
            if not path:
                return None
        from ..core.raster_io import atomic_output

        # draw into a standalone plot of a fixed, readable size (the dock may be hidden
        # or squeezed), then grab it
        export_plot = self.ph.date_plot_widget(None, "cumulative displacement (m)")
        export_plot.resize(1000, 560)
        self.redraw(export_plot)
        image = export_plot.grab()
        export_plot.deleteLater()
        with atomic_output(path) as tmp:
            if not image.save(tmp, "PNG"):
                from ..core.errors import OutputError

                raise OutputError("Could not write the image '%s'." % path)
        return path

    # ------------------------------------------------------------------ cleanup
    def cleanup(self):
        super().cleanup()
        self._proxy = None
        self.map_tool.cleanup()
        self.reference_tool.cleanup()
        self.area_tool.cleanup()


def describe_quality(quality):
    """One phrase from the quality layers at a pixel (empty when not computed)."""
    if not quality:
        return ""
    parts = []
    if "n_valid_pairs" in quality:
        parts.append("%d valid pairs" % quality["n_valid_pairs"])
    share = quality.get("ncc_share")
    if share is not None and np.isfinite(share):
        parts.append("%.0f %% above the NCC threshold" % (100 * share))
    if quality.get("first_valid_date"):
        parts.append("measured %s to %s" % (quality["first_valid_date"],
                                            quality.get("last_valid_date")))
    gap = quality.get("longest_gap_days")
    if gap is not None and np.isfinite(gap):
        parts.append("longest gap %.0f days" % gap)
    return ", ".join(parts)
