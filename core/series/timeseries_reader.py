"""Reading one pixel's (or one polygon's) displacement history from SlideWatch outputs.

Pure functions (rasterio only, no Qt), callable from any thread: the docks run them in
QgsTasks (``ui/tasks.py``), the exports and scripts call them directly.
``read_pixel_series``, ``read_polygon_series``, ``read_pair_observations``,
``read_pair_table``, ``list_pairs``, :class:`SeriesSources` (where the outputs are), and
the helpers of the inspector's CSV export (``series_to_rows``, ``rows_to_csv_text``) and
plot (``fitted_velocity_line``, ``describe_network_flags``).

Files read (SPEC): ``timeseries/ts_east_m.tif``, ``timeseries/ts_north_m.tif`` (one band
per date, described by the ISO date), ``timeseries/velocity.tif`` and the pair rasters
``pairs/pair_YYYYMMDD_YYYYMMDD.tif`` (bands east_m, north_m, ncc, snr, status), with the
``selected`` flag from ``pairs.csv`` when present (read by ``core.pairs_file``).
"""

import csv
import datetime as _dt
import glob
import os

import numpy as np

from ..network import pairs_file
from .. import products as prod
from ..errors import InputError
from ..products import DAYS_PER_YEAR, PAIR_BANDS, VELOCITY_BANDS

#: bits of timeseries/network_flags.tif (the FLAG_* of core/series/inversion_kernels.py)
NETWORK_FLAGS = ((1, "date(s) without a valid pair, bridged by the regularisation"),
                 (2, "disconnected pair network, bridged by the regularisation"),
                 (4, "outlier pair(s) rejected"),
                 (8, "too few valid pairs"),
                 (16, "solver failure"))


def describe_network_flags(value):
    """Human-readable list of the network flags set in ``value`` (int or NaN)."""
    try:
        value = int(value)
    except (TypeError, ValueError):
        return []
    return [text for bit, text in NETWORK_FLAGS if value & bit]


def to_date(text):
    return _dt.date.fromisoformat(str(text)[:10])


class SeriesSources:
    """Paths of the SlideWatch outputs the inspector reads (any may be None)."""

    def __init__(self, ts_east=None, ts_north=None, velocity=None, pairs_dir=None,
                 pairs_csv=None, detections=None, network_flags=None):
        self.network_flags = network_flags
        self.ts_east = ts_east
        self.ts_north = ts_north
        self.velocity = velocity
        self.pairs_dir = pairs_dir
        self.pairs_csv = pairs_csv
        self.detections = detections

    @classmethod
    def from_folder(cls, folder):
        """The standard layout of a SlideWatch output folder."""
        def existing(*parts):
            path = os.path.join(folder, *parts)
            return path if os.path.exists(path) else None

        ts = prod.TIMESERIES_FOLDER
        return cls(ts_east=existing(ts, prod.TS_EAST_TIF),
                   ts_north=existing(ts, prod.TS_NORTH_TIF),
                   velocity=existing(ts, prod.VELOCITY_TIF),
                   pairs_dir=existing(prod.PAIRS_FOLDER), pairs_csv=existing(prod.PAIRS_CSV),
                   detections=existing(prod.DETECTIONS_GPKG),
                   network_flags=existing(ts, prod.NETWORK_FLAGS_TIF))

    @property
    def folder(self):
        for path in (self.ts_east, self.ts_north, self.velocity):
            if path:
                return os.path.dirname(os.path.dirname(os.path.abspath(path)))
        if self.pairs_dir:
            return os.path.dirname(os.path.abspath(self.pairs_dir))
        return None

    def complete(self):
        return bool(self.ts_east and self.ts_north)

    def missing_message(self):
        missing = [prod.TIMESERIES_FOLDER + "/" + name
                   for name, path in ((prod.TS_EAST_TIF, self.ts_east),
                                      (prod.TS_NORTH_TIF, self.ts_north)) if not path]
        if not missing:
            return ""
        return ("The time-series rasters (%s) were not found among the project layers. Add "
                "them to the project, or choose the SlideWatch output folder." % ", ".join(missing))

    def __repr__(self):
        return "SeriesSources(%r)" % self.__dict__


def raster_crs_wkt(path):
    import rasterio

    with rasterio.open(path) as src:
        return src.crs.to_wkt() if src.crs else ""


def read_dates(path):
    """ISO dates of a time-series raster, from its band descriptions."""
    import rasterio

    with rasterio.open(path) as src:
        descriptions = list(src.descriptions)
    dates = []
    for i, d in enumerate(descriptions, start=1):
        try:
            dates.append(to_date(d).isoformat())
        except (TypeError, ValueError):
            raise InputError("Band %d of '%s' is described as %r, not an ISO date. Is it a "
                             "SlideWatch time-series raster (timeseries/ts_east_m.tif)?"
                             % (i, path, d)) from None
    return dates


def _pixel_window(src, x, y):
    from rasterio.windows import Window

    row, col = src.index(x, y)
    if not (0 <= row < src.height and 0 <= col < src.width):
        return None, row, col
    return Window(col, row, 1, 1), row, col


def _sample(src, x, y, bands=None):
    """Values of ``bands`` (1-based list, default all) at map (x, y); None if outside."""
    window, row, col = _pixel_window(src, x, y)
    if window is None:
        return None, row, col
    data = src.read(bands, window=window) if bands else src.read(window=window)
    values = data.reshape(data.shape[0]).astype(np.float64)
    if src.nodata is not None and not np.isnan(src.nodata):
        values[values == src.nodata] = np.nan
    return values, row, col


def _band_map(src):
    return {d: i for i, d in enumerate(src.descriptions, start=1) if d}


def read_pair_table(pairs_csv):
    """Rows of pairs.csv as dicts (every column as written, then reference_date,
    secondary_date (ISO), baseline_days, score, selected (bool), reason, reference_path,
    secondary_path (absolute) as parsed). Strict (:func:`.pairs_file.read_pairs`,
    the reader of every step): a bad cell raises InputError naming the line, the column
    and the value, so that the panel never shows another selection than the one that was
    correlated and inverted."""
    rows = []
    for r in pairs_file.read_pairs(pairs_csv):
        out = dict(r.cells)
        out.update(reference_date=r.reference_date, secondary_date=r.secondary_date,
                   reference_path=r.reference_path, secondary_path=r.secondary_path,
                   baseline_days=float(r.baseline_days), score=r.score, selected=r.selected,
                   reason=r.reason)
        rows.append(out)
    return rows


def pair_raster_path(pairs_dir, reference_date, secondary_date):
    return os.path.join(pairs_dir, prod.pair_file_name(reference_date, secondary_date))


def list_pairs(sources):
    """The pair rasters on disk: list of dicts (path, reference_date, secondary_date,
    selected, score). Selected/score from pairs.csv when available."""
    table = {}
    if sources.pairs_csv and os.path.exists(sources.pairs_csv):
        for row in read_pair_table(sources.pairs_csv):
            table[(row["reference_date"], row["secondary_date"])] = row
    out = []
    if not sources.pairs_dir:
        return out
    for path in sorted(glob.glob(os.path.join(sources.pairs_dir, prod.PAIR_GLOB))):
        dates = prod.parse_pair_name(path)
        if dates is None:
            continue
        ref, sec = dates
        row = table.get((ref, sec))
        out.append(dict(path=path, reference_date=ref, secondary_date=sec,
                        selected=True if row is None else row["selected"],
                        score=np.nan if row is None else row["score"]))
    return out


def read_pair_observations(sources, x, y, selected_only=False, valid_only=False):
    """The pairwise measurements at map (x, y) (raster CRS): list of dicts with
    reference_date, secondary_date, east_m, north_m, ncc, status, selected, path.
    Pixels outside a pair raster or with NaN displacement are left out; with
    ``selected_only`` the pairs not selected in pairs.csv, with ``valid_only`` the
    measurements whose status is not 0 (valid)."""
    import rasterio

    obs = []
    for pair in list_pairs(sources):
        if selected_only and not pair["selected"]:
            continue
        try:
            with rasterio.open(pair["path"]) as src:
                bands = _band_map(src)
                idx = [bands.get(name) for name in PAIR_BANDS]
                if idx[0] is None or idx[1] is None:
                    continue
                wanted = [i for i in idx if i is not None]
                values, _r, _c = _sample(src, x, y, wanted)
        except rasterio.errors.RasterioIOError:
            continue  # a pair being rewritten right now: skip it, do not fail the click
        if values is None:
            continue
        got = dict(zip([n for n, i in zip(PAIR_BANDS, idx) if i is not None], values))
        if not (np.isfinite(got[prod.BAND_EAST]) and np.isfinite(got[prod.BAND_NORTH])):
            continue
        status = got.get(prod.BAND_STATUS, 0.0)
        if valid_only and np.isfinite(status) and status != 0:
            continue
        obs.append(dict(reference_date=pair["reference_date"],
                        secondary_date=pair["secondary_date"], east_m=got[prod.BAND_EAST],
                        north_m=got[prod.BAND_NORTH], ncc=got.get(prod.BAND_NCC, np.nan),
                        status=got.get(prod.BAND_STATUS, 0.0), selected=pair["selected"],
                        path=pair["path"]))
    return obs


def read_pixel_series(sources, x, y, with_pairs=True):
    """Displacement history of the pixel containing map point (x, y) in the raster CRS.

    Returns a dict: ``x, y, row, col, dates`` (ISO strings), ``east, north, magnitude``
    (numpy float arrays, metres, cumulative since the first date), ``velocity`` (dict of the
    velocity.tif bands, NaN when absent), ``network_flags`` (int bit field of
    network_flags.tif, or None) and ``pairs``: the valid measurements of the selected pairs
    at that point, i.e. what fed the inversion (see :func:`read_pair_observations`).
    Raises InputError when the point is outside the rasters.
    """
    import rasterio

    if not sources.complete():
        raise InputError(sources.missing_message())
    series = {}
    for key, path in (("east", sources.ts_east), ("north", sources.ts_north)):
        dates = read_dates(path)
        with rasterio.open(path) as src:
            values, row, col = _sample(src, x, y)
        if values is None:
            raise InputError("The point (%.1f, %.1f) is outside the time-series raster '%s'. "
                             "Click inside the processed area." % (x, y, path))
        series[key] = values
        series[key + "_dates"] = dates
    if series["east_dates"] != series["north_dates"]:
        raise InputError("'%s' and '%s' do not have the same dates. Re-run the inversion."
                         % (sources.ts_east, sources.ts_north))
    velocity = {name: np.nan for name in VELOCITY_BANDS}
    if sources.velocity:
        with rasterio.open(sources.velocity) as src:
            bands = _band_map(src)
            values, _r, _c = _sample(src, x, y)
        if values is not None:
            for name in VELOCITY_BANDS:
                if name in bands:
                    velocity[name] = float(values[bands[name] - 1])
    east, north = series["east"], series["north"]
    result = dict(x=float(x), y=float(y), row=int(row), col=int(col),
                  dates=series["east_dates"], east=east, north=north,
                  magnitude=np.hypot(east, north), velocity=velocity, pairs=[],
                  network_flags=None, label="pixel (row %d, col %d)" % (row, col))
    if sources.network_flags:
        with rasterio.open(sources.network_flags) as src:
            values, _r, _c = _sample(src, x, y, [1])
        if values is not None and np.isfinite(values[0]):
            result["network_flags"] = int(values[0])
    if with_pairs and sources.pairs_dir:
        result["pairs"] = read_pair_observations(sources, x, y, selected_only=True,
                                                 valid_only=True)
    return result


def read_polygon_series(sources, geojson, label="polygon"):
    """Mean displacement history over the pixels of a polygon (GeoJSON-like mapping in the
    raster CRS): :func:`.series_models.read_area_series`, the one area reader of the
    docks and the exports. East and north are averaged first, the magnitude and the speed
    ``v_m_per_yr`` are those of the mean vector (``hypot(mean ve, mean vn)``), never the
    mean of the pixels' speeds: the magnitude of a noisy vector is biased up, so averaged
    speeds of ground that does not move stay at ~1.25 sigma however many pixels are
    averaged. ``v_sigma_m_per_yr`` is the sigma of that speed
    (:func:`.series_models.mean_vector_sigma`: the pixels' mean sigma, errors of
    neighbouring pixels being correlated). Same keys as :func:`read_pixel_series` plus
    ``n_pixels``, ``sigma``, ``east_std``, ``north_std``."""
    from .series_models import read_area_series

    if not sources.complete():
        raise InputError(sources.missing_message())
    read_dates(sources.ts_east)  # a clear error when the bands are not ISO dates
    return read_area_series(sources.ts_east, sources.ts_north, geojson, sources.velocity,
                            label)


def read_pixel_with_quality(sources, x, y):
    """:func:`read_pixel_series` plus the pixel's quality layers (when computed) and its
    per-date sigma (the inspector's click; any thread)."""
    from . import series_models as sm
    from .quality_layers import read_quality_at

    result = read_pixel_series(sources, x, y)
    result["sigma"] = sm.pixel_sigma(len(result["dates"]), result["velocity"].get("rmse_m"))
    result["kind"] = "pixel"
    try:
        result["quality"] = read_quality_at(os.path.dirname(sources.ts_east), x, y)
    except Exception:  # quality layers are optional; never fail a click for them
        result["quality"] = {}
    return result


def read_area(sources, geojson, label):
    """Mean series of a polygon (raster CRS), components averaged first (the inspector's
    detection means and stable area; any thread)."""
    from .series_models import read_area_series

    if not sources.complete():
        raise InputError(sources.missing_message())
    return read_area_series(sources.ts_east, sources.ts_north, geojson, sources.velocity,
                            label)


def fitted_velocity_line(dates, values, velocity_m_per_yr):
    """The straight line of slope ``velocity_m_per_yr`` closest (least squares) to the
    series: returns the line's values at ``dates`` (NaN if the velocity is unknown)."""
    t = np.array([(to_date(d) - to_date(dates[0])).days / DAYS_PER_YEAR for d in dates])
    values = np.asarray(values, dtype=float)
    ok = np.isfinite(values)
    if not np.isfinite(velocity_m_per_yr) or not ok.any():
        return np.full(len(dates), np.nan)
    intercept = np.mean(values[ok] - velocity_m_per_yr * t[ok])
    return intercept + velocity_m_per_yr * t


def series_to_rows(series_list):
    """CSV rows (header first) of one or several series: one row per (series, date)."""
    header = ["series", "x", "y", "row", "col", "date", prod.BAND_EAST, prod.BAND_NORTH,
              "magnitude_m", prod.BAND_VE, prod.BAND_VN, prod.BAND_V, prod.BAND_V_SIGMA,
              prod.BAND_RMSE]
    rows = [header]
    for s in series_list:
        v = s["velocity"]
        for i, d in enumerate(s["dates"]):
            rows.append([s.get("label", ""), "%.3f" % s["x"], "%.3f" % s["y"], s["row"],
                         s["col"], d] + ["%.6g" % s[k][i] for k in ("east", "north",
                                                                    "magnitude")]
                        + ["%.6g" % v[k] for k in (prod.BAND_VE, prod.BAND_VN, prod.BAND_V,
                                                  prod.BAND_V_SIGMA, prod.BAND_RMSE)])
    return rows


def rows_to_csv_text(rows):
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()
