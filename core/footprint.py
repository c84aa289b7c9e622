"""Moved to slidewatch.core.detect.footprint; this alias keeps the old import path
working for one release (imports, mock.patch strings, pickled Dask task functions)."""
import sys

from .detect import footprint as _moved

sys.modules[__name__] = _moved
