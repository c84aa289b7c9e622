"""Tests of core.detections_store: fields, re-runs keep validations, safe decisions."""

import multiprocessing as mp
import os
import sqlite3
import threading

import pytest

from slidewatch.core.detect import detections_store as store
from slidewatch.core.errors import InputError, ParameterError

CRS = "EPSG:32632"


def square(x0, y0, s):
    return {"type": "Polygon",
            "coordinates": [[(x0, y0), (x0 + s, y0), (x0 + s, y0 + s), (x0, y0 + s), (x0, y0)]]}


def feats(*squares):
    return [{"geometry": square(*q), "area_m2": float(q[2] ** 2), "score": 0.6,
             "v_mean_m_per_yr": 3.0, "accel_flag": 0} for q in squares]


def _ogr_ok(path):
    from osgeo import ogr
    ds = ogr.Open(path)
    assert ds is not None
    lyr = ds.GetLayerByName("detections")
    n = lyr.GetFeatureCount()
    ds = None
    return n


def test_fields_and_empty_layer(tmp_path):
    p = str(tmp_path / "detections.gpkg")
    out = store.write_detections(p, [], CRS)
    assert out["n_features"] == 0
    assert store.read_detections(p) == []
    names = store.layer_field_names(p)
    for n, _ in store.SPEC_FIELDS + store.EVIDENCE_FIELDS:
        assert n in names
    assert _ogr_ok(p) == 0
    # no WAL side files, rollback journal
    with sqlite3.connect(p) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert not os.path.exists(p + "-wal")
    assert [f for f in os.listdir(tmp_path) if "partial" in f] == []


def test_status_defaults_and_fid_equals_id(tmp_path):
    p = str(tmp_path / "d.gpkg")
    store.write_detections(p, feats((0, 0, 100), (500, 0, 100)), CRS)
    recs = store.read_detections(p)
    assert [r["status"] for r in recs] == ["unvalidated", "unvalidated"]
    assert all(r["fid"] == r["id"] for r in recs)
    assert recs[0]["geometry_wkt"].startswith("MULTIPOLYGON")


def test_validations_preserved_archived_and_restored(tmp_path):
    p = str(tmp_path / "d.gpkg")
    store.write_detections(p, feats((0, 0, 100), (500, 0, 100), (1000, 0, 100)), CRS)
    store.record_decision(p, 1, "confirmed", "scarp visible", "ana")
    store.record_decision(p, 2, "rejected", "vegetation", "bo")
    # re-run: #1 slightly moved (still overlaps), #2 gone, #3 unchanged, a new one
    out = store.write_detections(p, feats((20, 10, 100), (1000, 0, 100), (3000, 0, 50)), CRS)
    assert out["n_validations_kept"] == 1 and out["n_archived"] == 1
    recs = {r["id"]: r for r in store.read_detections(p)}
    assert recs[1]["status"] == "confirmed" and recs[1]["comment"] == "scarp visible"
    assert recs[1]["validated_by"] == "ana" and recs[1]["validated_at"].endswith("Z")
    assert recs[3]["status"] == "unvalidated"
    assert 4 in recs and recs[4]["status"] == "unvalidated"  # new polygon, new id
    arch = store.read_detections(p, store.ARCHIVE_LAYER)
    assert len(arch) == 1 and arch[0]["status"] == "rejected" and arch[0]["archived_at"]
    # it comes back in a later run: its validation comes back too
    store.write_detections(p, feats((20, 10, 100), (505, 0, 95)), CRS)
    recs = {r["id"]: r for r in store.read_detections(p)}
    assert recs[2]["status"] == "rejected" and recs[2]["comment"] == "vegetation"
    assert recs[1]["status"] == "confirmed"
    # a polygon overlapping less than the threshold does not inherit
    store.write_detections(p, feats((90, 90, 100)), CRS)
    recs = store.read_detections(p)
    assert recs[0]["status"] == "unvalidated"
    assert len(store.read_detections(p, store.ARCHIVE_LAYER)) == 2


def test_record_decision_errors(tmp_path):
    p = str(tmp_path / "d.gpkg")
    store.write_detections(p, feats((0, 0, 100)), CRS)
    with pytest.raises(ParameterError):
        store.record_decision(p, 1, "maybe", "", "x")
    with pytest.raises(InputError):
        store.record_decision(p, 99, "confirmed", "", "x")
    with pytest.raises(InputError):
        store.record_decision(str(tmp_path / "nope.gpkg"), 1, "confirmed")
    with pytest.raises(ParameterError, match="unvalidated"):
        store.record_decision(p, 1, "confirmed", "", "x", "")
    assert store.record_decision(p, 1, "unvalidated", None, None, "") is None
    ts = store.record_decision(p, 1, "uncertain", None, "x", "2026-11-21T10:00:00+01:00")
    assert ts == "2026-11-21T09:00:00.000Z"
    rec = store.read_detections(p)[0]
    assert rec["status"] == "uncertain" and rec["validated_at"] == "2026-11-21T09:00:00.000Z"


def _decide_many(path, ids, analyst, n_rounds):
    for k in range(n_rounds):
        for i in ids:
            store.record_decision(path, i, "confirmed" if k % 2 else "rejected",
                                  "%s round %d" % (analyst, k), analyst)


def test_concurrent_decisions_from_two_processes(tmp_path):
    p = str(tmp_path / "d.gpkg")
    store.write_detections(p, feats(*[(200 * i, 0, 100) for i in range(10)]), CRS)
    ctx = mp.get_context("spawn")
    a = ctx.Process(target=_decide_many, args=(p, [1, 2, 3, 4, 5], "ana", 6))
    b = ctx.Process(target=_decide_many, args=(p, [6, 7, 8, 9, 10], "bo", 6))
    a.start(); b.start()
    a.join(60); b.join(60)
    assert a.exitcode == 0 and b.exitcode == 0
    recs = {r["id"]: r for r in store.read_detections(p)}
    for i in range(1, 6):
        assert recs[i]["validated_by"] == "ana" and recs[i]["comment"] == "ana round 5"
        assert recs[i]["status"] == "confirmed"
    for i in range(6, 11):
        assert recs[i]["validated_by"] == "bo" and recs[i]["comment"] == "bo round 5"
    with sqlite3.connect(p) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert _ogr_ok(p) == 10


def test_decisions_during_reruns_are_not_lost(tmp_path):
    p = str(tmp_path / "d.gpkg")
    store.write_detections(p, feats((0, 0, 100), (500, 0, 100)), CRS)
    last = {}

    def decider():
        for k in range(40):
            store.record_decision(p, 1, "confirmed", "c%d" % k, "ana")
            last["c"] = "c%d" % k

    th = threading.Thread(target=decider)
    th.start()
    for _ in range(6):
        store.write_detections(p, feats((0, 0, 100), (500, 0, 100)), CRS)
    th.join(60)
    rec = {r["id"]: r for r in store.read_detections(p)}[1]
    assert rec["status"] == "confirmed" and rec["comment"] == last["c"]


def test_ensure_validation_fields_on_foreign_layer(tmp_path):
    from osgeo import ogr, osr
    p = str(tmp_path / "other.gpkg")
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(p)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32632)
    lyr = ds.CreateLayer("detections", srs, ogr.wkbPolygon)
    lyr.CreateField(ogr.FieldDefn("id", ogr.OFTInteger))
    f = ogr.Feature(lyr.GetLayerDefn())
    f.SetField("id", 7)
    f.SetGeometry(ogr.CreateGeometryFromWkt("POLYGON ((0 0,1 0,1 1,0 0))"))
    lyr.CreateFeature(f)
    ds = None
    added = store.ensure_validation_fields(p)
    assert added == ["status", "comment", "validated_by", "validated_at"]
    assert store.ensure_validation_fields(p) == []
    rec = store.read_detections(p)[0]
    assert rec["status"] == "unvalidated"
    store.record_decision(p, 7, "confirmed", "ok", "ana")
    assert store.read_detections(p)[0]["status"] == "confirmed"
    assert _ogr_ok(p) == 1


def test_existing_non_geopackage_is_not_overwritten(tmp_path):
    from slidewatch.core.errors import OutputError
    p = tmp_path / "d.gpkg"
    p.write_text("not a database, and not ours to destroy")
    with pytest.raises(OutputError, match="not a GeoPackage"):
        store.write_detections(str(p), feats((0, 0, 100)), CRS)
    assert p.read_text().startswith("not a database")


def test_gdal_exception_mode_of_the_caller_is_left_alone(tmp_path):
    from osgeo import gdal, ogr, osr
    before = (gdal.GetUseExceptions(), ogr.GetUseExceptions(), osr.GetUseExceptions())
    p = str(tmp_path / "d.gpkg")
    store.write_detections(p, feats((0, 0, 100)), CRS)
    store.read_detections(p)
    with pytest.raises(InputError):
        store.read_detections(str(tmp_path / "missing.gpkg"))
    assert (gdal.GetUseExceptions(), ogr.GetUseExceptions(), osr.GetUseExceptions()) == before
