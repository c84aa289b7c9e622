"""Moved to slidewatch.core.run.pipeline; this alias keeps the old import path
working for one release (imports, mock.patch strings, pickled Dask task functions)."""
import sys

from .run import pipeline as _moved

sys.modules[__name__] = _moved
