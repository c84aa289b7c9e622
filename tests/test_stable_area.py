"""Stable-area mask (issue 14): a user's raster or polygon layer of ground known not to
move, rasterised on the images' grid, used by the pipeline for each pair's
co-registration correction and for the detection's bias model."""

import json
import os

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from slidewatch.core.errors import InputError
from slidewatch.core.stack.stable_area import (find_stable_source, rasterise_stable_area,
                                               stable_mask_name)

GRID = dict(crs=rasterio.crs.CRS.from_epsg(32632), transform=from_origin(500000, 5100000, 10, 10),
            height=200, width=300)


def _write_gpkg(path, rings, epsg, layer="stable", geom="polygon"):
    from osgeo import ogr, osr
    drv = ogr.GetDriverByName("GPKG")
    ds = drv.CreateDataSource(path) if not os.path.exists(path) else ogr.Open(path, 1)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    lyr = ds.CreateLayer(layer, srs, ogr.wkbPolygon if geom == "polygon" else ogr.wkbPoint)
    for ring in rings:
        f = ogr.Feature(lyr.GetLayerDefn())
        if geom == "polygon":
            g = ogr.CreateGeometryFromJson(json.dumps({"type": "Polygon", "coordinates": [ring]}))
        else:
            g = ogr.CreateGeometryFromJson(json.dumps({"type": "Point", "coordinates": ring[0]}))
        f.SetGeometry(g)
        lyr.CreateFeature(f)
    ds = None


def _box(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def test_polygons_in_another_crs_are_reprojected(tmp_path):
    from pyproj import Transformer
    # a 1 km x 0.5 km box of the UTM grid, given in geographic coordinates
    tr = Transformer.from_crs(32632, 4326, always_xy=True)
    corners = [tr.transform(x, y) for x, y in
               ((500500, 5099500), (501500, 5099500), (501500, 5099000), (500500, 5099000))]
    ring = [list(c) for c in corners] + [list(corners[0])]
    src = str(tmp_path / "rock.gpkg")
    _write_gpkg(src, [ring], 4326)
    info = rasterise_stable_area(src, GRID, str(tmp_path / "m.tif"))
    assert info["kind"] == "polygons"
    # 100 x 50 pixels of 10 m (edges of a reprojected box: a few pixels either way)
    assert abs(info["n_stable"] - 5000) < 150
    with rasterio.open(info["path"]) as ds:
        m = ds.read(1)
        assert ds.crs == GRID["crs"] and ds.transform == GRID["transform"]
    assert m[75, 100] == 1 and m[75, 40] == 0 and m.max() == 1


def test_layer_choice_and_bad_inputs(tmp_path):
    src = str(tmp_path / "two.gpkg")
    _write_gpkg(src, [_box(500000, 5099000, 500500, 5099500)], 32632, layer="small")
    _write_gpkg(src, [_box(501000, 5098500, 502500, 5099500)], 32632, layer="big")
    small = rasterise_stable_area(src + "|layername=small", GRID, str(tmp_path / "s.tif"))
    both = rasterise_stable_area(src, GRID, str(tmp_path / "b.tif"))
    assert small["n_stable"] == 2500
    assert both["n_stable"] == 2500 + 150 * 100
    with pytest.raises(InputError, match="no layer 'nope'"):
        rasterise_stable_area(src + "|layername=nope", GRID, str(tmp_path / "x.tif"))
    pts = str(tmp_path / "pts.gpkg")
    _write_gpkg(pts, [_box(500100, 5099100, 0, 0)], 32632, geom="point")
    with pytest.raises(InputError, match="no polygon"):
        rasterise_stable_area(pts, GRID, str(tmp_path / "p.tif"))
    far = str(tmp_path / "far.gpkg")
    _write_gpkg(far, [_box(600000, 5000000, 601000, 5001000)], 32632)
    with pytest.raises(InputError, match="marks 0 pixel.*check its CRS"):
        rasterise_stable_area(far, GRID, str(tmp_path / "f.tif"))
    with pytest.raises(InputError, match="does not exist"):
        rasterise_stable_area(str(tmp_path / "missing.gpkg"), GRID, str(tmp_path / "g.tif"))


def test_raster_on_another_grid_is_resampled(tmp_path):
    # a 20 m mask whose left half is stable, nodata on a strip
    a = np.zeros((100, 150), np.float32)
    a[:, :75] = 1
    a[:10] = -9999
    src = str(tmp_path / "stable_20m.tif")
    with rasterio.open(src, "w", driver="GTiff", width=150, height=100, count=1,
                       dtype="float32", crs=GRID["crs"], nodata=-9999,
                       transform=from_origin(500000, 5100000, 20, 20)) as ds:
        ds.write(a, 1)
    info = rasterise_stable_area(src, GRID, str(tmp_path / "m.tif"))
    assert info["kind"] == "raster"
    # 10 m grid: left 150 columns stable, minus the 20 nodata rows
    assert info["n_stable"] == 150 * 180


def test_mask_name_follows_the_source(tmp_path):
    src = str(tmp_path / "rock_stable.gpkg")
    _write_gpkg(src, [_box(500000, 5099000, 500500, 5099500)], 32632)
    n1 = stable_mask_name(src, GRID)
    assert stable_mask_name(src, GRID) == n1
    os.utime(src, ns=(1, 1))
    assert stable_mask_name(src, GRID) != n1
    assert stable_mask_name(src, dict(GRID, width=301)) != stable_mask_name(src, GRID)


def test_auto_prefers_polygons_and_ignores_other_files(tmp_path):
    assert find_stable_source(str(tmp_path)) == (None, [])
    (tmp_path / "S2_20200101.tif").write_bytes(b"")
    (tmp_path / "unstable_notes.txt").write_text("x")
    (tmp_path / "stable_mask.tif").write_bytes(b"")
    (tmp_path / "stable_area.gpkg").write_bytes(b"")
    found, others = find_stable_source(str(tmp_path))
    assert os.path.basename(found) == "stable_area.gpkg"
    assert [os.path.basename(o) for o in others] == ["stable_mask.tif"]


@pytest.fixture(scope="module")
def masked_run(tmp_path_factory):
    """The pipeline on a synthetic stack with a stable-area GeoPackage in the input
    folder (drawn where the truth has no landslide), found by stable_mask 'auto'."""
    from rasterio import features
    from osgeo import ogr, osr
    from slidewatch.core.run.pipeline import PipelineParams, run_pipeline
    from slidewatch.core.progress import Progress
    from slidewatch.core.synth.synthetic import generate_stack

    folder = tmp_path_factory.mktemp("masked") / "images"
    stack = generate_stack(str(folder), n_dates=8, shape=(128, 128), seed=3)
    first = sorted(p for p in os.listdir(folder) if p.lower().endswith(".tif")
                   and "dem" not in p.lower())[0]
    with rasterio.open(os.path.join(folder, first)) as ds:
        T, crs = ds.transform, ds.crs
    slides = np.asarray(stack.landslide_labels) > 0
    from scipy import ndimage
    stable = ~ndimage.binary_dilation(slides, iterations=6)
    stable[:, :40] = False          # a partial area: the analyst knows part of the scene
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(folder / "stable_area.gpkg"))
    srs = osr.SpatialReference()
    srs.ImportFromWkt(crs.to_wkt())
    lyr = ds.CreateLayer("stable", srs, ogr.wkbPolygon)
    for geom, v in features.shapes(stable.astype(np.uint8), mask=stable, transform=T):
        f = ogr.Feature(lyr.GetLayerDefn())
        f.SetGeometry(ogr.CreateGeometryFromJson(json.dumps(geom)))
        lyr.CreateFeature(f)
    ds = None
    out = str(tmp_path_factory.mktemp("masked_run") / "results")
    lines = []
    res = run_pipeline(str(folder), out, PipelineParams(), progress=Progress(log=lines.append))
    return dict(folder=str(folder), out=out, res=res, lines=lines, stable=stable)


def test_pipeline_uses_the_stable_area_everywhere(masked_run):
    res, lines = masked_run["res"], masked_run["lines"]
    text = "\n".join(lines)
    assert "stable area: using stable_area.gpkg (polygons" in text
    mask_path = res.paths["stable_mask"]
    with rasterio.open(mask_path) as ds:
        m = ds.read(1).astype(bool)
    assert abs(m.sum() - masked_run["stable"].sum()) <= 0.02 * masked_run["stable"].sum()
    for p in res.paths["pairs"]:
        with rasterio.open(p) as ds:
            assert ds.tags()["STABLE_GROUND"] == "stable-area mask"
    assert "Bias removal (stable-area mask" in text
    assert "problem" not in text.lower()


def test_pipeline_rerun_is_current_and_a_new_mask_recomputes(masked_run, tmp_path):
    from slidewatch.core.run.pipeline import PipelineParams, run_pipeline
    out = masked_run["out"]
    again = run_pipeline(masked_run["folder"], out, PipelineParams())
    assert again.skipped("correlation") and again.skipped("detection")
    # no mask at all: every pair and the detection are redone
    other = run_pipeline(masked_run["folder"], out, PipelineParams(stable_mask=""))
    assert not other.skipped("correlation") and not other.skipped("detection")
    assert "stable_mask" not in other.paths
    for p in other.paths["pairs"]:
        with rasterio.open(p) as ds:
            assert ds.tags()["STABLE_GROUND"] != "stable-area mask"


def test_missing_mask_is_a_clear_error(masked_run, tmp_path):
    from slidewatch.core.run.pipeline import PipelineParams, run_pipeline
    with pytest.raises(InputError, match="Stable-area mask .* does not exist"):
        run_pipeline(masked_run["folder"], str(tmp_path / "o"),
                     PipelineParams(stable_mask=str(tmp_path / "nope.gpkg")))


def test_processing_dialog_takes_a_stable_layer(provider, masked_run, tmp_path):
    """slidewatch:pipeline with STABLE_MASK given as a layer path (as the dialog's layer
    chooser passes it), then USE_STABLE_MASK off: the mask is used, then not."""
    from qgis.core import (QgsApplication, QgsProcessingAlgorithm, QgsProcessingContext,
                           QgsProcessingFeedback)
    alg = QgsApplication.processingRegistry().createAlgorithmById("slidewatch:pipeline")
    names = [p.name() for p in alg.parameterDefinitions()]
    assert "STABLE_MASK" in names and "USE_STABLE_MASK" in names
    gpkg = os.path.join(masked_run["folder"], "stable_area.gpkg")
    out = str(tmp_path / "alg")
    res, ok = QgsProcessingAlgorithm.run(alg, {"INPUT": masked_run["folder"],
                                               "OUTPUT_FOLDER": out, "STABLE_MASK": gpkg},
                                         QgsProcessingContext(), QgsProcessingFeedback())
    assert ok, res
    with open(res["LOG"]) as f:
        log = f.read()
    assert "stable area: using stable_area.gpkg (polygons" in log
    assert os.listdir(os.path.join(out, "stable_mask"))
    res, ok = QgsProcessingAlgorithm.run(alg, {"INPUT": masked_run["folder"],
                                               "OUTPUT_FOLDER": str(tmp_path / "off"),
                                               "USE_STABLE_MASK": False},
                                         QgsProcessingContext(), QgsProcessingFeedback())
    assert ok, res
    with open(res["LOG"]) as f:
        assert "stable area: using" not in f.read()
