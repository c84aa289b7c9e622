"""Exports of a SlideWatch output folder for other tools and for people.

1. **Point layers in the InSAR Explorer convention** (the QGIS plugin InSAR Explorer, and
   the shapefiles of MintPy's ``save_qgis``/EGMS products, read them): one point per
   detection (its mean series) or per pixel, a field ``velocity`` and one field
   ``DYYYYMMDD`` per date holding the cumulative displacement since the first date, plus
   SlideWatch's own fields. Written as GeoPackage (CRS of the time series) and/or CSV
   (``x``, ``y`` in that CRS and ``lon``, ``lat`` in WGS 84, for QGIS's "Add delimited text
   layer"). :func:`export_detection_points`, :func:`export_pixel_points`.

   A point holds one scalar per date, while SlideWatch's displacement is a horizontal
   vector, so ``component`` chooses it:

   - ``along`` (default): the displacement projected on the point's mean direction of
     motion (a detection: the direction of its mean velocity vector; a pixel: of its own
     velocity), signed; ``velocity`` = the speed along it;
   - ``magnitude``: the length of the displacement vector (``velocity`` = ``v_m_per_yr``);
   - ``east`` / ``north``: one component (``velocity`` = ``ve`` / ``vn``).

   ``along`` and ``magnitude`` of a pixel on stable ground are biased up by noise (the
   length of a noisy vector); east and north are not. Detection series are the mean of the
   east and north series of the polygon's pixels (components first, never speeds).
   ``units``: ``mm`` (default, InSAR Explorer's and EGMS's unit: mm and mm/yr) or ``m``.

2. **A one-page HTML report per detection** (:func:`write_detection_reports`): a map
   thumbnail (velocity around the polygon, with its outline), the mean displacement
   curves with linear and piecewise fits and the detection's acceleration onset, the
   evidence behind its score and its validation status from ``detections.gpkg``; the
   pictures are embedded (base64 PNG), so each report is a single file to share.
   ``index.html`` lists them and, when the folder holds labelled accuracy samples
   (:mod:`.accuracy_assessment`), gives the accuracy assessment of the detection map:
   error matrix, user's and producer's accuracies and the error-adjusted moving area with
   their confidence intervals (Olofsson et al. 2014).

Every file is written atomically. Pixel exports read the rasters in row blocks (memory
bounded by ``block_rows`` x width x dates) and write in one transaction per block.
"""

import base64
import csv
import html
import io
import json
import os
from dataclasses import dataclass, field

import numpy as np

from ..series import series_models as sm
from ..errors import InputError, OutputError, ParameterError
from ..products import (BAND_N_OBS, BAND_RMSE, BAND_V, BAND_V_SIGMA, BAND_VE, BAND_VN,
                        DETECTIONS_GPKG, TS_EAST_TIF, TS_NORTH_TIF, VELOCITY_TIF)
from ..progress import as_progress
from ..raster_io import atomic_output, write_text_atomic

COMPONENTS = ("along", "magnitude", "east", "north")
UNITS = {"mm": 1000.0, "m": 1.0}
FORMATS = ("gpkg", "csv")
DETECTION_FILE = "detections_insar_explorer"
PIXEL_FILE = "pixels_insar_explorer"
REPORTS_FOLDER = "reports"
#: detection attributes copied to the detection points (when present)
DETECTION_FIELDS = ("id", "status", "score", "area_m2", "v_mean_m_per_yr", "v_p95_m_per_yr",
                    "direction_deg", "coherence", "accel_flag", "accel_onset_date", "comment",
                    "validated_by", "validated_at")


@dataclass
class ExportResult:
    paths: list
    n_points: int
    dates: list
    info: dict = field(default_factory=dict)


# ------------------------------------------------------------------------- inputs
def output_sources(folder):
    """Paths of the outputs an export needs, from an output folder (or its timeseries/)."""
    folder = os.path.abspath(str(folder or ""))
    if os.path.basename(folder) == "timeseries" and os.path.isfile(
            os.path.join(folder, TS_EAST_TIF)):
        folder = os.path.dirname(folder)
    ts = os.path.join(folder, "timeseries")
    paths = dict(folder=folder, ts_east=os.path.join(ts, TS_EAST_TIF),
                 ts_north=os.path.join(ts, TS_NORTH_TIF),
                 velocity=os.path.join(ts, VELOCITY_TIF),
                 detections=os.path.join(folder, DETECTIONS_GPKG))
    for key in ("ts_east", "ts_north"):
        if not os.path.isfile(paths[key]):
            raise InputError("'%s' is missing. Choose a SlideWatch output folder (it holds "
                             "timeseries/ts_east_m.tif and ts_north_m.tif)." % paths[key])
    if not os.path.isfile(paths["velocity"]):
        paths["velocity"] = None
    return paths


def _dates(path):
    import rasterio

    with rasterio.open(path) as src:
        names = list(src.descriptions)
    try:
        return [np.datetime_as_string(np.datetime64(str(d)[:10], "D")) for d in names]
    except ValueError:
        raise InputError("The bands of '%s' are not described by ISO dates: not a SlideWatch "
                         "time-series raster." % path) from None


def date_field(iso):
    """'2020-01-05' -> 'D20200105' (InSAR Explorer's date field)."""
    return "D" + str(iso)[:10].replace("-", "")


def _check(component, units, formats):
    if component not in COMPONENTS:
        raise ParameterError("component must be one of %s (got %r)."
                             % (", ".join(COMPONENTS), component))
    if units not in UNITS:
        raise ParameterError("units must be mm or m (got %r)." % (units,))
    formats = [formats] if isinstance(formats, str) else list(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ParameterError("formats must be among gpkg, csv (got %r)." % (formats,))
    return formats


def scalar_series(east, north, ve, vn, v, component):
    """(series (n_dates, ...), velocity (...)) of ``component`` for east/north series
    (n_dates, ...) and velocity components (...)."""
    east, north = np.asarray(east, np.float64), np.asarray(north, np.float64)
    ve, vn = np.asarray(ve, np.float64), np.asarray(vn, np.float64)
    if component == "east":
        return east, ve
    if component == "north":
        return north, vn
    if component == "magnitude":
        vel = np.asarray(v, np.float64) if v is not None else np.hypot(ve, vn)
        return np.hypot(east, north), vel
    speed = np.hypot(ve, vn)
    with np.errstate(invalid="ignore", divide="ignore"):
        ue = np.where(speed > 0, ve / speed, np.nan)
        un = np.where(speed > 0, vn / speed, np.nan)
    return east * ue + north * un, speed


# ------------------------------------------------------------------------ writers
class _PointWriter:
    """Writes points with a fixed list of fields to a GeoPackage and/or a CSV, atomically
    (temporary names renamed on success)."""

    def __init__(self, base, formats, layer_name, fields, crs_wkt):
        self.base, self.formats, self.layer_name = base, formats, layer_name
        self.fields = fields  # [(name, "Integer" | "Real" | "String")]
        self.crs_wkt = crs_wkt
        self.paths = []
        self.count = 0

    def __enter__(self):
        import contextlib

        self._es = contextlib.ExitStack()
        try:
            self._open()
        except BaseException:
            import sys
            self._es.__exit__(*sys.exc_info())
            raise
        return self

    def _open(self):
        from osgeo import ogr, osr

        self.ds = self.csv = None
        self._to_wgs84 = None
        srs = osr.SpatialReference()
        if self.crs_wkt:
            srs.ImportFromWkt(self.crs_wkt)
            srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        if "gpkg" in self.formats:
            final = self.base + ".gpkg"
            tmp = self._es.enter_context(atomic_output(final))
            self.paths.append(final)
            driver = ogr.GetDriverByName("GPKG")
            # GDAL wants a .gpkg name: create it so, renamed to the temporary name on close
            self._gpkg_tmp = (tmp + ".gpkg", tmp)
            self._es.callback(_remove_if_exists, tmp + ".gpkg")
            self.ds = driver.CreateDataSource(tmp + ".gpkg")
            if self.ds is None:
                raise OutputError("Cannot create the GeoPackage '%s'." % final)
            self._es.callback(self._close_ds)
            self.layer = self.ds.CreateLayer(self.layer_name, srs if self.crs_wkt else None,
                                             ogr.wkbPoint, options=["FID=fid",
                                                                    "GEOMETRY_NAME=geom"])
            types = {"Integer": ogr.OFTInteger, "Real": ogr.OFTReal, "String": ogr.OFTString}
            for name, kind in self.fields:
                self.layer.CreateField(ogr.FieldDefn(name, types[kind]))
            self.defn = self.layer.GetLayerDefn()
            self.ds.StartTransaction()
        if "csv" in self.formats:
            final = self.base + ".csv"
            tmp = self._es.enter_context(atomic_output(final))
            self.paths.append(final)
            fh = self._es.enter_context(open(tmp, "w", newline="", encoding="utf-8"))
            self.csv = csv.writer(fh)
            self.csv.writerow(["x", "y", "lon", "lat"] + [n for n, _k in self.fields])
            self._fh = fh
            if self.crs_wkt:
                wgs = osr.SpatialReference()
                wgs.ImportFromEPSG(4326)
                wgs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
                self._to_wgs84 = osr.CoordinateTransformation(srs, wgs)

    def _close_ds(self):
        if self.ds is not None:
            self.ds.FlushCache()
            self.ds = None
            if os.path.exists(self._gpkg_tmp[0]):
                os.replace(*self._gpkg_tmp)

    def write(self, xs, ys, columns):
        """Points at ``xs, ys`` with ``columns[name]`` (sequences, one value per point;
        NaN / None -> NULL / empty)."""
        from osgeo import ogr

        n = len(xs)
        if n == 0:
            return
        if self.ds is not None:
            for i in range(n):
                f = ogr.Feature(self.defn)
                g = ogr.Geometry(ogr.wkbPoint)
                g.AddPoint_2D(float(xs[i]), float(ys[i]))
                f.SetGeometry(g)
                for k, (name, kind) in enumerate(self.fields):
                    v = columns[name][i]
                    if v is None or (isinstance(v, (float, np.floating)) and not np.isfinite(v)):
                        f.SetFieldNull(k)
                    elif kind == "Integer":
                        f.SetField(k, int(v))
                    elif kind == "Real":
                        f.SetField(k, float(v))
                    else:
                        f.SetField(k, str(v))
                if self.layer.CreateFeature(f) != 0:
                    raise OutputError("Could not write a point to '%s'." % self.paths[0])
            self.ds.CommitTransaction()
            self.ds.StartTransaction()
        if self.csv is not None:
            if self._to_wgs84 is not None:
                pts = self._to_wgs84.TransformPoints([(float(x), float(y)) for x, y in
                                                      zip(xs, ys)])
                lon = [p[0] for p in pts]
                lat = [p[1] for p in pts]
            else:
                lon = lat = [""] * n
            for i in range(n):
                row = ["%.3f" % xs[i], "%.3f" % ys[i], "%.7f" % lon[i] if lon[i] != "" else "",
                       "%.7f" % lat[i] if lat[i] != "" else ""]
                for name, kind in self.fields:
                    v = columns[name][i]
                    if v is None or (isinstance(v, (float, np.floating)) and not np.isfinite(v)):
                        row.append("")
                    elif kind == "Real":
                        row.append("%.6g" % float(v))
                    elif kind == "Integer":
                        row.append(str(int(v)))
                    else:
                        row.append(str(v))
                self.csv.writerow(row)
        self.count += n

    def __exit__(self, *exc):
        if exc[0] is None and self.ds is not None:
            self.ds.CommitTransaction()
        if exc[0] is None and self.csv is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
        return self._es.__exit__(*exc)


def _remove_if_exists(path):
    try:
        os.remove(path)
    except OSError:
        pass


def _series_fields(dates):
    return [(date_field(d), "Real") for d in dates]


def _crs_wkt(path):
    import rasterio

    with rasterio.open(path) as src:
        return src.crs.to_wkt() if src.crs else ""


# ------------------------------------------------------------ detection points
def _polygon_geojson(wkt):
    from osgeo import ogr

    g = ogr.CreateGeometryFromWkt(wkt)
    if g is None:
        return None, None
    p = g.PointOnSurface()
    return json.loads(g.ExportToJson()), (p.GetX(), p.GetY())


def detection_series(paths, records, progress=None):
    """Mean series of each detection (``read_area_series``): list of (record, series,
    point) for the detections with a readable polygon inside the rasters."""
    progress = as_progress(progress)
    out = []
    for k, rec in enumerate(records):
        progress.check()
        if not rec.get("geometry_wkt"):
            continue
        geo, point = _polygon_geojson(rec["geometry_wkt"])
        if geo is None:
            continue
        try:
            s = sm.read_area_series(paths["ts_east"], paths["ts_north"], geo,
                                    paths["velocity"], "detection %s" % rec.get("id"))
        except InputError as exc:
            progress.info("Detection %s skipped: %s" % (rec.get("id"), exc))
            continue
        out.append((rec, s, point))
        progress.update((k + 1) / max(len(records), 1))
    return out


def export_detection_points(folder, output_base=None, formats=("gpkg", "csv"),
                            component="along", units="mm", progress=None):
    """One point per detection (on its polygon) with its mean series in the InSAR
    Explorer convention; returns :class:`ExportResult` (``paths``: the files written).

    ``output_base``: path without extension (default ``<folder>/exports/``
    ``detections_insar_explorer``).
    """
    from ..detect.detections_store import read_detections

    progress = as_progress(progress)
    formats = _check(component, units, formats)
    paths = output_sources(folder)
    if not os.path.isfile(paths["detections"]):
        raise InputError("'%s' is missing: run the detection step first (or export the "
                         "pixels instead)." % paths["detections"])
    records = read_detections(paths["detections"])
    dates = _dates(paths["ts_east"])
    scale = UNITS[units]
    base = output_base or os.path.join(paths["folder"], "exports", DETECTION_FILE)
    fields = ([("velocity", "Real"), ("v_sigma", "Real"), ("ve", "Real"), ("vn", "Real"),
               ("direction_deg", "Real"), ("n_pixels", "Integer")]
              + [(n, "Real" if n in ("score", "area_m2", "v_mean_m_per_yr", "v_p95_m_per_yr",
                                     "coherence") else "Integer" if n in ("id", "accel_flag")
                  else "String") for n in DETECTION_FIELDS if n != "direction_deg"]
              + [("component", "String"), ("units", "String")] + _series_fields(dates))
    items = detection_series(paths, records, progress.sub(0, 0.8))
    cols = {n: [] for n, _k in fields}
    xs, ys = [], []
    for rec, s, (x, y) in items:
        v = s["velocity"]
        series, vel = scalar_series(s["east"], s["north"], v[BAND_VE], v[BAND_VN],
                                    v[BAND_V], component)
        xs.append(x)
        ys.append(y)
        cols["velocity"].append(float(vel) * scale)
        cols["v_sigma"].append(v[BAND_V_SIGMA] * scale)
        cols["ve"].append(v[BAND_VE] * scale)
        cols["vn"].append(v[BAND_VN] * scale)
        cols["direction_deg"].append(float(np.degrees(np.arctan2(v[BAND_VE], v[BAND_VN]))
                                           % 360))
        cols["n_pixels"].append(s["n_pixels"])
        for n in DETECTION_FIELDS:
            if n != "direction_deg":
                cols[n].append(rec.get(n))
        cols["component"].append(component)
        cols["units"].append(units)
        for d, value in zip(dates, series):
            cols[date_field(d)].append(float(value) * scale)
    with _PointWriter(base, formats, "detections_series", fields,
                      _crs_wkt(paths["ts_east"])) as writer:
        writer.write(xs, ys, cols)
    progress.update(1.0)
    progress.info("Exported %d detection(s) with %d dates (%s, %s) to %s."
                  % (len(xs), len(dates), component, units, ", ".join(writer.paths)))
    return ExportResult(writer.paths, len(xs), dates, dict(component=component, units=units))


# ---------------------------------------------------------------- pixel points
def export_pixel_points(folder, output_base=None, formats=("gpkg",), component="along",
                        units="mm", step=1, min_velocity=None, inside_detections=False,
                        block_rows=64, progress=None):
    """One point per pixel (every ``step``-th row and column, pixel centres) with its
    series, in the InSAR Explorer convention. Pixels without any finite value are left
    out; ``min_velocity`` (m/yr) keeps only pixels at least that fast (``v_m_per_yr``);
    ``inside_detections`` keeps only pixels inside a detection polygon. Returns
    :class:`ExportResult`.
    """
    import rasterio
    from rasterio.windows import Window

    progress = as_progress(progress)
    formats = _check(component, units, formats)
    if int(step) < 1:
        raise ParameterError("step must be >= 1 (got %r)." % step)
    step = int(step)
    paths = output_sources(folder)
    dates = _dates(paths["ts_east"])
    scale = UNITS[units]
    base = output_base or os.path.join(paths["folder"], "exports", PIXEL_FILE)
    fields = ([("velocity", "Real"), ("v_sigma", "Real"), ("ve", "Real"), ("vn", "Real"),
               ("rmse", "Real"), ("n_obs", "Integer"), ("row", "Integer"), ("col", "Integer")]
              + [("component", "String"), ("units", "String")] + _series_fields(dates))
    with rasterio.open(paths["ts_east"]) as src_e, rasterio.open(paths["ts_north"]) as src_n:
        h, w = src_e.height, src_e.width
        transform = src_e.transform
        mask = None
        if inside_detections:
            mask = _detection_mask(paths, (h, w), transform)
        vsrc = rasterio.open(paths["velocity"]) if paths["velocity"] else None
        try:
            vbands = {d: i for i, d in enumerate(vsrc.descriptions, start=1)} if vsrc else {}
            rows_per = max(step, (max(1, int(block_rows)) // step) * step)
            starts = list(range(0, h, rows_per))
            with _PointWriter(base, formats, "pixel_series", fields,
                              src_e.crs.to_wkt() if src_e.crs else "") as writer:
                for b, r0 in enumerate(starts):
                    progress.check()
                    r1 = min(h, r0 + rows_per)
                    win = Window(0, r0, w, r1 - r0)
                    e = src_e.read(window=win).astype(np.float64)[:, ::step, ::step]
                    n = src_n.read(window=win).astype(np.float64)[:, ::step, ::step]
                    vel = {}
                    for name in (BAND_VE, BAND_VN, BAND_V, BAND_V_SIGMA, BAND_RMSE,
                                 BAND_N_OBS):
                        if name in vbands:
                            vel[name] = vsrc.read(vbands[name], window=win).astype(
                                np.float64)[::step, ::step]
                        else:
                            vel[name] = np.full(e.shape[1:], np.nan)
                    rr, cc = np.mgrid[r0:r1:step, 0:w:step]
                    keep = np.any(np.isfinite(e), axis=0) & np.any(np.isfinite(n), axis=0)
                    if min_velocity is not None:
                        with np.errstate(invalid="ignore"):
                            keep &= vel[BAND_V] >= float(min_velocity)
                    if mask is not None:
                        keep &= mask[rr, cc]
                    if keep.any():
                        series, v = scalar_series(e[:, keep], n[:, keep],
                                                  vel[BAND_VE][keep], vel[BAND_VN][keep],
                                                  vel[BAND_V][keep], component)
                        xs, ys = transform * (cc[keep] + 0.5, rr[keep] + 0.5)
                        cols = {"velocity": v * scale,
                                "v_sigma": vel[BAND_V_SIGMA][keep] * scale,
                                "ve": vel[BAND_VE][keep] * scale,
                                "vn": vel[BAND_VN][keep] * scale,
                                "rmse": vel[BAND_RMSE][keep] * scale,
                                "n_obs": vel[BAND_N_OBS][keep], "row": rr[keep], "col": cc[keep],
                                "component": [component] * int(keep.sum()),
                                "units": [units] * int(keep.sum())}
                        for k, d in enumerate(dates):
                            cols[date_field(d)] = series[k] * scale
                        writer.write(np.asarray(xs), np.asarray(ys), cols)
                    progress.update((b + 1) / len(starts), "Exported rows %d-%d of %d"
                                    % (r0, r1, h))
                progress.check()
        finally:
            if vsrc is not None:
                vsrc.close()
    progress.info("Exported %d pixel(s) with %d dates (%s, %s) to %s."
                  % (writer.count, len(dates), component, units, ", ".join(writer.paths)))
    return ExportResult(writer.paths, writer.count, dates,
                        dict(component=component, units=units, step=step))


def _detection_mask(paths, shape, transform):
    from rasterio.features import geometry_mask

    from ..detect.detections_store import read_detections

    if not os.path.isfile(paths["detections"]):
        raise InputError("'%s' is missing: 'inside detections' needs the detection step's "
                         "output." % paths["detections"])
    geoms = []
    for rec in read_detections(paths["detections"]):
        if rec.get("geometry_wkt"):
            geo, _p = _polygon_geojson(rec["geometry_wkt"])
            if geo is not None:
                geoms.append(geo)
    if not geoms:
        return np.zeros(shape, bool)
    return geometry_mask(geoms, out_shape=shape, transform=transform, invert=True)


# --------------------------------------------------------------------- reports
def _matplotlib():
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise InputError("The detection reports need matplotlib (Debian package "
                         "python3-matplotlib): %s" % exc) from exc
    return matplotlib, Figure, FigureCanvasAgg


def _png(fig, canvas_cls):
    buf = io.BytesIO()
    canvas_cls(fig).print_png(buf)
    return buf.getvalue()


def map_thumbnail(paths, rec, margin=0.6, size_px=(520, 420)):
    """PNG bytes: velocity magnitude around the detection (its bounding box grown by
    ``margin`` on each side), the polygon outline, a colour bar and axes in metres."""
    import rasterio
    from osgeo import ogr
    from rasterio.windows import Window, from_bounds

    _mpl, Figure, Canvas = _matplotlib()
    from ..run.overview import STATUS_COLOURS, VELOCITY_RAMP

    g = ogr.CreateGeometryFromWkt(rec["geometry_wkt"])
    minx, maxx, miny, maxy = g.GetEnvelope()
    dx, dy = max(maxx - minx, 1.0), max(maxy - miny, 1.0)
    side = max(dx, dy) * (1 + 2 * margin)
    cx, cy = (minx + maxx) / 2, (miny + maxy) / 2
    bounds = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
    vpath = paths["velocity"]
    with rasterio.open(vpath or paths["ts_east"]) as src:
        win = from_bounds(*bounds, transform=src.transform).round_offsets(
            op="floor").round_lengths(op="ceil")
        win = win.intersection(Window(0, 0, src.width, src.height))
        if vpath:
            band = list(src.descriptions).index(BAND_V) + 1 \
                if BAND_V in src.descriptions else 3
            data = src.read(band, window=win).astype(float)
            label = "velocity (m/yr)"
        else:
            data = src.read(src.count, window=win).astype(float)
            label = "east displacement (m)"
        ext = rasterio.windows.bounds(win, src.transform)
    from matplotlib.colors import LinearSegmentedColormap

    cmap = LinearSegmentedColormap.from_list(
        "slidewatch", [(p, tuple(c / 255.0 for c in rgb)) for p, rgb in VELOCITY_RAMP])
    cmap.set_bad((0.85, 0.85, 0.85))
    fig = Figure(figsize=(size_px[0] / 100.0, size_px[1] / 100.0), dpi=100)
    ax = fig.add_subplot(111)
    finite = data[np.isfinite(data)]
    vmax = float(np.percentile(finite, 99)) if finite.size else 1.0
    im = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=0, vmax=max(vmax, 1e-9),
                   extent=(ext[0], ext[2], ext[1], ext[3]), interpolation="nearest")
    colour = tuple(c / 255.0 for c in STATUS_COLOURS.get(rec.get("status") or "unvalidated",
                                                         (0, 200, 255)))
    for ring in _rings(g):
        xs, ys = zip(*ring)
        ax.plot(xs, ys, color="k", lw=3.0)
        ax.plot(xs, ys, color=colour, lw=1.6)
    ax.set_xlim(bounds[0], bounds[2])
    ax.set_ylim(bounds[1], bounds[3])
    ax.set_aspect("equal")
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.tick_params(labelsize=7)
    ax.set_title("detection %s (%s)" % (rec.get("id"), rec.get("status") or "unvalidated"),
                 fontsize=9)
    cb = fig.colorbar(im, ax=ax, shrink=0.8)
    cb.set_label(label, fontsize=8)
    cb.ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _png(fig, Canvas)


def _rings(g):
    from osgeo import ogr

    out = []
    gt = ogr.GT_Flatten(g.GetGeometryType())
    polys = [g.GetGeometryRef(i) for i in range(g.GetGeometryCount())] \
        if gt == ogr.wkbMultiPolygon else [g]
    for p in polys:
        for i in range(p.GetGeometryCount()):
            r = p.GetGeometryRef(i)
            out.append([(r.GetX(k), r.GetY(k)) for k in range(r.GetPointCount())])
    return out


def curves_png(series, rec, fits, size_px=(620, 420)):
    """PNG bytes: mean east, north and magnitude displacement of the detection with ±σ
    bands (standard error of the mean of each component), the linear and piecewise fits
    of east and north (the piecewise break as a grey dotted line), the detection's
    acceleration onset when flagged (red)."""
    _mpl, Figure, Canvas = _matplotlib()
    import datetime as _dt

    x = [_dt.date.fromisoformat(d) for d in series["dates"]]
    fig = Figure(figsize=(size_px[0] / 100.0, size_px[1] / 100.0), dpi=100)
    ax = fig.add_subplot(111)
    n_px = max(int(series.get("n_pixels") or 1), 1)
    colours = {"east": "#D55E00", "north": "#0072B2", "magnitude": "#000000"}
    for comp in ("east", "north", "magnitude"):
        y = np.asarray(series[comp], float)
        std = series.get(comp + "_std")
        sig = (np.asarray(std, float) / np.sqrt(n_px)) if std is not None \
            else np.asarray(series["sigma"], float)
        sig = np.nan_to_num(sig, nan=0.0)
        ax.fill_between(x, y - sig, y + sig, color=colours[comp], alpha=0.15, lw=0)
        ax.plot(x, y, "o-", ms=3, lw=1.5, color=colours[comp], label=comp)
    styles = {"linear": ("--", "linear fit"), "piecewise": (":", "piecewise fit")}
    for model, fit in fits.items():
        if fit is None or model not in styles:
            continue
        ls, lab = styles[model]
        for k, comp in enumerate(("east", "north")):
            ax.plot(x, fit.fitted[:, k], ls, color=colours[comp], lw=1.3, alpha=0.8,
                    label="%s (east, north)" % lab if k == 0 else None)
        if model == "piecewise" and fit.onset:
            ax.axvline(_dt.date.fromisoformat(fit.onset), color="#888888", lw=1, ls=":")
    onset = rec.get("accel_onset_date") if rec.get("accel_flag") else None
    if onset:
        ax.axvline(_dt.date.fromisoformat(str(onset)[:10]), color="#CC0000", lw=1.5,
                   label="acceleration onset (detection)")
    ax.axhline(0, color="#999999", lw=0.8)
    ax.set_ylabel("cumulative displacement (m)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title("mean series of %d pixels (east and north averaged, then the magnitude)"
                 % series["n_pixels"], fontsize=9)
    fig.autofmt_xdate()
    fig.tight_layout()
    return _png(fig, Canvas)


def _img(png, alt):
    return '<img alt="%s" src="data:image/png;base64,%s"/>' % (
        html.escape(alt), base64.b64encode(png).decode("ascii"))


def _fmt(v, fmt="%.3g"):
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "—"
    if isinstance(v, (int, float, np.floating)):
        return fmt % v
    return html.escape(str(v))


_CSS = """body{font-family:DejaVu Sans,Arial,sans-serif;font-size:13px;margin:18px;
max-width:1180px;color:#222}h1{font-size:20px;margin:0 0 4px}h2{font-size:15px;margin:14px 0 6px}
table.layout>tbody>tr>td,table.layout>tr>td{border:none;padding:0 16px 0 0;vertical-align:top}table{border-collapse:collapse}td,th{border:1px solid
#ccc;padding:2px 7px;text-align:left}th{background:#f2f2f2}.status{display:inline-block;
padding:2px 9px;border-radius:4px;color:#fff;font-weight:bold}.small{color:#666;font-size:11px}
@media print{body{margin:6mm}}"""
_STATUS_BG = {"unvalidated": "#0095c8", "confirmed": "#b000b0", "rejected": "#888888",
              "uncertain": "#c8a000"}


def detection_report_html(paths, rec, series, fits, title_folder=""):
    """The HTML text of one detection's report."""
    status = rec.get("status") or "unvalidated"
    ev = [(k, rec.get(k)) for k in ("ev_significance", "ev_coherence", "ev_consistency",
                                    "ev_downslope") if k in rec]
    area = rec.get("area_m2")
    attrs = [("score", rec.get("score")),
             ("area (m²)", "%.0f" % area if isinstance(area, (int, float)) else None),
             ("mean velocity (m/yr)", rec.get("v_mean_m_per_yr")),
             ("95th percentile velocity (m/yr)", rec.get("v_p95_m_per_yr")),
             ("direction (° from north)", rec.get("direction_deg")),
             ("coherence", rec.get("coherence")), ("pixels", series["n_pixels"]),
             ("acceleration", "yes" if rec.get("accel_flag") else "no"),
             ("acceleration onset", rec.get("accel_onset_date") if rec.get("accel_flag")
              else None)]
    v = series["velocity"]
    vv, vs, az = sm.vector_velocity(v[BAND_VE], v[BAND_V_SIGMA], v[BAND_VN], v[BAND_V_SIGMA])
    fit_rows = []
    for model, fit in fits.items():
        if fit is None:
            continue
        title, lines = sm.fit_summary(fit)
        fit_rows.append("<tr><th>%s</th><td>%s</td></tr>" % (
            html.escape(title), "<br>".join(html.escape(s) for s in lines)))
    validation = [("status", '<span class="status" style="background:%s">%s</span>'
                   % (_STATUS_BG.get(status, "#444"), html.escape(status))),
                  ("analyst", _fmt(rec.get("validated_by"))),
                  ("decided at", _fmt(rec.get("validated_at"))),
                  ("comment", _fmt(rec.get("comment")))]
    table = lambda rows: "<table>%s</table>" % "".join(  # noqa: E731
        "<tr><th>%s</th><td>%s</td></tr>" % (html.escape(k), v) for k, v in rows)
    return """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>SlideWatch detection %(id)s</title>
<style>%(css)s</style></head><body>
<h1>Detection %(id)s %(badge)s</h1>
<div class="small">%(folder)s · mean velocity of the area %(vv)s ± %(vs)s m/yr towards
%(az)s° (speed of the mean east/north vector)</div>
<table class="layout"><tr><td>%(map)s</td><td>%(curves)s</td></tr></table>
<table class="layout"><tr><td><h2>Detection</h2>%(attrs)s</td>
<td><h2>Validation</h2>%(validation)s<h2>Evidence behind the score</h2>%(ev)s</td>
<td style="max-width:420px"><h2>Why it was flagged</h2><p>%(expl)s</p></td></tr></table>
<h2>Models of the mean series</h2><table>%(fits)s</table>
<p class="small">SlideWatch report. Curves: mean of the east and north series of the
polygon's pixels (components averaged first, never speeds), ± the standard error of the
mean. Fits: core/series/series_models.py (east and north fitted together, σ from the scaled
least-squares covariance).</p>
</body></html>
""" % dict(id=html.escape(str(rec.get("id"))), css=_CSS,
           badge='<span class="status" style="background:%s">%s</span>'
           % (_STATUS_BG.get(status, "#444"), html.escape(status)),
           folder=html.escape(title_folder), vv=_fmt(vv), vs=_fmt(vs, "%.2g"),
           az=_fmt(az, "%.0f"),
           map=_img(map_thumbnail(paths, rec), "map of detection %s" % rec.get("id")),
           curves=_img(curves_png(series, rec, fits), "curves of detection %s" % rec.get("id")),
           attrs=table([(k, _fmt(v)) for k, v in attrs]),
           ev=table([(k.replace("ev_", ""), _fmt(v, "%+.3f")) for k, v in ev]) if ev
           else "<p>—</p>",
           expl=_fmt(rec.get("score_explanation")), validation=table(validation),
           fits="".join(fit_rows) or "<tr><td>too few dates to fit</td></tr>")


def find_accuracy_samples(folder):
    """The accuracy sample files at the top of an output folder: GeoPackages holding the
    ``accuracy_samples`` layer and CSVs with their ``.design.json`` beside (what
    *Accuracy assessment: sample points* writes), sorted by name."""
    import sqlite3

    from . import accuracy_assessment as aa

    out = []
    folder = output_sources(folder)["folder"]
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        low = name.lower()
        if low.endswith(".gpkg") and name != DETECTIONS_GPKG:
            try:
                conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=5.0)
                try:
                    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                         "AND name = ?", (aa.SAMPLES_LAYER,)).fetchone()
                finally:
                    conn.close()
            except sqlite3.Error:
                found = None
            if found:
                out.append(path)
        elif low.endswith(".csv") and os.path.isfile(aa.design_path_of_csv(path)):
            out.append(path)
    return out


def accuracy_sections(samples):
    """HTML of the accuracy assessment of each sample file (:func:`accuracy_assessment.
    assess`, labels as they are now); a sample that cannot be assessed yet (e.g. a
    stratum with fewer than 2 labels) gets a line saying why."""
    from . import accuracy_assessment as aa

    parts = []
    for path in samples:
        head = "<p>Sample <code>%s</code>" % html.escape(os.path.basename(path))
        try:
            rep = aa.assess(path)
        except (InputError, ParameterError) as exc:
            parts.append('<section class="slidewatch-accuracy"><h2>Accuracy assessment of '
                         'the detection map</h2>%s: not assessed yet: %s</p></section>'
                         % (head, html.escape(str(exc))))
            continue
        parts.append("%s (labels as of this report).</p>\n%s" % (head, rep.html_section()))
    return "\n".join(parts)


def write_detection_reports(folder, output_folder=None, ids=None, progress=None,
                            accuracy_samples=None):
    """One self-contained HTML report per detection (``detection_<id>.html``) and an
    ``index.html`` in ``output_folder`` (default ``<folder>/exports/reports``). ``ids``:
    only these detections. ``accuracy_samples``: sample files whose accuracy assessment
    of the map goes into ``index.html`` (default: those :func:`find_accuracy_samples`
    finds in ``folder``; ``[]``: none). Returns :class:`ExportResult` (``paths``: the
    reports, index last)."""
    from ..detect.detections_store import read_detections

    progress = as_progress(progress)
    _matplotlib()
    paths = output_sources(folder)
    if not os.path.isfile(paths["detections"]):
        raise InputError("'%s' is missing: run the detection step first." % paths["detections"])
    records = read_detections(paths["detections"])
    if ids is not None:
        wanted = {int(i) for i in ids}
        records = [r for r in records if r.get("id") is not None and int(r["id"]) in wanted]
    records.sort(key=lambda r: -(r.get("score") or 0))
    out_dir = output_folder or os.path.join(paths["folder"], "exports", REPORTS_FOLDER)
    items = detection_series(paths, records, progress.sub(0, 0.3))
    written, index_rows = [], []
    for k, (rec, s, _point) in enumerate(items):
        progress.check()
        fits = {}
        for model in ("linear", "piecewise"):
            try:
                fits[model] = sm.fit_model(s["dates"], np.column_stack([s["east"], s["north"]]),
                                           model, components=("east", "north"))
            except (InputError, ParameterError):
                fits[model] = None
        name = "detection_%s.html" % rec.get("id")
        path = os.path.join(out_dir, name)
        write_text_atomic(path, detection_report_html(paths, rec, s, fits,
                                                      os.path.basename(paths["folder"])))
        written.append(path)
        index_rows.append("<tr><td><a href=\"%s\">%s</a></td><td>%s</td><td>%s</td><td>%s</td>"
                          "<td>%s</td></tr>" % (name, html.escape(str(rec.get("id"))),
                                                _fmt(rec.get("score")),
                                                html.escape(rec.get("status") or "unvalidated"),
                                                _fmt(rec.get("v_mean_m_per_yr")),
                                                _fmt(rec.get("area_m2"), "%.0f")))
        progress.update(0.3 + 0.7 * (k + 1) / max(len(items), 1), "Report of detection %s"
                        % rec.get("id"))
    if accuracy_samples is None:
        accuracy_samples = find_accuracy_samples(paths["folder"])
    accuracy = accuracy_sections(accuracy_samples)
    index = os.path.join(out_dir, "index.html")
    write_text_atomic(index, """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>SlideWatch detections</title><style>%s</style></head><body><h1>Detections of %s</h1>
<table><tr><th>id</th><th>score</th><th>status</th><th>mean velocity (m/yr)</th>
<th>area (m²)</th></tr>%s</table>
%s</body></html>
""" % (_CSS, html.escape(paths["folder"]), "".join(index_rows), accuracy))
    written.append(index)
    progress.info("Wrote %d detection report(s) and index.html to %s%s."
                  % (len(written) - 1, out_dir,
                     " (with the accuracy assessment of %s)"
                     % ", ".join(os.path.basename(p) for p in accuracy_samples)
                     if accuracy_samples else ""))
    return ExportResult(written, len(written) - 1, items[0][1]["dates"] if items else [])
