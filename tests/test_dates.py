"""Date parsing from real product-name patterns and raster tags (core.dates)."""

import datetime as dt

import numpy as np
import pytest

from slidewatch.core.stack.dates import date_from_path, parse_iso, parse_name, parse_tags, \
    processing_baseline_value


@pytest.mark.parametrize("name, date, sensor, extra", [
    # Sentinel-2 L1C / L2A SAFE product names: the sensing date, not the discriminator
    ("S2A_MSIL1C_20190101T103421_N0207_R108_T32TLR_20190105T123456.SAFE", "2019-01-01", "S2A",
     dict(level="L1C", processing_baseline="02.07", tile="32TLR")),
    ("S2B_MSIL2A_20230615T103629_N0509_R008_T32TLR_20230616T134412", "2023-06-15", "S2B",
     dict(level="L2A", processing_baseline="05.09")),
    # band files inside SAFE products (L1C and L2A with resolution suffix)
    ("T32TLR_20190101T103421_B08.jp2", "2019-01-01", "S2", dict(band="B08", tile="32TLR")),
    ("T32TLR_20220301T103421_B04_10m.jp2", "2022-03-01", "S2", dict(band="B04")),
    ("L2A_T32TLR_20220301T103421_SCL_20m.jp2", "2022-03-01", "S2", dict(band="SCL")),
    # old (2015-2016) long granule names
    ("S2A_OPER_MSI_L1C_TL_SGS__20160608T153121_A005014_T33UUU_B08.jp2", "2016-06-08", "S2A", {}),
    # Landsat Collection 1 and 2, Landsat 8 and 9: acquisition date, not processing date
    ("LC08_L1TP_195028_20190101_20190130_01_T1_B4.TIF", "2019-01-01", "L8",
     dict(band="B4", tile="195028", level="L1TP")),
    ("LC09_L2SP_195028_20220305_20220307_02_T1_SR_B4.TIF", "2022-03-05", "L9",
     dict(band="SR_B4", level="L2SP")),
    ("LC08_L1GT_195028_20200710_20200721_02_T2_B8.TIF", "2020-07-10", "L8", dict(band="B8")),
    ("LE07_L1TP_195028_20030310_20161001_01_T1_B8.TIF", "2003-03-10", "L7", {}),
    # pre-collection scene id: year + day of year
    ("LC81950282019032LGN00_B8.TIF", "2019-02-01", "L8", dict(band="B8")),
    # plain names
    ("ref_S2A_20160608T153121_T33UUU_sub.jp2", "2016-06-08", "S2A", {}),
    ("ortho_2019-03-04.tif", "2019-03-04", "", {}),
    ("2019_03_04_mosaic.tif", "2019-03-04", "", {}),
    ("scene20211231.tif", "2021-12-31", "", {}),
])
def test_product_names(name, date, sensor, extra):
    p = parse_name(name)
    assert p.ok, p.problem
    assert p.iso == date
    assert p.sensor == sensor
    for k, v in extra.items():
        assert getattr(p, k) == v, (k, getattr(p, k))


@pytest.mark.parametrize("name", ["a_20190101_20190202.tif", "x_2019-01-01_to_2019-02-01.tif"])
def test_ambiguous_names_are_reported_not_guessed(name):
    p = parse_name(name)
    assert p.date is None
    assert "ambiguous" in p.problem
    assert len(p.candidates) == 2


@pytest.mark.parametrize("name", ["foo.tif", "img_20191345.tif", "dem.tif", "1234567890.tif",
                                  "x_18000101.tif"])
def test_undatable_or_invalid_dates(name):
    p = parse_name(name)
    assert p.date is None
    assert p.problem


def test_tags():
    assert parse_tags({"TIFFTAG_DATETIME": "2019:07:14 10:30:00"}).iso == "2019-07-14"
    assert parse_tags({"ACQUISITION_DATE": "2020-02-29"}).iso == "2020-02-29"
    assert parse_tags({"date": "2018-05-01T10:00:00Z"}).iso == "2018-05-01"
    t = parse_tags({"ACQUISITION_DATE": "2020-01-02", "TIFFTAG_DATETIME": "2021:01:01 00:00:00"})
    assert t.iso == "2020-01-02"         # acquisition date wins over the file time stamp
    assert not parse_tags({"FOO": "bar"}).ok
    assert not parse_tags({}).ok


def test_date_from_path_uses_tags_when_name_has_no_date(tmp_path):
    from slidewatch.core.raster_io import write_bands
    from rasterio.transform import from_origin
    path = tmp_path / "scene.tif"
    write_bands(str(path), [np.ones((8, 8), np.float32)], from_origin(0, 8, 1, 1), "EPSG:32632",
                ["b"], tags={"TIFFTAG_DATETIME": "2019:07:14 10:30:00"})
    p = date_from_path(str(path))
    assert p.iso == "2019-07-14" and p.source == "tag:TIFFTAG_DATETIME"
    # name wins over the tag
    path2 = tmp_path / "scene_20200101.tif"
    write_bands(str(path2), [np.ones((8, 8), np.float32)], from_origin(0, 8, 1, 1), "EPSG:32632",
                ["b"], tags={"ACQUISITION_DATE": "2019-07-14"})
    assert date_from_path(str(path2)).iso == "2020-01-01"
    # no name, no tag: a problem naming the file
    path3 = tmp_path / "nothing.tif"
    write_bands(str(path3), [np.ones((8, 8), np.float32)], from_origin(0, 8, 1, 1), "EPSG:32632",
                ["b"])
    p3 = date_from_path(str(path3))
    assert p3.date is None and "nothing.tif" in p3.problem


def test_band_file_inside_safe_without_date_in_name(tmp_path):
    safe = tmp_path / "S2A_MSIL1C_20190101T103421_N0207_R108_T32TLR_20190101T123456.SAFE"
    f = safe / "GRANULE" / "L1C_T32TLR_A018459_20190101T103421" / "IMG_DATA" / "band.jp2"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"")
    p = date_from_path(str(f), read_tags=False)
    assert p.iso == "2019-01-01" and p.sensor == "S2A"


def test_helpers():
    assert processing_baseline_value("N0400") == 4.0
    assert processing_baseline_value("02.07") == pytest.approx(2.07)
    assert processing_baseline_value("") is None
    assert parse_iso("2019-01-02") == dt.date(2019, 1, 2)
    assert parse_iso("garbage") is None
