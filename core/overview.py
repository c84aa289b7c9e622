"""Moved to slidewatch.core.run.overview; this alias keeps the old import path
working for one release (imports, mock.patch strings, pickled Dask task functions)."""
import sys

from .run import overview as _moved

sys.modules[__name__] = _moved
