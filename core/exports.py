"""Moved to slidewatch.core.outputs.exports; this alias keeps the old import path
working for one release (imports, mock.patch strings, pickled Dask task functions)."""
import sys

from .outputs import exports as _moved

sys.modules[__name__] = _moved
