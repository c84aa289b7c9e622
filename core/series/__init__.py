"""Time series: network inversion (solver, numba kernels, block-wise driver), the
timeseries/ files, their pure readers for the docks, model fits and per-pixel quality
layers."""
