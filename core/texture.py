"""Moved to slidewatch.core.synth.texture; this alias keeps the old import path
working for one release (imports, mock.patch strings, pickled Dask task functions)."""
import sys

from .synth import texture as _moved

sys.modules[__name__] = _moved
