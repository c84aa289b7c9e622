"""Moved to slidewatch.core.synth.synthetic; this alias keeps the old import path
working for one release (imports, mock.patch strings, pickled Dask task functions)."""
import sys

from .synth import synthetic as _moved

sys.modules[__name__] = _moved
