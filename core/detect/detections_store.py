"""``detections.gpkg``: writing detections while keeping the analysts' validations.

Layer ``detections`` (MultiPolygon, the CRS of the time series) with the SPEC fields
``id, area_m2, v_mean_m_per_yr, v_p95_m_per_yr, direction_deg, coherence, score,
accel_flag, accel_onset_date, status, comment, validated_by, validated_at`` plus the
evidence behind each score (``ev_significance``, ``ev_coherence``, ``ev_consistency``,
``ev_downslope``: their contributions to ``score``, which add up to it, and
``score_explanation``: a sentence with the raw values) and some diagnostics. ``status``
is one of ``unvalidated``, ``confirmed``, ``rejected``, ``uncertain`` (an OGR coded field
domain ``slidewatch_status`` lists them, so QGIS offers them as a value list). In files
written here the feature id (fid) equals the ``id`` attribute.

Safety rules
------------
- **Atomic writes.** A run writes a complete temporary GeoPackage beside the target and
  renames it over the target (``os.replace``); a crash never leaves a half-written file.
- **Validations are never overwritten.** Before the rename, the previous file is locked
  for writing (``BEGIN IMMEDIATE``: analysts' writes wait, readers such as QGIS keep
  reading) and the validations in it are carried over: a new polygon inherits the
  validation (status, comment, validated_by, validated_at) of a validated old polygon
  when their intersection covers at least ``match_overlap`` (default 0.5) of the
  *smaller* of the two polygons; when several old polygons qualify, the one with the
  highest intersection-over-union wins. A new polygon matched to an old one also keeps
  its ``id``. Validated old polygons that match nothing in the new run are not dropped:
  they go to the layer ``detections_archive`` (with ``archived_at``) and come back,
  validation included, if a later run detects them again.
- **Single-row decisions.** :func:`record_decision` (used by the validation dock) is one
  short transaction with the sqlite3 module: ``BEGIN IMMEDIATE`` with a busy timeout,
  one ``UPDATE``, ``COMMIT``. SQLite's file locking serialises concurrent writers (other
  processes, QGIS, a re-run), so two decisions made at the same time are both kept.
  A decision that waited while a re-run replaced the file notices it (the old file is
  marked superseded in the table ``slidewatch_meta`` before its lock is released) and is
  applied to the new file instead.
- **No WAL.** The files use SQLite's default rollback journal (``journal_mode=DELETE``),
  set explicitly. WAL would leave ``-wal``/``-shm`` side files that a rename does not
  carry along (a stale ``-wal`` beside a replaced file can corrupt it), needs write
  access for readers and does not work on network shares; with the rollback journal a
  GeoPackage is a single self-contained file that QGIS/OGR read normally.
"""

import contextlib
import datetime as _dt
import json
import os
import sqlite3
import struct
import time
import uuid

from ..errors import InputError, OutputError, ParameterError
from ..products import DETECTION_STATUSES, DETECTIONS_LAYER

LAYER = DETECTIONS_LAYER
ARCHIVE_LAYER = "detections_archive"
META_LAYER = "slidewatch_meta"
STATUSES = DETECTION_STATUSES
STATUS_DOMAIN = "slidewatch_status"
VALIDATION_FIELDS = ("status", "comment", "validated_by", "validated_at")

# (name, OGR type name, width) -- order of the attribute table
SPEC_FIELDS = [
    ("id", "Integer"), ("area_m2", "Real"), ("v_mean_m_per_yr", "Real"),
    ("v_p95_m_per_yr", "Real"), ("direction_deg", "Real"), ("coherence", "Real"),
    ("score", "Real"), ("accel_flag", "Integer"), ("accel_onset_date", "Date"),
    ("status", "String"), ("comment", "String"), ("validated_by", "String"),
    ("validated_at", "DateTime"),
]
EVIDENCE_FIELDS = [
    ("ev_significance", "Real"), ("ev_coherence", "Real"), ("ev_consistency", "Real"),
    ("ev_downslope", "Real"), ("score_explanation", "String"),
]
EXTRA_FIELDS = [
    ("n_pixels", "Integer"), ("significance_max", "Real"), ("significance_mean", "Real"),
    ("noise_sigma_m_per_yr", "Real"), ("consistency", "Real"), ("downslope_agreement", "Real"),
    ("slope_deg", "Real"), ("accel_v_before_m_per_yr", "Real"),
    ("accel_v_after_m_per_yr", "Real"), ("accel_delta_bic", "Real"),
    ("accel_onset_earliest", "Date"), ("accel_onset_latest", "Date"),
    ("accel_ramp_days", "Real"), ("run_id", "String"),
    ("detected_at", "String"),
]
ALL_FIELDS = SPEC_FIELDS + EVIDENCE_FIELDS + EXTRA_FIELDS
ARCHIVE_EXTRA = [("archived_at", "String")]

#: SQLite declared types used by :func:`ensure_validation_fields`
_SQL_TYPES = {"status": "TEXT", "comment": "TEXT", "validated_by": "TEXT",
              "validated_at": "DATETIME"}


def _ogr():
    from osgeo import ogr
    return ogr


@contextlib.contextmanager
def _gdal_exceptions():
    """GDAL/OGR/OSR exceptions on inside the block, the caller's setting restored after.

    ``UseExceptions`` is process-wide: switching it on for good would change the
    behaviour of QGIS and of other plugins running in the same Python.
    """
    from osgeo import gdal, ogr, osr
    mods = (gdal, ogr, osr)
    prev = [m.GetUseExceptions() for m in mods]
    for m in mods:
        m.UseExceptions()
    try:
        yield
    finally:
        # GDAL keeps a stack of error handlers: undo in the reverse order
        for m, p in reversed(list(zip(mods, prev))):
            if not p:
                try:
                    m.DontUseExceptions()
                except RuntimeError:  # unusual mixed set-ups: leave it rather than fail
                    pass


def _ogr_type(ogr, name):
    return {"Integer": ogr.OFTInteger, "Real": ogr.OFTReal, "String": ogr.OFTString,
            "Date": ogr.OFTDate, "DateTime": ogr.OFTDateTime}[name]


def gpkg_timestamp(value=None):
    """A GeoPackage DateTime string (UTC, ``YYYY-MM-DDTHH:MM:SS.sssZ``).

    ``value``: None (now), a datetime (naive = UTC) or an ISO 8601 string.
    """
    if value is None:
        value = _dt.datetime.now(_dt.timezone.utc)
    elif isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            value = _dt.datetime.fromisoformat(text)
        except ValueError as exc:
            raise ParameterError("Timestamp '%s' is not ISO 8601 (e.g. 2026-11-21T10:30:00Z)."
                                 % value) from exc
    elif isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        value = _dt.datetime(value.year, value.month, value.day)
    if value.tzinfo is not None:
        value = value.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (value.microsecond // 1000)


# --------------------------------------------------------------------------- reading

def read_detections(path, layer=LAYER):
    """Features of a detections layer as a list of dicts.

    Each dict has ``fid``, ``geometry_wkt`` and every attribute (None when unset; dates
    and date-times as ISO 8601 strings). Returns an empty list when the layer is empty.
    Raises InputError when the file or the layer does not exist.
    """
    with _gdal_exceptions():
        return _read_detections(path, layer)


def _read_detections(path, layer):
    """Features of a detections layer as a list of dicts.

    Each dict has ``fid``, ``geometry_wkt`` and every attribute (None when unset; dates
    and date-times as ISO 8601 strings).
    Returns an empty list when the layer is empty. Raises InputError when the file or
    the layer does not exist.
    """
    ogr = _ogr()
    if not os.path.exists(path):
        raise InputError("Detections file '%s' does not exist. Run the detection first." % path)
    try:
        ds = ogr.Open(path, 0)
    except RuntimeError as exc:
        raise InputError("Cannot open '%s' as a GeoPackage: %s" % (path, exc)) from exc
    lyr = ds.GetLayerByName(layer)
    if lyr is None:
        raise InputError("'%s' has no layer '%s'. Is it a SlideWatch detections file?"
                         % (path, layer))
    defn = lyr.GetLayerDefn()
    names = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
    types = [defn.GetFieldDefn(i).GetType() for i in range(defn.GetFieldCount())]
    out = []
    for f in lyr:
        d = {"fid": f.GetFID()}
        g = f.GetGeometryRef()
        d["geometry_wkt"] = g.ExportToWkt() if g is not None else None
        for i, n in enumerate(names):
            if not f.IsFieldSetAndNotNull(i):
                d[n] = None
            elif types[i] == ogr.OFTDate:  # ISO 8601, not OGR's YYYY/MM/DD
                y, mo, da = f.GetFieldAsDateTime(i)[:3]
                d[n] = "%04d-%02d-%02d" % (y, mo, da)
            elif types[i] == ogr.OFTDateTime:
                y, mo, da, hh, mi, ss, tz = f.GetFieldAsDateTime(i)
                d[n] = "%04d-%02d-%02dT%02d:%02d:%06.3f%s" % (y, mo, da, hh, mi, ss,
                                                              "Z" if tz == 100 else "")
            else:
                d[n] = f.GetField(i)
        out.append(d)
    ds = None
    return out


def layer_field_names(path, layer=LAYER):
    """Attribute names of ``layer`` (sqlite3 ``PRAGMA table_info``, without fid/geom)."""
    with _connect(path, timeout=10) as conn:
        rows = conn.execute('PRAGMA table_info("%s")' % layer).fetchall()
    return [r[1] for r in rows if r[1] not in ("fid", "geom")]


# --------------------------------------------------------------------------- writing

def _geometry(ogr, g):
    if g is None:
        return None
    if isinstance(g, ogr.Geometry):
        geom = g.Clone()
    elif isinstance(g, dict):
        geom = ogr.CreateGeometryFromJson(json.dumps(g))
    elif isinstance(g, (bytes, bytearray)):
        geom = ogr.CreateGeometryFromWkb(bytes(g))
    else:
        geom = ogr.CreateGeometryFromWkt(str(g))
    if geom is None:
        return None
    return ogr.ForceToMultiPolygon(geom)


def _create_layer(ogr, osr, ds, name, srs, extra=()):
    lyr = ds.CreateLayer(name, srs, ogr.wkbMultiPolygon,
                         options=["FID=fid", "GEOMETRY_NAME=geom", "SPATIAL_INDEX=YES"])
    for fname, ftype in list(ALL_FIELDS) + list(extra):
        fd = ogr.FieldDefn(fname, _ogr_type(ogr, ftype))
        if fname == "status":
            fd.SetDefault("'unvalidated'")
            fd.SetNullable(False)
            try:
                if ds.GetFieldDomain(STATUS_DOMAIN) is not None:
                    fd.SetDomainName(STATUS_DOMAIN)
            except AttributeError:
                pass
        lyr.CreateField(fd)
    return lyr


def _set_fields(feat, attrs, defn):
    for i in range(defn.GetFieldCount()):
        n = defn.GetFieldDefn(i).GetName()
        v = attrs.get(n)
        if v is None:
            if n == "status":
                feat.SetField(i, "unvalidated")
            else:
                feat.SetFieldNull(i)
            continue
        if isinstance(v, float) and v != v:  # NaN -> NULL
            feat.SetFieldNull(i)
            continue
        if isinstance(v, bool):
            v = int(v)
        elif hasattr(v, "item"):  # numpy scalars
            v = v.item()
        feat.SetField(i, v)


def _touched(rec):
    """True when an analyst has worked on this record (status or any validation field)."""
    return ((rec.get("status") or "unvalidated") != "unvalidated" or bool(rec.get("comment"))
            or bool(rec.get("validated_by")) or bool(rec.get("validated_at")))


def _match(ogr, new_geoms, old_records, match_overlap):
    """For each new geometry, (best old index by IoU among qualifying, or None)."""
    old_geoms = []
    for r in old_records:
        g = ogr.CreateGeometryFromWkt(r["geometry_wkt"]) if r.get("geometry_wkt") else None
        if g is not None and not g.IsValid():
            g = g.Buffer(0)
        old_geoms.append(g)
    old_env = [g.GetEnvelope() if g is not None else None for g in old_geoms]
    old_area = [g.GetArea() if g is not None else 0.0 for g in old_geoms]
    result = []
    for g in new_geoms:
        best, best_iou = None, 0.0
        if g is None:
            result.append(None)
            continue
        if not g.IsValid():
            g = g.Buffer(0)
        env = g.GetEnvelope()
        a_new = g.GetArea()
        for j, og in enumerate(old_geoms):
            if og is None:
                continue
            e = old_env[j]
            if e[1] < env[0] or env[1] < e[0] or e[3] < env[2] or env[3] < e[2]:
                continue
            inter = g.Intersection(og)
            ia = inter.GetArea() if inter is not None else 0.0
            if ia <= 0:
                continue
            smaller = min(a_new, old_area[j])
            if smaller <= 0 or ia / smaller < match_overlap:
                continue
            iou = ia / (a_new + old_area[j] - ia)
            if iou > best_iou:
                best, best_iou = j, iou
        result.append(best)
    return result


def _gpkg_envelope(blob):
    """(empty, (minx, maxx, miny, maxy) or None) of a GeoPackage geometry blob."""
    if blob is None or len(blob) < 8 or blob[:2] != b"GP":
        return True, None
    flags = blob[3]
    empty = bool(flags & 0x10)
    env_code = (flags >> 1) & 0x07
    order = "<" if flags & 0x01 else ">"
    if empty:
        return True, None
    if env_code in (1, 2, 3, 4):
        minx, maxx, miny, maxy = struct.unpack(order + "4d", blob[8:40])
        return False, (minx, maxx, miny, maxy)
    header = 8 + {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}.get(env_code, 0)
    ogr = _ogr()
    g = ogr.CreateGeometryFromWkb(bytes(blob[header:]))
    if g is None or g.IsEmpty():
        return True, None
    return False, g.GetEnvelope()


def _register_gpkg_functions(conn):
    """The SQL functions GeoPackage R-tree triggers call (plain sqlite3 lacks them).

    They only run when a geometry or a fid changes, which the updates here never do,
    but SQLite needs them to exist to compile the triggers of any UPDATE.
    """
    def _env(i):
        def f(blob):
            empty, env = _gpkg_envelope(blob)
            return None if empty or env is None else env[i]
        return f
    conn.create_function("ST_IsEmpty", 1, lambda b: 1 if _gpkg_envelope(b)[0] else 0,
                         deterministic=True)
    for name, i in (("ST_MinX", 0), ("ST_MaxX", 1), ("ST_MinY", 2), ("ST_MaxY", 3)):
        conn.create_function(name, 1, _env(i), deterministic=True)


def _connect(path, timeout=30.0):
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=%d" % int(timeout * 1000))
    _register_gpkg_functions(conn)
    return conn


def _is_superseded(conn):
    try:
        row = conn.execute('SELECT value FROM "%s" WHERE key = ?' % META_LAYER,
                           ("superseded",)).fetchone()
    except sqlite3.OperationalError:
        return False
    return bool(row and row[0] == "1")


def _mark_superseded(conn):
    conn.execute('CREATE TABLE IF NOT EXISTS "%s" (fid INTEGER PRIMARY KEY AUTOINCREMENT, '
                 'key TEXT, value TEXT)' % META_LAYER)
    conn.execute('DELETE FROM "%s" WHERE key = ?' % META_LAYER, ("superseded",))
    conn.execute('INSERT INTO "%s" (key, value) VALUES (?, ?)' % META_LAYER, ("superseded", "1"))


def _clear_superseded(path):
    try:
        conn = _connect(path, 30.0)
        try:
            conn.execute('UPDATE "%s" SET value = ? WHERE key = ?' % META_LAYER, ("0", "superseded"))
        finally:
            conn.close()
    except sqlite3.Error:
        pass


def _read_previous(path):
    """Records of the detections and archive layers of an existing file ([] when absent)."""
    prev, arch = [], []
    try:
        prev = read_detections(path, LAYER)
    except InputError:
        prev = []
    try:
        arch = read_detections(path, ARCHIVE_LAYER)
    except InputError:
        arch = []
    return prev, arch


def write_detections(path, features, crs_wkt=None, preserve=True, match_overlap=0.5,
                     run_info=None, lock_timeout=60.0):
    with _gdal_exceptions():
        return _write_detections(path, features, crs_wkt, preserve, match_overlap, run_info,
                                 lock_timeout)


def _write_detections(path, features, crs_wkt=None, preserve=True, match_overlap=0.5,
                      run_info=None, lock_timeout=60.0):
    """Write ``features`` to ``path`` (layer ``detections``), atomically.

    Parameters
    ----------
    features : list of dicts, each with ``geometry`` (GeoJSON-like dict, WKT, WKB or
        ``ogr.Geometry``; polygons are stored as MultiPolygon) and attributes named as
        in :data:`ALL_FIELDS` (missing ones are NULL; ``status`` defaults to
        ``unvalidated``; ``id`` is assigned here).
    crs_wkt : CRS as WKT (or anything ``OSRSetFromUserInput`` accepts), or None.
    preserve : carry over the validations of an existing file (see module doc).
    match_overlap : minimum intersection / area of the smaller polygon for a match.
    run_info : dict stored as JSON in ``slidewatch_meta`` (parameters, bias report...).

    Returns
    -------
    dict: ``n_features``, ``n_validations_kept``, ``n_archived`` (validated polygons
    without a match now in ``detections_archive``), ``ids`` (list, in feature order).

    Phases: :func:`_prepare_target`, :func:`_lock_previous` (and
    :func:`_read_previous`), :func:`_assign_ids`, :func:`_carry_validations`,
    :func:`_write_gpkg`, :func:`_check_written`, :func:`_replace_target`,
    :func:`_release`.
    """
    ogr = _ogr()
    path, folder = _prepare_target(path, match_overlap)
    tmp = os.path.join(folder, ".%s.%s.partial.gpkg" % (os.path.basename(path), uuid.uuid4().hex[:8]))
    now = gpkg_timestamp()
    run_id = uuid.uuid4().hex[:12]
    lock_conn = None
    try:
        prev, arch = [], []
        if preserve and os.path.exists(path):
            lock_conn = _lock_previous(path, lock_timeout)
            prev, arch = _read_previous(path)
        new_geoms = [_geometry(ogr, f.get("geometry")) for f in features]
        # ids: keep the id of the best-matching previous polygon (any status)
        pool = prev + arch
        ids = _assign_ids(ogr, new_geoms, pool, match_overlap)
        touched = [r for r in pool if _touched(r)]
        val_match = _match(ogr, new_geoms, touched, match_overlap) if touched else [None] * len(features)
        records, kept, archived = _carry_validations(features, ids, touched, val_match, run_id,
                                                     now)
        _write_gpkg(tmp, crs_wkt, records, archived, new_geoms,
                    (("run_id", run_id), ("written_at", now), ("superseded", "0"),
                     ("match_overlap", str(match_overlap)),
                     ("run_info", json.dumps(run_info or {}, default=str))))
        _check_written(tmp)
        _replace_target(tmp, path, lock_conn)
    except OSError as exc:
        raise OutputError("Could not write '%s': %s. Check free space and permissions."
                          % (path, exc)) from exc
    finally:
        _release(lock_conn, tmp)
    return {"n_features": len(records), "n_validations_kept": kept,
            "n_archived": len(archived), "ids": ids, "run_id": run_id}


def _prepare_target(path, match_overlap):
    """(absolute path, its folder, created if needed) after checking ``match_overlap``."""
    if not 0.0 < float(match_overlap) <= 1.0:
        raise ParameterError("match_overlap must be in (0, 1]; got %r." % (match_overlap,))
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise OutputError("Cannot create folder '%s' for the detections: %s" % (folder, exc)) from exc
    return path, folder


def _lock_previous(path, lock_timeout):
    """An sqlite3 connection holding the write lock (``BEGIN IMMEDIATE``) of the existing
    file, so that no decision is written to it while the new file is made."""
    lock_conn = _connect(path, timeout=lock_timeout)
    try:
        lock_conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        lock_conn.close()
        raise OutputError("'%s' stayed locked by another program for %.0f s; close the "
                          "editing session on it (or wait) and run again."
                          % (path, lock_timeout)) from exc
    except sqlite3.DatabaseError as exc:
        lock_conn.close()
        raise OutputError("'%s' exists and is not a GeoPackage (%s). Move it away or "
                          "choose another output file." % (path, exc)) from exc
    return lock_conn


def _assign_ids(ogr, new_geoms, pool, match_overlap):
    """The id of each new polygon: that of its best-matching previous polygon (any
    status, detections and archive ``pool``) unless already taken, else a new one."""
    id_match = _match(ogr, new_geoms, pool, match_overlap) if pool else [None] * len(new_geoms)
    next_id = 1 + max([int(r.get("id") or r["fid"] or 0) for r in pool] + [0])
    used_ids = set()
    ids = []
    for k in range(len(new_geoms)):
        j = id_match[k]
        cand = None
        if j is not None:
            cand = pool[j].get("id") or pool[j]["fid"]
        if cand is None or cand in used_ids:
            cand = next_id
            next_id += 1
        used_ids.add(int(cand))
        ids.append(int(cand))
    return ids


def _carry_validations(features, ids, touched, val_match, run_id, now):
    """(attribute records of the new features, number of validations carried over,
    validated old records without a match: to the archive, with ``archived_at``)."""
    kept = 0
    matched_touched = set()
    records = []
    for k, f in enumerate(features):
        attrs = {n: f.get(n) for n, _ in ALL_FIELDS}
        attrs["id"] = ids[k]
        attrs["run_id"] = run_id
        attrs["detected_at"] = now
        for n in VALIDATION_FIELDS:
            attrs[n] = None
        attrs["status"] = "unvalidated"
        j = val_match[k]
        if j is not None:
            for n in VALIDATION_FIELDS:
                attrs[n] = touched[j].get(n)
            attrs["status"] = touched[j].get("status") or "unvalidated"
            matched_touched.add(j)
            kept += 1
        records.append(attrs)
    archived = [r for j, r in enumerate(touched) if j not in matched_touched]
    for r in archived:
        r.setdefault("archived_at", None)
        if not r.get("archived_at"):
            r["archived_at"] = now
    return records, kept, archived


def _write_gpkg(tmp, crs_wkt, records, archived, new_geoms, meta_items):
    """Write the temporary GeoPackage: the status domain, the detections and archive
    layers, and the ``slidewatch_meta`` table (``meta_items``: (key, value) pairs)."""
    from osgeo import gdal, osr
    ogr = _ogr()
    ds = gdal.GetDriverByName("GPKG").Create(tmp, 0, 0, 0, gdal.GDT_Unknown)
    if ds is None:
        raise OutputError("Cannot create '%s'." % tmp)
    srs = None
    if crs_wkt:
        srs = osr.SpatialReference()
        srs.SetFromUserInput(str(crs_wkt))
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    try:
        dom = ogr.CreateCodedFieldDomain(STATUS_DOMAIN, "Validation status of a detection",
                                         ogr.OFTString, ogr.OFSTNone,
                                         {s: s for s in STATUSES})
        ds.AddFieldDomain(dom)
    except (AttributeError, RuntimeError):
        pass
    for lname, recs, extra in ((LAYER, records, ()), (ARCHIVE_LAYER, archived, ARCHIVE_EXTRA)):
        _write_layer(ogr, osr, ds, lname, srs, extra, recs, new_geoms)
    meta = ds.CreateLayer(META_LAYER, None, ogr.wkbNone)
    meta.CreateField(ogr.FieldDefn("key", ogr.OFTString))
    meta.CreateField(ogr.FieldDefn("value", ogr.OFTString))
    for k, v in meta_items:
        mf = ogr.Feature(meta.GetLayerDefn())
        mf.SetField("key", k)
        mf.SetField("value", v)
        meta.CreateFeature(mf)
    ds.FlushCache()
    ds = None


def _write_layer(ogr, osr, ds, lname, srs, extra, recs, new_geoms):
    """One layer in one transaction: the detections (fid = id, the new geometries) or
    the archive (geometries from the old records' WKT)."""
    lyr = _create_layer(ogr, osr, ds, lname, srs, extra)
    defn = lyr.GetLayerDefn()
    lyr.StartTransaction()
    for k, attrs in enumerate(recs):
        feat = ogr.Feature(defn)
        if lname == LAYER:
            feat.SetFID(int(attrs["id"]))
            g = new_geoms[k]
        else:
            g = ogr.CreateGeometryFromWkt(attrs["geometry_wkt"]) if attrs.get("geometry_wkt") else None
        _set_fields(feat, attrs, defn)
        if g is not None:
            feat.SetGeometry(g)
        lyr.CreateFeature(feat)
    lyr.CommitTransaction()


def _check_written(tmp):
    """Rollback journal, SQLite integrity check and fsync of the temporary file."""
    c = sqlite3.connect(tmp)
    c.execute("PRAGMA journal_mode=DELETE")
    ok = c.execute("PRAGMA integrity_check").fetchone()[0]
    c.close()
    if ok != "ok":
        raise OutputError("The new detections file failed SQLite's integrity check (%s)." % ok)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())


def _replace_target(tmp, path, lock_conn):
    """Rename the temporary file over ``path``; the locked old file is marked superseded
    and released just before."""
    if lock_conn is not None:
        # decisions queued on the old file must go to the new one: mark the old file
        # superseded and release it just before the rename (SQLite refuses writes to a
        # file that has been renamed over, so this cannot happen after it)
        _mark_superseded(lock_conn)
        lock_conn.execute("COMMIT")
    try:
        os.replace(tmp, path)
    except OSError:
        if lock_conn is not None:
            _clear_superseded(path)
        raise


def _release(lock_conn, tmp):
    """Roll back and close the lock (if any) and remove what is left of ``tmp``."""
    if lock_conn is not None:
        try:
            if lock_conn.in_transaction:
                lock_conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        lock_conn.close()
    for p in (tmp, tmp + "-journal"):
        try:
            os.remove(p)
        except OSError:
            pass


def ensure_validation_fields(gpkg, layer=LAYER, timeout=30.0):
    """Add any missing validation field (status, comment, validated_by, validated_at).

    Existing rows get ``status = 'unvalidated'`` where it is NULL. Works on any
    GeoPackage polygon layer (for instance detections made by another tool). Returns the
    list of fields added. One transaction; safe with concurrent readers and writers.
    """
    if not os.path.exists(gpkg):
        raise InputError("GeoPackage '%s' does not exist." % gpkg)
    conn = _connect(gpkg, timeout)
    try:
        conn.execute("BEGIN IMMEDIATE")
        cols = [r[1] for r in conn.execute('PRAGMA table_info("%s")' % layer).fetchall()]
        if not cols:
            raise InputError("'%s' has no layer '%s'." % (gpkg, layer))
        added = []
        for n in VALIDATION_FIELDS:
            if n not in cols:
                conn.execute('ALTER TABLE "%s" ADD COLUMN "%s" %s' % (layer, n, _SQL_TYPES[n]))
                added.append(n)
        conn.execute('UPDATE "%s" SET status = ? WHERE status IS NULL OR status = ?'
                     % layer, ("unvalidated", ""))
        _touch_contents(conn, layer)
        conn.execute("COMMIT")
        return added
    except sqlite3.Error as exc:
        raise OutputError("Could not add validation fields to '%s' (layer %s): %s"
                          % (gpkg, layer, exc)) from exc
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


def _touch_contents(conn, layer):
    try:
        conn.execute("UPDATE gpkg_contents SET last_change = ? WHERE table_name = ?",
                     (gpkg_timestamp(), layer))
    except sqlite3.OperationalError:
        pass


def record_decision(gpkg, fid_or_id, status, comment=None, analyst=None, timestamp=None,
                    key="id", layer=LAYER, timeout=30.0):
    """Record an analyst's decision on one detection, in a single safe transaction.

    Parameters
    ----------
    gpkg : path of detections.gpkg.
    fid_or_id : the detection's ``id`` (equal to its fid in files SlideWatch writes);
        with ``key="fid"`` the GeoPackage feature id instead.
    status : one of ``unvalidated``, ``confirmed``, ``rejected``, ``uncertain``.
    comment, analyst : free text (None stores NULL).
    timestamp : datetime or ISO 8601 string; None = now (UTC); ``""`` stores NULL (only
        with status ``unvalidated``: an undo back to a never-validated state).
    timeout : seconds to wait for another writer before giving up.

    Returns the stored timestamp. Raises ParameterError (bad status/key), InputError
    (no such file, layer or feature), OutputError (file locked longer than ``timeout``).
    """
    if status not in STATUSES:
        raise ParameterError("Status '%s' is not valid; use one of %s." % (status, ", ".join(STATUSES)))
    if key not in ("id", "fid"):
        raise ParameterError("key must be 'id' or 'fid'; got %r." % (key,))
    if not os.path.exists(gpkg):
        raise InputError("Detections file '%s' does not exist." % gpkg)
    if timestamp == "":
        if status != "unvalidated":
            raise ParameterError("An empty decision time is only allowed when resetting a "
                                 "detection to 'unvalidated' (got status '%s')." % status)
        ts = None
    else:
        ts = gpkg_timestamp(timestamp)
    last_exc = None
    deadline = time.monotonic() + timeout
    while True:
        conn = _connect(gpkg, max(deadline - time.monotonic(), 0.1))
        try:
            conn.execute("BEGIN IMMEDIATE")
            if _is_superseded(conn):
                # a re-run is replacing the file: start again on the new one
                conn.execute("ROLLBACK")
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)
                continue
            try:
                cur = conn.execute(
                    'UPDATE "%s" SET status = ?, comment = ?, validated_by = ?, validated_at = ? '
                    'WHERE "%s" = ?' % (layer, key),
                    (status, comment, analyst, ts, int(fid_or_id)))
            except sqlite3.OperationalError as exc:
                if "no such" in str(exc):
                    raise InputError("'%s' has no layer '%s' with validation fields (%s); run "
                                     "ensure_validation_fields first." % (gpkg, layer, exc)) from exc
                raise
            if cur.rowcount != 1:
                conn.execute("ROLLBACK")
                raise InputError("No detection with %s = %s in '%s'." % (key, fid_or_id, gpkg))
            _touch_contents(conn, layer)
            conn.execute("COMMIT")
            return ts
        except sqlite3.OperationalError as exc:
            last_exc = exc
            if "locked" in str(exc) or "busy" in str(exc):
                raise OutputError("'%s' stayed locked by another writer for %.0f s; try again."
                                  % (gpkg, timeout)) from exc
            raise OutputError("Could not record the decision in '%s': %s" % (gpkg, exc)) from exc
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.close()
    raise OutputError("Could not record the decision in '%s': the file kept being replaced "
                      "(%s)." % (gpkg, last_exc))


write_detections.__doc__ = _write_detections.__doc__
