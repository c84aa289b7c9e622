"""The SlideWatch Processing provider (id ``slidewatch``)."""

import importlib

from qgis.core import Qgis, QgsMessageLog, QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .base import ICON_PATH
from .registry import ALGORITHMS

LOG_TAG = "SlideWatch"


class SlideWatchProvider(QgsProcessingProvider):
    def __init__(self):
        super().__init__()
        #: "module:Class" -> error text, for algorithms whose module failed to import
        self.load_errors = {}

    def id(self):
        return "slidewatch"

    def name(self):
        return "SlideWatch"

    def longName(self):  # noqa: N802
        return "SlideWatch — ground motion from optical image time series"

    def icon(self):
        return QIcon(ICON_PATH)

    def loadAlgorithms(self):  # noqa: N802
        self.load_errors = {}
        for entry in ALGORITHMS:
            module_name, class_name = entry.split(":")
            try:
                module = importlib.import_module("." + module_name, __package__)
                self.addAlgorithm(getattr(module, class_name)())
            except Exception as exc:  # keep the other algorithms available
                self.load_errors[entry] = "%s: %s" % (type(exc).__name__, exc)
                QgsMessageLog.logMessage("Could not load algorithm %s: %s" % (entry, exc),
                                         LOG_TAG, Qgis.MessageLevel.Critical)
