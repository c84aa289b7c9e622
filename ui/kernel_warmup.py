"""First use in QGIS desktop: compile the numba kernels in a background QgsTask (issue 15).

`make install` compiles them beforehand (scripts/warm_kernels.py); when the cache is
cold anyway (plugin installed another way, cache deleted, new numba or CPU), the plugin
starts :class:`KernelWarmupTask` from ``initGui``: the task manager shows its progress,
the GUI stays responsive, and a message says when the kernels are ready.
"""

from qgis.core import Qgis, QgsMessageLog, QgsTask

LOG_TAG = "SlideWatch"


class KernelWarmupTask(QgsTask):
    """Compiles (or loads from the cache) the kernel groups ``groups`` (None: all)."""

    def __init__(self, groups=None, on_done=None):
        super().__init__("SlideWatch: compiling numba kernels (one-off)")
        self.groups = list(groups) if groups else None
        self.on_done = on_done
        self.lines = []
        self.times = None
        self.error = None

    def _log(self, line):
        self.lines.append(line)
        QgsMessageLog.logMessage(line, LOG_TAG, Qgis.MessageLevel.Info)

    def run(self):
        from ..core import numba_setup

        try:
            self.setProgress(1.0)
            self.times = numba_setup.warm(log=self._log, groups=self.groups,
                                          progress=lambda f: self.setProgress(100.0 * f),
                                          is_cancelled=self.isCanceled)
            return not self.isCanceled()
        except Exception as exc:   # reported in finished(), never raised in a task
            self.error = "%s: %s" % (type(exc).__name__, exc)
            return False

    def finished(self, result):
        if result:
            message = "SlideWatch kernels compiled (%.0f s, once for this machine)" % sum(
                (self.times or {}).values())
            level = Qgis.MessageLevel.Success
        else:
            message = ("SlideWatch: compiling the kernels did not finish (%s); they will "
                       "compile on first use" % (self.error or "cancelled"))
            level = Qgis.MessageLevel.Warning
        QgsMessageLog.logMessage(message, LOG_TAG, level)
        if self.on_done is not None:
            self.on_done(result, message, level)
