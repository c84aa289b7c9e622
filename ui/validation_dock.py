"""Validation dock: an analyst confirms or rejects detections, one by one (like AcATaMa).

The list of a detections layer, sorted by score (or by the probability learned from the
decisions already made), filtered by status, score and area. Selecting a detection zooms to
it, flashes it on the map, shows its score explanation, its evidence, and its mean
displacement series (read in a QgsTask). Confirm / Reject / Uncertain (keys C, R, U; N and P
for next and previous; Ctrl+Z undo) write the decision to the GeoPackage at once, with the
comment, the analyst name (remembered) and a UTC timestamp. See docs/ui.md.
"""

import os

import numpy as np
from qgis.core import (Qgis, QgsCoordinateTransform, QgsGeometry, QgsMapLayerProxyModel,
                       QgsProject, QgsRectangle, QgsSettings, QgsVectorLayer)
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor, QKeySequence
from qgis.PyQt.QtWidgets import (QAbstractItemView, QComboBox, QDoubleSpinBox, QFileDialog,
                                 QHBoxLayout, QHeaderView, QProgressBar, QPushButton,
                                 QSplitter, QTableWidget, QTableWidgetItem, QTextBrowser,
                                 QVBoxLayout, QWidget)

from ..core.series.timeseries_reader import SeriesSources, read_polygon_series
from . import layer_finder
from .button_rows import (SETTINGS_ANALYST, analyst_form, button_row, finish_dock,
                          install_shortcuts, layer_row)
from .dock_base import SlideWatchDock
from .validation_model import (STATUSES, DecisionConflict, ValidationModel, default_analyst,
                               parse_explanation)

STATUS_COLOURS = {"unvalidated": "#FFFFFF", "confirmed": "#C8F0C8", "rejected": "#F5C6C6",
                  "uncertain": "#FFF0B0"}
COLUMNS = ("id", "score", "P(confirm)", "area m²", "v mean m/yr", "status")


def _num(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return np.nan
    return f


class ValidationDock(SlideWatchDock):
    MESSAGE_LABEL = "status_label"
    MESSAGE_SECONDS = 8

    def __init__(self, iface, parent=None):
        super().__init__("SlideWatch validation", iface, parent)
        self.model = None
        self.layer = None
        self.series = None
        self._filling = False
        self._build()
        self._shortcuts()
        found = layer_finder.detection_layers()
        if found:
            self.layer_combo.setLayer(found[0])
        self._connect(self.layer_combo.layerChanged, self.set_layer)
        self.set_layer(self.layer_combo.currentLayer())

    # ------------------------------------------------------------------------ ui
    def _build(self):
        body, outer = self._new_body()
        outer.addLayout(layer_row(
            self, body, "Detections", QgsMapLayerProxyModel.Filter.PolygonLayer,
            "Open a detections.gpkg and add it to the project",
            "Re-read the file (decisions made in other sessions)"))

        filters = QHBoxLayout()
        self.status_combo = QComboBox(body)
        self.status_combo.addItems(["all"] + list(STATUSES))
        self.status_combo.setToolTip("Show only detections with this status")
        filters.addWidget(self.status_combo)
        self.min_score = QDoubleSpinBox(body)
        self.min_score.setPrefix("score ≥ ")
        self.min_score.setDecimals(2)
        self.min_score.setRange(-1e6, 1e6)
        self.min_score.setSingleStep(0.05)
        self.min_score.setValue(-1e6)
        self.min_score.setSpecialValueText("any score")
        filters.addWidget(self.min_score)
        self.min_area = QDoubleSpinBox(body)
        self.min_area.setPrefix("area ≥ ")
        self.min_area.setSuffix(" m²")
        self.min_area.setDecimals(0)
        self.min_area.setRange(0, 1e12)
        self.min_area.setSingleStep(1000)
        self.min_area.setSpecialValueText("any area")
        filters.addWidget(self.min_area)
        self.order_combo = QComboBox(body)
        self.order_combo.addItems(["by score", "by learned probability"])
        self.order_combo.setToolTip("Order of the list; the learned probability is available "
                                    "once enough detections are confirmed or rejected")
        filters.addWidget(self.order_combo)
        for w in (self.status_combo, self.order_combo):
            w.currentIndexChanged.connect(lambda _i: self.apply_filters())
        for w in (self.min_score, self.min_area):
            w.valueChanged.connect(lambda _v: self.apply_filters())
        outer.addLayout(filters)

        split = QSplitter(Qt.Orientation.Vertical, body)
        self.table = QTableWidget(0, len(COLUMNS), split)
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        # Interactive, not ResizeToContents: the latter re-measures every row at each change
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._on_table_selection)
        detail = QWidget(split)
        dl = QVBoxLayout(detail)
        dl.setContentsMargins(0, 0, 0, 0)
        self.explanation = QTextBrowser(detail)
        self.explanation.setMinimumHeight(90)
        dl.addWidget(self.explanation, 2)
        self.plot = self.ph.date_plot_widget(detail, "mean displacement (m)")
        self.plot.setMinimumHeight(120)
        dl.addWidget(self.plot, 3)
        split.addWidget(self.table)
        split.addWidget(detail)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        split.setSizes([300, 420])
        outer.addWidget(split, 1)

        outer.addLayout(button_row(self, body, (
            ("prev_button", "◀ Previous (P)", self.previous),
            ("next_button", "Next (N) ▶", self.next),
            ("undo_button", "Undo (Ctrl+Z)", self.undo))))
        outer.addLayout(button_row(self, body, (
            ("confirm_button", "Confirm (C)", lambda: self.decide("confirmed"),
             "background-color: #8fd18f"),
            ("reject_button", "Reject (R)", lambda: self.decide("rejected"),
             "background-color: #ef9a9a"),
            ("uncertain_button", "Uncertain (U)", lambda: self.decide("uncertain"),
             "background-color: #ffe082"))))
        outer.addLayout(analyst_form(self, body, "optional note saved with the decision"))
        prog = QHBoxLayout()
        self.progress = QProgressBar(body)
        self.progress.setFormat("%v / %m validated")
        prog.addWidget(self.progress, 1)
        self.report_button = QPushButton("Report…", body)
        self.report_button.setToolTip("Export a validation report (CSV + counts, precision)")
        self.report_button.clicked.connect(lambda: self.export_report())
        prog.addWidget(self.report_button)
        outer.addLayout(prog)
        finish_dock(self, body, outer)

    def _shortcuts(self):
        install_shortcuts(self, (("C", lambda: self.decide("confirmed")),
                                 ("R", lambda: self.decide("rejected")),
                                 ("U", lambda: self.decide("uncertain")),
                                 ("N", self.next), ("P", self.previous),
                                 (QKeySequence.StandardKey.Undo, self.undo)))

    # --------------------------------------------------------------------- layer
    def open_file(self, path=None):
        if path is None:
            path, _f = QFileDialog.getOpenFileName(self, "Open detections", "",
                                                   "GeoPackage (*.gpkg)")
            if not path:
                return None
        layer = QgsVectorLayer("%s|layername=detections" % path, "detections", "ogr")
        if not layer.isValid():
            self._message("'%s' has no valid layer 'detections'." % path)
            return None
        QgsProject.instance().addMapLayer(layer)
        self.layer_combo.setLayer(layer)
        return layer

    def set_layer(self, layer):
        self.layer = None
        self.model = None
        self.table.setRowCount(0)
        if layer is None:
            self.status_label.setText("Choose a detections layer (detections.gpkg).")
            return
        path = layer_finder.layer_path(layer)
        if not path.lower().endswith(".gpkg"):
            self.status_label.setText("The layer '%s' is not a GeoPackage: decisions are "
                                      "saved to SlideWatch's detections.gpkg." % layer.name())
            return
        name = "detections"
        source = layer.source()
        if "layername=" in source:
            name = source.split("layername=", 1)[1].split("|", 1)[0]
        try:
            from ..core.detect.detections_store import ensure_validation_fields

            ensure_validation_fields(path, name)
            self.model = ValidationModel(path, name)
        except Exception as exc:  # SlideWatchError and OGR errors: say it, keep QGIS alive
            self._message("Cannot use '%s' for validation: %s" % (path, exc))
            return
        self.layer = layer
        self.sources = layer_finder.sources_from_project()
        if not self.sources.complete():
            self.sources = SeriesSources.from_folder(os.path.dirname(path))
        self.apply_filters()
        if self.model.current_id is None:
            self.model.first()
            self.show_current()

    def reload(self):
        if self.model is None:
            return
        self.model.reload()
        self._after_change()

    # ----------------------------------------------------------------- the list
    def apply_filters(self):
        if self.model is None:
            return
        min_score = self.min_score.value()
        self.model.set_filters(self.status_combo.currentText(),
                               None if min_score <= self.min_score.minimum() else min_score,
                               self.min_area.value() or None)
        self.model.set_order("probability" if self.order_combo.currentIndex() == 1 else "score")
        self.fill_table()

    def fill_table(self):
        """Show the visible records; only rows whose content changed are rewritten (a
        decision on a list of thousands stays instant)."""
        items = self.model.visible()
        rows = []
        for rec in items:
            p = self.model.probability(rec["id"])
            rows.append((rec["id"], rec["status"],
                         (str(rec["id"]), "%.3f" % _num(rec.get("score")),
                          "" if p is None else "%.2f" % p, "%.0f" % _num(rec.get("area_m2")),
                          "%.2f" % _num(rec.get("v_mean_m_per_yr")), rec["status"])))
        cache = getattr(self, "_row_cache", [])
        self._filling = True
        self.table.setUpdatesEnabled(False)
        try:
            resize = self.table.rowCount() != len(rows)
            if resize:
                self.table.setRowCount(len(rows))
                cache = []
            for r, row in enumerate(rows):
                if r < len(cache) and cache[r] == row:
                    continue
                ident, status, values = row
                colour = QColor(STATUS_COLOURS.get(status, "#FFFFFF"))
                for c, text in enumerate(values):
                    item = self.table.item(r, c)
                    if item is None:
                        item = QTableWidgetItem()
                        if c < 5:
                            item.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                                  | Qt.AlignmentFlag.AlignVCenter)
                        self.table.setItem(r, c, item)
                    item.setText(text)
                    item.setData(Qt.ItemDataRole.UserRole, ident)
                    item.setBackground(colour)
            self._row_cache = rows
            if resize:
                self.table.resizeColumnsToContents()
            self._select_row_of(self.model.current_id)
        finally:
            self.table.setUpdatesEnabled(True)
            self._filling = False
        self.update_progress()

    def _select_row_of(self, ident):
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).data(Qt.ItemDataRole.UserRole) == ident:
                self.table.selectRow(r)
                self.table.scrollToItem(self.table.item(r, 0))
                return r
        self.table.clearSelection()
        return None

    def _on_table_selection(self):
        if self._filling or self.model is None:
            return
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return
        ident = self.table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole)
        if ident != self.model.current_id:
            self.select(ident)

    def update_progress(self):
        c = self.model.counts()
        self.progress.setMaximum(max(c["total"], 1))
        self.progress.setValue(c["validated"])
        p = self.model.precision()
        self.status_label.setText(
            "%d / %d validated: %d confirmed, %d rejected, %d uncertain; detector precision "
            "on validated items: %s. Learning: %s."
            % (c["validated"], c["total"], c["confirmed"], c["rejected"], c["uncertain"],
               "–" if p is None else "%.2f" % p, self.model.learning_message))
        self.undo_button.setEnabled(self.model.can_undo())

    # --------------------------------------------------------------- navigation
    def select(self, ident, zoom=True):
        self.model.select(ident)
        self._select_row_of(ident)
        self.show_current(zoom)

    def next(self):
        if self.model is not None:
            self.model.next()
            self._select_row_of(self.model.current_id)
            self.show_current()

    def previous(self):
        if self.model is not None:
            self.model.previous()
            self._select_row_of(self.model.current_id)
            self.show_current()

    def current_geometry(self):
        rec = self.model.current() if self.model else None
        if rec is None or not rec.get("geometry_wkt"):
            return None
        return QgsGeometry.fromWkt(rec["geometry_wkt"])

    def show_current(self, zoom=True):
        rec = self.model.current() if self.model else None
        if rec is None:
            self.explanation.setHtml("<i>No detection selected.</i>")
            self.plot.clear()
            return
        self.comment.setText(rec.get("comment") or "")
        self.explanation.setHtml(self._explanation_html(rec))
        geom = self.current_geometry()
        if geom is not None and self.layer is not None:
            if zoom:
                self.zoom_to(geom)
            self.canvas.flashGeometries([geom], self.layer.crs())
            self.read_series(geom)

    def zoom_to(self, geom):
        canvas_crs = self.canvas.mapSettings().destinationCrs()
        g = QgsGeometry(geom)
        if self.layer.crs().isValid() and canvas_crs.isValid() and self.layer.crs() != canvas_crs:
            g.transform(QgsCoordinateTransform(self.layer.crs(), canvas_crs,
                                               QgsProject.instance()))
        box = g.boundingBox()
        size = max(box.width(), box.height())
        # context around the polygon: 3x its size, and at least 1/10 of the layer's extent
        full = self.layer.extent()
        if self.layer.crs().isValid() and canvas_crs.isValid() and self.layer.crs() != canvas_crs:
            full = QgsCoordinateTransform(self.layer.crs(), canvas_crs,
                                          QgsProject.instance()).transformBoundingBox(full)
        half = max(1.5 * size, max(full.width(), full.height()) / 20.0, 1e-9)
        centre = box.center()
        box = QgsRectangle(centre.x() - half, centre.y() - half, centre.x() + half,
                           centre.y() + half)
        self.canvas.setExtent(box)
        self.canvas.refresh()

    def _explanation_html(self, rec):
        parts = ["<b>Detection %s</b> — score %.3f, status <b>%s</b>"
                 % (rec["id"], _num(rec.get("score")), rec["status"])]
        p = self.model.probability(rec["id"])
        if p is not None:
            drivers = ", ".join("%s %+.2f" % (name[3:] if name.startswith("ev_") else name, c)
                                for name, c in self.model.drivers(rec["id"]))
            parts.append("<span style='color:#1a5fb4'>Learned from the decisions so far: "
                         "<b>P(confirm) = %.2f</b>, driven by %s (contributions to the "
                         "log-odds)</span>" % (p, drivers))
        facts = []
        for key, label, fmt in (("area_m2", "area", "%.0f m²"),
                                ("v_mean_m_per_yr", "mean velocity", "%.2f m/yr"),
                                ("v_p95_m_per_yr", "p95 velocity", "%.2f m/yr"),
                                ("direction_deg", "direction", "%.0f°"),
                                ("coherence", "coherence", "%.2f")):
            if np.isfinite(_num(rec.get(key))):
                facts.append("%s %s" % (label, fmt % _num(rec.get(key))))
        if rec.get("accel_flag"):
            facts.append("<b>accelerating</b> since %s"
                         % (str(rec.get("accel_onset_date") or "?").replace("/", "-")))
        parts.append(", ".join(facts))
        explanation = parse_explanation(rec.get("score_explanation"))
        if explanation:
            items = "".join("<li>%s%s</li>" % ("%s: " % k if k else "", v) for k, v in explanation)
            parts.append("Why it was flagged:<ul style='margin:0'>%s</ul>" % items)
        ev = [(k, _num(rec.get(k))) for k in self.model.evidence_names()]
        if ev:
            parts.append("Evidence: " + ", ".join("%s %.3g" % (k[3:], v) for k, v in ev
                                                  if np.isfinite(v)))
        if rec.get("validated_by"):
            parts.append("Validated by %s at %s%s" % (rec["validated_by"],
                                                      rec.get("validated_at") or "?",
                                                      (": “%s”" % rec["comment"])
                                                      if rec.get("comment") else ""))
        return "<br>".join(parts)

    # --------------------------------------------------------------- series
    def read_series(self, geom):
        """Mean series of the detection, read in a task (raster CRS)."""
        import json

        if not getattr(self, "sources", None) or not self.sources.complete():
            self.plot.clear()
            return
        crs = layer_finder.raster_crs(self.sources.ts_east)
        g = QgsGeometry(geom)
        if crs.isValid() and self.layer.crs().isValid() and crs != self.layer.crs():
            g.transform(QgsCoordinateTransform(self.layer.crs(), crs, QgsProject.instance()))
        ident = self.model.current_id
        self.runner.run("SlideWatch: reading a detection's mean series",
                        lambda result, error, ident=ident: self._on_series(ident, result, error),
                        read_polygon_series, self.sources, json.loads(g.asJson()),
                        "detection %s" % ident)

    def _on_series(self, ident, result, error):
        if self.model is None or ident != self.model.current_id:
            return
        self.plot.clear()
        if error is not None:
            self.last_error = error
            self.status_label.setText(str(error))
            return
        self.series = result
        x = self.ph.dates_seconds(result["dates"])
        for comp in ("east", "north", "magnitude"):
            colour = self.ph.COMPONENT_COLOURS[comp]
            self.plot.plot(x, result[comp], pen=self.pg.mkPen(colour, width=2), symbol="o",
                           symbolSize=5, symbolBrush=colour, name=comp)
        rec = self.model.current()
        onset = rec.get("accel_onset_date") if rec else None
        if onset:
            onset = str(onset).replace("/", "-")  # OGR dates read as YYYY/MM/DD
            try:
                line = self.pg.InfiniteLine(self.ph.date_seconds(onset), angle=90,
                                            pen=self.pg.mkPen("#CC0000", style=Qt.PenStyle.DashLine),
                                            label="acceleration", labelOpts={"position": 0.9})
                self.plot.addItem(line)
            except ValueError:
                pass

    # ------------------------------------------------------------------ decisions
    def decide(self, status):
        if self.model is None or self.model.current() is None:
            self._message("Select a detection first.")
            return None
        analyst = self.analyst.text().strip() or default_analyst()
        QgsSettings().setValue(SETTINGS_ANALYST, analyst)
        try:
            rec = self.model.decide(status, self.comment.text().strip(), analyst)
        except Exception as exc:  # locked file, deleted detection, ...: tell, never lose state
            self._message("The decision was NOT saved: %s" % exc)
            return None
        self.comment.clear()
        self._after_change()
        return rec

    def undo(self):
        if self.model is None or not self.model.can_undo():
            return None
        try:
            rec = self.model.undo()
        except DecisionConflict as exc:
            self._after_change()
            self._message(str(exc))
            return None
        except Exception as exc:
            self._message("Undo failed: %s" % exc)
            return None
        self._after_change()
        return rec

    def _after_change(self):
        if self.layer is not None:
            try:
                self.layer.dataProvider().reloadData()
            except Exception:
                pass
            self.layer.triggerRepaint()
        self.fill_table()
        self.show_current()

    # --------------------------------------------------------------------- report
    def export_report(self, path=None):
        if self.model is None:
            return None
        if path is None:
            default = os.path.join(os.path.dirname(self.model.gpkg), "validation_report.csv")
            path, _f = QFileDialog.getSaveFileName(self, "Validation report", default,
                                                   "CSV (*.csv)")
            if not path:
                return None
        paths = self.model.write_report(path)
        self.iface.messageBar().pushMessage("SlideWatch", "Validation report written: %s"
                                            % ", ".join(paths), Qgis.MessageLevel.Info, 5)
        return paths
