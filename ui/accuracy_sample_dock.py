"""Accuracy sample dock: label the points of the stratified random sample (issue 17).

The labelling pass of the design-based accuracy assessment (``core.accuracy_assessment``;
method in docs/accuracy_assessment.md). Open the sample file written by *Accuracy
assessment: sample points* (a GeoPackage, or a CSV with its ``.design.json``), or pick it
among the project's layers. The dock shows one point at a time (its number n / N, its
stratum, which is its map class, unless *blind* hides it), centres the map on it with a
marker and the outline of its pixel, and the analyst labels it **moving** (M), **not
moving** (S, stable) or **unsure** (U); Delete clears a label. N / P go to the next /
previous point, F to the first point not labelled yet. Every label is written to the
sample file at once (``core.accuracy_assessment.set_label``: one short transaction in the
GeoPackage, an atomic rewrite of the CSV), with the analyst, a UTC time and the comment, so
nothing is lost if QGIS stops. The progress shows the labelled points of each stratum.
**Estimate** runs the estimators of Olofsson et al. (2014) on the labelled points (the
core function the Processing algorithm *Accuracy assessment: estimates* calls), shows the
overall, user's and producer's accuracies and the moving area with their confidence
intervals, and writes the report (HTML, CSV, JSON) beside the sample file.
"""

import os

from qgis.core import (QgsCategorizedSymbolRenderer, QgsCoordinateReferenceSystem,
                       QgsCoordinateTransform, QgsGeometry, QgsMapLayerProxyModel,
                       QgsMarkerSymbol, QgsPointXY, QgsProject, QgsRectangle,
                       QgsRendererCategory, QgsSettings, QgsVectorLayer, QgsWkbTypes)
from qgis.gui import QgsRubberBand, QgsVertexMarker
from qgis.PyQt.QtCore import Qt, QUrl
from qgis.PyQt.QtGui import QColor, QKeySequence
from qgis.PyQt.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDoubleSpinBox,
                                 QFileDialog, QHBoxLayout, QHeaderView, QLabel, QProgressBar,
                                 QPushButton, QSpinBox, QTableWidget, QTableWidgetItem,
                                 QTextBrowser)

from ..core.outputs import accuracy_assessment as aa
from . import layer_finder
from .button_rows import (SETTINGS_ANALYST, analyst_form, button_row, finish_dock,
                          install_shortcuts, layer_row)
from .dock_base import SlideWatchDock
from .validation_model import default_analyst

#: marker / layer colour of each label (None = not labelled yet)
LABEL_COLOURS = {"moving": "#d7301f", "not_moving": "#1a9850", "unsure": "#f4a300",
                 None: "#2b83ba"}
LABEL_TEXT = {"moving": "moving", "not_moving": "not moving", "unsure": "unsure",
              None: "not labelled"}
#: the view around the current point: (text, width of the view in pixels of the map; 0 =
#: keep the scale, only pan)
ZOOMS = (("view 40 pixels wide", 40), ("view 15 pixels wide", 15),
         ("view 100 pixels wide", 100), ("view 300 pixels wide", 300),
         ("keep scale (pan only)", 0))
SETTINGS_ZOOM = "SlideWatch/accuracy_zoom"
SAMPLE_FIELDS = ("id", "stratum", "label")
TABLE_COLUMNS = ("stratum", "labelled", "of", "moving", "not moving", "unsure")


# ------------------------------------------------------------------------ helpers
def sample_path_of_layer(layer):
    """The sample file behind a layer: an OGR layer (``path|layername=...``) or a
    delimited-text layer (``file:///path.csv?...``); '' when there is none."""
    if layer is None:
        return ""
    try:
        provider = layer.providerType()
    except (AttributeError, RuntimeError):
        return ""
    if provider == "delimitedtext":
        path = QUrl(layer.source()).toLocalFile()
        return path if os.path.isfile(path) else ""
    return layer_finder.layer_path(layer)


def looks_like_sample_layer(layer):
    """A point layer with the sample fields whose file is a .gpkg or .csv."""
    if not isinstance(layer, QgsVectorLayer):
        return False
    path = sample_path_of_layer(layer)
    if not path.lower().endswith((".gpkg", ".csv")):
        return False
    names = {f.name() for f in layer.fields()}
    return all(f in names for f in SAMPLE_FIELDS)


def sample_layers(project=None):
    project = project or QgsProject.instance()
    return [layer for layer in project.mapLayers().values() if looks_like_sample_layer(layer)]


def report_paths(sample_path):
    """(html, csv, json) of the estimates, beside the sample file."""
    stem = os.path.splitext(sample_path)[0]
    return stem + "_accuracy.html", stem + "_accuracy.csv", stem + "_accuracy.json"


def valid_label(sample):
    """The sample's label when it is in the vocabulary, else None (a label another tool
    wrote outside the vocabulary counts as not labelled: label it again)."""
    lab = sample.get("label")
    return lab if lab in aa.VOCABULARY else None


def stratum_counts(samples, strata):
    """Per stratum (in ``strata`` order) and ``total``: dict n, labelled (any label of the
    vocabulary), moving, not_moving, unsure, unlabelled."""
    rows = {s: dict(n=0, labelled=0, moving=0, not_moving=0, unsure=0, unlabelled=0)
            for s in list(strata) + ["total"]}
    for s in samples:
        lab = valid_label(s)
        for key in (s.get("stratum"), "total"):
            r = rows.setdefault(key, dict(n=0, labelled=0, moving=0, not_moving=0, unsure=0,
                                          unlabelled=0))
            r["n"] += 1
            if lab is None:
                r["unlabelled"] += 1
            else:
                r["labelled"] += 1
                r[lab] += 1
    return rows


def _fmt_prop(e, z):
    """'0.912 ± 0.041 (0.871 – 0.953)': estimate ± z SE and the confidence interval of a
    proportion (the interval is clipped to [0, 1], so it may be asymmetric)."""
    if e is None or e.value != e.value:
        return "–"
    if e.se != e.se:
        return "%.3f (no interval)" % e.value
    return "%.3f ± %.3f (%.3f – %.3f)" % (e.value, z * e.se, e.low, e.high)


def _fmt_area(value):
    if value is None or value != value:
        return "–"
    return "{:,.0f} m² ({:,.2f} ha)".format(value, value / 1e4).replace(",", " ")


# --------------------------------------------------------------------------- dock
class AccuracySampleDock(SlideWatchDock):
    MESSAGE_LABEL = "status_label"
    MESSAGE_SECONDS = 8

    def __init__(self, iface, parent=None):
        super().__init__("SlideWatch accuracy sample", iface, parent, plots=False, tasks=False)
        self.path = None
        self.samples = []
        self.design = None
        self.index = None
        self.layer = None
        self.sample_crs = QgsCoordinateReferenceSystem()
        self.marker = None
        self.pixel_band = None
        self.report = None
        self.report_files = []
        self._setting_layer = False
        self._build()
        self._shortcuts()
        self._refresh_layer_filter()
        found = sample_layers()
        if found:
            self._setting_layer = True
            self.layer_combo.setLayer(found[0])
            self._setting_layer = False
        self._connect(self.layer_combo.layerChanged, self.set_layer)
        project = QgsProject.instance()
        self._connect(project.layersAdded, self._on_layers_added)
        self._connect(project.layersWillBeRemoved, self._on_layers_removed)
        self._connect(project.cleared, self._on_project_cleared)
        self.visibilityChanged.connect(self._on_visibility)
        if found:
            self.set_layer(found[0])
        else:
            self._show_empty()

    # ------------------------------------------------------------------------ ui
    def _build(self):
        body, outer = self._new_body()
        outer.addLayout(layer_row(
            self, body, "Sample", QgsMapLayerProxyModel.Filter.PointLayer,
            "Open a sample file (.gpkg or .csv) and add it to the project",
            "Re-read the file (labels written by another session)",
            "A sample layer of the project (written by 'Accuracy assessment: sample "
            "points')"))

        head = QHBoxLayout()
        head.addWidget(QLabel("Point", body))
        self.index_spin = QSpinBox(body)
        self.index_spin.setRange(0, 0)
        self.index_spin.setToolTip("Go to point number n (the order of the file, random)")
        self.index_spin.valueChanged.connect(self._on_index_spin)
        head.addWidget(self.index_spin)
        self.count_label = QLabel("/ 0", body)
        head.addWidget(self.count_label)
        head.addStretch(1)
        self.zoom_combo = QComboBox(body)
        for text, _px in ZOOMS:
            self.zoom_combo.addItem(text)
        self.zoom_combo.setCurrentIndex(min(max(QgsSettings().value(SETTINGS_ZOOM, 0, type=int),
                                                0), len(ZOOMS) - 1))
        self.zoom_combo.currentIndexChanged.connect(self._on_zoom_changed)
        head.addWidget(self.zoom_combo)
        self.blind_box = QCheckBox("blind", body)
        self.blind_box.setToolTip("Hide the stratum (= map class) while labelling, so that "
                                  "the map does not steer the label")
        self.blind_box.toggled.connect(lambda _b: self.show_current(zoom=False))
        head.addWidget(self.blind_box)
        outer.addLayout(head)

        self.info = QLabel(body)
        self.info.setWordWrap(True)
        self.info.setTextFormat(Qt.TextFormat.RichText)
        self.info.setMinimumHeight(70)
        self.info.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        outer.addWidget(self.info)

        outer.addLayout(button_row(self, body, (
            ("prev_button", "◀ Previous (P)", self.previous),
            ("next_button", "Next (N) ▶", self.next),
            ("first_unlabelled_button", "First unlabelled (F)", self.first_unlabelled))))

        outer.addLayout(button_row(self, body, (
            ("moving_button", "Moving (M)", lambda: self.label("moving"),
             "background-color: #f4a6a0", "The ground at the point moves (reference label)"),
            ("not_moving_button", "Not moving (S)", lambda: self.label("not_moving"),
             "background-color: #8fd18f", "The ground at the point is stable (S)"),
            ("unsure_button", "Unsure (U)", lambda: self.label("unsure"),
             "background-color: #ffe082",
             "Cannot tell: left out of the estimates, counted and reported"),
            ("clear_button", "Clear (Del)", lambda: self.label(None), None,
             "Remove the label of this point"))))

        form = analyst_form(self, body, "optional note saved with the label")
        self.advance_box = QCheckBox("after a label, go to the next unlabelled point", body)
        self.advance_box.setChecked(True)
        form.addRow("", self.advance_box)
        outer.addLayout(form)

        self.progress = QProgressBar(body)
        self.progress.setFormat("%v / %m labelled")
        outer.addWidget(self.progress)
        self.table = QTableWidget(0, len(TABLE_COLUMNS), body)
        self.table.setHorizontalHeaderLabels(TABLE_COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setMaximumHeight(110)
        outer.addWidget(self.table)

        est = QHBoxLayout()
        self.estimate_button = QPushButton("Estimate accuracy", body)
        self.estimate_button.setToolTip("Accuracies and the moving area with confidence "
                                        "intervals from the labelled points (Olofsson et al. "
                                        "2014); writes the report beside the sample file")
        self.estimate_button.clicked.connect(lambda: self.estimate())
        est.addWidget(self.estimate_button, 1)
        est.addWidget(QLabel("confidence", body))
        self.confidence = QDoubleSpinBox(body)
        self.confidence.setDecimals(3)
        self.confidence.setRange(0.5, 0.999)
        self.confidence.setSingleStep(0.01)
        self.confidence.setValue(0.95)
        est.addWidget(self.confidence)
        outer.addLayout(est)
        self.results = QTextBrowser(body)
        self.results.setOpenExternalLinks(True)
        self.results.setMinimumHeight(150)
        outer.addWidget(self.results, 1)
        finish_dock(self, body, outer)

    def _shortcuts(self):
        install_shortcuts(self, (("M", lambda: self.label("moving")),
                                 ("S", lambda: self.label("not_moving")),
                                 ("U", lambda: self.label("unsure")),
                                 (QKeySequence.StandardKey.Delete, lambda: self.label(None)),
                                 ("N", self.next), ("P", self.previous),
                                 ("F", self.first_unlabelled)))

    # ----------------------------------------------------------------- the sample
    def _refresh_layer_filter(self):
        """Only sample layers in the combo (other point layers are excepted)."""
        others = [layer for layer in QgsProject.instance().mapLayers().values()
                  if isinstance(layer, QgsVectorLayer) and not looks_like_sample_layer(layer)]
        self.layer_combo.setExceptedLayerList(others)

    def open_file(self, path=None, add_layer=True):
        """Load a sample file (a dialog when ``path`` is None); with ``add_layer`` its points
        are added to the project (styled by label) unless a layer shows them already."""
        if path is None:
            start = os.path.dirname(self.path) if self.path else ""
            path, _f = QFileDialog.getOpenFileName(
                self, "Open an accuracy sample", start,
                "Sample files (*.gpkg *.csv);;GeoPackage (*.gpkg);;CSV (*.csv)")
            if not path:
                return None
        path = os.path.abspath(path)
        layer = self._project_layer_of(path)
        if not self.load(path, layer):   # a file that is not a sample is never added
            return None
        if layer is None and add_layer:
            layer = self.layer = self._add_layer(path)
        if layer is not None:
            self._setting_layer = True
            self._refresh_layer_filter()
            self.layer_combo.setLayer(layer)
            self._setting_layer = False
        return self.path

    def _project_layer_of(self, path):
        for layer in sample_layers():
            if os.path.abspath(sample_path_of_layer(layer)) == path:
                return layer
        return None

    def _add_layer(self, path):
        """A layer of the loaded sample's points in the project, coloured by label."""
        name = "accuracy sample (%s)" % os.path.basename(path)
        if path.lower().endswith(".csv"):
            crs = self.sample_crs
            uri = ("%s?type=csv&delimiter=,&xField=x&yField=y&detectTypes=yes&geomType=point"
                   "&spatialIndex=no&subsetIndex=no&watchFile=no"
                   % QUrl.fromLocalFile(path).toString())
            if crs.isValid() and crs.authid():
                uri += "&crs=%s" % crs.authid()
            layer = QgsVectorLayer(uri, name, "delimitedtext")
            if layer.isValid() and crs.isValid() and not crs.authid():
                layer.setCrs(crs)
        else:
            layer = QgsVectorLayer("%s|layername=%s" % (path, aa.SAMPLES_LAYER), name, "ogr")
        if not layer.isValid():
            self._message("'%s' cannot be shown as a layer; labelling it anyway." % path)
            return None
        style_sample_layer(layer)
        self._setting_layer = True
        QgsProject.instance().addMapLayer(layer)
        self._setting_layer = False
        return layer

    def set_layer(self, layer):
        """The combo's choice: label the file behind that layer."""
        if self._setting_layer:
            return
        if layer is None:
            return
        path = sample_path_of_layer(layer)
        if not path:
            self.status_label.setText("The layer '%s' is not file-based: choose the sample "
                                      "file written by 'Accuracy assessment: sample points'."
                                      % layer.name())
            return
        path = os.path.abspath(path)
        if path == self.path:
            self.layer = layer
            return
        self.load(path, layer)

    def load(self, path, layer=None):
        """Read the sample file; go to the first unlabelled point. False on failure (the
        message says why; the previous sample stays loaded)."""
        try:
            ss = aa.read_samples(path, check_labels=False)
        except Exception as exc:  # SlideWatchError and sqlite/OGR errors: say it, keep QGIS up
            self.last_error = exc
            self._message("Cannot label '%s': %s" % (path, exc))
            return False
        self.path = ss.path
        self.samples = sorted(ss.samples, key=lambda s: s["id"])
        self.design = ss.design
        self.layer = layer
        crs = QgsCoordinateReferenceSystem()
        if ss.design.crs_wkt:
            crs = QgsCoordinateReferenceSystem.fromWkt(ss.design.crs_wkt)
        if not crs.isValid() and layer is not None:
            crs = layer.crs()
        self.sample_crs = crs
        self.report = None
        self.report_files = []
        self.results.clear()
        bad = [s["id"] for s in self.samples if s.get("label") and valid_label(s) is None]
        self.index_spin.blockSignals(True)
        self.index_spin.setRange(1 if self.samples else 0, len(self.samples))
        self.index_spin.blockSignals(False)
        self.count_label.setText("/ %d" % len(self.samples))
        self.index = None
        if self.samples:
            nxt = self._next_unlabelled(-1)
            self.go(nxt if nxt is not None else 0)
        else:
            self._show_empty()
        self.update_progress()
        text = "Labelling %s: %d points." % (self.path, len(self.samples))
        if bad:
            text += (" %d point(s) carry a label outside the vocabulary (ids %s): they count "
                     "as not labelled; label them again."
                     % (len(bad), ", ".join(map(str, bad[:10]))))
        self.status_label.setText(text)
        return True

    def reload(self):
        if self.path is None:
            return False
        current = self.current()
        ident = current["id"] if current else None
        if not self.load(self.path, self.layer):
            return False
        if ident is not None:
            self.go_to_id(ident)
        return True

    def _show_empty(self):
        self.info.setText("<i>No sample loaded. Open the file written by <b>Accuracy "
                          "assessment: sample points</b> (Processing toolbox → SlideWatch), "
                          "or choose its layer above.</i>")
        self._remove_marker()

    # ------------------------------------------------------------------ navigation
    def current(self):
        if self.index is None or not self.samples:
            return None
        return self.samples[self.index]

    def go(self, index, zoom=True):
        """Show point number ``index`` (0-based, clamped)."""
        if not self.samples:
            return None
        self.index = max(0, min(int(index), len(self.samples) - 1))
        self.index_spin.blockSignals(True)
        self.index_spin.setValue(self.index + 1)
        self.index_spin.blockSignals(False)
        self.show_current(zoom)
        return self.current()

    def go_to_id(self, ident):
        for i, s in enumerate(self.samples):
            if s["id"] == ident:
                return self.go(i)
        return None

    def next(self):
        if self.index is None:
            return None
        return self.go(self.index + 1)

    def previous(self):
        if self.index is None:
            return None
        return self.go(self.index - 1)

    def _next_unlabelled(self, after):
        """Index of the first unlabelled point after ``after`` (wrapping), or None."""
        n = len(self.samples)
        for k in range(1, n + 1):
            i = (after + k) % n
            if valid_label(self.samples[i]) is None:
                return i
        return None

    def first_unlabelled(self):
        i = self._next_unlabelled(-1)
        if i is None:
            if self.samples:
                self.status_label.setText("All %d points are labelled: run Estimate accuracy."
                                          % len(self.samples))
            return None
        return self.go(i)

    def _on_index_spin(self, value):
        if self.samples and value >= 1:
            self.go(value - 1)

    def _on_zoom_changed(self, index):
        QgsSettings().setValue(SETTINGS_ZOOM, int(index))
        self.show_current()

    # ---------------------------------------------------------------- the point
    def point_of(self, sample):
        return QgsPointXY(float(sample["x"]), float(sample["y"]))

    def _to_canvas(self):
        canvas_crs = self.canvas.mapSettings().destinationCrs()
        if self.sample_crs.isValid() and canvas_crs.isValid() and self.sample_crs != canvas_crs:
            return QgsCoordinateTransform(self.sample_crs, canvas_crs, QgsProject.instance())
        return None

    def canvas_point(self, sample):
        """The sample's point in the canvas CRS."""
        tr = self._to_canvas()
        p = self.point_of(sample)
        return tr.transform(p) if tr is not None else p

    def pixel_size(self):
        t = (self.design.transform if self.design is not None else None) or []
        if len(t) == 6:
            return max(abs(t[0]), abs(t[4]), 1e-12)
        return 10.0

    def pixel_polygon(self, sample):
        """The outline of the sample's map pixel (sample CRS), or None without a grid."""
        t = (self.design.transform if self.design is not None else None) or []
        r, c = sample.get("row"), sample.get("col")
        if len(t) != 6 or r is None or c is None:
            return None
        a, b, x0, d, e, y0 = (float(v) for v in t)
        corners = [(c, r), (c + 1, r), (c + 1, r + 1), (c, r + 1), (c, r)]
        pts = [QgsPointXY(a * cc + b * rr + x0, d * cc + e * rr + y0) for cc, rr in corners]
        return QgsGeometry.fromPolygonXY([pts])

    def show_current(self, zoom=True):
        s = self.current()
        if s is None:
            self._show_empty()
            return
        lab = valid_label(s)
        colour = LABEL_COLOURS[lab]
        n = len(self.samples)
        if self.blind_box.isChecked():
            stratum = "<i>hidden (blind labelling)</i>"
        else:
            name = s.get("stratum")
            where = {"moving": "inside a detection", "not_moving": "outside every detection"}
            stratum = "<b>%s</b> (map class %s: %s)" % (name, name, where.get(name, "?"))
        parts = ["<b>Point %d / %d</b> (id %s) — stratum %s" % (self.index + 1, n, s["id"],
                                                                 stratum),
                 "Label: <b style='color:%s'>%s</b>" % (colour, LABEL_TEXT[lab])]
        if s.get("label") and lab is None:
            parts[-1] += " (stored '%s' is not in the vocabulary)" % s["label"]
        if lab is not None and s.get("labelled_by"):
            parts[-1] += " by %s at %s" % (s["labelled_by"], s.get("labelled_at") or "?")
        if s.get("comment"):
            parts.append("Comment: “%s”" % s["comment"])
        parts.append("x %.2f, y %.2f%s" % (float(s["x"]), float(s["y"]),
                                           (", pixel row %s col %s" % (s["row"], s["col"]))
                                           if s.get("row") is not None else ""))
        self.info.setText("<br>".join(parts))
        self.comment.setText(s.get("comment") or "")
        self._place_marker(s, colour)
        if zoom:
            self.zoom_to(s)

    def _place_marker(self, sample, colour):
        point = self.canvas_point(sample)
        if self.marker is None:
            self.marker = QgsVertexMarker(self.canvas)
            self.marker.setIconType(QgsVertexMarker.IconType.ICON_CIRCLE)
            self.marker.setIconSize(22)
            self.marker.setPenWidth(3)
        self.marker.setColor(QColor(colour))
        self.marker.setCenter(point)
        self.marker.setVisible(not self.isHidden())
        if self.pixel_band is None:
            self.pixel_band = QgsRubberBand(self.canvas, QgsWkbTypes.GeometryType.PolygonGeometry)
            self.pixel_band.setWidth(2)
        self.pixel_band.setStrokeColor(QColor(colour))
        fill = QColor(colour)
        fill.setAlpha(40)
        self.pixel_band.setFillColor(fill)
        poly = self.pixel_polygon(sample)
        self.pixel_band.reset(QgsWkbTypes.GeometryType.PolygonGeometry)
        if poly is not None:
            tr = self._to_canvas()
            if tr is not None:
                poly.transform(tr)
            self.pixel_band.setToGeometry(poly)
        self.pixel_band.setVisible(not self.isHidden())

    def _remove_marker(self):
        for item in (self.marker, self.pixel_band):
            if item is None:
                continue
            try:
                self.canvas.scene().removeItem(item)
            except RuntimeError:
                pass
        self.marker = None
        self.pixel_band = None

    def zoom_to(self, sample):
        """Centre the canvas on the point; with a zoom width, show that many map pixels."""
        point = self.canvas_point(sample)
        width_px = ZOOMS[self.zoom_combo.currentIndex()][1]
        if width_px <= 0:
            self.canvas.setCenter(point)
        else:
            half = 0.5 * width_px * self.pixel_size()
            p = self.point_of(sample)
            box = QgsRectangle(p.x() - half, p.y() - half, p.x() + half, p.y() + half)
            tr = self._to_canvas()
            if tr is not None:
                box = tr.transformBoundingBox(box)
            hw, hh = box.width() / 2.0, box.height() / 2.0
            self.canvas.setExtent(QgsRectangle(point.x() - hw, point.y() - hh,
                                               point.x() + hw, point.y() + hh))
        self.canvas.refresh()

    # ------------------------------------------------------------------- labels
    def label(self, value):
        """Label the current point (``moving``, ``not_moving``, ``unsure``; None clears)
        and write it to the sample file at once. Returns the stored timestamp, or None when
        nothing was saved (the message says why)."""
        s = self.current()
        if s is None:
            self._message("Open a sample file first.")
            return None
        analyst = self.analyst.text().strip() or default_analyst()
        QgsSettings().setValue(SETTINGS_ANALYST, analyst)
        comment = self.comment.text().strip() or None
        try:
            value = aa.normalise_label(value)
            stamp = aa.set_label(self.path, s["id"], value, analyst=analyst, comment=comment)
        except Exception as exc:  # locked or read-only file, removed point: tell, keep state
            self.last_error = exc
            self._message("The label of point %s was NOT saved: %s" % (s["id"], exc))
            return None
        s["label"] = value
        s["labelled_by"] = analyst if value else None
        s["labelled_at"] = stamp if value else None
        s["comment"] = comment if value else None
        self.comment.clear()
        self._refresh_layer()
        self.update_progress()
        self.status_label.setText("Point %s labelled %s (saved in %s)."
                                  % (s["id"], LABEL_TEXT[value], os.path.basename(self.path)))
        if value and self.advance_box.isChecked():
            nxt = self._next_unlabelled(self.index)
            if nxt is not None:
                self.go(nxt)
            else:
                self.show_current(zoom=False)
                self.status_label.setText("All %d points are labelled: run Estimate accuracy."
                                          % len(self.samples))
        else:
            self.show_current(zoom=False)
        return stamp

    def _refresh_layer(self):
        if self.layer is None:
            return
        try:
            self.layer.dataProvider().reloadData()
            self.layer.triggerRepaint()
        except RuntimeError:  # the layer was deleted meanwhile
            self.layer = None

    def counts(self):
        """:func:`stratum_counts` of the loaded sample."""
        strata = [r["stratum"] for r in self.design.strata] if self.design else []
        return stratum_counts(self.samples, strata)

    def update_progress(self):
        rows = self.counts()
        total = rows["total"]
        self.progress.setMaximum(max(total["n"], 1))
        self.progress.setValue(total["labelled"])
        keys = [k for k in rows if k != "total"] + ["total"]
        self.table.setRowCount(len(keys))
        for r, key in enumerate(keys):
            c = rows[key]
            values = (key.replace("_", " "), str(c["labelled"]), str(c["n"]), str(c["moving"]),
                      str(c["not_moving"]), str(c["unsure"]))
            for col, text in enumerate(values):
                item = self.table.item(r, col)
                if item is None:
                    item = QTableWidgetItem()
                    if col:
                        item.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                              | Qt.AlignmentFlag.AlignVCenter)
                    self.table.setItem(r, col, item)
                item.setText(text)
        self.table.resizeRowsToContents()
        return rows

    def progress_text(self):
        """'moving: k of N labelled; not moving: ...' (also the progress bar's tooltip)."""
        rows = self.counts()
        text = "; ".join("%s: %d of %d labelled" % (k.replace("_", " "), v["labelled"], v["n"])
                         for k, v in rows.items() if k != "total")
        self.progress.setToolTip(text)
        return text

    # ----------------------------------------------------------------- estimates
    def estimate(self, write_report=True):
        """Estimates from the labels in the file (``core.accuracy_assessment.assess``, as
        the Processing algorithm); shows them and writes the report beside the sample.
        Returns the AccuracyReport, or None (the reason is shown)."""
        if self.path is None:
            self._message("Open a sample file first.")
            return None
        try:
            report = aa.assess(self.path, self.confidence.value())
            files = []
            if write_report:
                html, csv_path, json_path = report_paths(self.path)
                report.write(csv_path, json_path, html)
                files = [html, csv_path, json_path]
        except Exception as exc:  # too few labels, unwritable folder: say it
            self.last_error = exc
            self.report = None
            self.results.setHtml("<p style='color:#b00'><b>No estimate yet.</b> %s</p>"
                                 % _html_escape(str(exc)))
            self.status_label.setText(str(exc))
            return None
        self.report = report
        self.report_files = files
        self.results.setHtml(self.results_html(report, files))
        self.status_label.setText(report.summary())
        return report

    def results_html(self, report, files=()):
        e = report.estimates
        pct = "%g %%" % round(100 * e.confidence, 1)
        k = aa.CLASSES.index("moving")
        rows = [("Overall accuracy", _fmt_prop(e.overall, e.z))]
        for i, c in enumerate(e.classes):
            rows.append(("User's accuracy, %s" % c.replace("_", " "),
                         _fmt_prop(e.users[i], e.z)))
        for i, c in enumerate(e.classes):
            rows.append(("Producer's accuracy, %s" % c.replace("_", " "),
                         _fmt_prop(e.producers[i], e.z)))
        a = e.area[k]
        rows.append(("Moving area (error-adjusted)", "%s<br>%s interval %s – %s"
                     % (_fmt_area(a.value), pct, _fmt_area(a.low), _fmt_area(a.high))))
        rows.append(("Mapped moving area", _fmt_area(e.mapped_area[k])))
        h = ["<p><b>Estimates</b> (%s confidence intervals: estimate ± %.2f standard errors; "
             "Olofsson et al. 2014)</p>" % (pct, e.z),
             "<table cellspacing='0' cellpadding='2' border='1'>"]
        h += ["<tr><th align='left'>%s</th><td>%s</td></tr>" % r for r in rows]
        h.append("</table>")
        h.append("<p>%d points used, %d unsure and %d not labelled left out (of %d).</p>"
                 % (report.n_used, report.n_unsure, report.n_unlabelled, report.n_total))
        if report.warnings:
            h.append("<ul>%s</ul>" % "".join("<li>%s</li>" % _html_escape(w)
                                             for w in report.warnings))
        if files:
            links = ", ".join("<a href='%s'>%s</a>" % (QUrl.fromLocalFile(f).toString(),
                                                       os.path.basename(f)) for f in files)
            h.append("<p>Report: %s</p>" % links)
        return "\n".join(h)

    # ------------------------------------------------------------------ project
    def _on_layers_added(self, layers):
        self._refresh_layer_filter()

    def _on_layers_removed(self, layer_ids):
        layer = self.layer
        try:
            gone = layer is not None and layer.id() in layer_ids
        except RuntimeError:
            gone = True
        if gone:
            self.layer = None

    def _on_project_cleared(self):
        self.layer = None
        self._remove_marker()
        self._refresh_layer_filter()

    def _on_visibility(self, visible):
        for item in (self.marker, self.pixel_band):
            if item is not None:
                item.setVisible(bool(visible))

    def cleanup(self):
        super().cleanup()
        self._remove_marker()


def _html_escape(text):
    import html

    return html.escape(str(text))


def style_sample_layer(layer):
    """Points coloured by label (not labelled: blue ring), on the label field."""
    categories = []
    for value, colour in LABEL_COLOURS.items():
        key = value or "unlabelled"
        symbol = QgsMarkerSymbol.createSimple({
            "name": "circle", "size": "2.6", "color": colour if value else "0,0,0,0",
            "outline_color": "#202020" if value else colour,
            "outline_width": "0.3" if value else "0.6"})
        categories.append(QgsRendererCategory(key, symbol, LABEL_TEXT[value]))
    layer.setRenderer(QgsCategorizedSymbolRenderer(
        "coalesce(nullif(\"label\", ''), 'unlabelled')", categories))
    return layer
