"""Lazy, Qt-binding-safe import of pyqtgraph.

pyqtgraph picks its Qt binding at import time. Inside QGIS it must use the binding
QGIS itself runs on (PyQt5 for QGIS 3, PyQt6 for QGIS 4), otherwise two Qt bindings
would be loaded in one process (both PyQt5 and PyQt6 are installed on Debian 12).
``PYQTGRAPH_QT_LIB`` is therefore set from ``qgis.PyQt`` *before* the first import.
Call :func:`pg` only when a plot widget is actually created.
"""

import importlib
import os

_module = None


def qt_lib_name():
    """'PyQt5' or 'PyQt6': the binding behind ``qgis.PyQt``."""
    from qgis.PyQt.QtCore import PYQT_VERSION_STR

    return "PyQt6" if PYQT_VERSION_STR.split(".")[0] == "6" else "PyQt5"


def pg():
    """The ``pyqtgraph`` module, imported on first use with the binding QGIS uses."""
    global _module
    if _module is not None:
        return _module
    lib = qt_lib_name()
    current = os.environ.get("PYQTGRAPH_QT_LIB")
    if current != lib:
        os.environ["PYQTGRAPH_QT_LIB"] = lib
    try:
        module = importlib.import_module("pyqtgraph")
    except ImportError as exc:
        from ..core import deps

        raise ImportError("SlideWatch's plots need pyqtgraph (>= 0.12), which cannot be imported "
                          "(%s). Install it with: %s" % (exc, deps.install_hint(["pyqtgraph"]))) from exc
    binding = getattr(getattr(module, "Qt", None), "QT_LIB", lib)
    if binding != lib:
        raise ImportError("pyqtgraph was already imported with %s but QGIS runs on %s; restart "
                          "QGIS (and do not import pyqtgraph before SlideWatch sets "
                          "PYQTGRAPH_QT_LIB)." % (binding, lib))
    _patch_null_parent_changes(module)
    _module = module
    return module


def _patch_null_parent_changes(module):
    """Work around pyqtgraph issue #774 as it shows inside QGIS.

    When an item is removed from a plot (``clear()``, ``removeItem``), Qt calls
    ``itemChange(ItemParentChange / ItemSceneChange, null)`` (QGIS turns QVariant
    auto-conversion off, so the null arrives as a ``QVariant``); pyqtgraph's
    ``GraphicsObject.itemChange`` passes it to ``QGraphicsItem.itemChange``, whose null
    ``QVariant`` result PyQt5 cannot convert back inside QGIS ("TypeError: unable to convert a
    QVariant back to a Python object", reported as a Python error for every removed item).
    For these two (pre-)changes the base implementation only returns the value and pyqtgraph
    does nothing else (it acts on the ...HasChanged notifications), so returning the value
    directly is equivalent.
    """
    cls = module.GraphicsObject
    if getattr(cls.itemChange, "_slidewatch_safe", False):
        return
    original = cls.itemChange
    change_type = module.QtWidgets.QGraphicsItem.GraphicsItemChange
    null_changes = (change_type.ItemParentChange, change_type.ItemSceneChange)

    def itemChange(self, change, value):  # noqa: N802 - Qt override
        if change in null_changes:
            return value
        return original(self, change, value)

    itemChange._slidewatch_safe = True
    cls.itemChange = itemChange
