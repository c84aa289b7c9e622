"""Pair-network view: every candidate pair of the pairing step, coloured by score.

Two views: reference date against secondary date, or reference date against temporal
baseline (days). Selected pairs are drawn large with a black outline, rejected candidates
small and faded; the colour is the pair's quality score (viridis). Clicking a pair loads its
displacement raster (pairs/pair_YYYYMMDD_YYYYMMDD.tif) into the project.
"""

import os

import numpy as np
from qgis.core import QgsProject
from qgis.PyQt.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QPushButton

from ..core.products import PAIRS_FOLDER
from ..core.series.timeseries_reader import SeriesSources, pair_raster_path, read_pair_table
from . import layer_finder
from .dock_base import SlideWatchDock

VIEWS = ("date", "baseline")


def score_colours(scores, lo=None, hi=None):
    """RGBA (n, 4) uint8 of scores on the viridis ramp (NaN grey)."""
    scores = np.asarray(scores, dtype=float)
    finite = np.isfinite(scores)
    if lo is None:
        lo = np.nanmin(scores) if finite.any() else 0.0
    if hi is None:
        hi = np.nanmax(scores) if finite.any() else 1.0
    span = hi - lo if hi > lo else 1.0
    t = np.clip((np.where(finite, scores, lo) - lo) / span, 0, 1)
    # viridis, 5 anchors
    anchors = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98],
                        [253, 231, 37]], dtype=float)
    pos = t * (len(anchors) - 1)
    i = np.minimum(pos.astype(int), len(anchors) - 2)
    f = (pos - i)[:, None]
    rgb = anchors[i] * (1 - f) + anchors[i + 1] * f
    rgba = np.concatenate([rgb, np.full((len(t), 1), 255.0)], axis=1)
    rgba[~finite] = (150, 150, 150, 255)
    return rgba.astype(np.uint8), lo, hi


class PairNetworkDock(SlideWatchDock):
    MESSAGE_SECONDS = 5

    def __init__(self, iface, parent=None):
        super().__init__("SlideWatch pair network", iface, parent)
        self.pairs = []
        self.sources = SeriesSources()
        self.loaded_layers = []
        self.last_clicked = None
        self._build()
        self._connect(QgsProject.instance().cleared, self._on_project_cleared)
        self.refresh()

    def _build(self):
        body, layout = self._new_body()
        row = QHBoxLayout()
        self.view_combo = QComboBox(body)
        self.view_combo.addItems(["reference vs secondary date", "reference date vs baseline"])
        self.view_combo.currentIndexChanged.connect(lambda _i: self.redraw())
        row.addWidget(self.view_combo)
        self.candidates_box = QCheckBox("candidates", body)
        self.candidates_box.setChecked(True)
        self.candidates_box.setToolTip("Also show the candidate pairs that were not selected")
        self.candidates_box.toggled.connect(lambda _b: self.redraw())
        row.addWidget(self.candidates_box)
        row.addStretch(1)
        row.addWidget(self._folder_button(body))
        self.refresh_button = QPushButton("Reload", body)
        self.refresh_button.clicked.connect(lambda: self.refresh())
        row.addWidget(self.refresh_button)
        layout.addLayout(row)
        self.info = QLabel(body)
        self.info.setWordWrap(True)
        layout.addWidget(self.info)
        self.plot = self.pg.PlotWidget(
            parent=body, background="w",
            axisItems={"bottom": self.pg.DateAxisItem(orientation="bottom")})
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        layout.addWidget(self.plot, 1)
        self.legend = QLabel(body)
        layout.addWidget(self.legend)
        self.setWidget(body)
        self.scatter = None

    # ------------------------------------------------------------------ sources
    def set_folder(self, folder):
        self.sources = SeriesSources.from_folder(folder)
        return self.load()

    def refresh(self):
        sources = layer_finder.sources_from_project()
        if sources.pairs_csv or not self.sources.pairs_csv:
            self.sources = sources
        return self.load()

    def _on_project_cleared(self):
        self.sources = SeriesSources()
        self.last_clicked = None
        self.pairs = []
        self.info.setText("")
        self.redraw()

    def load(self):
        if not self.sources.pairs_csv:
            self.pairs = []
            self.info.setText("No pairs.csv found: add the SlideWatch outputs to the project "
                              "or choose the output folder.")
            self.redraw()
            return False
        self.info.setText("Reading %s…" % self.sources.pairs_csv)
        self.runner.run("SlideWatch: reading pairs.csv", self._on_pairs, read_pair_table,
                        self.sources.pairs_csv)
        return True

    def _on_pairs(self, result, error):
        if error is not None:
            self.pairs = []
            self.info.setText(str(error))
        else:
            self.pairs = result
            n_sel = sum(1 for p in result if p["selected"])
            self.info.setText("%d candidate pairs, %d selected (%s). Click a pair to load its "
                              "displacement raster." % (len(result), n_sel,
                                                        self.sources.pairs_csv))
        self.redraw()

    # ------------------------------------------------------------------ drawing
    def view(self):
        return VIEWS[self.view_combo.currentIndex()]

    def coordinates(self, pairs):
        x = np.array([self.ph.date_seconds(p["reference_date"]) for p in pairs], float)
        if self.view() == "date":
            y = np.array([self.ph.date_seconds(p["secondary_date"]) for p in pairs], float)
        else:
            y = np.array([float(p["baseline_days"]) for p in pairs], float)
        return x, y

    def redraw(self):
        pg = self.pg
        self.plot.clear()
        self.scatter = None
        self.highlight = None
        if self.view() == "date":
            self.plot.setAxisItems({"left": pg.DateAxisItem(orientation="left")})
            self.plot.setLabel("left", "secondary date")
        else:
            self.plot.setAxisItems({"left": pg.AxisItem(orientation="left")})
            self.plot.setLabel("left", "temporal baseline (days)")
        self.plot.setLabel("bottom", "reference date")
        shown = [p for p in self.pairs if p["selected"] or self.candidates_box.isChecked()]
        if not shown:
            self.legend.setText("")
            return
        x, y = self.coordinates(shown)
        colours, lo, hi = score_colours([p["score"] for p in self.pairs])
        index = {id(p): i for i, p in enumerate(self.pairs)}
        spots = []
        for k, p in enumerate(shown):
            rgba = colours[index[id(p)]].copy()
            if p["selected"]:
                brush, size, pen = pg.mkBrush(*rgba), 12, pg.mkPen("k", width=1.5)
            else:
                rgba[3] = 140
                brush, size, pen = pg.mkBrush(*rgba), 9, pg.mkPen(None)
            spots.append(dict(pos=(x[k], y[k]), brush=brush, size=size, pen=pen, data=p,
                              symbol="o" if p["selected"] else "t"))
        self.scatter = pg.ScatterPlotItem(hoverable=True, tip=self._tip)
        self.scatter.addPoints(spots)
        self.scatter.sigClicked.connect(self._on_clicked)
        self.plot.addItem(self.scatter)
        self.highlight = pg.ScatterPlotItem(size=22, brush=pg.mkBrush(None),
                                            pen=pg.mkPen("#E4002B", width=2.5))
        self.plot.addItem(self.highlight)
        self._show_highlight()
        self.legend.setText("● selected pair (outlined)   ▼ candidate not selected   ◯ loaded   "
                            "colour: score %.2f (purple) → %.2f (yellow)" % (lo, hi))

    @staticmethod
    def _tip(x, y, data):
        p = data
        return ("%s → %s (%d days)\nscore %.3f, %s%s"
                % (p["reference_date"], p["secondary_date"], int(p["baseline_days"]),
                   p["score"], "selected" if p["selected"] else "not selected",
                   ("\n" + p["reason"]) if p.get("reason") else ""))

    def _on_clicked(self, _item, points, *_args):
        if len(points):
            self.load_pair(points[0].data())

    def _show_highlight(self):
        if getattr(self, "highlight", None) is None:
            return
        if self.last_clicked is None:
            self.highlight.setData([])
            return
        x, y = self.coordinates([self.last_clicked])
        self.highlight.setData(x=x, y=y)

    def load_pair(self, pair):
        """Add the pair's displacement raster to the project (if it exists)."""
        self.last_clicked = pair
        self._show_highlight()
        folder = self.sources.pairs_dir or (
            os.path.join(self.sources.folder, PAIRS_FOLDER) if self.sources.folder else None)
        path = pair_raster_path(folder, pair["reference_date"], pair["secondary_date"]) \
            if folder else None
        if not path or not os.path.exists(path):
            self._message("No displacement raster for %s → %s%s." % (
                pair["reference_date"], pair["secondary_date"],
                "" if pair["selected"] else " (the pair was not selected, so it was not "
                "correlated)"))
            return None
        layer = layer_finder.load_raster(path, "pair %s → %s" % (pair["reference_date"],
                                                                 pair["secondary_date"]))
        if layer is None:
            self._message("Cannot open '%s' as a raster." % path)
            return None
        if layer not in self.loaded_layers:
            self.loaded_layers.append(layer)
        self.info.setText("Loaded %s (%d days, score %.3f)." % (os.path.basename(path),
                                                                int(pair["baseline_days"]),
                                                                pair["score"]))
        return layer
