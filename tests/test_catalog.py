"""Catalog (core.catalog) and common grid (core.common_grid)."""

import os

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from slidewatch.core.stack.catalog import build_catalog, load_image, read_catalog_csv, \
    write_catalog_csv, SPEC_COLUMNS
from slidewatch.core.stack.common_grid import check_grids, require_common_grid, to_common_grid
from slidewatch.core.errors import InputError


def _texture(shape, seed):
    from scipy.ndimage import gaussian_filter
    rng = np.random.default_rng(seed)
    a = gaussian_filter(rng.normal(size=shape), 2.0)
    a = (a - a.min()) / (a.max() - a.min())
    return (500 + 2000 * a).astype(np.uint16)


def _write(path, arr, origin=(300000.0, 5000000.0), res=10.0, tags=None, nodata=None,
           descriptions=None, driver="GTiff"):
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[None]
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with rasterio.open(str(path), "w", driver=driver, width=arr.shape[2], height=arr.shape[1],
                       count=arr.shape[0], dtype=arr.dtype, crs="EPSG:32632",
                       transform=from_origin(origin[0], origin[1], res, res),
                       nodata=nodata) as dst:
        dst.write(arr)
        if tags:
            dst.update_tags(**tags)
        for k, d in enumerate(descriptions or [], start=1):
            dst.set_band_description(k, d)


def test_folder_of_plain_rasters_with_problems(tmp_path):
    base = _texture((40, 40), 0)
    _write(tmp_path / "img_2019-01-01.tif", base)
    _write(tmp_path / "img_20190111.tif", base)
    _write(tmp_path / "sub" / "scene.tif", base, tags={"ACQUISITION_DATE": "2019-01-21"})
    _write(tmp_path / "mystery.tif", base)                                # undatable
    _write(tmp_path / "a_20190101_20190201.tif", base)                    # ambiguous
    dup = base.copy()
    dup[:20] = 0
    _write(tmp_path / "copy_20190111.tif", dup, nodata=0)                 # duplicate, worse
    cat = build_catalog(str(tmp_path))
    assert [r.iso for r in cat] == ["2019-01-01", "2019-01-11", "2019-01-21"]
    assert cat[2].date_source == "tag:ACQUISITION_DATE"
    text = "\n".join(cat.problems)
    assert "mystery.tif" in text and "undatable" in text
    assert "ambiguous" in text and "a_20190101_20190201.tif" in text
    assert "duplicate date 2019-01-11" in text and "kept img_20190111.tif" in text
    assert os.path.basename(cat[1].path) == "img_20190111.tif"
    assert cat[1].valid_fraction == 1.0
    with pytest.raises(InputError, match="2019-01-11"):
        build_catalog(str(tmp_path), duplicates="error")


def test_missing_input_raises(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        build_catalog(str(tmp_path / "nope"))


def _safe(tmp_path, date, baseline, offset, bands=("B04", "B08"), zenith=40.0, azimuth=160.0):
    name = "S2A_MSIL1C_%sT103021_N%s_R108_T32TLR_%sT120000.SAFE" % (date, baseline, date)
    safe = tmp_path / name
    gran = safe / "GRANULE" / ("L1C_T32TLR_A000001_%sT103021" % date)
    img = gran / "IMG_DATA"
    arr = _texture((40, 40), int(date)) + 1000
    arr[:, :5] = 0                                 # nodata strip (S2: 0 = nodata)
    for b in bands:
        _write(img / ("T32TLR_%sT103021_%s.tif" % (date, b)), arr)
    (safe / "MTD_MSIL1C.xml").write_text(
        '<?xml version="1.0"?><n1:Level-1C_User_Product xmlns:n1="x"><General_Info>'
        '<Product_Info><PROCESSING_BASELINE>%s</PROCESSING_BASELINE></Product_Info>'
        '<Product_Image_Characteristics><QUANTIFICATION_VALUE unit="none">10000'
        '</QUANTIFICATION_VALUE><Radiometric_Offset_List>'
        '<RADIO_ADD_OFFSET band_id="3">%d</RADIO_ADD_OFFSET>'
        '<RADIO_ADD_OFFSET band_id="7">%d</RADIO_ADD_OFFSET></Radiometric_Offset_List>'
        '</Product_Image_Characteristics></General_Info><Quality_Indicators_Info>'
        '<Cloud_Coverage_Assessment>12.5</Cloud_Coverage_Assessment>'
        '</Quality_Indicators_Info></n1:Level-1C_User_Product>'
        % ("%s.%s" % (baseline[:2], baseline[2:]), offset, offset))
    (gran / "MTD_TL.xml").write_text(
        '<?xml version="1.0"?><n1:Level-1C_Tile_ID xmlns:n1="x"><Geometric_Info><Tile_Angles>'
        '<Mean_Sun_Angle><ZENITH_ANGLE unit="deg">%s</ZENITH_ANGLE>'
        '<AZIMUTH_ANGLE unit="deg">%s</AZIMUTH_ANGLE></Mean_Sun_Angle></Tile_Angles>'
        '</Geometric_Info></n1:Level-1C_Tile_ID>' % (zenith, azimuth))
    return safe, arr


def test_sentinel2_safe_products(tmp_path):
    _, a_new = _safe(tmp_path, "20220301", "0400", -1000)
    _, a_old = _safe(tmp_path, "20210301", "0300", 0, bands=("B04",))
    cat = build_catalog(str(tmp_path))
    assert [r.iso for r in cat] == ["2021-03-01", "2022-03-01"]
    old, new = cat[0], cat[1]
    assert new.band == "B08" and old.band == "B04"       # B08 by default, B04 otherwise
    assert new.radiometric_offset == -1000.0 and old.radiometric_offset == 0.0
    assert new.processing_baseline == "04.00"
    assert new.sun_elevation == pytest.approx(50.0) and new.sun_azimuth == pytest.approx(160.0)
    assert new.cloud_fraction == pytest.approx(0.125) and new.cloud_source == "metadata"
    assert new.zero_is_nodata
    assert new.valid_fraction == pytest.approx(35 / 40, abs=0.03)
    img = load_image(new)
    assert np.isnan(img[:, :5]).all()                            # 0 -> nodata
    np.testing.assert_allclose(img[:, 5:], a_new[:, 5:].astype(np.float32) - 1000)
    # explicit band choice
    cat4 = build_catalog(str(tmp_path), band="B04")
    assert all(r.band == "B04" for r in cat4)
    # metadata cloud percentages can be ignored (then estimated from the images)
    cat_nm = build_catalog(str(tmp_path), use_cloud_metadata=False)
    assert all(r.cloud_source != "metadata" for r in cat_nm)


def test_landsat_band_files_mtl_and_qa(tmp_path):
    for k, (date, proc) in enumerate((("20190101", "20190130"), ("20190117", "20190130"))):
        stem = "LC08_L1TP_195028_%s_%s_02_T1" % (date, proc)
        arr = _texture((30, 30), k) + 5000
        for b in ("B4", "B8", "B5"):
            _write(tmp_path / ("%s_%s.TIF" % (stem, b)), arr)
        qa = np.zeros((30, 30), np.uint16)
        qa[:15] = 1 << 3                                        # cloud bit on the top half
        _write(tmp_path / ("%s_QA_PIXEL.TIF" % stem), qa)
        (tmp_path / ("%s_MTL.txt" % stem)).write_text(
            "GROUP = IMAGE_ATTRIBUTES\n    CLOUD_COVER = 40.0\n    SUN_AZIMUTH = 150.5\n"
            "    SUN_ELEVATION = 22.25\nEND_GROUP = IMAGE_ATTRIBUTES\n")
    cat = build_catalog(str(tmp_path))
    assert [r.iso for r in cat] == ["2019-01-01", "2019-01-17"]
    r = cat[0]
    assert r.sensor == "L8" and r.band == "B8"
    assert r.sun_azimuth == pytest.approx(150.5) and r.sun_elevation == pytest.approx(22.25)
    assert r.cloud_source.startswith("mask:") and r.cloud_fraction == pytest.approx(0.5, abs=0.05)
    assert any("also present" in n for n in cat.notes)
    assert build_catalog(str(tmp_path), band="B4")[0].band == "B4"


def test_multiband_band_choice_and_csv_roundtrip(tmp_path):
    arr = np.stack([_texture((20, 24), 1), _texture((20, 24), 2), _texture((20, 24), 3)])
    for d in ("20200101", "20200111"):
        _write(tmp_path / ("ms_%s.tif" % d), arr, descriptions=["red", "green", "nir"])
    cat = build_catalog(str(tmp_path), band=3)
    assert all(r.band_index == 3 and r.band == "nir" for r in cat)
    np.testing.assert_array_equal(load_image(cat[0]), arr[2].astype(np.float32))
    cat_named = build_catalog(str(tmp_path), band="green")
    assert all(r.band_index == 2 for r in cat_named)
    bad = build_catalog(str(tmp_path), band=7)
    assert len(bad) == 0 and "band 7" in bad.problems[0]

    csv_path = tmp_path / "out" / "catalog.csv"
    write_catalog_csv(cat, str(csv_path))
    header = csv_path.read_text().splitlines()[0].split(",")
    assert tuple(header[:7]) == SPEC_COLUMNS
    back = read_catalog_csv(str(csv_path))
    assert [r.iso for r in back] == [r.iso for r in cat]
    assert back[0].transform == cat[0].transform and back[0].band_index == 3
    assert np.isnan(back[0].sun_azimuth)                 # unknown stays unknown (empty cell)
    # tolerant reading: a bad row is reported with its line number
    lines = csv_path.read_text().splitlines()
    lines.insert(2, "x.tif,not-a-date,,,,,")
    csv_path.write_text("\n".join(lines) + "\n")
    back2 = read_catalog_csv(str(csv_path))
    assert len(back2) == 2 and "line 3" in back2.problems[0]


def test_cloud_estimate_without_masks(tmp_path):
    base = _texture((48, 48), 5)
    rng = np.random.default_rng(0)
    for k in range(6):
        img = base + rng.integers(0, 20, base.shape).astype(np.uint16)
        if k == 3:
            img = np.full(base.shape, 9000, np.uint16) + rng.integers(0, 50, base.shape).astype(np.uint16)
        _write(tmp_path / ("img_2019010%d.tif" % (k + 1)), img)
    cat = build_catalog(str(tmp_path))
    cf = [r.cloud_fraction for r in cat]
    assert all(r.cloud_source == "estimated-temporal" for r in cat)
    assert cf[3] > 0.9 and max(cf[:3] + cf[4:]) < 0.05


def test_mask_named_file_without_an_image_is_reported(tmp_path):
    base = _texture((40, 40), 2)
    _write(tmp_path / "img_20190101.tif", base)
    _write(tmp_path / "img_20190111.tif", base)
    _write(tmp_path / "cloud_20190101.tif", np.zeros((40, 40), np.uint8))   # a real mask
    _write(tmp_path / "cloud_20190601.tif", base)   # an image with an unlucky name
    cat = build_catalog(str(tmp_path))
    assert [r.iso for r in cat] == ["2019-01-01", "2019-01-11"]
    assert cat[0].cloud_source.startswith("mask:cloud_20190101")
    text = "\n".join(cat.notes)
    assert "cloud_20190601.tif" in text and "rename it if it is an image" in text
    assert "cloud_20190101.tif: its name" not in text


def test_grid_mismatch_reported_and_common_grid(tmp_path):
    big = _texture((60, 60), 9).astype(np.float32)
    # image A: full; image B: the same ground, origin shifted by 10 px east / 5 px south
    _write(tmp_path / "a_20190101.tif", big.astype(np.uint16))
    _write(tmp_path / "b_20190111.tif", big[5:55, 10:60].astype(np.uint16),
           origin=(300000.0 + 100.0, 5000000.0 - 50.0))
    cat = build_catalog(str(tmp_path))
    rep = check_grids(cat)
    assert not rep.ok and rep.n_grids == 2 and "2 different grids" in rep.message
    assert any("different grids" in n for n in cat.notes)
    with pytest.raises(InputError, match="common grid"):
        require_common_grid(cat)
    out = to_common_grid(cat, str(tmp_path / "common"), reference=0, extent="intersection",
                         resampling="nearest")
    assert check_grids(out).ok
    assert out[0].width == 50 and out[0].height == 50
    a, b = load_image(out[0]), load_image(out[1])
    np.testing.assert_array_equal(a, b)          # the same ground lands on the same pixel
    union = to_common_grid(cat, str(tmp_path / "union"), reference=0, extent="union",
                           resampling="nearest", overwrite=True)
    assert union[0].width == 60 and np.isnan(load_image(union[1])).any()
    # a shifted-but-not-aligned pair is never silently used: pairing refuses it
    from slidewatch.core.network.pairing import select_pairs
    with pytest.raises(InputError, match="common grid"):
        select_pairs(cat, previews=True)


@pytest.mark.parametrize("name, kind", [
    ("dem.tif", "dem"), ("DEM.tif", "dem"), ("yahtse_srtm_dem.tif", "dem"),
    ("srtm_30m.tif", "dem"), ("area_dsm.tif", "dem"), ("dem_10m.tiff", "dem"),
    ("Copernicus_DSM_COG_10_N46_00_E008_00_DEM.tif", "dem"),
    ("stable_mask.tif", "stable_mask"), ("stable.tif", "stable_mask"),
    ("my_stable_area.tif", "stable_mask"),
    ("cloud_mask_20190101.tif", "cloud_mask"), ("T32TLR_20190101_cld.tif", "cloud_mask"),
    ("demo_20190101.tif", None), ("unstable_20190101.tif", None), ("img_20190101.tif", None),
    ("S2A_MSIL1C_20190101T103021_N0207_R108_T32TLR_B08.tif", None), ("dem.txt", None),
])
def test_auxiliary_kind(name, kind):
    from slidewatch.core.stack.catalog import auxiliary_kind
    assert auxiliary_kind(os.path.join("some", "folder", name)) == kind


def test_dem_and_auxiliary_rasters_are_info_not_problems(tmp_path):
    base = _texture((40, 40), 3)
    for d in ("20190101", "20190111", "20190121"):
        _write(tmp_path / ("img_%s.tif" % d), base)
    elev = (1800 + 10 * _texture((40, 40), 4).astype(np.float32))
    _write(tmp_path / "dem.tif", elev)
    _write(tmp_path / "yahtse_srtm_dem.tif", elev)
    _write(tmp_path / "stable_mask.tif", np.ones((40, 40), np.uint8))
    _write(tmp_path / "cloud_mask_20190111.tif", np.zeros((40, 40), np.uint8))
    _write(tmp_path / "cloud_mask.tif", np.zeros((40, 40), np.uint8))       # no date
    _write(tmp_path / "mystery.tif", base)                                  # undatable image
    cat = build_catalog(str(tmp_path))
    assert [os.path.basename(p) for p in cat.paths] == [
        "img_20190101.tif", "img_20190111.tif", "img_20190121.tif"]
    assert cat[1].cloud_source == "mask:cloud_mask_20190111.tif"
    problems = "\n".join(cat.problems)
    notes = "\n".join(cat.notes)
    for aux in ("dem.tif", "yahtse_srtm_dem.tif", "stable_mask.tif", "cloud_mask"):
        assert aux not in problems and aux not in notes
    # the unknown undatable raster is still a problem, with the existing message
    assert len(cat.problems) == 1 and "mystery.tif" in problems and "undatable" in problems
    info = "\n".join(cat.info)
    assert "using dem.tif for terrain terms" in info
    assert "found DEM %s" % (tmp_path / "yahtse_srtm_dem.tif") in info
    assert "found stable mask %s" % (tmp_path / "stable_mask.tif") in info
    assert "found cloud mask %s" % (tmp_path / "cloud_mask.tif") in info
    assert "found cloud mask cloud_mask_20190111.tif: used" in info
    assert [os.path.basename(p) for p in cat.auxiliary["dem"]] == ["dem.tif",
                                                                   "yahtse_srtm_dem.tif"]
    report = cat.report()
    assert "using dem.tif for terrain terms" in report
    bad = [ln for ln in report.splitlines() if ln.startswith(("problem", "WARNING"))
           and "mystery.tif" not in ln]
    assert bad == []


def test_dem_in_a_subfolder_or_only_a_dem(tmp_path):
    base = _texture((40, 40), 5)
    _write(tmp_path / "img_20190101.tif", base)
    _write(tmp_path / "img_20190111.tif", base)
    _write(tmp_path / "aux" / "dem.tif", base.astype(np.float32))
    cat = build_catalog(str(tmp_path))
    assert len(cat) == 2 and cat.problems == []
    # the pipeline's DEM "auto" only takes dem.tif of the input folder itself
    assert not any(i.startswith("using") for i in cat.info)
    assert any("found DEM" in i and "name it dem.tif" in i for i in cat.info)
    only = tmp_path / "only"
    _write(only / "dem.tif", base.astype(np.float32))
    cat = build_catalog(str(only))
    assert len(cat) == 0 and cat.problems == [] and "using dem.tif" in cat.info[0]
    # the pipeline's list of the input folder's entries (output folder inside it)
    cat = build_catalog([str(tmp_path / e) for e in sorted(os.listdir(str(tmp_path)))
                         if e != "only"])
    assert len(cat) == 2 and any("found DEM" in i for i in cat.info)
