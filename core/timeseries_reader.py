"""Moved to slidewatch.core.series.timeseries_reader; this alias keeps the old import path
working for one release (imports, mock.patch strings, pickled Dask task functions)."""
import sys

from .series import timeseries_reader as _moved

sys.modules[__name__] = _moved
