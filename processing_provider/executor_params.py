"""Where a single-step algorithm runs its tasks: local threads or a Dask scheduler.

The same two advanced parameters as the pipeline algorithm (``DASK_SCHEDULER``,
``MAX_WORKERS``), for the algorithms whose core driver takes an executor (Correlate pairs,
Invert). ``slidewatch.core`` is imported lazily, as in every algorithm module.
"""

from qgis.core import (QgsProcessingParameterDefinition, QgsProcessingParameterNumber,
                       QgsProcessingParameterString)

DASK_SCHEDULER = "DASK_SCHEDULER"
MAX_WORKERS = "MAX_WORKERS"

EXECUTOR_HELP = (
    "<b>Dask scheduler address</b> (advanced): empty = local threads; 'tcp://host:8786' (or "
    "'scheduler-file:/path/scheduler.json') to run the tasks on an existing Dask cluster "
    "(workers need the same paths: shared storage, and slidewatch on their PYTHONPATH); "
    "'local:N' starts a cluster of N worker processes on this computer (see "
    "docs/scaling.md).<br>"
    "<b>Local threads</b> (advanced): 0 = all CPUs.")


def add_executor_parameters(alg):
    """Add the advanced DASK_SCHEDULER and MAX_WORKERS parameters to ``alg``."""
    Num = QgsProcessingParameterNumber
    for p in (QgsProcessingParameterString(
                  DASK_SCHEDULER, alg.tr("Dask scheduler address (tcp://host:port, local:N; "
                                         "empty = local threads)"), "", optional=True),
              Num(MAX_WORKERS, alg.tr("Local threads (0 = all CPUs)"), Num.Integer, 0,
                  minValue=0, maxValue=1024)):
        p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        alg.addParameter(p)


def executor_from(alg, parameters, context):
    """The executor the parameters ask for (:func:`slidewatch.core.run.executor.get_executor`);
    use it as a context manager. Parameters left out mean local threads on all CPUs."""
    from ..core.run.executor import get_executor

    scheduler = (alg.parameterAsString(parameters, DASK_SCHEDULER, context) or "").strip()
    workers = alg.parameterAsInt(parameters, MAX_WORKERS, context) \
        if parameters.get(MAX_WORKERS) not in (None, "") else 0
    return get_executor(scheduler or None, max_workers=workers if workers > 0 else None)
