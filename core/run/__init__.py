"""Running the steps: local/Dask executor, the resumable pipeline, the task functions the
workers run, overview picture."""
