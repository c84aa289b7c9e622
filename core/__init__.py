"""SlideWatch scientific core.

Pure numpy / numba / scipy / rasterio. Nothing in this package imports QGIS or Qt,
so everything here can be scripted from a plain Python interpreter, a notebook,
or a Dask worker.
"""

from . import numba_setup as _numba_setup

_numba_setup.configure()   # one kernel cache for every process (issue 15); cheap, idempotent
