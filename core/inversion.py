"""Moved to slidewatch.core.series.inversion; this alias keeps the old import path
working for one release (imports, mock.patch strings, pickled Dask task functions)."""
import sys

from .series import inversion as _moved

sys.modules[__name__] = _moved
