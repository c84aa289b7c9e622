"""Small helpers shared by the docks' pyqtgraph plots (imported only with a plot)."""

import datetime as _dt

import numpy as np

from .pyqtgraph_import import pg

EPOCH = _dt.date(1970, 1, 1)
#: colours of pinned series (colour-blind friendly, Okabe-Ito)
PIN_COLOURS = ["#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#D55E00", "#0072B2", "#F0E442",
               "#999999"]
COMPONENT_COLOURS = {"east": "#D55E00", "north": "#0072B2", "magnitude": "#000000"}


def date_seconds(iso):
    """Seconds since 1970-01-01 UTC of an ISO date (pyqtgraph's DateAxisItem unit)."""
    return float((_dt.date.fromisoformat(str(iso)[:10]) - EPOCH).days * 86400)


def dates_seconds(dates):
    return np.array([date_seconds(d) for d in dates], dtype=float)


def date_plot_widget(parent=None, left_label="", background="w"):
    """A PlotWidget with a date x axis and a white background (screenshots, print)."""
    mod = pg()
    widget = mod.PlotWidget(parent=parent, background=background,
                            axisItems={"bottom": mod.DateAxisItem(orientation="bottom")})
    widget.showGrid(x=True, y=True, alpha=0.25)
    if left_label:
        widget.setLabel("left", left_label)
    legend = widget.addLegend(offset=(10, 5), labelTextSize="8pt", verSpacing=-6)
    legend.setColumnCount(3)
    legend.setBrush(mod.mkBrush(255, 255, 255, 210))
    return widget
