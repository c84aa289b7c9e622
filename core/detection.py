"""Moved to slidewatch.core.detect.detection; this alias keeps the old import path
working for one release (imports, mock.patch strings, pickled Dask task functions)."""
import sys

from .detect import detection as _moved

sys.modules[__name__] = _moved
