"""Moved to slidewatch.core.network.pairs_file; this alias keeps the old import path
working for one release (imports, mock.patch strings, pickled Dask task functions)."""
import sys

from .network import pairs_file as _moved

sys.modules[__name__] = _moved
