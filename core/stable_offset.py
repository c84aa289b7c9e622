"""Moved to slidewatch.core.matching.stable_offset; this alias keeps the old import path
working for one release (imports, mock.patch strings, pickled Dask task functions)."""
import sys

from .matching import stable_offset as _moved

sys.modules[__name__] = _moved
