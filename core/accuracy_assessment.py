"""Moved to slidewatch.core.outputs.accuracy_assessment; this alias keeps the old import path
working for one release (imports, mock.patch strings, pickled Dask task functions)."""
import sys

from .outputs import accuracy_assessment as _moved

sys.modules[__name__] = _moved
