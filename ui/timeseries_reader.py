"""Old home of the output readers, kept so that existing imports still work.

The pure readers live in :mod:`slidewatch.core.series.timeseries_reader` (rasterio only, any
thread); the Qt task that runs them off the main thread in :mod:`slidewatch.ui.tasks`.
"""

from ..core.series.timeseries_reader import (
    NETWORK_FLAGS, SeriesSources, describe_network_flags, fitted_velocity_line, list_pairs,
    pair_raster_path, raster_crs_wkt, read_area, read_dates, read_pair_observations,
    read_pair_table, read_pixel_series, read_pixel_with_quality, read_polygon_series,
    rows_to_csv_text, series_to_rows, to_date)
from .tasks import ReadTask, TaskRunner

__all__ = ["NETWORK_FLAGS", "SeriesSources", "describe_network_flags", "fitted_velocity_line",
           "list_pairs", "pair_raster_path", "raster_crs_wkt", "read_area", "read_dates",
           "read_pair_observations", "read_pair_table", "read_pixel_series",
           "read_pixel_with_quality", "read_polygon_series", "rows_to_csv_text",
           "series_to_rows", "to_date", "ReadTask", "TaskRunner"]
