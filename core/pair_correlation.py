"""Moved to slidewatch.core.matching.pair_correlation; this alias keeps the old import path
working for one release (imports, mock.patch strings, pickled Dask task functions)."""
import sys

from .matching import pair_correlation as _moved

sys.modules[__name__] = _moved
