"""Moved to slidewatch.core.stack.stable_area; this alias keeps the old import path
working for one release (imports, mock.patch strings, pickled Dask task functions)."""
import sys

from .stack import stable_area as _moved

sys.modules[__name__] = _moved
