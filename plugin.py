"""QGIS plugin entry: registers the Processing provider, the menu, toolbar and docks.

``initProcessing`` is what ``qgis_process`` calls; ``initGui`` calls it and adds the
GUI. ``unload`` removes every trace (provider, actions, menu, docks, map tools), so that
loading and unloading twice leaves nothing behind.
"""

import importlib

from qgis.core import Qgis, QgsApplication, QgsMessageLog
from qgis.PyQt.QtCore import QCoreApplication, Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from .core import deps
from .processing_provider.base import ICON_PATH
from .processing_provider.provider import LOG_TAG, SlideWatchProvider
from .ui.dock_registry import DOCKS

MENU = "&SlideWatch"


class SlideWatchPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.actions = []
        self.docks = {}
        self.toolbar = None
        self.warmup_task = None

    # ----------------------------------------------------------------- processing
    def initProcessing(self):  # noqa: N802
        if self.provider is None:
            self.provider = SlideWatchProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    # ------------------------------------------------------------------------ gui
    def initGui(self):  # noqa: N802
        self.initProcessing()
        self.toolbar = self.iface.addToolBar("SlideWatch")
        self.toolbar.setObjectName("SlideWatchToolbar")
        icon = QIcon(ICON_PATH)
        self._add_action(icon, self.tr("Run SlideWatch pipeline…"), self.open_pipeline_dialog,
                         toolbar=True)
        for module_name, class_name, title in DOCKS:
            self._add_action(icon, self.tr(title),
                             lambda checked=False, m=module_name, c=class_name, t=title:
                             self.show_dock(m, c, t), toolbar=True)
        self.report_missing_dependencies()
        self.start_kernel_warmup()

    def start_kernel_warmup(self, groups=None, force=False):
        """First use with a cold numba cache: compile in a background QgsTask.

        Returns the task (also kept as ``self.warmup_task``) or None when every kernel
        group is cached already (a file-name check, no numba import) or numba is missing.
        """
        if deps.missing("core"):
            return None
        from .core import numba_setup

        cold = numba_setup.quick_cold_groups()
        if not force:
            groups = [g for g in cold if groups is None or g in groups]
            if not groups:
                return None
        from .ui.kernel_warmup import KernelWarmupTask

        task = KernelWarmupTask(groups, on_done=self._warmup_done)
        self.warmup_task = task
        QgsApplication.taskManager().addTask(task)
        bar = self.iface.messageBar() if self.iface is not None else None
        if bar is not None and cold:
            bar.pushMessage("SlideWatch", self.tr(
                "Compiling the processing kernels in the background (one-off, a few "
                "minutes; progress in the task manager). QGIS stays usable."),
                Qgis.MessageLevel.Info, 10)
        return task

    def _warmup_done(self, ok, message, level):
        self.warmup_task = None
        bar = self.iface.messageBar() if self.iface is not None else None
        if bar is not None:
            bar.pushMessage("SlideWatch", message, level, 10)

    def tr(self, text):
        return QCoreApplication.translate("SlideWatch", text)

    def _add_action(self, icon, text, slot, toolbar=False):
        action = QAction(icon, text, self.iface.mainWindow())
        action.triggered.connect(slot)
        self.iface.addPluginToMenu(MENU, action)
        if toolbar and self.toolbar is not None:
            self.toolbar.addAction(action)
        self.actions.append(action)
        return action

    def report_missing_dependencies(self):
        """Tell the user, once per session, what is missing and how to install it."""
        core_problems = deps.missing("core")
        problems = core_problems + [p for p in deps.missing("ui") if p not in core_problems]
        if not problems:
            return None
        message = "SlideWatch: %s. Install with: %s" % ("; ".join(problems),
                                                         deps.install_hint(problems))
        QgsMessageLog.logMessage(message, LOG_TAG, Qgis.MessageLevel.Warning)
        bar = self.iface.messageBar() if self.iface is not None else None
        if bar is not None:
            bar.pushMessage("SlideWatch", message, Qgis.MessageLevel.Warning, 0)
        return message

    def open_pipeline_dialog(self):
        import processing

        processing.execAlgorithmDialog("slidewatch:pipeline", {})

    def show_dock(self, module_name, class_name, title):
        dock = self.docks.get(class_name)
        if dock is None:
            problem = deps.describe("ui")
            if problem:
                self.iface.messageBar().pushMessage("SlideWatch", problem,
                                                    Qgis.MessageLevel.Warning, 10)
                return None
            module = importlib.import_module(".ui." + module_name, __package__)
            dock = getattr(module, class_name)(self.iface, self.iface.mainWindow())
            dock.setWindowTitle(self.tr(title))
            self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
            self.docks[class_name] = dock
        dock.show()
        dock.raise_()
        return dock

    def unload(self):
        if self.warmup_task is not None:   # a compile cannot be interrupted: let it end,
            self.warmup_task.on_done = None  # without touching this unloaded plugin
            self.warmup_task = None
        for dock in self.docks.values():
            if hasattr(dock, "cleanup"):
                dock.cleanup()
            self.iface.removeDockWidget(dock)
            dock.deleteLater()
        self.docks = {}
        for action in self.actions:
            self.iface.removePluginMenu(MENU, action)
            if self.toolbar is not None:
                self.toolbar.removeAction(action)
            action.deleteLater()
        self.actions = []
        if self.toolbar is not None:
            self.toolbar.deleteLater()
            self.toolbar = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
