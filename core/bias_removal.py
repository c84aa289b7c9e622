"""Moved to slidewatch.core.detect.bias_removal; this alias keeps the old import path
working for one release (imports, mock.patch strings, pickled Dask task functions)."""
import sys

from .detect import bias_removal as _moved

sys.modules[__name__] = _moved
