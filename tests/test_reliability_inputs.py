"""Reliability (issue 9): every bad input gets a clear message naming the file and what to do.

Each test feeds one kind of bad input at the level a user meets it (the headless pipeline,
the core function, and for some the Processing algorithm) and checks the message names the
file or parameter and the remedy -- or, where the input can be used anyway, that the run
finishes with a correct result and says what it skipped. docs/reliability.md lists them.
"""

import errno
import os
import sqlite3

import numpy as np
import pytest

from rel_fixtures import SHIFT_PX, fast_params, image, read_all, stack, write
from slidewatch.core import input_checks as ic
from slidewatch.core.errors import InputError, OutputError, ParameterError
from slidewatch.core.run.pipeline import run_pipeline


def _run(inp, out, **kw):
    return run_pipeline(str(inp), str(out), fast_params(**kw))


def _log(out):
    with open(os.path.join(str(out), "slidewatch.log"), encoding="utf-8") as fh:
        return fh.read()


# -- the Processing algorithms --------------------------------------------------------------


def _alg_error(alg_id, params):
    """Run a SlideWatch algorithm as the toolbox and qgis_process do; return the message of
    the QgsProcessingException it raises (fails if it succeeds or raises anything else)."""
    from qgis.core import (QgsApplication, QgsProcessingAlgorithm, QgsProcessingContext,
                           QgsProcessingException, QgsProcessingFeedback)
    alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
    assert alg is not None, alg_id
    with pytest.raises(QgsProcessingException) as info:
        QgsProcessingAlgorithm.run(alg, params, QgsProcessingContext(), QgsProcessingFeedback(),
                                   {}, False)
    return str(info.value)


# -- fewer than two images, dates ------------------------------------------------------------
def test_fewer_than_two_images(tmp_path, provider):
    stack(tmp_path / "in", n=1)
    with pytest.raises(InputError) as info:
        _run(tmp_path / "in", tmp_path / "out")
    msg = str(info.value)
    assert "Only 1 usable dated image" in msg and str(tmp_path / "in") in msg
    assert "add more images" in msg
    msg = _alg_error("slidewatch:pipeline", {"INPUT": str(tmp_path / "in"),
                                             "OUTPUT_FOLDER": str(tmp_path / "out2")})
    assert "Only 1 usable dated image" in msg and "add more images" in msg


def test_undatable_files_are_named(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    for name in ("a.tif", "b.tif"):
        write(inp / name, image(0))
    with pytest.raises(InputError) as info:
        _run(inp, tmp_path / "out")
    msg = str(info.value)
    assert "a.tif" in msg and "b.tif" in msg and "no date" in msg
    assert "YYYYMMDD" in msg


def test_duplicate_dates_are_named(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    write(inp / "x_20200101.tif", image(0))
    write(inp / "y_2020-01-01.tif", image(1))
    with pytest.raises(InputError) as info:
        _run(inp, tmp_path / "out")
    msg = str(info.value)
    assert "duplicate date 2020-01-01" in msg and "x_20200101.tif" in msg
    assert "y_2020-01-01.tif" in msg and "keep one image per date" in msg


def test_duplicate_date_among_others_is_skipped_and_logged(tmp_path):
    inp = tmp_path / "in"
    stack(inp, n=3)
    write(inp / "copy_2020-03-01.tif", image(1, seed=5))
    res = _run(inp, tmp_path / "out")
    assert res.n_dates == 3
    log = _log(tmp_path / "out")
    assert "duplicate date 2020-03-01" in log and "copy_2020-03-01.tif" in log


# -- grids -----------------------------------------------------------------------------------
def test_mixed_crs_resolution_extent_go_to_a_common_grid(tmp_path):
    """Another CRS, another pixel size, another extent: the images are warped onto one grid
    (the log says so) and the displacement measured across them is right."""
    import rasterio
    from rasterio.warp import Resampling, calculate_default_transform, reproject
    inp = tmp_path / "in"
    inp.mkdir()
    write(inp / "img_20200101.tif", image(0))
    write(inp / "img_20200301.tif", image(1)[:, 4:], x0=500040.0)        # other extent
    a3 = image(3)
    write(inp / "img_20200701.tif", a3.reshape(60, 2, 60, 2).mean(axis=(1, 3)), res=20.0)
    tmp = write(tmp_path / "z33.tif", image(2))
    with rasterio.open(tmp) as s:                                          # other CRS
        t, w, h = calculate_default_transform(s.crs, "EPSG:32632", s.width, s.height,
                                              *s.bounds, resolution=10)
        out = np.full((h, w), np.nan, np.float32)
        reproject(s.read(1), out, src_transform=s.transform, src_crs=s.crs, dst_transform=t,
                  dst_crs="EPSG:32632", resampling=Resampling.cubic, dst_nodata=np.nan)
        prof = dict(s.profile, crs="EPSG:32632", transform=t, width=w, height=h, nodata=np.nan)
    with rasterio.open(str(inp / "img_20200501.tif"), "w", **prof) as d:
        d.write(out, 1)
    # the whole scene moves uniformly here: keep the raw offsets (no stable-ground removal)
    res = _run(inp, tmp_path / "out", stable_ground="none")
    assert res.steps["grid"]["status"] == "done" and res.n_dates == 4
    assert "4 different grids" in _log(tmp_path / "out")
    pair = [p for p in res.paths["pairs"] if p.endswith("pair_20200101_20200301.tif")][0]
    with rasterio.open(pair) as src:
        east = src.read(1)
    assert abs(np.nanmedian(east) - SHIFT_PX * 10.0) < 0.5
    with rasterio.open(res.paths["velocity"]) as v:
        assert np.isfinite(v.read(3)).any()


def test_image_without_overlap_is_named(tmp_path):
    inp = tmp_path / "in"
    stack(inp, n=2)
    far = write(inp / "far_20200601.tif", image(2), x0=900000.0)
    with pytest.raises(InputError) as info:
        _run(inp, tmp_path / "out")
    msg = str(info.value)
    assert "do not overlap" in msg and far in msg and "Remove the images" in msg


# -- empty, clouded, corrupted, truncated, non-raster --------------------------------------
def test_all_nodata_image_is_skipped_and_named(tmp_path):
    inp = tmp_path / "in"
    stack(inp, n=3)
    empty = write(inp / "empty_20200601.tif", np.zeros((120, 120)), nodata=0)
    res = _run(inp, tmp_path / "out")
    assert res.n_dates == 3
    log = _log(tmp_path / "out")
    assert empty in log and "no valid pixel" in log


def test_only_empty_images_left_is_explained(tmp_path):
    inp = tmp_path / "in"
    stack(inp, n=1)
    write(inp / "nan_20200601.tif", np.full((120, 120), np.nan))
    with pytest.raises(InputError) as info:
        _run(inp, tmp_path / "out")
    msg = str(info.value)
    assert "nan_20200601.tif: no valid pixel" in msg and "remove the empty images" in msg


def test_two_usable_images_give_the_pair_not_an_error(tmp_path):
    """Two usable images (one pair; the third image is empty) and the default min_obs of
    3: the network is smaller than min_obs, so each pixel needs its one pair
    (inversion.effective_min_obs) and the run ends with the pair's velocity."""
    import rasterio
    from slidewatch.core.products import BAND_V, VELOCITY_BANDS
    inp = tmp_path / "in"
    stack(inp, n=2)
    write(inp / "z_20200601.tif", np.zeros((120, 120)), nodata=0)
    res = _run(inp, tmp_path / "out")
    assert res.n_dates == 2
    with rasterio.open(res.paths["velocity"]) as src:
        assert np.isfinite(src.read(VELOCITY_BANDS.index(BAND_V) + 1)).any()


def test_too_few_valid_pairs_per_pixel_is_explained(tmp_path):
    """An inversion without any valid pixel is said before the detection, with what to
    do (not 'no valid pixel' from deep inside the detection)."""
    import rasterio
    from affine import Affine
    path = str(tmp_path / "velocity.tif")
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=1,
                       dtype="float32", transform=Affine(10, 0, 0, 0, -10, 80)) as dst:
        dst.write(np.full((1, 8, 8), np.nan, np.float32))
    with pytest.raises(InputError) as info:
        ic.check_velocity_has_data(path, n_pairs=3, n_dates=3, min_obs=3)
    msg = str(info.value)
    assert "The inversion gave no valid pixel" in msg and "velocity.tif" in msg
    assert "(3 pair(s) over 3 date(s))" in msg and "lower the inversion option min_obs" in msg


def test_fully_clouded_image_gives_no_value_not_a_wrong_one(tmp_path):
    """A flat white (cloud) image: its pairs have no valid window (status says why), the
    log names them, and the other pairs still give the right displacement."""
    import rasterio
    inp = tmp_path / "in"
    stack(inp, n=4)
    write(inp / "overcast_20200601.tif", np.full((120, 120), 9000.0),
          tags={"CLOUD_FRACTION": "1.0"})
    # the tiny stack moves uniformly: keep the raw offsets to check them against the truth
    res = _run(inp, tmp_path / "out", stable_ground="none")
    cloudy = [p for p in res.paths["pairs"] if "20200601" in os.path.basename(p)]
    clear = [p for p in res.paths["pairs"] if p not in cloudy]
    assert cloudy and clear
    for p in cloudy:
        with rasterio.open(p) as src:
            east, status = src.read(1), src.read(5)
        assert not np.isfinite(east).any() and (status != 0).all()
    log = _log(tmp_path / "out")
    assert "less than 20 % valid windows" in log and os.path.basename(cloudy[0]) in log
    with rasterio.open(clear[0]) as src:   # 2020-01-01 / 2020-03-01: SHIFT_PX columns
        east = src.read(1)
    assert abs(np.nanmedian(east) - SHIFT_PX * 10.0) < 0.5


def test_corrupted_truncated_and_non_raster_files_are_skipped(tmp_path):
    inp = tmp_path / "in"
    good = stack(inp, n=3)
    bad = str(inp / "bad_20200701.tif")
    with open(bad, "wb") as fh:
        fh.write(b"II*\x00" + b"garbage" * 200)
    trunc = write(inp / "cut_20200801.tif", image(3))
    with open(trunc, "rb") as fh:
        data = fh.read()
    with open(trunc, "wb") as fh:
        fh.write(data[:len(data) // 2])
    fake = str(inp / "fake_20200901.tif")
    with open(fake, "w") as fh:
        fh.write("this is not an image")
    (inp / "notes_20201001.txt").write_text("field notes")
    scan = ic.scan_image_folder(str(inp))
    assert sorted(scan["rasters"]) == sorted(good)
    assert {p for p, _ in scan["unreadable"]} == {bad, trunc, fake}
    assert scan["not_raster"] == [str(inp / "notes_20201001.txt")]
    res = _run(inp, tmp_path / "out")
    assert res.n_dates == 3
    log = _log(tmp_path / "out")
    for p in (bad, trunc, fake):
        assert p in log and "cannot be read" in log


# -- parameters --------------------------------------------------------------------------------
def test_band_index_that_does_not_exist(tmp_path, provider):
    inp = tmp_path / "in"
    paths = stack(inp, n=2)
    with pytest.raises(InputError) as info:
        _run(inp, tmp_path / "out", band=5)
    msg = str(info.value)
    assert paths[0] in msg and "band 5" in msg and "choose a band that exists" in msg
    with pytest.raises(InputError) as info:
        ic.check_band_index(paths[0], 3)
    assert "Choose a band between 1 and 1" in str(info.value)
    msg = _alg_error("slidewatch:correlate_pair", {
        "REFERENCE": paths[0], "SECONDARY": paths[1], "BAND": 3, "WINDOW": 16, "SEARCH": 4,
        "OUTPUT": str(tmp_path / "pair.tif")})
    assert paths[0] in msg and "band 3 does not exist" in msg and "between 1 and 1" in msg
    assert not os.path.exists(tmp_path / "pair.tif")


def test_window_larger_than_image(tmp_path, provider):
    from slidewatch.core.matching.correlation import STATUS_OUTSIDE, correlate
    from slidewatch.core.matching.pair_correlation import correlate_pair_rasters
    inp = tmp_path / "in"
    paths = stack(inp, n=3)
    with pytest.raises(ParameterError) as info:
        _run(inp, tmp_path / "out", window=200)
    assert "larger than image" in str(info.value) and paths[0] in str(info.value)
    assert "at most 120 px" in str(info.value)
    with pytest.raises(ParameterError):
        correlate_pair_rasters(paths[0], paths[1], str(tmp_path / "p.tif"), window=200)
    msg = _alg_error("slidewatch:correlate_pair", {
        "REFERENCE": paths[0], "SECONDARY": paths[1], "WINDOW": 200, "SEARCH": 4,
        "OUTPUT": str(tmp_path / "pair.tif")})
    assert "window of at most 120 px" in msg
    # the array API documents an all-NaN result with a status instead (never garbage)
    res = correlate(image(0)[:20, :20], image(1)[:20, :20], window=32, step=8, search=4)
    assert not np.isfinite(res.dx).any() and (res.status == STATUS_OUTSIDE).all()


def test_search_range_larger_than_the_window_allows(tmp_path, provider):
    inp = tmp_path / "in"
    paths = stack(inp, n=3)
    with pytest.raises(ParameterError) as info:
        _run(inp, tmp_path / "out", window=16, search=40)
    assert "Search range 40 px is larger than the window" in str(info.value)
    with pytest.raises(ParameterError) as info:
        ic.check_window_search((120, 120), 64, 40)
    assert "does not fit" in str(info.value) and "at most 28 px" in str(info.value)
    msg = _alg_error("slidewatch:correlate_pair", {
        "REFERENCE": paths[0], "SECONDARY": paths[1], "WINDOW": 64, "SEARCH": 40,
        "OUTPUT": str(tmp_path / "pair.tif")})
    assert "Search range 40 px" in msg and paths[0] in msg


# -- outputs -----------------------------------------------------------------------------------
def test_unwritable_output_folder(tmp_path, provider):
    inp = tmp_path / "in"
    stack(inp, n=3)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = str(blocker / "results")
    with pytest.raises(OutputError) as info:
        _run(inp, out)
    assert out in str(info.value) and "Choose a folder you can write to" in str(info.value)
    with pytest.raises(OutputError):
        ic.check_writable_folder(out)
    msg = _alg_error("slidewatch:pipeline", {"INPUT": str(inp), "OUTPUT_FOLDER": out})
    assert out in msg and "Choose a folder you can write to" in msg


def test_read_only_output_folder(tmp_path):
    """A really read-only file system (a tmpfs mounted ro; needs root/mount, else skipped):
    caught even as root, where permission bits do not apply."""
    import subprocess
    ro = tmp_path / "ro"
    ro.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        with pytest.raises(OutputError) as info:
            ic.check_writable_folder(str(ro))
        assert str(ro) in str(info.value) and "not writable" in str(info.value)
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)


def test_full_disk_at_the_write_layer(tmp_path, monkeypatch):
    """os.replace failing with ENOSPC (mock): clear message, nothing under the final name,
    no temporary left behind."""
    from slidewatch.core import raster_io
    from slidewatch.core.matching.pair_correlation import correlate_pair_rasters
    paths = stack(tmp_path / "in", n=2)
    out = str(tmp_path / "out" / "pair_20200101_20200301.tif")

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(raster_io.os, "replace", full)
    with pytest.raises(OutputError) as info:
        correlate_pair_rasters(paths[0], paths[1], out, window=16, step=8, search=4)
    assert "disk is full" in str(info.value) and out in str(info.value)
    assert "Free some space" in str(info.value)
    assert os.listdir(tmp_path / "out") == []


def test_full_disk_real_tmpfs(tmp_path):
    """A really full file system (tiny tmpfs; skipped where mount is not allowed): GDAL only
    logs its write errors, the write layer still refuses to publish the truncated file."""
    import subprocess
    from slidewatch.core.matching.pair_correlation import correlate_pair_rasters
    from slidewatch.core.raster_io import write_bands
    paths = stack(tmp_path / "in", n=2)
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(tiny)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        with open(tiny / "filler", "wb") as fh:
            try:
                fh.write(b"x" * (64 * 1024 - 8192))
                fh.flush()
            except OSError:
                pass
        out = str(tiny / "pair_20200101_20200301.tif")
        with pytest.raises(OutputError) as info:
            correlate_pair_rasters(paths[0], paths[1], out, window=16, step=2, search=4)
        assert "disk is full" in str(info.value) or "did not complete" in str(info.value)
        with pytest.raises(OutputError):
            write_bands(str(tiny / "big.tif"), [np.random.rand(300, 300)] * 3, None, None)
        assert sorted(os.listdir(tiny)) == ["filler"]
        with pytest.raises(OutputError) as info:
            ic.check_free_space(str(tiny), 10 * 1024 * 1024, "the pair rasters")
        assert str(tiny) in str(info.value) and "Free some space" in str(info.value)
    finally:
        subprocess.run(["umount", str(tiny)], capture_output=True)


# -- NaN / Inf ---------------------------------------------------------------------------------
def test_nan_and_inf_in_inputs(tmp_path):
    """Inf and NaN in an image: never propagated as Inf, their windows get a status, the
    rest of the pair is measured correctly."""
    import rasterio
    from slidewatch.core.matching.pair_correlation import correlate_pair_rasters
    a, b = image(0), image(1)
    b[10:40, 10:40] = np.inf
    b[70:100, 70:100] = np.nan
    a[5:20, 90:110] = -np.inf
    pa = write(tmp_path / "a_20200101.tif", a)
    pb = write(tmp_path / "b_20200301.tif", b)
    out = str(tmp_path / "pair_20200101_20200301.tif")
    correlate_pair_rasters(pa, pb, out, window=16, step=8, search=4)
    with rasterio.open(out) as src:
        east, north, ncc, snr, status = src.read()
    for band in (east, north, ncc, snr):
        assert not np.isinf(band).any()
    assert np.isnan(east[status != 0]).all() and np.isfinite(east[status == 0]).all()
    assert (status[2:4, 2:4] != 0).all() and (status[9:12, 9:12] != 0).all()
    assert abs(np.nanmedian(east) - SHIFT_PX * 10.0) < 0.3
    arr, n_bad = ic.sanitize_array(np.array([[1, np.inf], [-np.inf, np.nan]]))
    assert n_bad == 3 and arr.dtype == np.float32 and np.isnan(arr).sum() == 3


# -- pairs.csv edited by hand ------------------------------------------------------------------
def _pairs_csv(folder, rows):
    head = "reference_date,secondary_date,reference_path,secondary_path,baseline_days,score," \
           "selected,reason\n"
    path = os.path.join(str(folder), "pairs.csv")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(head + "".join(r + "\n" for r in rows))
    return path


def test_hand_edited_pairs_csv_bad_rows(tmp_path, provider):
    paths = stack(tmp_path, n=3)
    a, b, c = (os.path.basename(p) for p in paths)
    csv_path = _pairs_csv(tmp_path, [
        "2020-01-01,2020-03-01,%s,%s,60,0.9,1,ok" % (a, b),          # line 2: good
        "2020-13-45,2020-03-01,%s,%s,60,0.9,1,edited" % (a, b),      # line 3: bad date
        "2020-05-01,2020-03-01,%s,%s,60,0.9,1,swapped" % (c, b),     # line 4: order
        "2020-01-01,2020-05-01,%s,missing.tif,120,0.9,1,x" % a,      # line 5: no file
        "2020-03-01,2020-05-01,%s,%s,sixty,0.9,yes please,x" % (b, c),  # line 6
        "2020-01-01,2020-03-01,%s,%s,60,0.9,1,again" % (a, b),       # line 7: duplicate
    ])
    with pytest.raises(InputError) as info:
        ic.validate_pairs_csv(csv_path)
    msg = str(info.value)
    assert csv_path in msg and "5 bad row(s)" in msg
    for line, what in ((3, "not a date"), (4, "not after"), (5, "does not exist"),
                       (6, "selected must be 1 or 0"), (7, "already listed on line 2")):
        assert "line %d: " % line in msg and what in msg, (line, what)
    assert "Fix or delete these rows" in msg
    out = str(tmp_path / "out")
    msg = _alg_error("slidewatch:correlate_pairs", {"PAIRS": csv_path, "WINDOW": 16,
                                                    "SEARCH": 4, "OUTPUT_FOLDER": out})
    assert "line 3: reference_date '2020-13-45' is not a date" in msg
    assert not os.path.exists(os.path.join(out, "pairs")) or not os.listdir(
        os.path.join(out, "pairs"))
    # fixed file: accepted, only the selected rows are returned
    csv_path = _pairs_csv(tmp_path, ["2020-01-01,2020-03-01,%s,%s,60,0.9,1,ok" % (a, b),
                                     "2020-01-01,2020-05-01,%s,%s,,,0,x" % (a, c)])
    rows = ic.validate_pairs_csv(csv_path)
    assert [(r["reference_date"], r["secondary_date"]) for r in rows] == [
        ("2020-01-01", "2020-03-01")]
    # a header edited away
    with open(csv_path, "w") as fh:
        fh.write("2020-01-01,2020-03-01\n")
    with pytest.raises(InputError) as info:
        ic.validate_pairs_csv(csv_path)
    assert "Restore the header line" in str(info.value)


# -- detections layer without validation fields ----------------------------------------------
def _foreign_gpkg(path):
    """A polygon GeoPackage made by another tool: no status/comment/validated_* fields."""
    from osgeo import ogr, osr
    drv = ogr.GetDriverByName("GPKG")
    ds = drv.CreateDataSource(str(path))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    lyr = ds.CreateLayer("detections", srs, ogr.wkbPolygon)
    lyr.CreateField(ogr.FieldDefn("id", ogr.OFTInteger))
    lyr.CreateField(ogr.FieldDefn("area_m2", ogr.OFTReal))
    for i in range(3):
        f = ogr.Feature(lyr.GetLayerDefn())
        f.SetField("id", i + 1)
        f.SetField("area_m2", 100.0)
        x = 500000 + 100 * i
        f.SetGeometry(ogr.CreateGeometryFromWkt(
            "POLYGON ((%d 5000000, %d 5000000, %d 4999990, %d 4999990, %d 5000000))"
            % (x, x + 10, x + 10, x, x)))
        lyr.CreateFeature(f)
    ds = None
    return str(path)


def test_detections_layer_missing_validation_fields(tmp_path):
    from slidewatch.core.detect.detections_store import ensure_validation_fields, record_decision
    gpkg = _foreign_gpkg(tmp_path / "other_tool.gpkg")
    with pytest.raises(InputError) as info:
        ic.check_detections_layer(gpkg)
    msg = str(info.value)
    assert gpkg in msg and "status, comment, validated_by, validated_at" in msg
    assert "ensure_validation_fields" in msg and "validation panel" in msg
    with pytest.raises(InputError) as info:
        record_decision(gpkg, 1, "confirmed")
    assert gpkg in str(info.value) and "ensure_validation_fields" in str(info.value)
    assert ensure_validation_fields(gpkg) == ["status", "comment", "validated_by",
                                              "validated_at"]
    missing = ic.check_detections_layer(gpkg)
    assert "status" not in missing and "v_mean_m_per_yr" in missing
    record_decision(gpkg, 2, "confirmed", comment="seen in the field", analyst="me")
    with sqlite3.connect(gpkg) as conn:
        rows = dict(conn.execute("SELECT id, status FROM detections").fetchall())
    assert rows == {1: "unvalidated", 2: "confirmed", 3: "unvalidated"}
    with pytest.raises(InputError) as info:
        ic.check_detections_layer(gpkg, layer="nope")
    assert "has no layer 'nope'" in str(info.value)


def test_not_enough_free_space_is_reported_before_correlating(tmp_path, monkeypatch):
    """The pipeline checks the free space for the pair rasters before correlating."""
    import collections
    import shutil as _shutil
    inp = tmp_path / "in"
    stack(inp, n=3)
    real = _shutil.disk_usage
    usage = collections.namedtuple("usage", "total used free")

    def tiny(path):
        u = real(path)
        return usage(u.total, u.used, 1000) if "out" in str(path) else u

    monkeypatch.setattr(ic.shutil, "disk_usage", tiny)
    with pytest.raises(OutputError) as info:
        _run(inp, tmp_path / "out")
    msg = str(info.value)
    assert "Not enough free disk space" in msg and "3 pair raster(s)" in msg
    assert "Free some space or choose another output folder" in msg
    assert not os.path.exists(tmp_path / "out" / "pairs") or not os.listdir(
        tmp_path / "out" / "pairs")
