"""Moved to slidewatch.core.network.quality_model; this alias keeps the old import path
working for one release (imports, mock.patch strings, pickled Dask task functions)."""
import sys

from .network import quality_model as _moved

sys.modules[__name__] = _moved
