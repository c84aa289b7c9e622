"""Quality layers of an inversion (core/series/quality_layers.py, slidewatch:quality_layers)."""

import datetime as dt
import glob
import os

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from slidewatch.core.series import quality_layers as ql
from slidewatch.core.errors import Cancelled, InputError, ParameterError
from slidewatch.core.progress import Progress
from slidewatch.core.series.timeseries_io import invert_pair_rasters, write_pair_raster

DATES = ["2021-01-03", "2021-01-15", "2021-02-08", "2021-02-20", "2021-03-16", "2021-04-09",
         "2021-04-21", "2021-06-08"]
PAIRS = [(i, j) for i in range(len(DATES)) for j in (i + 1, i + 2) if j < len(DATES)]
H, W = 24, 30
CRS = "EPSG:32632"
TR = from_origin(400000.0, 5000000.0, 20.0, 20.0)


def _pair_bands(i, j, rng):
    """east, north, ncc, snr, status of pair (i, j) with a known pattern of validity:
    rows 0-3 all valid, NCC 0.8; rows 4-7 every pair touching dates 3 or 4 rejected
    (status 3); rows 8-11 NCC 0.4 (under the 0.5 threshold) on the 2-step pairs; rows
    12-15 NCC 0.25 on the 1-step pairs (under the inversion's min_ncc 0.3); rows 16-19 the
    pairs ending on the last date rejected, so the last valid date is date 6; rows 20-23 NaN (outside)
    in cols >= 20."""
    east = np.full((H, W), 0.01 * (j - i)) + rng.normal(0, 0.002, (H, W))
    north = np.full((H, W), -0.02 * (j - i)) + rng.normal(0, 0.002, (H, W))
    ncc = np.full((H, W), 0.8)
    snr = np.full((H, W), 6.0)
    status = np.zeros((H, W))
    if {i, j} & {3, 4}:
        status[4:8] = 3
    if j - i == 2:
        ncc[8:12] = 0.4
    else:
        ncc[12:16] = 0.25
    if j == 7:
        status[16:20] = 3
    east[20:, 20:] = north[20:, 20:] = ncc[20:, 20:] = np.nan
    status[20:, 20:] = 2
    return east, north, ncc, snr, status


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("quality"))
    os.makedirs(os.path.join(root, "pairs"))
    rng = np.random.default_rng(3)
    truth = {}
    for i, j in PAIRS:
        bands = _pair_bands(i, j, rng)
        truth[(i, j)] = bands
        name = "pair_%s_%s.tif" % (DATES[i].replace("-", ""), DATES[j].replace("-", ""))
        write_pair_raster(os.path.join(root, "pairs", name), *bands, TR, CRS, DATES[i],
                          DATES[j])
    invert_pair_rasters(root, root, min_ncc=0.3, min_obs=1)
    return root, truth


def _expected(truth, threshold=0.5, min_ncc=0.3):
    """Brute force, pixel by pixel, from the definitions in the module docstring."""
    days = [(dt.date.fromisoformat(d) - dt.date(1970, 1, 1)).days for d in DATES]
    out = {k: np.zeros((H, W)) for k in ql.LAYER_KEYS}
    for r in range(H):
        for c in range(W):
            n = hi = 0
            covered = False
            measured = set()
            for (i, j), (e, no, ncc, snr, st) in truth.items():
                covered |= bool(np.isfinite(ncc[r, c]))
                ok = (np.isfinite(e[r, c]) and np.isfinite(no[r, c]) and st[r, c] == 0
                      and np.isfinite(ncc[r, c]) and ncc[r, c] >= min_ncc)
                if ok:
                    n += 1
                    hi += ncc[r, c] >= threshold
                    measured |= {days[i], days[j]}
            m = sorted(measured)
            out["n_valid_pairs"][r, c] = n
            out["ncc_share"][r, c] = hi / len(truth) if covered else np.nan
            out["first_valid_date"][r, c] = m[0] if m else np.nan
            out["last_valid_date"][r, c] = m[-1] if m else np.nan
            out["longest_gap_days"][r, c] = max(np.diff(m)) if len(m) > 1 else np.nan
    for k in ("first_valid_date", "last_valid_date"):
        out[k] = ql.days_to_yyyymmdd(out[k])
    return out


def _read(paths):
    out = {}
    for k, p in paths.items():
        with rasterio.open(p) as src:
            out[k] = src.read(1)
            assert src.descriptions == (dict((a, c) for a, _b, c, *_ in ql.LAYERS)[k],)
    return out


def test_layers_match_the_definitions(stack):
    root, truth = stack
    res = ql.compute_quality_layers(root)
    assert res.n_pairs == len(PAIRS) and res.summary["pairs_from"].startswith("the inversion")
    got = _read(res.paths)
    want = _expected(truth)
    for k in ql.LAYER_KEYS:
        np.testing.assert_array_equal(got[k], want[k].astype(got[k].dtype), err_msg=k)
    # the hand-checkable rows
    assert got["n_valid_pairs"][0, 0] == len(PAIRS) and got["ncc_share"][0, 0] == 1.0
    assert got["first_valid_date"][0, 0] == 20210103 and got["last_valid_date"][0, 0] == 20210608
    # dates 3 and 4 never measured: the gap runs from date 2 to date 5 (60 days)
    assert got["longest_gap_days"][5, 5] == 60.0
    # NCC 0.4 on the 2-step pairs: valid, not above the threshold
    n1 = len([p for p in PAIRS if p[1] - p[0] == 1])
    assert got["ncc_share"][9, 0] == pytest.approx(n1 / len(PAIRS))
    assert got["n_valid_pairs"][9, 0] == len(PAIRS)
    # NCC 0.25 < the inversion's min_ncc (tags) on the 1-step pairs: not valid
    assert got["n_valid_pairs"][13, 0] == len(PAIRS) - n1
    # the pairs ending on the last date rejected: last valid date is date 6
    assert got["last_valid_date"][17, 3] == 20210421
    # outside every pair: no valid pair, NaN / 0
    assert got["n_valid_pairs"][22, 25] == 0 and np.isnan(got["ncc_share"][22, 25])
    assert got["first_valid_date"][22, 25] == 0 and np.isnan(got["longest_gap_days"][22, 25])
    with rasterio.open(res.paths["ncc_share"]) as src:
        assert float(src.tags()["NCC_THRESHOLD"]) == 0.5
        assert src.nodata is not None and np.isnan(src.nodata)


def test_result_does_not_depend_on_the_block_size(stack):
    root, _truth = stack
    a = _read(ql.compute_quality_layers(root, block_rows=5).paths)
    b = _read(ql.compute_quality_layers(root, block_rows=1000).paths)
    for k in ql.LAYER_KEYS:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_block_rows_bound_the_memory():
    # a full Sentinel-2 tile at 10 m (10980 columns), 200 dates, 256 MB per block
    rows = ql.block_rows_for(10980, 200, 256)
    assert 1 <= rows and rows * 10980 * (200 + 60) <= 256 * 2 ** 20
    # the 1098 x 1098 grid of a full tile's window centres (step 10): 256-row blocks
    assert ql.block_rows_for(1098, 200, 256) % 256 == 0


def test_threshold_and_errors(stack, tmp_path):
    root, truth = stack
    res = ql.compute_quality_layers(os.path.join(root, "timeseries"), ncc_threshold=0.3)
    got = _read(res.paths)
    np.testing.assert_array_equal(got["ncc_share"], _expected(truth, 0.3)["ncc_share"]
                                  .astype(np.float32))
    with pytest.raises(ParameterError, match="ncc_threshold"):
        ql.compute_quality_layers(root, ncc_threshold=2)
    with pytest.raises(InputError, match="timeseries/ts_east_m.tif"):
        ql.compute_quality_layers(str(tmp_path))
    # a pair the inversion used has gone: say which and what to do
    copy = tmp_path / "copy"
    import shutil
    shutil.copytree(root, copy)
    gone = sorted(glob.glob(str(copy / "pairs" / "*.tif")))[2]
    os.remove(gone)
    with pytest.raises(InputError, match=os.path.basename(gone)):
        ql.compute_quality_layers(str(copy))


def test_cancel_leaves_nothing(stack, tmp_path):
    import shutil

    root, _truth = stack
    copy = str(tmp_path / "c")
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("quality_*"))
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Cancelled):
        ql.compute_quality_layers(copy, block_rows=4, progress=Progress(is_cancelled=cancelled))
    assert not [f for f in os.listdir(os.path.join(copy, "timeseries"))
                if "quality" in f or f.startswith(".")]


def test_pairs_from_pairs_csv_when_untagged(tmp_path):
    """Time-series files without the inversion's tags (e.g. made elsewhere): the selected
    pairs of pairs.csv are used."""
    from ui_fixtures import make_output_folder

    folder = str(tmp_path / "fixture")
    make_output_folder(folder, n_detections=2)
    res = ql.compute_quality_layers(folder)
    assert res.summary["pairs_from"] == "the selected pairs of pairs.csv"
    assert res.n_pairs == len(os.listdir(os.path.join(folder, "pairs")))
    got = _read(res.paths)
    # the fixture rejects the first pair in columns >= 70
    assert got["n_valid_pairs"][30, 40] == res.n_pairs
    assert got["n_valid_pairs"][30, 75] == res.n_pairs - 1
    v = ql.read_quality_at(res.folder, 500000 + 40.5 * 10, 5100000 - 30.5 * 10)
    assert v["n_valid_pairs"] == res.n_pairs and v["first_valid_date"] == "2020-01-10"


# ------------------------------------------------------------------ in QGIS
def test_styles_are_applied_when_qgis_opens_the_layers(stack, qgis_new_project):
    from qgis.core import QgsRasterLayer

    root, _truth = stack
    res = ql.compute_quality_layers(root)
    for key, path in res.paths.items():
        assert os.path.exists(res.styles[key])
        layer = QgsRasterLayer(path, key, "gdal")
        assert layer.isValid()
        renderer = layer.renderer()
        assert renderer.type() == "singlebandpseudocolor", key
        items = renderer.shader().rasterShaderFunction().colorRampItemList()
        assert len(items) >= 3, key
        if key == "first_valid_date":
            assert items[0].label == DATES[0] and items[-1].label == DATES[-1]
            assert renderer.classificationMin() == 20210103
        if key == "ncc_share":
            assert (renderer.classificationMin(), renderer.classificationMax()) == (0.0, 1.0)
        if key == "n_valid_pairs":
            assert renderer.classificationMax() == len(PAIRS)


def _check_style_matches_data(key, renderer, data, tags, band_tags):
    """The ramp of a quality layer spans the data written and every label states its
    value in the unit of the band (UNITS tag)."""
    fn = renderer.shader().rasterShaderFunction()
    items = fn.colorRampItemList()
    lo, hi = renderer.classificationMin(), renderer.classificationMax()
    assert (lo, hi) == (fn.minimumValue(), fn.maximumValue()) == (items[0].value,
                                                                  items[-1].value), key
    assert [i.value for i in items] == sorted(i.value for i in items), key
    a = data.astype(float)
    a = a[np.isfinite(a) & (a != 0)] if key.endswith("_date") else a[np.isfinite(a)]
    legend = fn.legendSettings()
    if legend.useContinuousLegend():  # a colour bar labelled with the end items' labels
        assert legend.minimumLabel() == items[0].label and legend.maximumLabel() == \
            items[-1].label, key
    unit = band_tags["UNITS"]
    if key == "n_valid_pairs":
        assert unit == "count"
        assert (lo, hi) == (0.0, float(tags["N_PAIRS"])) and a.max() <= hi, key
        assert [i.label for i in items] == ["%d pairs" % i.value for i in items]
        assert all(i.value == int(i.value) for i in items)
    elif key == "ncc_share":
        assert unit == "fraction" and (lo, hi) == (0.0, 1.0)
        assert 0.0 <= a.min() and a.max() <= 1.0
        assert [float(i.label.split()[0]) for i in items] == [i.value for i in items]
    elif key.endswith("_date"):
        assert unit == "YYYYMMDD" and not legend.useContinuousLegend()
        assert [i.label.replace("-", "") for i in items] == ["%d" % i.value for i in items]
        dates = tags["DATES"].split(",")
        assert (items[0].label, items[-1].label) == (dates[0], dates[-1])
        assert lo <= a.min() and a.max() <= hi, key
    else:
        assert key == "longest_gap_days" and unit == "days"
        assert all(i.label.startswith("%.0f days" % i.value) for i in items)
        steps = np.diff(np.array(tags["DATES"].split(","), dtype="datetime64[D]"))
        assert lo == float(np.median(steps.astype(float)))
        assert hi == max(float(a.max()), 2 * lo)
        assert ("longest gap" in items[-1].label) and (
            "%.0f days" % a.max() in items[-1].label)


def test_each_style_matches_the_data_and_units_written(stack, qgis_new_project, tmp_path):
    """The .qml of every layer, as QGIS reads it: ramp from the data's lower to its upper
    bound, labels with the band's unit and value (a colour bar shows the first and last
    labels, not bare numbers); the project loads the same style."""
    from qgis.core import QgsRasterLayer

    root, _truth = stack
    res = ql.compute_quality_layers(root)
    for key, path in res.paths.items():
        with rasterio.open(path) as src:
            data, tags, band_tags = src.read(1), src.tags(), src.tags(1)
        layer = QgsRasterLayer(path, key, "gdal")
        _check_style_matches_data(key, layer.renderer(), data, tags, band_tags)
    # a gap no longer than twice the median sampling: the red end says so
    items, lo, hi, cont = ql.style_items("longest_gap_days", DATES[:3], 3, 13.0, 0.5)
    assert (lo, hi) == (18.0, 36.0) and cont
    assert items[-1][2] == "36 days (2 x median sampling; longest gap 13 days)"
    items, lo, hi, _ = ql.style_items("n_valid_pairs", DATES, 1, 0.0, 0.5)
    assert [(v, lbl) for v, _c, lbl in items] == [(0.0, "0 pairs"), (1.0, "1 pairs")]


def test_project_uses_the_styles_and_restores_a_missing_one(stack, qgis_new_project,
                                                            tmp_path):
    import shutil

    from qgis.core import QgsRasterLayer

    from slidewatch.processing_provider.project_writer import _quality_layers

    root0, _truth = stack
    ql.compute_quality_layers(root0)
    root = str(tmp_path / "copy")
    shutil.copytree(root0, root)
    ts = os.path.join(root, "timeseries")
    qml = ql.style_path(os.path.join(ts, "quality_longest_gap.tif"))
    with open(qml) as fh:
        written = fh.read()
    os.remove(qml)
    layers = dict(_quality_layers(ts))
    with open(qml) as fh:
        assert fh.read() == written  # rebuilt from the raster: the same style
    for key, path in ql.quality_paths(ts).items():
        layer = QgsRasterLayer(path, key, "gdal")  # kept: its renderer dies with it
        own = layer.renderer().shader().rasterShaderFunction()
        got = layers[key].renderer().shader().rasterShaderFunction()
        assert [(i.value, i.label, i.color.name()) for i in got.colorRampItemList()] == [
            (i.value, i.label, i.color.name()) for i in own.colorRampItemList()], key
        assert got.legendSettings().maximumLabel() == own.legendSettings().maximumLabel()


def _run(alg_id, params, context=None):
    from qgis.core import (QgsApplication, QgsProcessingAlgorithm, QgsProcessingContext,
                           QgsProcessingFeedback)

    class Feedback(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.errors = []
            self.infos = []

        def reportError(self, error, fatalError=False):  # noqa: N802
            self.errors.append(error)

        def pushInfo(self, info):  # noqa: N802
            self.infos.append(info)

    alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
    assert alg is not None, alg_id
    feedback = Feedback()
    context = context or QgsProcessingContext()
    res, ok = QgsProcessingAlgorithm.run(alg, params, context, feedback)
    return res, ok, feedback


def test_processing_algorithm(provider, stack, qgis_new_project, tmp_path):
    from qgis.core import QgsProcessingContext, QgsProject

    root, truth = stack
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    res, ok, fb = _run("slidewatch:quality_layers", {"INPUT": root, "NCC_THRESHOLD": 0.5},
                       context)
    assert ok, fb.errors
    assert res["N_PAIRS"] == len(PAIRS)
    want = _expected(truth)
    with rasterio.open(res["LONGEST_GAP"]) as src:
        np.testing.assert_array_equal(src.read(1), want["longest_gap_days"].astype(np.float32))
    assert res["FIRST_DATE"].endswith(os.path.join("timeseries", "quality_first_date.tif"))
    assert len(context.layersToLoadOnCompletion()) == 5
    assert any("Quality layers written" in i for i in fb.infos)
    # an actionable message for a folder without an inversion
    _res, ok, fb = _run("slidewatch:quality_layers", {"INPUT": str(tmp_path)})
    assert not ok and any("ts_east_m.tif" in e for e in fb.errors), fb.errors
