"""Moved to slidewatch.core.matching.correlation_params; this alias keeps the old import path
working for one release (imports, mock.patch strings, pickled Dask task functions)."""
import sys

from .matching import correlation_params as _moved

sys.modules[__name__] = _moved
