"""Moved to slidewatch.core.stack.perturbation; this alias keeps the old import path
working for one release (imports, mock.patch strings, pickled Dask task functions)."""
import sys

from .stack import perturbation as _moved

sys.modules[__name__] = _moved
