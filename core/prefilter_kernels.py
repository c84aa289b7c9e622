"""Moved to slidewatch.core.matching.prefilter_kernels; this alias keeps the old import path
working for one release (imports, mock.patch strings, pickled Dask task functions)."""
import sys

from .matching import prefilter_kernels as _moved

sys.modules[__name__] = _moved
