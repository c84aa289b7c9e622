"""The pipeline writes the quality layers (issue 17) and the project shows them styled.

Same small synthetic stack as tests/test_pipeline.py (8 dates, 128 x 128 px, seed 3); the
pipeline runs on it once (module fixture, a few seconds), the other tests re-run it on
copies where everything but the quality step is up to date.
"""

import csv
import json
import os
import shutil
import threading
import zipfile

import numpy as np
import pytest

from slidewatch.core.series import quality_layers as ql
from slidewatch.core.errors import Cancelled, ParameterError
from slidewatch.core.run.pipeline import LOG_NAME, MANIFEST_NAME, PipelineParams, run_pipeline
from slidewatch.core.progress import Progress

FILES = {"n_valid_pairs": "quality_n_valid_pairs.tif", "ncc_share": "quality_ncc_share.tif",
         "first_valid_date": "quality_first_date.tif",
         "last_valid_date": "quality_last_date.tif",
         "longest_gap_days": "quality_longest_gap.tif"}


def _read(path):
    import rasterio
    with rasterio.open(path) as src:
        return src.read(1), src.descriptions[0], src.tags(), src.tags(1)


def _mtimes(folder):
    return {f: os.stat(os.path.join(folder, f)).st_mtime_ns for f in sorted(os.listdir(folder))}


def _selected_pairs(out):
    with open(os.path.join(out, "pairs.csv"), newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["selected"] == "1"]


def _step_status(result):
    return {k: v["status"] for k, v in result.steps.items()}


#: steps before the quality layers (in a copied output folder the detection runs again:
#: its inputs are fingerprinted by absolute path)
UPSTREAM = ("catalog", "grid", "pairing", "correlation", "inversion")


def test_pipeline_writes_plausible_quality_layers(first_run):
    out, result, lines = first_run
    assert result.steps["quality"]["status"] == "done"
    steps = list(result.steps)
    assert steps.index("inversion") + 1 == steps.index("quality") < steps.index("detection")
    ts = os.path.join(out, "timeseries")
    assert result.paths["quality"] == ql.quality_paths(ts)
    n_selected = len(_selected_pairs(out))
    assert n_selected == result.n_pairs >= 4
    import rasterio
    with rasterio.open(os.path.join(ts, "ts_east_m.tif")) as src:
        iso_dates = list(src.descriptions)
        shape = (src.height, src.width)
    ts_dates = [d.replace("-", "") for d in iso_dates]

    q = {}
    for key, name in FILES.items():
        path = os.path.join(ts, name)
        assert os.path.exists(path), name
        assert os.path.exists(os.path.splitext(path)[0] + ".qml"), name
        q[key], desc, tags, band_tags = _read(path)
        assert q[key].shape == shape
        assert desc == dict((k, d) for k, _n, d, *_ in ql.LAYERS)[key]
        assert int(tags["N_PAIRS"]) <= n_selected and band_tags["UNITS"]

    n = q["n_valid_pairs"]
    assert n.dtype == np.uint16 and n.max() <= n_selected and n.max() >= 2
    assert (n > 0).mean() > 0.5
    share = q["ncc_share"]
    fin = np.isfinite(share)
    assert fin.mean() > 0.5
    assert share[fin].min() >= 0.0 and share[fin].max() <= 1.0
    # a pixel counts at most its valid pairs as above the threshold
    assert np.all(share[fin] * n_selected <= n[fin] + 1e-3)
    gap = q["longest_gap_days"]
    measured = n > 0
    assert np.all(np.isfinite(gap[measured])) and np.all(np.isnan(gap[~measured]))
    assert gap[measured].min() >= 0.0
    span_days = (np.datetime64(iso_dates[-1]) - np.datetime64(iso_dates[0])).astype(int)
    assert gap[measured].max() <= span_days
    first, last = q["first_valid_date"], q["last_valid_date"]
    assert np.all((first == 0) == ~measured) and np.all((last == 0) == ~measured)
    assert np.all(first[measured] < last[measured])
    assert set(np.unique(first[measured]).astype(str)) <= set(ts_dates)
    assert set(np.unique(last[measured]).astype(str)) <= set(ts_dates)

    # the step's log lines, in the run log too
    log = open(os.path.join(out, LOG_NAME)).read()
    assert "quality: no previous run, computing the quality layers" in log
    assert "quality: done (5 layers" in log
    assert any(line.startswith("quality: Quality layers written to") for line in lines)
    manifest = json.load(open(os.path.join(out, MANIFEST_NAME)))
    entry = manifest["steps"]["quality"]
    assert entry["params"] == {"ncc_threshold": 0.5}
    assert entry["summary"]["n_valid_pairs_max"] == int(n.max())


def test_rerun_skips_the_quality_layers(first_run, stack_folder):
    out, _, _ = first_run
    ts = os.path.join(out, "timeseries")
    before = _mtimes(ts)
    result = run_pipeline(stack_folder, out, PipelineParams())
    assert set(_step_status(result).values()) == {"skipped"}
    assert result.steps["quality"]["reason"].startswith("up to date")
    assert _mtimes(ts) == before
    log = open(os.path.join(out, LOG_NAME)).read().split("=== SlideWatch pipeline")[-1]
    assert "quality: skipped (up to date" in log


def test_threshold_change_recomputes_only_the_quality_layers(first_run, stack_folder, tmp_path):
    out0, _, _ = first_run
    out = str(tmp_path / "results")
    shutil.copytree(out0, out)
    ts = os.path.join(out, "timeseries")
    series = {k: v for k, v in _mtimes(ts).items() if not k.startswith("quality_")}
    share_before = _read(os.path.join(ts, FILES["ncc_share"]))[0]
    result = run_pipeline(stack_folder, out, PipelineParams(quality_ncc_threshold=0.8))
    status = _step_status(result)
    assert status["quality"] == "done"
    assert all(status[s] == "skipped" for s in UPSTREAM), status
    assert {k: v for k, v in _mtimes(ts).items() if not k.startswith("quality_")} == series
    share, _, tags, _ = _read(os.path.join(ts, FILES["ncc_share"]))
    assert float(tags["NCC_THRESHOLD"]) == 0.8
    fin = np.isfinite(share)
    assert np.array_equal(fin, np.isfinite(share_before))
    assert np.all(share[fin] <= share_before[fin]) and share[fin].mean() < share_before[fin].mean()
    assert "quality: parameters changed" in open(os.path.join(out, LOG_NAME)).read()
    with pytest.raises(ParameterError, match="Quality NCC threshold"):
        run_pipeline(stack_folder, out, PipelineParams(quality_ncc_threshold=2.0))


def test_processing_dialog_has_the_quality_settings(provider, first_run, stack_folder,
                                                    tmp_path):
    """slidewatch:pipeline offers PipelineParams' write_quality_layers and
    quality_ncc_threshold (defaults of the core object) and passes them to the core."""
    from qgis.core import (QgsApplication, QgsProcessingAlgorithm, QgsProcessingContext,
                           QgsProcessingFeedback)

    alg = QgsApplication.processingRegistry().createAlgorithmById("slidewatch:pipeline")
    d = PipelineParams()
    write = alg.parameterDefinition("WRITE_QUALITY_LAYERS")
    threshold = alg.parameterDefinition("QUALITY_NCC_THRESHOLD")
    assert write is not None and threshold is not None
    assert write.defaultValue() == d.write_quality_layers is True
    assert threshold.defaultValue() == d.quality_ncc_threshold
    assert (threshold.minimum(), threshold.maximum()) == (-1.0, 1.0)
    assert "quality layers" in alg.shortHelpString().lower()
    context = QgsProcessingContext()
    base = {"INPUT": stack_folder, "OUTPUT_FOLDER": str(tmp_path / "x")}
    p = alg.params_from(dict(base), context)
    assert (p.write_quality_layers, p.quality_ncc_threshold) == (
        d.write_quality_layers, d.quality_ncc_threshold)
    assert p.step_params("quality") == d.step_params("quality")  # same hash as from Python
    p = alg.params_from(dict(base, WRITE_QUALITY_LAYERS=False, QUALITY_NCC_THRESHOLD=0.7),
                        context)
    assert (p.write_quality_layers, p.quality_ncc_threshold) == (False, 0.7)
    # through the algorithm: the threshold reaches the layers, only they are recomputed
    out0, _, _ = first_run
    out = str(tmp_path / "results")
    shutil.copytree(out0, out)
    res, ok = QgsProcessingAlgorithm.run(
        alg, {"INPUT": stack_folder, "OUTPUT_FOLDER": out, "QUALITY_NCC_THRESHOLD": 0.7,
              "WRITE_PROJECT": False}, QgsProcessingContext(), QgsProcessingFeedback())
    assert ok, res
    tags = _read(os.path.join(out, "timeseries", FILES["ncc_share"]))[2]
    assert float(tags["NCC_THRESHOLD"]) == 0.7
    with open(os.path.join(out, MANIFEST_NAME)) as fh:
        steps = json.load(fh)["steps"]
    assert steps["quality"]["params"]["ncc_threshold"] == 0.7
    # unticked: the quality step is skipped, the layers of the earlier run stay
    res, ok = QgsProcessingAlgorithm.run(
        alg, {"INPUT": stack_folder, "OUTPUT_FOLDER": out, "WRITE_QUALITY_LAYERS": False,
              "QUALITY_NCC_THRESHOLD": 0.2, "WRITE_PROJECT": False}, QgsProcessingContext(),
        QgsProcessingFeedback())
    assert ok, res
    with open(res["LOG"]) as fh:
        assert "quality: skipped (not requested)" in fh.read()
    tags = _read(os.path.join(out, "timeseries", FILES["ncc_share"]))[2]
    assert float(tags["NCC_THRESHOLD"]) == 0.7


def test_cancel_during_the_quality_step_then_resume(first_run, stack_folder, tmp_path):
    out0, _, _ = first_run
    out = str(tmp_path / "results")
    shutil.copytree(out0, out)
    ts = os.path.join(out, "timeseries")
    missing = os.path.join(ts, FILES["longest_gap_days"])
    os.remove(missing)
    stop = threading.Event()
    seen = []

    def callback(percent, message):
        seen.append((percent, message))
        if message.startswith("Quality layers"):
            stop.set()          # cancel once the (only) block is computed

    with pytest.raises(Cancelled):
        run_pipeline(stack_folder, out, PipelineParams(),
                     progress=Progress(callback=callback, is_cancelled=stop.is_set))
    # the step reports within its share of the bar (after the inversion's)
    pct = [p for p, m in seen if m.startswith("Quality layers")]
    assert pct and 80.0 <= min(pct) <= max(pct) <= 92.0
    assert not os.path.exists(missing)
    assert not [f for f in os.listdir(ts) if "partial" in f or f.startswith(".")]
    log = open(os.path.join(out, LOG_NAME)).read().split("=== SlideWatch pipeline")[-1]
    assert "quality: output missing (timeseries/quality_longest_gap.tif)" in log
    assert "Cancelled" in log
    result = run_pipeline(stack_folder, out, PipelineParams())
    status = _step_status(result)
    assert status["quality"] == "done"
    assert all(status[s] == "skipped" for s in UPSTREAM), status
    gap = _read(missing)[0]
    assert np.array_equal(gap, _read(os.path.join(out0, "timeseries",
                                                  FILES["longest_gap_days"]))[0],
                          equal_nan=True)


def test_not_requested(first_run, stack_folder, tmp_path):
    out0, _, _ = first_run
    out = str(tmp_path / "results")
    shutil.copytree(out0, out)
    result = run_pipeline(stack_folder, out, PipelineParams(write_quality_layers=False))
    assert result.steps["quality"] == {"status": "skipped", "reason": "not requested",
                                       "seconds": 0.0}


def test_project_lists_the_quality_layers_in_their_group(first_run, qgis_app, tmp_path):
    from qgis.core import QgsLayerTreeGroup, QgsProject, QgsSingleBandPseudoColorRenderer

    from slidewatch.processing_provider.project_writer import write_project

    out0, result, _ = first_run
    out = str(tmp_path / "results")
    shutil.copytree(out0, out)
    path = write_project(out)
    with zipfile.ZipFile(path) as z:
        xml = z.read("slidewatch.qgs").decode("utf-8")
    assert "./timeseries/quality_n_valid_pairs.tif" in xml and out not in xml
    project = QgsProject()
    assert project.read(path)
    root = project.layerTreeRoot()
    groups = [c.name() for c in root.children() if isinstance(c, QgsLayerTreeGroup)]
    assert groups == ["time series", "Quality"]
    group = root.findGroup("Quality")
    assert not group.itemVisibilityChecked()
    nodes = group.findLayers()
    names = [n.name() for n in nodes]
    assert names == ["valid pairs (count)", "share of pairs with NCC >= 0.5 (0-1)",
                     "longest gap (days)", "first valid date (YYYYMMDD)",
                     "last valid date (YYYYMMDD)"]
    assert [n.itemVisibilityChecked() for n in nodes] == [True, False, False, False, False]
    layers = {n.name(): n.layer() for n in nodes}
    assert all(layer.isValid() for layer in layers.values())
    assert os.path.basename(layers["valid pairs (count)"].source()) == FILES["n_valid_pairs"]

    def ramp(name):
        r = layers[name].renderer()
        assert isinstance(r, QgsSingleBandPseudoColorRenderer) and r.band() == 1
        fn = r.shader().rasterShaderFunction()
        items = fn.colorRampItemList()
        return r, items, fn

    r, items, fn = ramp("valid pairs (count)")
    n_pairs = int(_read(os.path.join(out, "timeseries", FILES["n_valid_pairs"]))[2]["N_PAIRS"])
    assert (r.classificationMin(), r.classificationMax()) == (0.0, float(n_pairs))
    assert items[0].color.name() == "#440154" and items[-1].color.name() == "#fde725"
    assert all(i.label.endswith(" pairs") for i in items)
    assert fn.legendSettings().maximumLabel() == "%d pairs" % n_pairs
    r, items, _ = ramp("share of pairs with NCC >= 0.5 (0-1)")
    assert (r.classificationMin(), r.classificationMax()) == (0.0, 1.0)
    r, items, _ = ramp("longest gap (days)")
    gap = _read(os.path.join(out, "timeseries", FILES["longest_gap_days"]))[0]
    assert r.classificationMin() > 0 and r.classificationMax() >= np.nanmax(gap)
    assert all("days" in i.label for i in items)
    r, items, fn = ramp("first valid date (YYYYMMDD)")
    assert not fn.legendSettings().useContinuousLegend()
    assert all(len(i.label) == 10 and i.label[4] == "-" for i in items)
    assert [i.value for i in items] == sorted(i.value for i in items)
    project.clear()

    # without quality layers (write_quality_layers=False on a fresh folder) no group
    for name in FILES.values():
        os.remove(os.path.join(out, "timeseries", name))
    project = QgsProject()
    assert project.read(write_project(out))
    assert project.layerTreeRoot().findGroup("Quality") is None
    project.clear()
