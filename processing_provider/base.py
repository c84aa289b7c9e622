"""Base class shared by every SlideWatch Processing algorithm.

Subclasses declare NAME, DISPLAY_NAME, GROUP, GROUP_ID, HELP and NEEDS, implement
``initAlgorithm`` and ``compute(parameters, context, feedback, progress)`` (not ``run``:
that name belongs to ``QgsProcessingAlgorithm.run``, which ``processing.run`` calls). This class does
what every algorithm needs the same way:

- ``canExecute`` reports missing/incompatible Python modules and how to install them;
- a core :class:`~slidewatch.core.progress.Progress` wired to the feedback (progress bar,
  progress text, cancel button, log);
- core errors (:class:`~slidewatch.core.errors.SlideWatchError`) become
  ``QgsProcessingException`` with the same actionable message; a cancel becomes a clear
  "cancelled" message (nothing partial is left: the core writes atomically).

Algorithm modules import ``slidewatch.core`` lazily (inside ``run``) so that the provider
still loads, and lists every algorithm, when numba or rasterio is missing.
"""

import os

from qgis.core import QgsProcessingAlgorithm, QgsProcessingException
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ..core import deps
from ..core.errors import Cancelled, SlideWatchError
from ..core.progress import Progress

ICON_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "resources", "icons",
                         "slidewatch.svg")


def feedback_progress(feedback):
    """A core Progress reporting to a QgsProcessingFeedback (or silent when None)."""
    if feedback is None:
        return Progress()

    def callback(percent, message):
        feedback.setProgress(percent)
        if message:
            feedback.setProgressText(message)

    return Progress(callback=callback, is_cancelled=feedback.isCanceled, log=feedback.pushInfo)


def number_bounds(params_class, name):
    """``minValue`` / ``maxValue`` keywords of a number parameter from a core parameter
    object's ``BOUNDS[name]`` (None = unbounded). A bound in the class's ``EXCLUSIVE``
    set ((name, "lo" | "hi")) is not itself allowed: the dialog's limit is the nearest
    float inside it."""
    import math
    lo, hi = params_class.BOUNDS[name]
    exclusive = getattr(params_class, "EXCLUSIVE", ())
    out = {}
    if lo is not None:
        out["minValue"] = math.nextafter(lo, math.inf) if (name, "lo") in exclusive else lo
    if hi is not None:
        out["maxValue"] = math.nextafter(hi, -math.inf) if (name, "hi") in exclusive else hi
    return out


class SlideWatchAlgorithm(QgsProcessingAlgorithm):
    NAME = ""
    DISPLAY_NAME = ""
    GROUP = ""
    GROUP_ID = ""
    HELP = ""
    #: which part of the dependencies this algorithm needs (see core.deps.NEEDS)
    NEEDS = "core"

    def tr(self, text):
        return QCoreApplication.translate("SlideWatch", text)

    def name(self):
        return self.NAME

    def displayName(self):  # noqa: N802
        return self.tr(self.DISPLAY_NAME)

    def group(self):
        return self.tr(self.GROUP)

    def groupId(self):  # noqa: N802
        return self.GROUP_ID

    def shortHelpString(self):  # noqa: N802
        text = self.tr(self.HELP)
        problem = deps.describe(self.NEEDS)
        if problem:
            text = "<p><b>%s</b></p>%s" % (problem, text)
        return text

    def icon(self):
        return QIcon(ICON_PATH)

    def createInstance(self):  # noqa: N802
        return type(self)()

    def canExecute(self):  # noqa: N802
        problem = deps.describe(self.NEEDS)
        return (not problem, problem)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        ok, problem = self.canExecute()
        if not ok:
            raise QgsProcessingException(problem)
        progress = feedback_progress(feedback)
        from ..core import numba_setup

        try:
            # a kernel that compiles at run time (cold cache) says so in the feedback
            with numba_setup.compile_notices(progress.info):
                return self.compute(parameters, context, feedback, progress)
        except Cancelled:
            raise QgsProcessingException(
                self.tr("%s was cancelled. Finished outputs are kept; nothing partial was "
                        "written. Run it again to resume.") % self.displayName())
        except SlideWatchError as exc:
            raise QgsProcessingException(str(exc))
        except MemoryError:
            raise QgsProcessingException(
                self.tr("Out of memory in %s. Reduce the block size (advanced parameters) "
                        "or close other programs, then run again.") % self.displayName())

    def compute(self, parameters, context, feedback, progress):
        raise NotImplementedError("subclasses implement run()")
