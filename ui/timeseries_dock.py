"""Time-series inspector dock: click a pixel, see its displacement history.

Shows the east, north and magnitude cumulative displacement against date, the uncertainty
band (± the residual RMSE of the inversion at that pixel), the pairwise observations that fed
the inversion (segments between their two dates, hung on the inverted series at the first
date) and the fitted mean velocity. Several pixels can be pinned to compare them; a click
inside a detection also shows the detection's mean series. Hovering shows the values.
Export the curves as CSV or PNG. Reading runs in a QgsTask, off the main thread.
"""

import os

import numpy as np
from qgis.core import QgsCoordinateTransform, QgsGeometry, QgsPointXY, QgsProject, QgsSettings
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (QComboBox, QDockWidget, QFileDialog, QHBoxLayout, QLabel,
                                 QPushButton, QToolButton, QVBoxLayout, QWidget)

from . import layer_finder
from .pixel_map_tool import PixelMapTool
from .timeseries_reader import (SeriesSources, TaskRunner, describe_network_flags,
                                fitted_velocity_line,
                                read_pixel_series, read_polygon_series, rows_to_csv_text,
                                series_to_rows)

COMPONENTS = ("all", "east", "north", "magnitude")
VELOCITY_OF = {"east": "ve_m_per_yr", "north": "vn_m_per_yr", "magnitude": "v_m_per_yr"}
SETTINGS_FOLDER = "SlideWatch/timeseries_folder"


class TimeSeriesDock(QDockWidget):
    def __init__(self, iface, parent=None):
        super().__init__("SlideWatch time series", parent)
        from . import plot_helpers

        self.iface = iface
        self.canvas = iface.mapCanvas()
        self.ph = plot_helpers
        self.pg = plot_helpers.pg()
        self.runner = TaskRunner()
        self.sources = SeriesSources()
        self.current_series = None
        self.current_marker = None
        self.pinned = []
        self.curves = {}
        self.last_error = None
        self._build()
        self.map_tool = PixelMapTool(self.canvas)
        self.map_tool.pixelClicked.connect(self.on_pixel_clicked)
        self.map_tool.deactivated.connect(lambda: self.pick_button.setChecked(False))
        QgsProject.instance().cleared.connect(self._on_project_cleared)
        self.refresh_sources()

    # ------------------------------------------------------------------------ ui
    def _build(self):
        body = QWidget(self)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
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
        self.folder_button = QPushButton("Outputs…", body)
        self.folder_button.setToolTip("Choose the SlideWatch output folder (when the time-series "
                                      "rasters are not among the project layers)")
        self.folder_button.clicked.connect(self.choose_folder)
        row.addWidget(self.folder_button)
        self.csv_button = QPushButton("CSV…", body)
        self.csv_button.clicked.connect(lambda: self.export_csv())
        row.addWidget(self.csv_button)
        self.png_button = QPushButton("PNG…", body)
        self.png_button.clicked.connect(lambda: self.export_png())
        row.addWidget(self.png_button)
        layout.addLayout(row)
        self.info = QLabel(body)
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.info)
        self.plot = self.ph.date_plot_widget(body, "cumulative displacement (m)")
        layout.addWidget(self.plot, 1)
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
        self.clear()
        self.info.setText("")

    def set_sources(self, sources):
        self.sources = sources
        if sources.complete():
            self.map_tool.set_target_crs(layer_finder.raster_crs(sources.ts_east))
            self.info.setText("Time series: %s" % os.path.dirname(sources.ts_east))
        else:
            self.info.setText(sources.missing_message())

    def set_folder(self, folder):
        sources = SeriesSources.from_folder(folder)
        if sources.complete():
            QgsSettings().setValue(SETTINGS_FOLDER, folder)
        self.set_sources(sources)
        return sources

    def choose_folder(self):
        folder = QFileDialog.getExistingDirectory(self, "SlideWatch output folder",
                                                  self.sources.folder or "")
        if folder:
            self.set_folder(folder)

    def activate_tool(self, on=True):
        if on:
            if not self.sources.complete():
                self.refresh_sources()
            self.canvas.setMapTool(self.map_tool)
        elif self.canvas.mapTool() is self.map_tool:
            self.canvas.unsetMapTool(self.map_tool)
        if self.pick_button.isChecked() != bool(on):
            self.pick_button.setChecked(bool(on))

    # --------------------------------------------------------------------- reads
    def on_pixel_clicked(self, point, canvas_point=None):
        """``point`` in the raster CRS (from the map tool)."""
        if not self.sources.complete():
            self.refresh_sources()
            if not self.sources.complete():
                self._message(self.sources.missing_message())
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
                        read_pixel_series, self.sources, point.x(), point.y())
        geometry, label = self._detection_at(point)
        if geometry is not None:
            self.show_polygon_mean(geometry, label)

    def show_polygon_mean(self, geojson, label):
        """Read (in a task) and pin the mean series of a polygon given in the raster CRS."""
        self.runner.run("SlideWatch: reading a detection's mean series", self._on_polygon,
                        read_polygon_series, self.sources, geojson, label)

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
        if error is not None:
            self.last_error = error
            self._message(str(error))
            return
        self.last_error = None
        self.current_series = result
        v = result["velocity"]
        self.info.setText("%s at (%.1f, %.1f): velocity %.3g m/yr (σ %.2g), E %.3g N %.3g "
                          "m/yr, %s observations, RMSE %.2g m, %d pair measurements here"
                          % (result["label"], result["x"], result["y"], v["v_m_per_yr"],
                             v["v_sigma_m_per_yr"], v["ve_m_per_yr"], v["vn_m_per_yr"],
                             "?" if not np.isfinite(v["n_obs"]) else int(v["n_obs"]),
                             v["rmse_m"], len(result["pairs"])))
        flags = describe_network_flags(result.get("network_flags"))
        if flags:
            self.info.setText(self.info.text() + ". Network: " + "; ".join(flags) + ".")
        self.redraw()

    def _on_polygon(self, result, error):
        if error is not None:
            self.last_error = error
            self._message(str(error))
            return
        self.pinned.append(result)
        self.redraw()

    def _message(self, text):
        self.info.setText(text)
        bar = self.iface.messageBar() if self.iface is not None else None
        if bar is not None:
            from qgis.core import Qgis

            bar.pushMessage("SlideWatch", text, Qgis.MessageLevel.Warning, 6)

    def wait(self, timeout_ms=20000):
        """Process events until the reads finished (tests, scripts)."""
        return self.runner.wait(timeout_ms)

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
        from qgis.PyQt.QtGui import QColor

        return QColor(self.ph.PIN_COLOURS[i % len(self.ph.PIN_COLOURS)])

    def clear(self):
        self.pinned = []
        self.current_series = None
        self.current_marker = None
        self.map_tool.clear_markers()
        self.redraw()

    def redraw(self, target=None):
        """Draw the pinned and current series into ``target`` (default: the dock's plot,
        whose items are kept in ``self.curves``)."""
        pg = self.pg
        plot = target if target is not None else self.plot
        plot.clear()
        if plot.getPlotItem().legend is not None:
            plot.getPlotItem().legend.clear()  # also the style entries added below
        curves = {}
        if target is None:
            self.curves = curves
        comps = ("east", "north", "magnitude") if self.component() == "all" else (self.component(),)
        # pinned series: magnitude only when all components are shown (keeps it readable)
        pin_comps = ("magnitude",) if self.component() == "all" else comps
        for i, s in enumerate(self.pinned):
            x = self.ph.dates_seconds(s["dates"])
            colour = self.ph.PIN_COLOURS[i % len(self.ph.PIN_COLOURS)]
            for comp in pin_comps:
                pen = pg.mkPen(colour, width=2, style=Qt.PenStyle.SolidLine
                               if comp == "magnitude" else Qt.PenStyle.DotLine)
                name = s["label"] if len(pin_comps) == 1 else "%s %s" % (s["label"], comp)
                curves["pin%d_%s" % (i, comp)] = plot.plot(
                    x, s[comp], pen=pen, name=name, symbol="s", symbolSize=5,
                    symbolBrush=colour, symbolPen=colour)
        s = self.current_series
        if s is None or s in self.pinned:
            return
        x = self.ph.dates_seconds(s["dates"])
        rmse = s["velocity"].get("rmse_m", np.nan)
        for comp in comps:
            colour = self.ph.COMPONENT_COLOURS[comp]
            y = np.asarray(s[comp], dtype=float)
            if np.isfinite(rmse) and rmse > 0:
                upper = plot.plot(x, y + rmse, pen=pg.mkPen(None))
                lower = plot.plot(x, y - rmse, pen=pg.mkPen(None))
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
        if len(comps) and s is not None:
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
                if np.isfinite(rmse):
                    legend.addItem(pg.BarGraphItem(x=[0], height=[1], width=1,
                                                   brush=self._alpha("#555555", 60),
                                                   pen=pg.mkPen(None)),
                                   "± RMSE %.2g m" % rmse)

    @staticmethod
    def _alpha(colour, alpha):
        from qgis.PyQt.QtGui import QColor

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
        x = self.plot.getPlotItem().vb.mapSceneToView(pos).x()
        xs = self.ph.dates_seconds(s["dates"])
        i = int(np.argmin(np.abs(xs - x)))
        self.hover.setText("%s: east %.3f m, north %.3f m, magnitude %.3f m"
                           % (s["dates"][i], s["east"][i], s["north"][i], s["magnitude"][i]))

    # ------------------------------------------------------------------- export
    def series_for_export(self):
        out = list(self.pinned)
        if self.current_series is not None and self.current_series not in out:
            out.append(self.current_series)
        return out

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
        try:
            QgsProject.instance().cleared.disconnect(self._on_project_cleared)
        except (TypeError, RuntimeError):
            pass
        self.runner.cancel_all()
        self._proxy = None
        self.map_tool.cleanup()
