"""The dock widgets the plugin offers, as (module in slidewatch.ui, class, title).

The plugin creates each dock lazily, the first time the user opens it, so that
pyqtgraph is imported only when a plot is actually shown. Each class derives from
``ui.dock_base.SlideWatchDock``, which names it ``SlideWatch<class>`` (the object name
QGIS saves the dock's place under).
"""

DOCKS = [
    ("timeseries_dock", "TimeSeriesDock", "Time-series inspector"),
    ("validation_dock", "ValidationDock", "Validate detections"),
    ("pair_network_dock", "PairNetworkDock", "Pair network"),
    ("accuracy_sample_dock", "AccuracySampleDock", "Accuracy sample"),
]
