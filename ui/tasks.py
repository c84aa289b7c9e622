"""Running the pure readers of ``core.timeseries_reader`` off the main thread.

:class:`ReadTask` runs one function in QGIS's task manager and emits ``done(result,
error)`` back on the main thread, so that a click never freezes QGIS even with hundreds of
pair rasters; :class:`TaskRunner` keeps the running tasks of a dock (Python must own them
while they run) and cancels them when the dock closes.
"""


def _task_class():
    from qgis.core import QgsTask
    from qgis.PyQt.QtCore import pyqtSignal

    class ReadTask(QgsTask):
        """Runs ``function(*args)`` off the main thread; emits ``done(result, error)`` on the
        main thread (error is an exception or None)."""

        done = pyqtSignal(object, object)

        def __init__(self, description, function, *args):
            super().__init__(description, QgsTask.Flag.CanCancel)
            self.function = function
            self.args = args
            self.result = None
            self.error = None

        def run(self):
            try:
                self.result = self.function(*self.args)
            except Exception as exc:  # reported to the dock, never raised in the thread
                self.error = exc
            return True

        def finished(self, ok):
            if self.isCanceled():
                return
            self.done.emit(self.result, self.error)

    return ReadTask


_READ_TASK = None


def ReadTask(description, function, *args):  # noqa: N802 - a class factory
    global _READ_TASK
    if _READ_TASK is None:
        _READ_TASK = _task_class()
    return _READ_TASK(description, function, *args)


class TaskRunner:
    """Keeps references to running tasks (Python must own them while they run) and lets a
    dock cancel them on close. ``run(description, callback, function, *args)``."""

    def __init__(self):
        self.tasks = []

    def run(self, description, callback, function, *args):
        from qgis.core import QgsApplication

        task = ReadTask(description, function, *args)
        self.tasks.append(task)

        def finished(result, error, task=task):
            if task in self.tasks:
                self.tasks.remove(task)
            callback(result, error)

        task.done.connect(finished)
        task.taskTerminated.connect(lambda task=task: task in self.tasks and
                                    self.tasks.remove(task))
        QgsApplication.taskManager().addTask(task)
        return task

    def busy(self):
        return bool(self.tasks)

    def wait(self, timeout_ms=20000):
        """Process Qt events until every read finished (tests, scripts); False on timeout."""
        import time

        from qgis.PyQt.QtCore import QCoreApplication

        deadline = time.time() + timeout_ms / 1000.0
        while self.busy() and time.time() < deadline:
            QCoreApplication.processEvents()
            time.sleep(0.01)
        return not self.busy()

    def cancel_all(self):
        for task in list(self.tasks):
            try:
                task.cancel()
            except RuntimeError:  # already deleted by the task manager
                pass
        self.tasks = []
