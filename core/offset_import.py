"""Moved to slidewatch.core.outputs.offset_import; this alias keeps the old import path
working for one release (imports, mock.patch strings, pickled Dask task functions)."""
import sys

from .outputs import offset_import as _moved

sys.modules[__name__] = _moved
