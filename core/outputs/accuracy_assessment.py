"""Design-based accuracy assessment of a detection map (stratified random sampling).

What AcATaMa does for thematic maps, for SlideWatch's map of moving ground, following the
good practices of Olofsson et al. (2014), *Good practices for estimating area and
assessing accuracy of land change*, Remote Sensing of Environment 148, 42-57
(doi:10.1016/j.rse.2014.02.015). Method, formulas and commands: docs/accuracy_assessment.md.

Workflow
--------
1. **Strata** (:func:`load_strata`): the detection map on its grid, two strata which are
   also the map classes: ``moving`` (pixels inside a detection polygon of
   ``detections.gpkg``, or non-zero in a detection raster) and ``not_moving`` (every
   other valid pixel). Pixels without data (NaN velocity, nodata) are outside the
   population; their area is reported. Stratum areas are pixel counts x pixel area.
2. **Sample size** (:func:`sample_size`, Olofsson eq. 13 = Cochran 1977 eq. 5.25) from a
   target standard error of the overall accuracy and anticipated user's accuracies.
3. **Allocation** (:func:`allocate`): proportional to the stratum areas with a minimum
   per stratum (the rare ``moving`` stratum gets enough points), or equal.
4. **Stratified random sample** (:func:`draw_sample`): in each stratum, points uniformly
   distributed over its area (a pixel drawn with equal probability, then a uniform
   position inside it), from a seeded generator (same map + same seed = same points),
   presented in a random order so that the order tells nothing about the strata.
5. **Sample file** (:func:`write_samples`): a GeoPackage (layer ``accuracy_samples``
   with the strata and the design in two tables beside it) or a CSV
   (``id,x,y,stratum,label,...`` plus ``<name>.design.json``). Labels are written into
   it one by one (:func:`set_label`, one short transaction, or an atomic rewrite for a
   CSV): nothing is lost if QGIS stops.
6. **Estimation** (:func:`assess` / :func:`estimate`): error matrix in proportions of
   area, overall, user's and producer's accuracies, area of each class (the
   error-adjusted area of the moving class), each with its standard error and a
   confidence interval (Olofsson eqs. 1-11; Wald intervals ``estimate +- z * SE``).

The label vocabulary is ``moving``, ``not_moving`` and ``unsure``. ``unsure`` samples
and unlabelled samples are left out of the estimates, counted and reported (leaving out
the difficult points can bias the estimates: label them when you can).

Nothing here imports QGIS or Qt.
"""

import csv
import dataclasses
import datetime as _dt
import io
import json
import math
import os
import sqlite3

import numpy as np

from ..errors import InputError, OutputError, ParameterError
from ..products import BAND_V, DETECTIONS_GPKG, TS_EAST_TIF, VELOCITY_TIF

#: the map classes, which are also the strata (row order of the error matrix)
CLASSES = ("moving", "not_moving")
#: the labels an analyst may give (``unsure`` is kept out of the estimates)
VOCABULARY = ("moving", "not_moving", "unsure")
UNSURE = "unsure"
SAMPLES_LAYER = "accuracy_samples"
STRATA_TABLE = "accuracy_strata"
DESIGN_TABLE = "accuracy_design"
#: columns of the CSV sample file (the GeoPackage has the same fields and a geometry)
CSV_FIELDS = ("id", "x", "y", "stratum", "label", "labelled_by", "labelled_at", "comment",
              "row", "col")
FORMAT_VERSION = 1
#: defaults of the sampling design (also those of the Processing algorithm)
DEFAULT_TARGET_SE = 0.02
DEFAULT_UA = {"moving": 0.7, "not_moving": 0.95}
DEFAULT_MIN_PER_STRATUM = 50
ALLOCATIONS = ("proportional", "equal")


# ============================================================================ strata
@dataclasses.dataclass
class StrataMap:
    """The detection map as strata on its grid.

    ``strata``: int8 (H, W), index into :data:`CLASSES` (0 = moving, 1 = not_moving),
    -1 outside the assessed population (no data). ``transform``: affine.Affine of the
    grid; ``crs``: WKT (or None); ``source``: a sentence saying where the map came from.
    """

    strata: np.ndarray
    transform: object
    crs: object = None
    source: str = ""
    names: tuple = CLASSES
    _index: dict = dataclasses.field(default_factory=dict, repr=False)

    @property
    def pixel_area_m2(self):
        t = self.transform
        return abs(t.a * t.e - t.b * t.d)

    @property
    def counts(self):
        return np.array([int((self.strata == k).sum()) for k in range(len(self.names))])

    @property
    def areas_m2(self):
        return self.counts * self.pixel_area_m2

    @property
    def weights(self):
        c = self.counts.astype(float)
        return c / c.sum()

    @property
    def outside_pixels(self):
        return int((self.strata < 0).sum())

    def pixels_of(self, k):
        """Flat indices of the pixels of stratum ``k`` (cached)."""
        if k not in self._index:
            self._index[k] = np.flatnonzero(self.strata.ravel() == k)
        return self._index[k]

    def table(self):
        """One dict per stratum: stratum, n_pixels, pixel_area_m2, area_m2, weight."""
        c, a, w = self.counts, self.areas_m2, self.weights
        return [dict(stratum=n, n_pixels=int(c[k]), pixel_area_m2=float(self.pixel_area_m2),
                     area_m2=float(a[k]), weight=float(w[k]))
                for k, n in enumerate(self.names)]


def _check_strata(strata, what):
    counts = [int((strata == k).sum()) for k in range(len(CLASSES))]
    if counts[0] == 0:
        raise InputError("%s has no detected pixel: there is no 'moving' stratum to sample. "
                         "An accuracy assessment needs a detection map with at least one "
                         "detection (run the detection, or check that its polygons overlap "
                         "the grid)." % what)
    if counts[1] == 0:
        raise InputError("%s has no valid pixel outside the detections: there is no "
                         "'not_moving' stratum to sample." % what)


def _crs_wkt(crs):
    if crs is None:
        return None
    try:
        return crs.to_wkt()
    except AttributeError:
        return str(crs)


def strata_from_raster(path, band=None):
    """Strata from a detection raster.

    A SlideWatch evidence raster (a band described ``label``: detection number, 0 = none)
    is read as such: detected = ``label > 0``, valid = finite ``significance`` (or
    ``label``). Any other raster: band ``band`` (default 1), detected = non-zero, outside
    = nodata or NaN.
    """
    import rasterio

    if not os.path.isfile(path):
        raise InputError("Detection raster '%s' does not exist." % path)
    try:
        src = rasterio.open(path)
    except Exception as exc:  # rasterio.errors.RasterioIOError and friends
        raise InputError("Cannot read '%s' as a raster: %s" % (path, exc)) from exc
    with src:
        desc = list(src.descriptions)
        if band is None and "label" in desc:
            lab = src.read(desc.index("label") + 1).astype(float)
            valid = np.isfinite(lab)
            if "significance" in desc:
                valid &= np.isfinite(src.read(desc.index("significance") + 1))
            detected = valid & (lab > 0)
            what = "label band of the evidence raster"
        else:
            b = int(band or 1)
            if not 1 <= b <= src.count:
                raise ParameterError("Band %d does not exist in '%s' (%d band(s))."
                                     % (b, path, src.count))
            arr = src.read(b, masked=True)
            data = np.asarray(arr.filled(np.nan) if arr.dtype.kind == "f"
                              else arr.astype(float).filled(np.nan))
            valid = np.isfinite(data)
            detected = valid & (data != 0)
            what = "band %d (non-zero = detected)" % b
        strata = np.full(valid.shape, -1, np.int8)
        strata[valid] = 1
        strata[detected] = 0
        sm = StrataMap(strata, src.transform, _crs_wkt(src.crs),
                       "detection raster %s, %s" % (os.path.abspath(path), what))
    _check_strata(sm.strata, "The detection raster '%s'" % path)
    return sm


def _grid_of_folder(folder):
    """(path, valid mask, transform, crs) of the grid of a SlideWatch output folder."""
    import rasterio

    ts = os.path.join(folder, "timeseries")
    if not os.path.isdir(ts) and os.path.basename(os.path.normpath(folder)) == "timeseries":
        ts = folder
    vel = os.path.join(ts, VELOCITY_TIF)
    east = os.path.join(ts, TS_EAST_TIF)
    if os.path.isfile(vel):
        with rasterio.open(vel) as src:
            desc = list(src.descriptions)
            b = desc.index(BAND_V) + 1 if BAND_V in desc else 1
            valid = np.isfinite(src.read(b))
            return vel, valid, src.transform, src.crs
    if os.path.isfile(east):
        with rasterio.open(east) as src:
            valid = np.isfinite(src.read()).any(axis=0)
            return east, valid, src.transform, src.crs
    raise InputError("'%s' is not a SlideWatch output folder: no timeseries/velocity.tif or "
                     "timeseries/ts_east_m.tif (the detection map's grid). Give the folder "
                     "that holds detections.gpkg and timeseries/, or a detection raster."
                     % folder)


def _polygon_geojsons(path, layer, exclude_statuses, grid_crs):
    """GeoJSON geometries of the detection polygons (in the grid's CRS when both known)."""
    from osgeo import ogr, osr

    from ..detect.detections_store import _gdal_exceptions

    if not os.path.isfile(path):
        raise InputError("Detections file '%s' does not exist. Run the detection first, or "
                         "give a detection raster." % path)
    with _gdal_exceptions():
        try:
            ds = ogr.Open(path, 0)
        except RuntimeError as exc:
            raise InputError("Cannot open '%s' as a vector file: %s" % (path, exc)) from exc
        lyr = ds.GetLayerByName(layer) if layer else ds.GetLayer(0)
        if lyr is None:
            raise InputError("'%s' has no layer '%s'." % (path, layer))
        transform = None
        srs = lyr.GetSpatialRef()
        if srs is not None and grid_crs is not None:
            target = osr.SpatialReference()
            target.ImportFromWkt(grid_crs)
            if not srs.IsSame(target):
                for s in (srs, target):
                    s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
                transform = osr.CoordinateTransformation(srs, target)
        defn = lyr.GetLayerDefn()
        has_status = defn.GetFieldIndex("status") >= 0
        shapes, skipped = [], 0
        for f in lyr:
            if has_status and exclude_statuses and f.GetField("status") in exclude_statuses:
                skipped += 1
                continue
            g = f.GetGeometryRef()
            if g is None or g.IsEmpty():
                continue
            g = g.Clone()
            if transform is not None:
                g.Transform(transform)
            shapes.append(json.loads(g.ExportToJson()))
        ds = None
    return shapes, skipped


def strata_from_polygons(polygons_path, grid_path=None, layer="detections",
                         exclude_statuses=(), valid=None, transform=None, crs=None):
    """Strata from detection polygons rasterised onto a grid (pixel centre inside =
    detected; SlideWatch's polygons are unions of pixels of that grid, so this is
    exact). The grid is ``grid_path`` (valid = finite band 1) or ``valid``/``transform``/
    ``crs`` given directly. ``exclude_statuses``: validation statuses left out of the map
    (e.g. ``("rejected",)`` to assess the map after validation)."""
    import rasterio
    from rasterio import features

    if valid is None:
        with rasterio.open(grid_path) as src:
            valid = np.isfinite(src.read(1).astype(float))
            transform, crs = src.transform, src.crs
    wkt = _crs_wkt(crs)
    shapes, skipped = _polygon_geojsons(polygons_path, layer, tuple(exclude_statuses), wkt)
    detected = np.zeros(valid.shape, bool)
    if shapes:
        detected = features.rasterize([(s, 1) for s in shapes], out_shape=valid.shape,
                                      transform=transform, fill=0, dtype="uint8") > 0
    strata = np.full(valid.shape, -1, np.int8)
    strata[valid] = 1
    strata[valid & detected] = 0
    note = "%d polygon(s) of %s" % (len(shapes), os.path.abspath(polygons_path))
    if skipped:
        note += " (%d with status %s left out)" % (skipped, "/".join(exclude_statuses))
    sm = StrataMap(strata, transform, wkt, note)
    _check_strata(sm.strata, "The detection map (%s)" % note)
    return sm


def load_strata(path, detections=None, exclude_rejected=False, band=None):
    """Strata of a detection map: a SlideWatch output folder (``detections.gpkg`` on the
    grid of ``timeseries/velocity.tif``; ``detections`` overrides the polygon file) or a
    detection raster (see :func:`strata_from_raster`)."""
    if not path:
        raise ParameterError("Give a SlideWatch output folder (with detections.gpkg and "
                             "timeseries/) or a detection raster.")
    excl = ("rejected",) if exclude_rejected else ()
    if os.path.isdir(path):
        grid, valid, transform, crs = _grid_of_folder(path)
        if detections is None:
            root = path
            if os.path.basename(os.path.normpath(path)) == "timeseries" and not \
                    os.path.isfile(os.path.join(path, DETECTIONS_GPKG)):
                root = os.path.dirname(os.path.normpath(path))
            detections = os.path.join(root, DETECTIONS_GPKG)
        sm = strata_from_polygons(detections, valid=valid, transform=transform, crs=crs,
                                  exclude_statuses=excl)
        sm.source += " on the grid of %s" % grid
        return sm
    if detections:
        return strata_from_polygons(detections, grid_path=path, exclude_statuses=excl)
    return strata_from_raster(path, band=band)


# ======================================================================= sample design
def _check_ua(anticipated_ua, names=CLASSES):
    if isinstance(anticipated_ua, dict):
        missing = [n for n in names if n not in anticipated_ua]
        if missing:
            raise ParameterError("Anticipated user's accuracy missing for stratum %s."
                                 % ", ".join(missing))
        u = np.array([float(anticipated_ua[n]) for n in names])
    else:
        u = np.atleast_1d(np.asarray(anticipated_ua, float))
    if u.size != len(names):
        raise ParameterError("Give one anticipated user's accuracy per stratum (%s); got %d."
                             % (", ".join(names), u.size))
    if not np.all((u > 0) & (u < 1)):
        raise ParameterError("Anticipated user's accuracies must be between 0 and 1 "
                             "(exclusive); got %s." % ", ".join("%g" % x for x in u))
    return u


def sample_size(weights, anticipated_ua, target_se, n_units=None):
    """Total sample size for a target standard error of the overall accuracy.

    Olofsson et al. (2014) eq. 13 (Cochran 1977, eq. 5.25):
    ``n = (sum W_i S_i)^2 / (S(O)^2 + sum W_i S_i^2 / N)`` with ``S_i = sqrt(U_i (1 - U_i))``
    the standard deviation of stratum i for the anticipated user's accuracy ``U_i``,
    ``W_i`` the area share of stratum i and ``N`` the number of units (the second term
    is dropped when ``n_units`` is None, as it is negligible for maps of pixels).
    """
    w = np.asarray(weights, float)
    if w.ndim != 1 or w.size < 1 or np.any(w < 0) or not w.sum() > 0:
        raise ParameterError("Stratum weights must be non-negative with a positive sum.")
    w = w / w.sum()
    if isinstance(anticipated_ua, dict):
        u = _check_ua(anticipated_ua)
    else:
        u = _check_ua(anticipated_ua, tuple(str(i + 1) for i in range(w.size)))
    if u.size != w.size:
        raise ParameterError("Give one anticipated user's accuracy per stratum (%d); got %d."
                             % (w.size, u.size))
    se = float(target_se)
    if not 0 < se < 0.5:
        raise ParameterError("The target standard error of the overall accuracy must be "
                             "between 0 and 0.5 (e.g. 0.01-0.02); got %g." % se)
    s = np.sqrt(u * (1 - u))
    den = se ** 2 + ((w * s ** 2).sum() / n_units if n_units else 0.0)
    return int(math.ceil((w * s).sum() ** 2 / den - 1e-9))


def allocate(n_total, weights, method="proportional", min_per_stratum=DEFAULT_MIN_PER_STRATUM):
    """Sample size per stratum.

    ``proportional``: proportional to the stratum areas, but at least ``min_per_stratum``
    in each stratum (strata below the minimum get it, the rest of ``n_total`` is shared
    proportionally among the others, Olofsson et al. 2014 section 5.1.2). ``equal``: the
    same number in every stratum (at least the minimum). The total is
    ``max(n_total, k * min_per_stratum)``.
    """
    w = np.asarray(weights, float)
    k = w.size
    if method not in ALLOCATIONS:
        raise ParameterError("Allocation must be one of %s; got '%s'."
                             % (", ".join(ALLOCATIONS), method))
    n_total, m = int(n_total), int(min_per_stratum)
    if m < 2:
        raise ParameterError("The minimum per stratum must be at least 2 (a stratum's "
                             "variance needs two labelled points); got %d." % m)
    if n_total < 1:
        raise ParameterError("The sample size must be positive; got %d." % n_total)
    total = max(n_total, k * m)
    if method == "equal":
        out = np.full(k, total // k)
        out[: total - out.sum()] += 1
        return [int(x) for x in out]
    fixed = np.zeros(k, bool)
    share = np.zeros(k)
    for _ in range(k + 1):
        rest = total - m * fixed.sum()
        free_w = w[~fixed].sum()
        share = np.where(fixed, float(m), rest * w / free_w if free_w > 0 else 0.0)
        low = (~fixed) & (share < m)
        if not low.any():
            break
        fixed |= low
    base = np.floor(share).astype(int)
    order = np.argsort(-(share - base), kind="stable")
    base[order[: total - base.sum()]] += 1
    return [int(x) for x in base]


@dataclasses.dataclass
class SampleDesign:
    """Everything the estimation and a reader of the sample file need to know."""

    strata: list                      # StrataMap.table() rows + n_samples, anticipated_ua
    target_se: float = None
    anticipated_ua: dict = None
    allocation: str = "proportional"
    min_per_stratum: int = DEFAULT_MIN_PER_STRATUM
    n_required: int = None            # eq. 13
    n_total: int = None
    seed: int = None
    source: str = ""
    crs_wkt: str = None
    transform: list = None            # affine coefficients a, b, c, d, e, f
    outside_pixels: int = 0
    created_at: str = ""
    vocabulary: tuple = VOCABULARY
    version: int = FORMAT_VERSION

    def as_dict(self):
        d = dataclasses.asdict(self)
        d["vocabulary"] = list(self.vocabulary)
        return d

    @classmethod
    def from_dict(cls, d):
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def design_sample(strata_map, target_se=DEFAULT_TARGET_SE, anticipated_ua=None,
                  allocation="proportional", min_per_stratum=DEFAULT_MIN_PER_STRATUM,
                  n_total=None, seed=0):
    """The sampling design of a strata map: eq. 13 sample size (or ``n_total`` when
    given), allocation per stratum. Returns a :class:`SampleDesign`."""
    ua = dict(DEFAULT_UA if anticipated_ua is None else anticipated_ua)
    u = _check_ua(ua)
    ua = {n: float(x) for n, x in zip(CLASSES, u)}
    n_req = sample_size(strata_map.weights, ua, target_se)
    n = int(n_total) if n_total else n_req
    alloc = allocate(n, strata_map.weights, allocation, min_per_stratum)
    rows = strata_map.table()
    for r, a in zip(rows, alloc):
        r["n_samples"] = a
        r["anticipated_ua"] = ua[r["stratum"]]
    t = strata_map.transform
    return SampleDesign(
        strata=rows, target_se=float(target_se), anticipated_ua=ua, allocation=allocation,
        min_per_stratum=int(min_per_stratum), n_required=n_req, n_total=int(sum(alloc)),
        seed=None if seed is None else int(seed), source=strata_map.source,
        crs_wkt=strata_map.crs, transform=[t.a, t.b, t.c, t.d, t.e, t.f],
        outside_pixels=strata_map.outside_pixels,
        created_at=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))


def draw_sample(strata_map, allocation, seed=0):
    """Stratified random points: ``allocation[k]`` points uniformly over stratum k.

    Each point: a pixel of the stratum drawn with equal probability (with replacement),
    then a uniform position inside it, so the points are uniform over the stratum's area
    and each is an independent draw. The points are shuffled and numbered 1..n in that
    order (the labelling order gives no hint of the strata). Returns a list of dicts
    ``id, x, y, stratum, row, col, label=None``. Reproducible: the same map, allocation
    and seed give the same points (numpy's PCG64 ``default_rng(seed)``).
    """
    rng = np.random.default_rng(seed)
    t = strata_map.transform
    w = strata_map.strata.shape[1]
    pts = []
    for k, name in enumerate(strata_map.names):
        n = int(allocation[k])
        if n <= 0:
            continue
        idx = strata_map.pixels_of(k)
        if idx.size == 0:
            raise InputError("Stratum '%s' has no pixel to sample." % name)
        pick = idx[rng.integers(0, idx.size, n)]
        rows, cols = np.divmod(pick, w)
        du, dv = rng.random(n), rng.random(n)
        xs = t.a * (cols + du) + t.b * (rows + dv) + t.c
        ys = t.d * (cols + du) + t.e * (rows + dv) + t.f
        for i in range(n):
            pts.append(dict(x=float(xs[i]), y=float(ys[i]), stratum=name, row=int(rows[i]),
                            col=int(cols[i]), label=None, labelled_by=None, labelled_at=None,
                            comment=None))
    order = rng.permutation(len(pts))
    out = []
    for i, j in enumerate(order, start=1):
        p = dict(pts[j])
        p["id"] = i
        out.append(p)
    return out


def create_sample(path, map_path, detections=None, exclude_rejected=False,
                  target_se=DEFAULT_TARGET_SE, anticipated_ua=None, allocation="proportional",
                  min_per_stratum=DEFAULT_MIN_PER_STRATUM, n_total=None, seed=0,
                  progress=None):
    """Strata, design, points and the sample file in one call. Returns
    ``(path, design, samples)``."""
    from ..progress import as_progress

    progress = as_progress(progress)
    progress.update(0.05, "Reading the detection map")
    sm = load_strata(map_path, detections=detections, exclude_rejected=exclude_rejected)
    progress.check()
    design = design_sample(sm, target_se, anticipated_ua, allocation, min_per_stratum,
                           n_total, seed)
    progress.info("Strata: %s; %d pixel(s) without data left out."
                  % ("; ".join("%s %d px = %.0f m2 (%.1f %%)" % (r["stratum"], r["n_pixels"],
                                                                 r["area_m2"], 100 * r["weight"])
                               for r in design.strata), design.outside_pixels))
    progress.info("Sample size for a standard error of %.3f of the overall accuracy with "
                  "anticipated user's accuracies %s (Olofsson et al. 2014 eq. 13): %d; "
                  "allocation (%s, minimum %d per stratum): %s"
                  % (design.target_se, ", ".join("%s %.2f" % kv for kv in
                                                 design.anticipated_ua.items()),
                     design.n_required, design.allocation, design.min_per_stratum,
                     ", ".join("%s %d" % (r["stratum"], r["n_samples"]) for r in design.strata)))
    progress.update(0.5, "Drawing %d points (seed %s)" % (design.n_total, seed))
    samples = draw_sample(sm, [r["n_samples"] for r in design.strata], seed)
    progress.check()
    write_samples(path, samples, design)
    progress.update(1.0, "Sample written: %s" % path)
    return path, design, samples


# ========================================================================= sample file
def _fmt_of(path):
    ext = os.path.splitext(str(path))[1].lower()
    if ext == ".gpkg":
        return "gpkg"
    if ext == ".csv":
        return "csv"
    raise ParameterError("Sample file '%s': use a .gpkg (GeoPackage) or .csv file name."
                         % path)


def design_path_of_csv(path):
    return os.path.splitext(path)[0] + ".design.json"


def write_samples(path, samples, design):
    """Write a new sample file (atomically: a complete file under a temporary name,
    renamed over ``path``). ``.gpkg``: point layer ``accuracy_samples`` + tables
    ``accuracy_strata`` and ``accuracy_design``; ``.csv``: :data:`CSV_FIELDS` + the
    design in ``<name>.design.json``."""
    from ..raster_io import write_text_atomic

    fmt = _fmt_of(path)
    if fmt == "csv":
        write_text_atomic(design_path_of_csv(path), json.dumps(design.as_dict(), indent=1))
        write_text_atomic(path, _csv_text(samples))
        return path
    from ..raster_io import ensure_writable_folder, temporary_name

    final = os.path.abspath(path)
    ensure_writable_folder(os.path.dirname(final))
    tmp = temporary_name(final) + ".gpkg"  # GDAL wants the .gpkg extension
    try:
        _write_gpkg(tmp, samples, design)
        os.replace(tmp, final)
    except OSError as exc:
        raise OutputError("Cannot write the sample file '%s': %s" % (path, exc)) from exc
    except RuntimeError as exc:  # GDAL
        raise OutputError("Cannot write the sample file '%s': %s" % (path, exc)) from exc
    finally:
        for p in (tmp, tmp + "-journal"):
            if os.path.exists(p):
                try:
                    os.remove(p)
                except OSError:
                    pass
    return path


def _csv_text(samples):
    buf = io.StringIO()
    wr = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    wr.writeheader()
    for s in samples:
        row = {k: ("" if s.get(k) is None else s.get(k)) for k in CSV_FIELDS}
        row["x"] = repr(float(s["x"]))
        row["y"] = repr(float(s["y"]))
        wr.writerow(row)
    return buf.getvalue()


def _write_gpkg(path, samples, design):
    from osgeo import ogr, osr

    from ..detect.detections_store import _gdal_exceptions

    with _gdal_exceptions():
        drv = ogr.GetDriverByName("GPKG")
        ds = drv.CreateDataSource(path)
        srs = None
        if design.crs_wkt:
            srs = osr.SpatialReference()
            srs.ImportFromWkt(design.crs_wkt)
        lyr = ds.CreateLayer(SAMPLES_LAYER, srs, ogr.wkbPoint,
                             options=["FID=fid", "GEOMETRY_NAME=geom", "SPATIAL_INDEX=YES"])
        types = {"id": ogr.OFTInteger, "row": ogr.OFTInteger, "col": ogr.OFTInteger,
                 "x": ogr.OFTReal, "y": ogr.OFTReal}
        order = ("id", "stratum", "label", "labelled_by", "labelled_at", "comment", "x", "y",
                 "row", "col")
        for name in order:
            lyr.CreateField(ogr.FieldDefn(name, types.get(name, ogr.OFTString)))
        defn = lyr.GetLayerDefn()
        lyr.StartTransaction()
        for s in samples:
            f = ogr.Feature(defn)
            f.SetFID(int(s["id"]))
            for name in order:
                v = s.get(name)
                if v is None or v == "":
                    f.SetFieldNull(name)
                else:
                    f.SetField(name, v)
            g = ogr.Geometry(ogr.wkbPoint)
            g.AddPoint_2D(float(s["x"]), float(s["y"]))
            f.SetGeometry(g)
            lyr.CreateFeature(f)
        lyr.CommitTransaction()
        st = ds.CreateLayer(STRATA_TABLE, None, ogr.wkbNone, options=["FID=fid"])
        cols = [("stratum", ogr.OFTString), ("n_pixels", ogr.OFTInteger64),
                ("pixel_area_m2", ogr.OFTReal), ("area_m2", ogr.OFTReal),
                ("weight", ogr.OFTReal), ("n_samples", ogr.OFTInteger),
                ("anticipated_ua", ogr.OFTReal)]
        for name, t in cols:
            st.CreateField(ogr.FieldDefn(name, t))
        for r in design.strata:
            f = ogr.Feature(st.GetLayerDefn())
            for name, _t in cols:
                if r.get(name) is None:
                    f.SetFieldNull(name)
                else:
                    f.SetField(name, r[name])
            st.CreateFeature(f)
        dt = ds.CreateLayer(DESIGN_TABLE, None, ogr.wkbNone, options=["FID=fid"])
        dt.CreateField(ogr.FieldDefn("key", ogr.OFTString))
        dt.CreateField(ogr.FieldDefn("value", ogr.OFTString))
        for k, v in design.as_dict().items():
            if k == "strata":
                continue
            f = ogr.Feature(dt.GetLayerDefn())
            f.SetField("key", k)
            f.SetField("value", json.dumps(v))
            dt.CreateFeature(f)
        ds = None
    # rollback journal (no -wal side file), as detections.gpkg
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()


@dataclasses.dataclass
class SampleSet:
    path: str
    fmt: str
    samples: list
    design: SampleDesign

    def counts(self):
        """n, labelled (moving/not_moving), unsure, unlabelled."""
        lab = [s.get("label") for s in self.samples]
        return dict(total=len(lab), labelled=sum(1 for v in lab if v in CLASSES),
                    unsure=sum(1 for v in lab if v == UNSURE),
                    unlabelled=sum(1 for v in lab if not v))


def normalise_label(value):
    """A label as stored: one of :data:`VOCABULARY`, or None (unlabelled).

    Case, spaces and hyphens are forgiven (``Not moving`` -> ``not_moving``); anything
    else raises ParameterError."""
    if value is None:
        return None
    text = str(value).strip().lower().replace("-", "_").replace(" ", "_")
    if text == "":
        return None
    if text not in VOCABULARY:
        raise ParameterError("Label '%s' is not in the vocabulary (%s)."
                             % (value, ", ".join(VOCABULARY)))
    return text


def read_samples(path, check_labels=True):
    """Read a sample file (GeoPackage or CSV). Labels are normalised; with
    ``check_labels`` a label outside the vocabulary raises InputError naming the
    samples."""
    if not os.path.isfile(path):
        raise InputError("Sample file '%s' does not exist. Create it with 'Accuracy "
                         "assessment: sample points' first." % path)
    fmt = _fmt_of(path)
    if fmt == "csv":
        samples, design = _read_csv(path)
    else:
        samples, design = _read_gpkg(path)
    bad = []
    for s in samples:
        try:
            s["label"] = normalise_label(s.get("label"))
        except ParameterError:
            bad.append(s)
    if bad and check_labels:
        raise InputError("%d sample(s) of '%s' have a label outside the vocabulary (%s): %s. "
                         "Correct them (or clear them to leave them unlabelled)."
                         % (len(bad), path, ", ".join(VOCABULARY),
                            ", ".join("id %s: '%s'" % (s["id"], s["label"]) for s in bad[:10])
                            + (" ..." if len(bad) > 10 else "")))
    names = [r["stratum"] for r in design.strata]
    odd = [s for s in samples if s.get("stratum") not in names]
    if odd:
        raise InputError("%d sample(s) of '%s' are in no stratum of the design (%s): ids %s."
                         % (len(odd), path, ", ".join(names),
                            ", ".join(str(s["id"]) for s in odd[:10])))
    return SampleSet(os.path.abspath(path), fmt, samples, design)


def _read_csv(path):
    dpath = design_path_of_csv(path)
    if not os.path.isfile(dpath):
        raise InputError("The design file '%s' of the sample '%s' is missing: it holds the "
                         "stratum areas the estimates need. Keep it beside the CSV."
                         % (dpath, path))
    with open(dpath, encoding="utf-8") as fh:
        design = SampleDesign.from_dict(json.load(fh))
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if rows and not {"id", "x", "y", "stratum", "label"} <= set(rows[0]):
        raise InputError("'%s' is not a SlideWatch sample file: it needs the columns id, x, "
                         "y, stratum, label." % path)
    out = []
    for r in rows:
        s = {k: (v if v != "" else None) for k, v in r.items()}
        try:
            s["id"] = int(s["id"])
            s["x"], s["y"] = float(s["x"]), float(s["y"])
            for k in ("row", "col"):
                s[k] = int(s[k]) if s.get(k) is not None else None
        except (TypeError, ValueError) as exc:
            raise InputError("'%s': a row has a bad id or coordinate (%s)." % (path, r)) from exc
        out.append(s)
    return out, design


def _read_gpkg(path):
    conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=30.0)
    try:
        try:
            cur = conn.execute('SELECT id, x, y, stratum, label, labelled_by, labelled_at, '
                               'comment, "row", col FROM "%s" ORDER BY id' % SAMPLES_LAYER)
            rows = cur.fetchall()
            cur = conn.execute('SELECT stratum, n_pixels, pixel_area_m2, area_m2, weight, '
                               'n_samples, anticipated_ua FROM "%s" ORDER BY fid' % STRATA_TABLE)
            names = [c[0] for c in cur.description]
            strata = [dict(zip(names, r)) for r in cur.fetchall()]
            meta = dict(conn.execute('SELECT key, value FROM "%s"' % DESIGN_TABLE).fetchall())
        except sqlite3.DatabaseError as exc:
            raise InputError("'%s' is not a SlideWatch sample file (layer %s with tables %s and "
                             "%s): %s" % (path, SAMPLES_LAYER, STRATA_TABLE, DESIGN_TABLE,
                                          exc)) from exc
    finally:
        conn.close()
    d = {k: json.loads(v) for k, v in meta.items()}
    d["strata"] = strata
    fields = CSV_FIELDS
    samples = [dict(zip(fields, r)) for r in rows]
    return samples, SampleDesign.from_dict(d)


def set_label(path, sample_id, label, analyst=None, comment=None, timestamp=None):
    """Store one label in the sample file at once (see :func:`set_labels`)."""
    return set_labels(path, {sample_id: label}, analyst=analyst, comment=comment,
                      timestamp=timestamp)


def set_labels(path, labels, analyst=None, comment=None, timestamp=None, timeout=30.0):
    """Store labels ``{id: label}`` (label None or "" clears it) in one transaction.

    GeoPackage: one ``BEGIN IMMEDIATE ... COMMIT`` with the sqlite3 module (other
    writers wait; QGIS keeps reading). CSV: the whole file is rewritten under a
    temporary name and renamed. Either way the file on disk is complete after each
    call. Returns the stored timestamp (UTC ISO 8601)."""
    from ..detect.detections_store import _connect, _touch_contents, gpkg_timestamp

    if not os.path.isfile(path):
        raise InputError("Sample file '%s' does not exist." % path)
    clean = {int(k): normalise_label(v) for k, v in labels.items()}
    ts = gpkg_timestamp(timestamp)
    fmt = _fmt_of(path)
    if fmt == "csv":
        from ..raster_io import write_text_atomic

        samples, _design = _read_csv(path)
        by_id = {s["id"]: s for s in samples}
        missing = [i for i in clean if i not in by_id]
        if missing:
            raise InputError("No sample with id %s in '%s'." % (missing[0], path))
        for i, lab in clean.items():
            s = by_id[i]
            s["label"] = lab
            s["labelled_by"] = analyst if lab else None
            s["labelled_at"] = ts if lab else None
            s["comment"] = comment if lab else None
        write_text_atomic(path, _csv_text(samples))
        return ts
    conn = _connect(path, timeout)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for i, lab in clean.items():
            cur = conn.execute('UPDATE "%s" SET label = ?, labelled_by = ?, labelled_at = ?, '
                               'comment = ? WHERE id = ?' % SAMPLES_LAYER,
                               (lab, analyst if lab else None, ts if lab else None,
                                comment if lab else None, i))
            if cur.rowcount != 1:
                conn.execute("ROLLBACK")
                raise InputError("No sample with id %s in '%s'." % (i, path))
        _touch_contents(conn, SAMPLES_LAYER)
        conn.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise OutputError("'%s' stayed locked by another writer for %.0f s; the label was "
                              "NOT saved, try again." % (path, timeout)) from exc
        raise OutputError("Could not save the label in '%s': %s" % (path, exc)) from exc
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()
    return ts


def label_from_mask(path, mask, transform, analyst="reference mask"):
    """Label every sample from a reference raster (``mask`` True = moving, on the grid of
    ``transform``): for simulations and for tests against a known truth."""
    ss = read_samples(path, check_labels=False)
    inv = ~transform
    h, w = mask.shape
    labels = {}
    for s in ss.samples:
        c, r = inv * (s["x"], s["y"])
        r, c = int(math.floor(r)), int(math.floor(c))
        if not (0 <= r < h and 0 <= c < w):
            raise InputError("Sample %s lies outside the reference mask." % s["id"])
        labels[s["id"]] = "moving" if mask[r, c] else "not_moving"
    set_labels(path, labels, analyst=analyst)
    return labels


# ========================================================================== estimators
def _z_of(confidence):
    from scipy.stats import norm

    c = float(confidence)
    if not 0.5 <= c < 1:
        raise ParameterError("The confidence level must be between 0.5 and 1 (e.g. 0.95); "
                             "got %g." % c)
    return float(norm.ppf(0.5 + c / 2.0))


@dataclasses.dataclass
class Estimate:
    value: float
    se: float
    low: float
    high: float

    def as_dict(self):
        return dict(estimate=self.value, se=self.se, ci_low=self.low, ci_high=self.high)


def _est(value, se, z, lo=0.0, hi=1.0):
    if not np.isfinite(value):
        return Estimate(float("nan"), float("nan"), float("nan"), float("nan"))
    return Estimate(float(value), float(se), float(max(value - z * se, lo)),
                    float(min(value + z * se, hi)))


@dataclasses.dataclass
class Estimates:
    """Results of :func:`estimate` (indices follow ``classes``)."""

    classes: tuple
    counts: np.ndarray            # n_ij: rows = strata/map classes, columns = reference
    stratum_sizes: np.ndarray     # N_i (area or pixel count)
    proportions: np.ndarray       # p_ij, eq. 4
    overall: Estimate
    users: list
    producers: list
    area_proportion: list
    area: list                    # in the units of stratum_sizes x unit_area
    mapped_area: list
    confidence: float
    z: float

    def as_dict(self):
        c = self.classes
        return dict(
            classes=list(c), confidence=self.confidence, z=self.z,
            counts={c[i]: {c[j]: int(self.counts[i, j]) for j in range(len(c))}
                    for i in range(len(c))},
            error_matrix_proportions={c[i]: {c[j]: float(self.proportions[i, j])
                                             for j in range(len(c))} for i in range(len(c))},
            stratum_sizes={c[i]: float(self.stratum_sizes[i]) for i in range(len(c))},
            overall_accuracy=self.overall.as_dict(),
            users_accuracy={c[k]: self.users[k].as_dict() for k in range(len(c))},
            producers_accuracy={c[k]: self.producers[k].as_dict() for k in range(len(c))},
            area_proportion={c[k]: self.area_proportion[k].as_dict() for k in range(len(c))},
            area={c[k]: self.area[k].as_dict() for k in range(len(c))},
            mapped_area={c[k]: float(self.mapped_area[k]) for k in range(len(c))})


def estimate(counts, stratum_sizes, classes=None, confidence=0.95, unit_area=1.0):
    """Olofsson et al. (2014) estimators for stratified random sampling where the strata
    are the map classes.

    Parameters
    ----------
    counts : (q, q) sample counts ``n_ij``: rows = map class (stratum) i, columns =
        reference class j.
    stratum_sizes : (q,) ``N_i``: mapped size of each class (pixels or area).
    unit_area : area of one unit of ``stratum_sizes`` (e.g. the pixel area); areas are
        returned in those units x ``unit_area``.

    Estimators (W_i = N_i / N, n_i. = sum_j n_ij, A = total area):
    p_ij = W_i n_ij / n_i. (eq. 4); O = sum_j p_jj, U_i = p_ii / p_i., P_j = p_jj / p_.j
    (eqs. 1-3); V(O) = sum_i W_i^2 U_i (1 - U_i) / (n_i. - 1) (eq. 5);
    V(U_i) = U_i (1 - U_i) / (n_i. - 1) (eq. 6); V(P_j) (eq. 7, with
    N_.j = sum_i N_i n_ij / n_i.); p_.k = sum_i p_ik (eq. 8), A_k = A p_.k (eq. 9),
    S(p_.k) = sqrt(sum_i (W_i p_ik - p_ik^2) / (n_i. - 1)) (eq. 10), S(A_k) = A S(p_.k)
    (eq. 11). Intervals: estimate +- z SE (z = 1.96 for 95 %), clipped to [0, 1] for
    accuracies and proportions and at 0 for areas (the SE is unclipped).
    """
    n = np.asarray(counts, float)
    q = n.shape[0]
    if n.ndim != 2 or n.shape[1] != q:
        raise ParameterError("counts must be a square matrix (map classes x reference "
                             "classes); got shape %s." % (n.shape,))
    if np.any(n < 0):
        raise ParameterError("counts must be non-negative.")
    classes = tuple(classes) if classes is not None else tuple(str(i) for i in range(q))
    Ni = np.asarray(stratum_sizes, float)
    if Ni.shape != (q,) or np.any(Ni < 0) or not Ni.sum() > 0:
        raise ParameterError("stratum_sizes must hold %d non-negative sizes with a positive "
                             "sum." % q)
    ni = n.sum(axis=1)
    few = [classes[i] for i in range(q) if Ni[i] > 0 and ni[i] < 2]
    if few:
        raise InputError("Stratum/strata %s have fewer than 2 labelled samples: a stratum's "
                         "variance needs at least 2. Label more points there."
                         % ", ".join(few))
    z = _z_of(confidence)
    W = Ni / Ni.sum()
    A = Ni.sum() * unit_area
    ni_safe = np.where(ni > 0, ni, 1.0)
    p = W[:, None] * n / ni_safe[:, None]                       # eq. 4
    pi_, pj = p.sum(axis=1), p.sum(axis=0)
    d = np.diag(p)
    O = d.sum()                                                  # eq. 1
    U = np.where(pi_ > 0, d / np.where(pi_ > 0, pi_, 1), np.nan)  # eq. 2
    P = np.where(pj > 0, d / np.where(pj > 0, pj, 1), np.nan)    # eq. 3
    Uh = np.diag(n) / ni_safe                                    # U_i from the counts
    dof = np.where(ni > 1, ni - 1, np.inf)
    v_o = (W ** 2 * Uh * (1 - Uh) / dof).sum()                   # eq. 5
    v_u = Uh * (1 - Uh) / dof                                    # eq. 6
    Nj_hat = (Ni[:, None] * n / ni_safe[:, None]).sum(axis=0)    # estimated N_.j
    v_p = np.full(q, np.nan)
    for j in range(q):                                           # eq. 7
        if Nj_hat[j] <= 0:
            continue
        t1 = Ni[j] ** 2 * (1 - P[j]) ** 2 * Uh[j] * (1 - Uh[j]) / dof[j]
        t2 = 0.0
        for i in range(q):
            if i != j:
                f = n[i, j] / ni_safe[i]
                t2 += Ni[i] ** 2 * f * (1 - f) / dof[i]
        v_p[j] = (t1 + P[j] ** 2 * t2) / Nj_hat[j] ** 2
    se_pk = np.sqrt(((W[:, None] * p - p ** 2) / dof[:, None]).sum(axis=0))  # eq. 10
    return Estimates(
        classes=classes, counts=n.astype(int), stratum_sizes=Ni, proportions=p,
        overall=_est(O, math.sqrt(v_o), z),
        users=[_est(U[k], math.sqrt(v_u[k]), z) for k in range(q)],
        producers=[_est(P[k], math.sqrt(v_p[k]) if np.isfinite(v_p[k]) else np.nan, z)
                   for k in range(q)],
        area_proportion=[_est(pj[k], se_pk[k], z) for k in range(q)],           # eq. 8
        area=[_est(A * pj[k], A * se_pk[k], z, 0.0, np.inf) for k in range(q)],  # 9, 11
        mapped_area=list(Ni * unit_area), confidence=float(confidence), z=z)


@dataclasses.dataclass
class AccuracyReport:
    """:func:`assess` result: the estimates and the bookkeeping of the labels."""

    path: str
    estimates: Estimates
    n_total: int
    n_used: int
    n_unsure: int
    n_unlabelled: int
    unlabelled_ids: list
    unsure_ids: list
    per_stratum: dict             # stratum -> dict(n_samples, used, unsure, unlabelled)
    design: SampleDesign
    warnings: list

    @property
    def moving_area(self):
        return self.estimates.area[CLASSES.index("moving")]

    def as_dict(self):
        d = dict(sample_file=self.path, n_samples=self.n_total, n_used=self.n_used,
                 n_unsure=self.n_unsure, n_unlabelled=self.n_unlabelled,
                 unlabelled_ids=self.unlabelled_ids, unsure_ids=self.unsure_ids,
                 per_stratum=self.per_stratum, warnings=self.warnings,
                 area_unit="m2", design=self.design.as_dict(),
                 reference="Olofsson, P., Foody, G. M., Herold, M., Stehman, S. V., Woodcock, "
                           "C. E., Wulder, M. A. (2014). Good practices for estimating area and "
                           "assessing accuracy of land change. Remote Sensing of Environment "
                           "148, 42-57. doi:10.1016/j.rse.2014.02.015")
        d.update(self.estimates.as_dict())
        return d

    # ------------------------------------------------------------------ tables
    def rows(self):
        """Long table: measure, class, reference_class, estimate, se, ci_low, ci_high,
        unit."""
        e = self.estimates
        c = e.classes
        out = []

        def add(measure, cls, ref, est, unit):
            out.append(dict(measure=measure, **{"class": cls}, reference_class=ref,
                            estimate=est.value, se=est.se, ci_low=est.low, ci_high=est.high,
                            unit=unit))

        add("overall_accuracy", "", "", e.overall, "proportion")
        for k in range(len(c)):
            add("users_accuracy", c[k], "", e.users[k], "proportion")
        for k in range(len(c)):
            add("producers_accuracy", c[k], "", e.producers[k], "proportion")
        for k in range(len(c)):
            add("area_proportion", c[k], "", e.area_proportion[k], "proportion")
        for k in range(len(c)):
            add("area", c[k], "", e.area[k], "m2")
        for k in range(len(c)):
            out.append(dict(measure="mapped_area", **{"class": c[k]}, reference_class="",
                            estimate=e.mapped_area[k], se="", ci_low="", ci_high="", unit="m2"))
        for i in range(len(c)):
            for j in range(len(c)):
                out.append(dict(measure="error_matrix_proportion", **{"class": c[i]},
                                reference_class=c[j], estimate=float(e.proportions[i, j]),
                                se="", ci_low="", ci_high="", unit="proportion"))
        for i in range(len(c)):
            for j in range(len(c)):
                out.append(dict(measure="sample_count", **{"class": c[i]}, reference_class=c[j],
                                estimate=int(e.counts[i, j]), se="", ci_low="", ci_high="",
                                unit="samples"))
        for key, val in (("samples_total", self.n_total), ("samples_used", self.n_used),
                         ("samples_unsure", self.n_unsure),
                         ("samples_unlabelled", self.n_unlabelled)):
            out.append(dict(measure=key, **{"class": ""}, reference_class="", estimate=val,
                            se="", ci_low="", ci_high="", unit="samples"))
        return out

    def csv_text(self):
        buf = io.StringIO()
        cols = ("measure", "class", "reference_class", "estimate", "se", "ci_low", "ci_high",
                "unit")
        wr = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        wr.writeheader()
        for r in self.rows():
            wr.writerow({k: ("%.10g" % v if isinstance(v, float) else v) for k, v in r.items()})
        return buf.getvalue()

    def json_text(self):
        def clean(o):
            if isinstance(o, dict):
                return {k: clean(v) for k, v in o.items()}
            if isinstance(o, (list, tuple)):
                return [clean(v) for v in o]
            if isinstance(o, float) and not math.isfinite(o):
                return None if o != o else ("inf" if o > 0 else "-inf")
            if isinstance(o, np.generic):
                return clean(o.item())
            return o
        return json.dumps(clean(self.as_dict()), indent=1)

    def html_section(self):
        """An HTML fragment (``<section>``) for a report: error matrix, accuracies, areas,
        label bookkeeping and the reference."""
        e = self.estimates
        c = e.classes
        pct = int(round(100 * e.confidence))

        def f3(x):
            return "–" if x is None or not np.isfinite(x) else "%.3f" % x

        def fa(x):
            return "–" if x is None or not np.isfinite(x) else "{:,.0f}".format(x)

        def ci(est, fmt):
            return "%s ± %s (%s – %s)" % (fmt(est.value), fmt(e.z * est.se), fmt(est.low),
                                         fmt(est.high))

        h = ['<section class="slidewatch-accuracy">',
             "<h2>Accuracy assessment of the detection map</h2>",
             "<p>Stratified random sample of %d points (%d labelled and used, %d unsure, %d "
             "unlabelled); strata = map classes; estimators of Olofsson et al. (2014) with "
             "%d %% confidence intervals (estimate ± %.2f SE).</p>"
             % (self.n_total, self.n_used, self.n_unsure, self.n_unlabelled, pct, e.z)]
        h.append("<table border='1' cellspacing='0' cellpadding='3'><caption>Error matrix "
                 "in proportions of area (rows: map, columns: reference; sample counts in "
                 "brackets)</caption><tr><th></th>%s<th>total</th><th>mapped area m²</th>"
                 "</tr>" % "".join("<th>%s</th>" % x for x in c))
        for i in range(len(c)):
            h.append("<tr><th>%s</th>%s<td>%s</td><td>%s</td></tr>"
                     % (c[i], "".join("<td>%s (%d)</td>" % (f3(e.proportions[i, j]),
                                                             e.counts[i, j])
                                      for j in range(len(c))),
                        f3(e.proportions[i].sum()), fa(e.mapped_area[i])))
        h.append("<tr><th>total</th>%s<td>1</td><td>%s</td></tr></table>"
                 % ("".join("<td>%s</td>" % f3(e.proportions[:, j].sum()) for j in range(len(c))),
                    fa(sum(e.mapped_area))))
        h.append("<table border='1' cellspacing='0' cellpadding='3'><tr><th>class</th>"
                 "<th>user's accuracy</th><th>producer's accuracy</th><th>estimated area m² "
                 "(error-adjusted)</th><th>mapped area m²</th></tr>")
        for k in range(len(c)):
            h.append("<tr><th>%s</th><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>"
                     % (c[k], ci(e.users[k], f3), ci(e.producers[k], f3), ci(e.area[k], fa),
                        fa(e.mapped_area[k])))
        h.append("</table><p><b>Overall accuracy</b>: %s.</p>" % ci(e.overall, f3))
        if self.warnings:
            h.append("<ul>%s</ul>" % "".join("<li>%s</li>" % w for w in self.warnings))
        h.append("<p style='font-size:small'>Olofsson, P., Foody, G. M., Herold, M., Stehman, "
                 "S. V., Woodcock, C. E., Wulder, M. A. (2014). Good practices for estimating "
                 "area and assessing accuracy of land change. <i>Remote Sensing of "
                 "Environment</i> 148, 42-57.</p></section>")
        return "\n".join(h)

    def html_page(self):
        return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>SlideWatch accuracy "
                "assessment</title></head><body>%s</body></html>\n" % self.html_section())

    def write(self, csv_path=None, json_path=None, html_path=None):
        """Write the requested outputs atomically; returns the paths written."""
        from ..raster_io import write_text_atomic

        out = []
        for path, text in ((csv_path, self.csv_text), (json_path, self.json_text),
                           (html_path, self.html_page)):
            if path:
                write_text_atomic(path, text())
                out.append(path)
        return out

    def summary(self):
        e = self.estimates
        k = CLASSES.index("moving")
        a = e.area[k]
        return ("Overall accuracy %.3f ± %.3f; moving: user's accuracy %.3f ± %.3f, producer's "
                "accuracy %.3f ± %.3f; moving area %.0f m² (%d %% CI %.0f - %.0f; mapped %.0f)"
                % (e.overall.value, e.z * e.overall.se, e.users[k].value, e.z * e.users[k].se,
                   e.producers[k].value, e.z * e.producers[k].se, a.value,
                   round(100 * e.confidence), a.low, a.high, e.mapped_area[k]))


def assess(sample, confidence=0.95):
    """Estimates from a labelled sample file (path or :class:`SampleSet`).

    Samples labelled ``moving``/``not_moving`` are used; ``unsure`` and unlabelled ones
    are counted, listed and left out (a warning says so). Raises InputError when a label
    is outside the vocabulary or a stratum has fewer than 2 usable labels."""
    ss = sample if isinstance(sample, SampleSet) else read_samples(sample)
    strata = [r["stratum"] for r in ss.design.strata]
    if tuple(strata) != CLASSES:
        raise InputError("'%s' has strata %s; SlideWatch's assessment expects %s."
                         % (ss.path, ", ".join(strata), ", ".join(CLASSES)))
    q = len(CLASSES)
    counts = np.zeros((q, q), int)
    per = {s: dict(n_samples=0, used=0, unsure=0, unlabelled=0) for s in strata}
    unl, uns = [], []
    for s in ss.samples:
        i = strata.index(s["stratum"])
        per[s["stratum"]]["n_samples"] += 1
        lab = s.get("label")
        if not lab:
            unl.append(s["id"])
            per[s["stratum"]]["unlabelled"] += 1
        elif lab == UNSURE:
            uns.append(s["id"])
            per[s["stratum"]]["unsure"] += 1
        else:
            counts[i, CLASSES.index(lab)] += 1
            per[s["stratum"]]["used"] += 1
    sizes = np.array([float(r["area_m2"]) for r in ss.design.strata])
    if not np.all(np.isfinite(sizes)) or not sizes.sum() > 0:
        raise InputError("The design of '%s' has no valid stratum areas." % ss.path)
    if counts.sum() == 0:
        raise InputError("No sample of '%s' is labelled moving or not_moving yet (%d "
                         "unlabelled, %d unsure): label the points first (Accuracy sample "
                         "dock)." % (ss.path, len(unl), len(uns)))
    est = estimate(counts, sizes, CLASSES, confidence)
    warnings = []
    if unl:
        warnings.append("%d of %d sample(s) are not labelled and were left out (ids %s%s)."
                        % (len(unl), len(ss.samples), ", ".join(map(str, unl[:20])),
                           " ..." if len(unl) > 20 else ""))
    if uns:
        warnings.append("%d sample(s) labelled unsure were left out (ids %s%s); leaving out "
                        "difficult points can bias the estimates." %
                        (len(uns), ", ".join(map(str, uns[:20])), " ..." if len(uns) > 20 else ""))
    k = CLASSES.index("moving")
    if est.counts[:, k].sum() == 0:
        warnings.append("No sample is labelled moving: the producer's accuracy of 'moving' "
                        "is undefined.")
    return AccuracyReport(ss.path, est, len(ss.samples), int(counts.sum()), len(uns), len(unl),
                          unl, uns, per, ss.design, warnings)
