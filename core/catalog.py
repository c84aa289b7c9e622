"""Moved to slidewatch.core.stack.catalog; this alias keeps the old import path
working for one release (imports, mock.patch strings, pickled Dask task functions)."""
import sys

from .stack import catalog as _moved

sys.modules[__name__] = _moved
