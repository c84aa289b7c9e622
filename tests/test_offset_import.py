"""Import of other correlators' offsets (issue 17): every reader round-trips a known
displacement with the right sign and unit; nodata, dates and errors; the inversion runs on
an imported pairs/ folder; the Processing algorithm runs in QGIS.

Samples: tests/data/import/ (scripts/make_import_samples.py; truth.json holds the known
motion: a block moving east and north, a corner without data).
"""

import datetime as dt
import json
import os
import shutil

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from slidewatch.core.outputs import offset_import as oi
from slidewatch.core.matching.correlation import STATUS_LOW_NCC, STATUS_NODATA, STATUS_VALID
from slidewatch.core.errors import InputError, ParameterError
from slidewatch.core.matching.pair_correlation import BANDS

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "import")
with open(os.path.join(DATA, "truth.json")) as _fh:
    TRUTH = json.load(_fh)
R0, R1 = TRUTH["block_rows"]
C0, C1 = TRUTH["block_cols"]
INNER = (slice(R0 + 2, R1 - 2), slice(C0 + 2, C1 - 2))   # block minus its edges
OUTSIDE = (slice(R1 + 2, None), slice(C1 + 2, None))
CORNER = (slice(0, TRUTH["corner"][0]), slice(0, TRUTH["corner"][1]))
UTM32 = CRS.from_epsg(32632)
T10 = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5100000.0)


def _path(rel):
    return os.path.join(DATA, rel)


def _check_known_motion(pair, truth):
    tol = truth["tol_m"]
    assert pair.reference_date == truth["reference_date"]
    assert pair.secondary_date == truth["secondary_date"]
    # +east / +north of the right size inside the block, still outside
    assert np.nanmedian(pair.east_m[INNER]) == pytest.approx(truth["east_m"], abs=tol)
    assert np.nanmedian(pair.north_m[INNER]) == pytest.approx(truth["north_m"], abs=tol)
    assert abs(np.nanmedian(pair.east_m[OUTSIDE])) < tol
    assert abs(np.nanmedian(pair.north_m[OUTSIDE])) < tol
    # nodata -> NaN and the existing "no data" status; the rest valid
    assert np.isnan(pair.east_m[CORNER]).all() and np.isnan(pair.north_m[CORNER]).all()
    assert (pair.status[CORNER] == STATUS_NODATA).all()
    assert (pair.status[INNER] == STATUS_VALID).all()
    assert np.isfinite(pair.ncc[INNER]).all()
    assert abs(pair.transform.a) == truth["pixel_m"]


# ------------------------------------------------------------------ readers on the samples
def test_cosicorr_sample_round_trip():
    t = TRUTH["cosicorr"]
    pair = oi.read_cosicorr(_path(t["file"]))
    _check_known_motion(pair, t)
    assert pair.ncc[INNER].min() > 0.5          # COSI-Corr SNR is the quality
    assert "SNR" in pair.tags["NCC_SOURCE"]


def test_cosicorr_classic_envi_output(tmp_path):
    """Classic COSI-Corr (ENVI/IDL) writes an ENVI file (no extension + .hdr) with the band
    names E/W, N/S, SNR."""
    e, n = _motion()
    snr = np.where(np.isnan(e), 0.0, 0.9)
    path = str(tmp_path / "corr_20200105_20200130")
    with rasterio.open(path, "w", driver="ENVI", height=e.shape[0], width=e.shape[1], count=3,
                       dtype="float32", crs=UTM32, transform=T10) as dst:
        for i, (b, d) in enumerate(((e, "E/W"), (n, "N/S"), (snr, "SNR")), start=1):
            dst.write(b.astype(np.float32), i)
            dst.set_band_description(i, d)
    assert oi.detect_format(path) == "cosicorr"
    res = oi.import_offsets([str(tmp_path)], str(tmp_path / "out"))
    assert len(res.paths) == 1
    with rasterio.open(res.paths[0]) as src:
        assert np.nanmedian(src.read(1)[INNER]) == pytest.approx(3.0, abs=1e-4)
        assert np.nanmedian(src.read(2)[INNER]) == pytest.approx(2.0, abs=1e-4)
        assert (src.read(5)[CORNER] == STATUS_NODATA).all()


def test_micmac_sample_round_trip():
    t = TRUTH["micmac"]
    pair = oi.read_micmac(_path(t["file"]))
    _check_known_motion(pair, t)
    # the grid is the first image's (the Px maps carry none), the step from param.xml
    with rasterio.open(_path(os.path.join(os.path.dirname(os.path.dirname(t["file"])),
                                          "T32TLR_20200105T103329_B04.tif"))) as src:
        assert pair.transform == src.transform and pair.crs == src.crs
    assert json.loads(pair.tags["MICMAC_PX_STEP"]) == [t["px_step"], t["px_step"]]
    assert 0.6 < np.nanmedian(pair.ncc[INNER]) < 1.0


def test_micmac_later_first_image_reverses_the_signs(tmp_path):
    t = TRUTH["micmac"]
    src = os.path.dirname(os.path.dirname(_path(t["file"])))
    dst = str(tmp_path / "swapped")
    shutil.copytree(src, dst)
    xml = os.path.join(dst, "param.xml")
    text = open(xml).read()
    im1, im2 = "T32TLR_20200105T103329_B04.tif", "T32TLR_20200130T103251_B04.tif"
    text = text.replace(im1, "@@").replace(im2, im1).replace("@@", im2)
    with open(xml, "w") as fh:
        fh.write(text)
    pair = oi.read_micmac(os.path.join(dst, "MEC", "Px1_Num6_DeZoom1_LeChantier.tif"),
                          reference_image=os.path.join(dst, im1))
    # Im1 = the later image: the same offsets are the opposite motion
    assert np.nanmedian(pair.east_m[INNER]) == pytest.approx(-t["east_m"], abs=t["tol_m"])
    assert np.nanmedian(pair.north_m[INNER]) == pytest.approx(-t["north_m"], abs=t["tol_m"])
    assert "reversed" in pair.tags["ORIGINAL_SIGN_CONVENTION"]


def test_micmac_step_given_overrides_and_missing_step_is_an_error(tmp_path):
    t = TRUTH["micmac"]
    src = os.path.dirname(os.path.dirname(_path(t["file"])))
    dst = str(tmp_path / "noparam")
    shutil.copytree(src, dst)
    os.remove(os.path.join(dst, "param.xml"))
    px1 = os.path.join(dst, "MEC", "Px1_Num6_DeZoom1_LeChantier.tif")
    with pytest.raises(InputError, match="px_step") as exc:
        oi.read_micmac(px1)
    assert "Px1_Num6" in str(exc.value)
    pair = oi.read_micmac(px1, px_step=t["px_step"])
    assert np.nanmedian(pair.east_m[INNER]) == pytest.approx(t["east_m"], abs=t["tol_m"])


def test_geotiff_two_files_in_metres():
    t = TRUTH["geotiff"]
    pair = oi.read_geotiff_pair(_path(t["east"]), _path(t["north"]), units="m")
    _check_known_motion(pair, t)
    assert "constant" in pair.tags["NCC_SOURCE"]
    assert (pair.ncc[INNER] == oi.NEUTRAL_NCC).all()


def test_geotiff_two_band_pixels_row_convention():
    t = TRUTH["geotiff"]
    path = _path(t["two_band_px_rows"])
    pair = oi.read_geotiff_pair(path, units="px", north_convention="row")
    _check_known_motion(pair, t)
    # read with the wrong convention the north component comes back reversed and in px
    wrong = oi.read_geotiff_pair(path, units="m", north_convention="north")
    assert np.nanmedian(wrong.north_m[INNER]) == pytest.approx(-t["north_m"] / 10.0, abs=0.02)


def test_geotiff_velocity_units_use_the_time_span(tmp_path):
    e = np.full((20, 20), 36.525, np.float32)      # m/yr -> 0.1 m/day
    n = np.full((20, 20), -73.05, np.float32)
    for name, a in (("v_east_20200101_20200111.tif", e), ("v_north_20200101_20200111.tif", n)):
        _write(str(tmp_path / name), [a])
    pair = oi.read_geotiff_pair(str(tmp_path / "v_east_20200101_20200111.tif"),
                                str(tmp_path / "v_north_20200101_20200111.tif"), units="m/yr")
    assert np.allclose(pair.east_m, 1.0, atol=1e-5) and np.allclose(pair.north_m, -2.0,
                                                                     atol=1e-5)
    assert pair.tags["IMPORT_TIME_SPAN_DAYS"] == "10.0"


def test_itslive_sample_round_trip():
    t = TRUTH["itslive"]
    pair = oi.read_itslive(_path(t["file"]))
    _check_known_motion(pair, t)
    # dates from img_pair_info, m/yr x date_dt / 365 (autoRIFT's year)
    assert float(pair.tags["IMPORT_TIME_SPAN_DAYS"]) == pytest.approx(16.0, abs=1e-4)
    assert pair.crs == CRS.from_epsg(32607)
    assert (pair.transform.c, pair.transform.f) == (465727.5, 6681037.5)  # corner, not centre
    r, c = t["interp_rows"], t["interp_cols"]
    assert (pair.status[r[0]:r[1], c[0]:c[1]] == STATUS_NODATA).all()   # interpolated
    kept = oi.read_itslive(_path(t["file"]), keep_interpolated=True)
    assert (kept.status[r[0]:r[1], c[0]:c[1]] == STATUS_VALID).all()


def test_itslive_dates_from_the_granule_name_without_metadata(monkeypatch):
    t = TRUTH["itslive"]
    monkeypatch.setattr(oi, "_netcdf_attributes", lambda path, var: {})
    pair = oi.read_itslive(_path(t["file"]))
    assert (pair.reference_date, pair.secondary_date) == (t["reference_date"],
                                                          t["secondary_date"])
    assert np.nanmedian(pair.east_m[INNER]) == pytest.approx(t["east_m"], abs=t["tol_m"])


def test_itslive_unknown_velocity_unit_is_an_error():
    with pytest.raises(InputError, match="unit of vx/vy in 'g.nc'"):
        oi._velocity_scale("furlong/fortnight", "g.nc")
    assert oi._velocity_scale("m/y", "g.nc") == pytest.approx(1 / 365.0)


def test_carst_real_yahtse_crop():
    t = TRUTH["carst"]
    east_path = _path(t["file"])
    pair = oi.read_carst(east_path)
    assert (pair.reference_date, pair.secondary_date) == ("2016-07-18", "2016-08-03")
    with rasterio.open(east_path) as se, rasterio.open(east_path.replace("east", "north")) as sn:
        e, n, nod = se.read(1), sn.read(1), se.nodata
        assert se.transform == pair.transform
    ok = (e != nod) & (n != nod)
    assert ok.mean() > 0.5 and (~ok).any()
    # metres kept, east negated (CARST's east points west), north kept; -32768 -> nodata
    assert np.allclose(pair.east_m[ok], -e[ok]) and np.allclose(pair.north_m[ok], n[ok])
    assert (pair.status[~ok] == STATUS_NODATA).all() and np.isnan(pair.east_m[~ok]).all()
    # the fast tongue: metres over 16 days, i.e. a few to ~20 m/day as CARST measures it
    speed = np.hypot(pair.east_m, pair.north_m) / 16.0
    fast = speed[ok][speed[ok] > 1.0]
    assert fast.size > 200 and 2.0 < np.median(fast) < 25.0


def test_carst_known_motion_and_both_name_conventions(tmp_path):
    e, n = _motion()
    # CARST writes the east offset westwards positive, north as is, -32768 nodata
    for stamp in ("2020005_2020030", "20200130103251_20200105103329"):
        east_raw = np.where(np.isnan(e), -32768.0, -e)
        north_raw = np.where(np.isnan(n), -32768.0, n)
        ep = str(tmp_path / ("%s_r32x32_s32x32_eastxyz.tif" % stamp))
        _write(ep, [east_raw], nodata=-32768.0)
        _write(ep.replace("east", "north"), [north_raw], nodata=-32768.0)
        pair = oi.read_carst(ep)
        assert (pair.reference_date, pair.secondary_date) == ("2020-01-05", "2020-01-30")
        assert np.nanmedian(pair.east_m[INNER]) == pytest.approx(3.0, abs=0.05)
        assert np.nanmedian(pair.north_m[INNER]) == pytest.approx(2.0, abs=0.05)
        assert (pair.status[CORNER] == STATUS_NODATA).all()


# ------------------------------------------------------------------------ written rasters
def test_written_pair_raster_is_a_slidewatch_pair(tmp_path):
    from slidewatch.core.series.timeseries_io import pair_dates
    t = TRUTH["cosicorr"]
    pair = oi.read_cosicorr(_path(t["file"]))
    path = oi.write_imported_pair(pair, str(tmp_path))
    assert path == str(tmp_path / "pairs" / "pair_20200105_20200130.tif")
    with rasterio.open(path) as src:
        assert src.descriptions == BANDS and src.count == 5
        tags = src.tags()
        assert tags["REFERENCE_DATE"] == "2020-01-05" and tags["SECONDARY_DATE"] == "2020-01-30"
        assert tags["IMPORTED_FROM"] == "COSI-Corr / geoCosiCorr3D"
        for key in ("ORIGINAL_UNITS", "ORIGINAL_SIGN_CONVENTION", "ORIGINAL_NODATA",
                    "NCC_SOURCE", "SNR_SOURCE", "STATUS_CODES", "CONVENTION"):
            assert tags[key], key
        assert json.loads(tags["IMPORTED_SOURCE"]) == [os.path.basename(t["file"])]
        assert src.tags(1)["UNITS"] == "m" and src.tags(2)["UNITS"] == "m"
        assert "STATUS_%d" % STATUS_NODATA in src.tags(5)
        assert np.isnan(src.nodata)
        east = src.read(1)
        assert np.nanmedian(east[INNER]) == pytest.approx(t["east_m"], abs=t["tol_m"])
        assert (src.read(5)[CORNER] == STATUS_NODATA).all()
    ref, sec = pair_dates(path)
    assert str(ref) == "2020-01-05" and str(sec) == "2020-01-30"


def test_min_quality_marks_low_ncc(tmp_path):
    pair = oi.read_cosicorr(_path(TRUTH["cosicorr"]["file"]), min_quality=0.9)
    low = pair.status == STATUS_LOW_NCC
    assert low.any() and (pair.ncc[low] < 0.9).all()
    assert (pair.status[(pair.ncc >= 0.9) & np.isfinite(pair.east_m)] == STATUS_VALID).all()


# ------------------------------------------------------------------ detection and errors
def test_auto_detection_groups_every_sample():
    jobs, skipped = oi.find_import_jobs([DATA])
    kinds = sorted(k for k, _ in jobs)
    assert kinds == ["carst", "cosicorr", "geotiff", "geotiff", "itslive", "micmac"]
    carst = [kw for k, kw in jobs if k == "carst"][0]
    assert carst["east_path"].endswith("_eastxyz.tif")
    pair_job = [kw for k, kw in jobs if k == "geotiff" and "north_path" in kw][0]
    assert pair_job["east_path"].endswith("_east.tif") and \
        pair_job["north_path"].endswith("_north.tif")
    assert not any(p.endswith("_northxyz.tif") or "Px2_" in p for p, _ in skipped)


def test_file_without_dates_names_the_file(tmp_path):
    p = str(tmp_path / "offsets_nodate.tif")
    _write(p, [np.zeros((5, 5)), np.zeros((5, 5))])
    with pytest.raises(InputError, match="offsets_nodate.tif") as exc:
        oi.read_geotiff_pair(p)
    assert "reference_date" in str(exc.value)
    pair = oi.read_geotiff_pair(p, reference_date="2021-03-01", secondary_date="2021-03-11")
    assert pair.name == "pair_20210301_20210311.tif"
    with pytest.raises(InputError, match="not before"):
        oi.read_geotiff_pair(p, reference_date="2021-03-11", secondary_date="2021-03-01")


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_bad_inputs_give_clear_errors(tmp_path):
    bad = str(tmp_path / "broken_20200101_20200111.tif")
    with open(bad, "w") as fh:
        fh.write("not a raster")
    with pytest.raises(InputError, match="broken_20200101_20200111.tif"):
        oi.read_cosicorr(bad)
    with pytest.raises(ParameterError, match="units"):
        oi.read_geotiff_pair(_path(TRUTH["geotiff"]["east"]), units="furlongs")
    one = str(tmp_path / "one_20200101_20200111.tif")
    _write(one, [np.zeros((5, 5))])
    with pytest.raises(InputError, match="COSI-Corr"):
        oi.read_cosicorr(one)
    ungeo = str(tmp_path / "ungeo_20200101_20200111.tif")
    _write(ungeo, [np.zeros((5, 5)), np.zeros((5, 5))], transform=None)
    with pytest.raises(InputError, match="not georeferenced"):
        oi.read_geotiff_pair(ungeo)
    with pytest.raises(InputError, match="No importable offset file"):
        oi.import_offsets([str(tmp_path / "one_20200101_20200111.tif")], str(tmp_path / "o"),
                          fmt="itslive")
    with pytest.raises(InputError, match="does not exist"):
        oi.import_offsets([str(tmp_path / "missing")], str(tmp_path / "o"))


def test_pairs_on_one_lattice_are_padded_and_projections_refused(tmp_path):
    e, n = _motion()
    _write(str(tmp_path / "a" / "a_20200101_20200111_east.tif"), [e])
    _write(str(tmp_path / "a" / "a_20200101_20200111_north.tif"), [n])
    shifted = Affine(10.0, 0.0, T10.c + 50.0, 0.0, -10.0, T10.f - 30.0)
    _write(str(tmp_path / "a" / "b_20200111_20200121_east.tif"), [e], transform=shifted)
    _write(str(tmp_path / "a" / "b_20200111_20200121_north.tif"), [n], transform=shifted)
    res = oi.import_offsets([str(tmp_path / "a")], str(tmp_path / "out"))
    assert len(res.paths) == 2
    grids = []
    for p in res.paths:
        with rasterio.open(p) as src:
            grids.append((src.transform, src.shape))
    assert grids[0] == grids[1] and grids[0][1] == (43, 55)
    _write(str(tmp_path / "c" / "c_20200101_20200111_east.tif"), [e])
    _write(str(tmp_path / "c" / "c_20200101_20200111_north.tif"), [n])
    _write(str(tmp_path / "c" / "d_20200111_20200121_east.tif"), [e], crs=CRS.from_epsg(32633))
    _write(str(tmp_path / "c" / "d_20200111_20200121_north.tif"), [n],
           crs=CRS.from_epsg(32633))
    with pytest.raises(InputError, match="different projections"):
        oi.import_offsets([str(tmp_path / "c")], str(tmp_path / "out2"))



def _carst_sample(folder):
    """A CARST pair of the known motion (east written westwards positive, -32768 nodata)."""
    e, n = _motion()
    ep = os.path.join(folder, "2020005_2020030_r32x32_s32x32_eastxyz.tif")
    _write(ep, [np.where(np.isnan(e), -32768.0, -e)], nodata=-32768.0)
    _write(ep.replace("east", "north"), [np.where(np.isnan(n), -32768.0, n)], nodata=-32768.0)
    return ep


CARST_TRUTH = dict(east_m=3.0, north_m=2.0, tol_m=0.1, reference_date="2020-01-05",
                   secondary_date="2020-01-30")
#: case: (format, input, import options, known motion, how the input stores it)
ROUND_TRIPS = {
    "geotiff": ("geotiff", lambda tmp: _path(TRUTH["geotiff"]["east"]), {"units": "m"},
                TRUTH["geotiff"], "m, north positive"),
    "geotiff_px_rows": ("geotiff", lambda tmp: _path(TRUTH["geotiff"]["two_band_px_rows"]),
                        {"units": "px", "north_convention": "row"}, TRUTH["geotiff"],
                        "pixels, positive down the rows"),
    "cosicorr": ("cosicorr", lambda tmp: _path(TRUTH["cosicorr"]["file"]), {},
                 TRUTH["cosicorr"], "m"),
    "micmac": ("micmac",
               lambda tmp: os.path.dirname(os.path.dirname(_path(TRUTH["micmac"]["file"]))),
               {}, TRUTH["micmac"], "parallax steps of 0.05 px, positive down the rows"),
    "itslive": ("itslive", lambda tmp: _path(TRUTH["itslive"]["file"]), {}, TRUTH["itslive"],
                "m/yr (int16)"),
    "carst": ("carst", _carst_sample, {}, CARST_TRUTH, "m, east positive westwards"),
}


@pytest.mark.parametrize("case", sorted(ROUND_TRIPS))
def test_every_importer_round_trips_the_known_displacement(case, tmp_path):
    """Issue 17 target: a known motion (+east, +north, metres over the pair), stored in
    each format's own unit and sign, comes back from the written SlideWatch pair raster -
    the file the inversion reads - in metres with the right sign, the right dates and the
    nodata corner as 'no data'."""
    from slidewatch.core.series.timeseries_io import pair_dates

    fmt, make_input, options, truth, _stored_as = ROUND_TRIPS[case]
    res = oi.import_offsets([make_input(str(tmp_path))], str(tmp_path / "out"), fmt=fmt,
                            **options)
    assert len(res.paths) == 1, res.paths
    path = res.paths[0]
    ref, sec = truth["reference_date"], truth["secondary_date"]
    assert os.path.basename(path) == "pair_%s_%s.tif" % (ref.replace("-", ""),
                                                          sec.replace("-", ""))
    assert tuple(str(d) for d in pair_dates(path)) == (ref, sec)
    with rasterio.open(path) as dst:
        assert dst.descriptions == BANDS
        assert dst.tags(1)["UNITS"] == "m" and dst.tags(2)["UNITS"] == "m"
        assert dst.tags()["IMPORT_FORMAT"] == fmt
        east, north, status = dst.read(1), dst.read(2), dst.read(5)
    tol = truth["tol_m"]
    assert truth["east_m"] > 0 and truth["north_m"] > 0
    assert np.nanmedian(east[INNER]) == pytest.approx(truth["east_m"], abs=tol)
    assert np.nanmedian(north[INNER]) == pytest.approx(truth["north_m"], abs=tol)
    assert abs(np.nanmedian(east[OUTSIDE])) < tol and abs(np.nanmedian(north[OUTSIDE])) < tol
    assert (status[INNER] == STATUS_VALID).all()
    assert np.isnan(east[CORNER]).all() and (status[CORNER] == STATUS_NODATA).all()


# ----------------------------------------------------------------- inversion on imports
DATES = ["2020-01-01", "2020-01-11", "2020-01-21", "2020-01-31", "2020-02-10"]
VE, VN = 36.525, -18.2625     # m/yr (0.1 and -0.05 m/day)


@pytest.fixture()
def cosicorr_stack(tmp_path):
    """Seven COSI-Corr-format pairs of a constant motion (VE, VN) on one 20 x 20 grid."""
    folder = tmp_path / "cosicorr_stack"
    rng = np.random.default_rng(11)
    for i in range(len(DATES)):
        for j in (i + 1, i + 2):
            if j >= len(DATES):
                continue
            days = (dt.date.fromisoformat(DATES[j]) - dt.date.fromisoformat(DATES[i])).days
            e = VE / 365.25 * days + rng.normal(0, 0.01, (20, 20))
            n = VN / 365.25 * days + rng.normal(0, 0.01, (20, 20))
            snr = np.full((20, 20), 0.9)
            name = "S2_%s_VS_S2_%s_frequency_wz_64_step_8.tif" % (
                DATES[i].replace("-", ""), DATES[j].replace("-", ""))
            _write(str(folder / name), [e, n, snr],
                   descriptions=["East/West", "North/South", "SNR"])
    return str(folder)


def test_inversion_runs_on_an_imported_pairs_folder(cosicorr_stack, tmp_path):
    from slidewatch.core.series.timeseries_io import invert_pair_rasters
    out = str(tmp_path / "imported")
    res = oi.import_offsets([cosicorr_stack], out)
    assert len(res.paths) == 7 and all(os.path.basename(p).startswith("pair_")
                                       for p in res.paths)
    ts = invert_pair_rasters(out, out)
    assert ts.dates == DATES and ts.n_pairs == 7
    with rasterio.open(ts.velocity) as src:
        d = list(src.descriptions)
        ve = src.read(d.index("ve_m_per_yr") + 1)
        vn = src.read(d.index("vn_m_per_yr") + 1)
    assert np.nanmedian(ve) == pytest.approx(VE, rel=0.03)
    assert np.nanmedian(vn) == pytest.approx(VN, rel=0.03)



SLIDE_DATES = [(dt.date(2020, 1, 1) + dt.timedelta(days=10 * k)).isoformat() for k in range(20)]
SLIDE_ROWS, SLIDE_COLS = (20, 40), (24, 44)


@pytest.fixture(scope="module")
def imported_slide(tmp_path_factory):
    """A COSI-Corr-format stack of a slide (20 dates, each paired with the next two, 64 x 64
    px of 10 m: a 20 x 20 px block moving (VE, VN), the rest still, 2 cm of noise per pair),
    imported and inverted: (output folder, inversion result)."""
    from slidewatch.core.series.timeseries_io import invert_pair_rasters

    root = tmp_path_factory.mktemp("imported_slide")
    rng = np.random.default_rng(2)
    (r0, r1), (c0, c1) = SLIDE_ROWS, SLIDE_COLS
    for i in range(len(SLIDE_DATES)):
        for j in (i + 1, i + 2):
            if j >= len(SLIDE_DATES):
                continue
            days = (dt.date.fromisoformat(SLIDE_DATES[j])
                    - dt.date.fromisoformat(SLIDE_DATES[i])).days
            e, n = rng.normal(0, 0.02, (2, 64, 64))
            e[r0:r1, c0:c1] += VE / 365.25 * days
            n[r0:r1, c0:c1] += VN / 365.25 * days
            name = "S2_%s_VS_S2_%s_frequency_wz_64_step_8.tif" % (
                SLIDE_DATES[i].replace("-", ""), SLIDE_DATES[j].replace("-", ""))
            _write(str(root / "cosicorr" / name), [e, n, np.full((64, 64), 0.9)],
                   descriptions=["East/West", "North/South", "SNR"])
    out = str(root / "results")
    oi.import_offsets([str(root / "cosicorr")], out)
    return out, invert_pair_rasters(out, out)


def _slide_centre():
    r = (SLIDE_ROWS[0] + SLIDE_ROWS[1]) // 2
    c = (SLIDE_COLS[0] + SLIDE_COLS[1]) // 2
    return r, c, T10 * (c + 0.5, r + 0.5)


def test_detection_quality_layers_and_exports_work_on_imported_pairs(imported_slide):
    """Issue 17: imported pairs feed the inversion, the detection, the quality layers and
    the exports like SlideWatch's own pairs."""
    from slidewatch.core.outputs import exports
    from slidewatch.core.detect.detection import detect_from_folder
    from slidewatch.core.series.quality_layers import compute_quality_layers

    out, ts = imported_slide
    assert ts.n_pairs == 2 * len(SLIDE_DATES) - 3 and ts.dates == SLIDE_DATES
    det = detect_from_folder(os.path.join(out, "timeseries"))
    assert len(det.features) == 1, [f["area_m2"] for f in det.features]
    f = det.features[0]
    assert f["area_m2"] == pytest.approx(400 * 100.0, rel=0.1)    # the 20 x 20 px block
    assert f["v_mean_m_per_yr"] == pytest.approx(np.hypot(VE, VN), rel=0.05)
    q = compute_quality_layers(out)
    with rasterio.open(q.paths["n_valid_pairs"]) as src:
        assert (src.read(1) == ts.n_pairs).all()              # every imported pair valid
    with rasterio.open(q.paths["ncc_share"]) as src:
        assert np.allclose(src.read(1), 1.0)                  # SNR 0.9 >= the 0.5 threshold
    res = exports.export_detection_points(out, formats=("csv",), component="east", units="m")
    with open(res.paths[0]) as fh:
        row = next(__import__("csv").DictReader(fh))
    assert float(row["velocity"]) == pytest.approx(VE, rel=0.05)
    days = (dt.date.fromisoformat(SLIDE_DATES[-1]) - dt.date.fromisoformat(SLIDE_DATES[0])).days
    assert float(row["D" + SLIDE_DATES[-1].replace("-", "")]) == pytest.approx(
        VE / 365.25 * days, rel=0.05)


def test_inspector_plots_an_imported_pixel_with_its_pairs(imported_slide, qgis_iface,
                                                          qgis_new_project):
    """The time-series inspector on an imported folder: the clicked pixel's series, its
    velocity and the imported pair measurements that fed it."""
    from qgis.core import QgsCoordinateReferenceSystem, QgsPointXY

    from slidewatch.ui.timeseries_dock import TimeSeriesDock

    out, _ts = imported_slide
    dock = TimeSeriesDock(qgis_iface, qgis_iface.mainWindow())
    try:
        assert dock.set_folder(out).complete()
        r, c, (x, y) = _slide_centre()
        dock.map_tool.handle_point(QgsPointXY(x, y), QgsCoordinateReferenceSystem("EPSG:32632"))
        assert dock.wait() and dock.last_error is None, dock.last_error
        s = dock.current_series
        assert (s["row"], s["col"]) == (r, c) and s["dates"] == SLIDE_DATES
        assert s["velocity"]["ve_m_per_yr"] == pytest.approx(VE, rel=0.03)
        assert s["velocity"]["vn_m_per_yr"] == pytest.approx(VN, rel=0.03)
        assert len(s["pairs"]) == 2 * len(SLIDE_DATES) - 3
        assert len(dock.curves["pairs_east"].getData()[0]) == 2 * len(s["pairs"])
    finally:
        dock.cleanup()
        dock.deleteLater()

# -------------------------------------------------------------- Processing (pytest-qgis)
def _run(alg_id, params):
    from qgis.core import (QgsApplication, QgsProcessingAlgorithm, QgsProcessingContext,
                           QgsProcessingFeedback)

    class Feedback(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.errors = []

        def reportError(self, error, fatalError=False):  # noqa: N802
            self.errors.append(error)

    alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
    assert alg is not None, alg_id
    feedback = Feedback()
    res, ok = QgsProcessingAlgorithm.run(alg, params, QgsProcessingContext(), feedback)
    return res, ok, feedback


def test_processing_import_then_invert(provider, cosicorr_stack, tmp_path):
    out = str(tmp_path / "qgis_import")
    res, ok, fb = _run("slidewatch:import_offsets", {"INPUT_FOLDER": cosicorr_stack,
                                                      "FORMAT": 2, "OUTPUT_FOLDER": out})
    assert ok, fb.errors
    assert res["N_PAIRS"] == 7 and res["PAIRS_FOLDER"] == os.path.join(out, "pairs")
    res2, ok2, fb2 = _run("slidewatch:invert_timeseries", {"INPUT": out, "OUTPUT_FOLDER": out})
    assert ok2, fb2.errors
    with rasterio.open(res2["VELOCITY"]) as src:
        assert np.nanmedian(src.read(1)) == pytest.approx(VE, rel=0.03)


def test_processing_import_samples_files_and_errors(provider, tmp_path):
    t = TRUTH["itslive"]
    out = str(tmp_path / "itslive_import")
    res, ok, fb = _run("slidewatch:import_offsets", {"INPUTS": [_path(t["file"])],
                                                      "OUTPUT_FOLDER": out})
    assert ok, fb.errors
    with rasterio.open(os.path.join(out, "pairs", "pair_20160718_20160803.tif")) as src:
        assert src.tags()["IMPORTED_FROM"] == "autoRIFT / ITS_LIVE"
        assert np.nanmedian(src.read(1)[INNER]) == pytest.approx(t["east_m"], abs=t["tol_m"])
    # nothing given / a file without dates: actionable messages, not tracebacks
    _res, ok, fb = _run("slidewatch:import_offsets", {"OUTPUT_FOLDER": out})
    assert not ok and any("Input files" in e for e in fb.errors), fb.errors
    nodate = str(tmp_path / "nodate_east.tif")
    _write(nodate, [np.zeros((5, 5))])
    _write(nodate.replace("east", "north"), [np.zeros((5, 5))])
    _res, ok, fb = _run("slidewatch:import_offsets", {"INPUTS": [nodate],
                                                       "OUTPUT_FOLDER": out})
    assert not ok and any("nodate_east.tif" in e and "Reference date" in e
                          for e in fb.errors), fb.errors


# ------------------------------------------------------------------------------ helpers
def _motion():
    h, w = TRUTH["shape"]
    e = np.zeros((h, w))
    n = np.zeros((h, w))
    e[R0:R1, C0:C1] = 3.0
    n[R0:R1, C0:C1] = 2.0
    e[CORNER] = n[CORNER] = np.nan
    return e, n


def _write(path, bands, transform=T10, crs=UTM32, nodata=None, descriptions=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    prof = dict(driver="GTiff", height=bands[0].shape[0], width=bands[0].shape[1],
                count=len(bands), dtype="float32")
    if transform is not None:
        prof.update(transform=transform, crs=crs)
    if nodata is not None:
        prof["nodata"] = nodata
    with rasterio.open(path, "w", **prof) as dst:
        for i, b in enumerate(bands, start=1):
            dst.write(np.asarray(b, np.float32), i)
            if descriptions:
                dst.set_band_description(i, descriptions[i - 1])
