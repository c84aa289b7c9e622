"""Image matching: the correlator (correlate, its parameters, numba kernels, prefilters,
seeded search for large displacements) and the pair-raster driver of the correlation
step (pairs/pair_*.tif)."""
