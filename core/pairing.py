"""Moved to slidewatch.core.network.pairing; this alias keeps the old import path
working for one release (imports, mock.patch strings, pickled Dask task functions)."""
import sys

from .network import pairing as _moved

sys.modules[__name__] = _moved
