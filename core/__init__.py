"""SlideWatch scientific core.

Pure numpy / numba / scipy / rasterio. Nothing in this package imports QGIS or Qt,
so everything here can be scripted from a plain Python interpreter, a notebook,
or a Dask worker.
"""
