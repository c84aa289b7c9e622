"""Dock widgets and map tools. Qt through qgis.PyQt; pyqtgraph imported lazily."""
