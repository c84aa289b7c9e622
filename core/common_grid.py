"""Moved to slidewatch.core.stack.common_grid; this alias keeps the old import path
working for one release (imports, mock.patch strings, pickled Dask task functions)."""
import sys

from .stack import common_grid as _moved

sys.modules[__name__] = _moved
