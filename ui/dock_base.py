"""The scaffolding every SlideWatch dock repeats, once.

:class:`SlideWatchDock` is a ``QDockWidget`` with the plugin's ``iface`` and map
``canvas``, a stable object name, ``last_error`` (the last failed read, for tests and
scripts), optionally the plot helpers (``ph``, ``pg``: pyqtgraph imported only then) and a
:class:`~.tasks.TaskRunner` (``runner``, ``wait``). It gives the dock body
(:meth:`_new_body`), the "Outputs…" folder button (:meth:`_folder_button`, which calls the
dock's ``set_folder``), the warning shown in the dock's message line and in the QGIS
message bar (:meth:`_message`, :meth:`_failed`), and :meth:`cleanup`, which undoes what
:meth:`_connect` connected, disables the dock's ``shortcuts`` and cancels its reads.
The rows of buttons and fields the docks share are in ``ui/button_rows.py``.
"""

from qgis.core import Qgis
from qgis.PyQt.QtWidgets import QDockWidget, QFileDialog, QPushButton, QVBoxLayout, QWidget

from .tasks import TaskRunner


class SlideWatchDock(QDockWidget):
    #: attribute of the QLabel that shows the dock's messages
    MESSAGE_LABEL = "info"
    #: seconds a warning stays in the QGIS message bar
    MESSAGE_SECONDS = 6

    def __init__(self, title, iface, parent=None, plots=True, tasks=True):
        super().__init__(title, parent)
        self.setObjectName("SlideWatch" + type(self).__name__)
        self.iface = iface
        self.canvas = iface.mapCanvas()
        self.last_error = None
        self.shortcuts = []
        self._connections = []
        if plots:
            from . import plot_helpers

            self.ph = plot_helpers
            self.pg = plot_helpers.pg()
        self.runner = TaskRunner() if tasks else None

    # ------------------------------------------------------------------------ ui
    def _new_body(self):
        """(body widget, its QVBoxLayout with the docks' 4 px margins); the caller ends
        with ``self.setWidget(body)`` (or ``button_rows.finish_dock``)."""
        body = QWidget(self)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        return body, layout

    def _folder_button(self, parent, tooltip=None):
        """The "Outputs…" button (``self.folder_button``) that asks for the SlideWatch output
        folder (:meth:`choose_folder`)."""
        self.folder_button = QPushButton("Outputs…", parent)
        if tooltip:
            self.folder_button.setToolTip(tooltip)
        self.folder_button.clicked.connect(self.choose_folder)
        return self.folder_button

    def choose_folder(self):
        """Ask for the output folder (starting at the current one, ``self.sources``) and
        pass it to ``self.set_folder``."""
        folder = QFileDialog.getExistingDirectory(self, "SlideWatch output folder",
                                                  self.sources.folder or "")
        if folder:
            self.set_folder(folder)

    # ------------------------------------------------------------------ messages
    def _message(self, text):
        """``text`` in the dock's message line and as a warning in the QGIS message bar."""
        getattr(self, self.MESSAGE_LABEL).setText(text)
        bar = self.iface.messageBar() if self.iface is not None else None
        if bar is not None:
            bar.pushMessage("SlideWatch", text, Qgis.MessageLevel.Warning,
                            self.MESSAGE_SECONDS)

    def _failed(self, error):
        """For a read's callback: True when it failed (``error`` kept in ``last_error`` and
        shown by :meth:`_message`), False when ``error`` is None."""
        if error is None:
            return False
        self.last_error = error
        self._message(str(error))
        return True

    # --------------------------------------------------------------------- reads
    def wait(self, timeout_ms=20000):
        """Process events until the reads finished (tests, scripts)."""
        return self.runner.wait(timeout_ms)

    # ------------------------------------------------------------------ cleanup
    def _connect(self, signal, slot):
        """``signal.connect(slot)``, disconnected again by :meth:`cleanup` (signals of
        objects that outlive the dock: the project, the layer combo)."""
        signal.connect(slot)
        self._connections.append((signal, slot))

    def cleanup(self):
        """Before the plugin removes the dock: shortcuts off, connections undone, reads
        cancelled. Docks extend it for their map tools and markers."""
        for shortcut in self.shortcuts:
            shortcut.setEnabled(False)
        for signal, slot in self._connections:
            try:
                signal.disconnect(slot)
            except (TypeError, RuntimeError):
                pass
        self._connections = []
        if self.runner is not None:
            self.runner.cancel_all()
