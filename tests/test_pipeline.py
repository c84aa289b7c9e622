"""End-to-end pipeline: core orchestration, resuming, cancel, and the Processing algorithm.

One small synthetic stack (8 dates, 128 x 128 px, real Sentinel-2 texture) is generated
per module; the core pipeline runs on it once (module fixture) and the tests check the
SPEC files, the resume logic and the ``slidewatch:pipeline`` algorithm with its project.
"""

import csv
import json
import os
import shutil
import threading
import zipfile

import numpy as np
import pytest

from slidewatch.core.errors import Cancelled, ParameterError
from slidewatch.core.run.pipeline import (LOG_NAME, MANIFEST_NAME, PipelineParams,
                                          params_from_dict, run_pipeline)
from slidewatch.core.progress import Progress

SPEC_CATALOG = ["path", "date", "sensor", "valid_fraction", "cloud_fraction", "sun_azimuth",
                "sun_elevation"]
SPEC_PAIRS = ["reference_date", "secondary_date", "reference_path", "secondary_path",
              "baseline_days", "score", "selected", "reason"]
SPEC_DETECTION_FIELDS = ["id", "area_m2", "v_mean_m_per_yr", "v_p95_m_per_yr", "direction_deg",
                         "coherence", "score", "accel_flag", "accel_onset_date", "status",
                         "comment", "validated_by", "validated_at"]
VELOCITY_BANDS = ["ve_m_per_yr", "vn_m_per_yr", "v_m_per_yr", "v_sigma_m_per_yr", "n_obs",
                  "rmse_m"]


def _mtimes(folder):
    out = {}
    for root, _dirs, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, folder)] = os.stat(p).st_mtime_ns
    return out


def test_all_spec_files_present(first_run):
    import rasterio
    from osgeo import ogr

    out, result, lines = first_run
    assert all(v["status"] in ("done", "skipped") for v in result.steps.values())
    assert [k for k, v in result.steps.items() if v["status"] == "done"] == [
        "catalog", "pairing", "correlation", "inversion", "quality", "detection", "overview"]

    with open(os.path.join(out, "catalog.csv"), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0].keys())[:7] == SPEC_CATALOG and len(rows) == 8

    with open(os.path.join(out, "pairs.csv"), newline="") as fh:
        pairs = list(csv.DictReader(fh))
    assert list(pairs[0].keys())[:8] == SPEC_PAIRS
    selected = [p for p in pairs if p["selected"] == "1"]
    assert len(selected) == result.n_pairs >= 4

    # the pair rasters, and the folder of their window footprints (core/detect/footprint.py)
    tifs = sorted(f for f in os.listdir(os.path.join(out, "pairs")) if f != "footprint")
    assert len(tifs) == len(selected)
    assert sorted(os.listdir(os.path.join(out, "pairs", "footprint"))) == [
        t.replace(".tif", ".npy") for t in tifs]
    for p in selected:
        name = "pair_%s_%s.tif" % (p["reference_date"].replace("-", ""),
                                   p["secondary_date"].replace("-", ""))
        with rasterio.open(os.path.join(out, "pairs", name)) as src:
            assert list(src.descriptions) == ["east_m", "north_m", "ncc", "snr", "status"]
            tags = src.tags()
            assert tags["REFERENCE_DATE"] == p["reference_date"]
            assert tags["SECONDARY_DATE"] == p["secondary_date"]
            assert json.loads(tags["SLIDEWATCH_PARAMS"])["params"]["window"] == [32, 32]

    ts = os.path.join(out, "timeseries")
    for name in ("ts_east_m.tif", "ts_north_m.tif"):
        with rasterio.open(os.path.join(ts, name)) as src:
            dates = list(src.descriptions)
            assert len(dates) == src.count >= 4
            assert all(len(d) == 10 and d[4] == "-" for d in dates) and dates == sorted(dates)
            first = src.read(1)
            assert np.nanmax(np.abs(first)) == 0.0       # cumulative since the first date
    with rasterio.open(os.path.join(ts, "velocity.tif")) as src:
        assert list(src.descriptions) == VELOCITY_BANDS
        v = src.read(3)
        assert np.isfinite(v).mean() > 0.5

    ds = ogr.Open(os.path.join(out, "detections.gpkg"))
    layer = ds.GetLayerByName("detections")
    assert layer is not None
    names = [layer.GetLayerDefn().GetFieldDefn(i).GetName()
             for i in range(layer.GetLayerDefn().GetFieldCount())]
    assert set(SPEC_DETECTION_FIELDS) - {"id"} <= set(names)
    ds = None

    with open(os.path.join(out, "overview.png"), "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    manifest = json.load(open(os.path.join(out, MANIFEST_NAME)))
    assert set(manifest["steps"]) >= {"catalog", "pairing", "inversion", "detection"}
    log = open(os.path.join(out, LOG_NAME)).read()
    assert "correlation: done" in log and "=== Finished" in log
    assert any("inversion: done" in line for line in lines)
    # no temporary file left anywhere
    assert not [p for p in _mtimes(out) if "partial" in p or "/.parts" in p]


def test_rerun_skips_everything(first_run, stack_folder):
    out, first, _ = first_run
    before = _mtimes(out)
    # QGIS writes statistics beside an image it displays: not a change of the inputs
    image = sorted(f for f in os.listdir(stack_folder) if f.endswith(".tif"))[0]
    sidecar = os.path.join(stack_folder, image + ".aux.xml")
    with open(sidecar, "w") as fh:
        fh.write("<PAMDataset/>")
    try:
        result = run_pipeline(stack_folder, out, PipelineParams())
    finally:
        os.remove(sidecar)
    assert {k: v["status"] for k, v in result.steps.items()} == dict.fromkeys(
        ["catalog", "grid", "pairing", "correlation", "inversion", "quality", "detection",
         "overview"],
        "skipped")
    assert result.pairs_computed == 0 and result.pairs_reused == first.n_pairs
    after = _mtimes(out)
    changed = {k for k in before if before[k] != after.get(k)}
    assert changed <= {LOG_NAME}, changed
    log = open(os.path.join(out, LOG_NAME)).read().split("=== SlideWatch pipeline")[-1]
    for step in ("catalog", "pairing", "correlation", "inversion", "detection"):
        assert "%s: skipped" % step in log


def test_method_update_recomputes_the_step_and_what_follows(first_run, stack_folder,
                                                           tmp_path):
    """Outputs made by an older inversion method (e.g. another default lambda) are redone."""
    out0, _, _ = first_run
    out = str(tmp_path / "results")
    shutil.copytree(out0, out)
    path = os.path.join(out, MANIFEST_NAME)
    manifest = json.load(open(path))
    manifest["steps"]["inversion"]["method_version"] = 1      # as written before the update
    json.dump(manifest, open(path, "w"))
    pairs_before = _mtimes(os.path.join(out, "pairs"))
    result = run_pipeline(stack_folder, out, PipelineParams())
    status = {k: v["status"] for k, v in result.steps.items()}
    assert status["inversion"] == "done" and status["detection"] == "done", status
    log = open(os.path.join(out, LOG_NAME)).read().split("=== SlideWatch pipeline")[-1]
    assert "method changed by a SlideWatch update" in log, log
    for step in ("catalog", "pairing", "correlation"):
        assert status[step] == "skipped", (step, result.steps[step])
    assert _mtimes(os.path.join(out, "pairs")) == pairs_before


def test_detection_parameter_recomputes_only_detection(first_run, stack_folder, tmp_path):
    out0, _, _ = first_run
    out = str(tmp_path / "results")
    shutil.copytree(out0, out)      # the manifest stores relative paths: a moved folder works
    pairs_before = _mtimes(os.path.join(out, "pairs"))
    ts_before = _mtimes(os.path.join(out, "timeseries"))
    result = run_pipeline(stack_folder, out, PipelineParams(
        detection_options={"min_score": 0.3, "z_seed": 4.0}))
    status = {k: v["status"] for k, v in result.steps.items()}
    assert status["detection"] == "done"
    assert status["detection"] == "done" and result.steps["detection"]["reason"]
    for step in ("catalog", "pairing", "correlation", "inversion"):
        assert status[step] == "skipped", (step, result.steps[step])
    assert _mtimes(os.path.join(out, "pairs")) == pairs_before
    assert _mtimes(os.path.join(out, "timeseries")) == ts_before
    assert "detection: parameters changed" in open(os.path.join(out, LOG_NAME)).read()


def test_cancel_then_resume(stack_folder, tmp_path):
    out = str(tmp_path / "results")
    stop = threading.Event()

    def callback(percent, message):
        if message.startswith("correlation: ") and not message.startswith("correlation: 0/"):
            stop.set()          # cancel once the first pair is finished

    with pytest.raises(Cancelled):
        run_pipeline(stack_folder, out, PipelineParams(max_workers=1),
                     progress=Progress(callback=callback, is_cancelled=stop.is_set))
    done = [f for f in os.listdir(os.path.join(out, "pairs")) if f != "footprint"]
    assert done and all(f.startswith("pair_") and f.endswith(".tif") for f in done)
    # no partial file: each finished pair has its footprint raster, nothing else is there
    assert sorted(os.listdir(os.path.join(out, "pairs", "footprint"))) == sorted(
        d.replace(".tif", ".npy") for d in done)
    assert not os.path.exists(os.path.join(out, "timeseries", "velocity.tif"))
    assert "Cancelled" in open(os.path.join(out, LOG_NAME)).read()
    result = run_pipeline(stack_folder, out, PipelineParams(max_workers=1))
    assert result.pairs_reused >= len(done) and result.pairs_computed == result.n_pairs - \
        result.pairs_reused
    assert os.path.exists(os.path.join(out, "timeseries", "velocity.tif"))


def test_bad_parameters_are_reported(stack_folder, tmp_path):
    with pytest.raises(ParameterError, match="Unknown pipeline parameter"):
        params_from_dict({"windw": 3})
    with pytest.raises(ParameterError, match="window"):
        run_pipeline(stack_folder, str(tmp_path / "o"), PipelineParams(window=2))
    with pytest.raises(ParameterError, match="must not be the input folder"):
        run_pipeline(stack_folder, stack_folder, PipelineParams())


# -- the Processing algorithm and the project -----------------------------------------------


def _run_algorithm(params):
    """Run slidewatch:pipeline through QgsProcessingAlgorithm.run (processAlgorithm, as
    qgis_process and the toolbox do)."""
    from qgis.core import (QgsApplication, QgsProcessingAlgorithm, QgsProcessingContext,
                           QgsProcessingFeedback)
    alg = QgsApplication.processingRegistry().createAlgorithmById("slidewatch:pipeline")
    assert alg is not None
    context = QgsProcessingContext()
    feedback = QgsProcessingFeedback()
    res, ok = QgsProcessingAlgorithm.run(alg, params, context, feedback)
    assert ok, res
    return res


def test_processing_run_entry_point(provider, stack_folder, tmp_path):
    import processing
    res = processing.run("slidewatch:pipeline", {"INPUT": stack_folder,
                                                 "OUTPUT_FOLDER": str(tmp_path / "r")})
    assert os.path.exists(res["PROJECT"])


def test_processing_algorithm_and_project(provider, stack_folder, tmp_path):
    from qgis.core import (QgsCategorizedSymbolRenderer, QgsProject,
                           QgsSingleBandPseudoColorRenderer)

    out = str(tmp_path / "results")
    res = _run_algorithm({"INPUT": stack_folder, "OUTPUT_FOLDER": out, "MIN_SCORE": 0.3})
    project_path = res["PROJECT"]
    assert project_path == os.path.join(out, "slidewatch.qgz") and os.path.exists(project_path)
    assert res["N_DATES"] == 8 and res["N_PAIRS"] >= 4
    for key in ("OVERVIEW", "VELOCITY", "DETECTIONS", "LOG"):
        assert os.path.exists(res[key]), key

    # paths are relative: the project still opens after moving the whole folder
    moved = str(tmp_path / "moved")
    shutil.move(out, moved)
    with zipfile.ZipFile(os.path.join(moved, "slidewatch.qgz")) as z:
        assert z.namelist() == ["slidewatch.qgs"] or "slidewatch.qgs" in z.namelist()
        xml = z.read("slidewatch.qgs").decode("utf-8")
    assert out not in xml and "./timeseries/velocity.tif" in xml
    project = QgsProject()
    assert project.read(os.path.join(moved, "slidewatch.qgz"))
    layers = {layer.name(): layer for layer in project.mapLayers().values()}
    assert {"velocity (m/yr)", "detections", "displacement direction", "ts_east_m",
            "ts_north_m", "reference image"} <= set(layers)
    assert all(layer.isValid() for layer in layers.values()), [
        n for n, layer in layers.items() if not layer.isValid()]
    vel = layers["velocity (m/yr)"]
    assert isinstance(vel.renderer(), QgsSingleBandPseudoColorRenderer)
    assert vel.renderer().band() == 3 and vel.renderer().classificationMax() > 0
    det = layers["detections"].renderer()
    assert isinstance(det, QgsCategorizedSymbolRenderer) and det.classAttribute() == "status"
    assert [c.value() for c in det.categories()] == ["unvalidated", "confirmed", "rejected",
                                                      "uncertain"]
    assert layers["ts_east_m"].bandCount() == 8 or layers["ts_east_m"].bandCount() >= 4
    assert moved in layers["ts_east_m"].source()
    project.clear()


@pytest.mark.slow
def test_qgis_process_headless_command(stack_folder, tmp_path):
    """SPEC's headless entry point, with the real qgis_process binary."""
    import subprocess

    from conftest import qgis_process_command, qgis_process_env

    out = str(tmp_path / "results")
    env = qgis_process_env()
    res = subprocess.run([qgis_process_command(), "run", "slidewatch:pipeline", "--",
                          "INPUT=%s" % stack_folder, "OUTPUT_FOLDER=%s" % out],
                         env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for name in ("catalog.csv", "pairs.csv", "timeseries/velocity.tif", "detections.gpkg",
                 "slidewatch.qgz", "overview.png", "slidewatch.log"):
        assert os.path.exists(os.path.join(out, name)), name
    assert "PROJECT:" in res.stdout


def test_images_on_different_grids_are_warped_once(tmp_path):
    """One image cropped by a few pixels: the pipeline warps every image onto a common grid
    (common_grid/), and a re-run reuses the copies."""
    import rasterio
    from rasterio.windows import Window

    from slidewatch.core.synth.synthetic import generate_stack

    folder = tmp_path / "images"
    stack = generate_stack(str(folder), n_dates=5, shape=(112, 112), seed=4,
                           cloudy_date_fraction=0.0, fully_clouded_dates=0)
    path = stack.paths[2]
    with rasterio.open(path) as src:
        win = Window(3, 2, src.width - 3, src.height - 2)
        data = src.read(window=win)
        prof = src.profile
        prof.update(width=win.width, height=win.height,
                    transform=src.window_transform(win))
        tags = src.tags()
    os.remove(path)
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(data)
        dst.update_tags(**tags)
    out = str(tmp_path / "results")
    res = run_pipeline(str(folder), out, PipelineParams(step=8))
    assert res.steps["grid"]["status"] == "done"
    warped = sorted(os.listdir(os.path.join(out, "common_grid")))
    assert len(warped) == 5
    with rasterio.open(os.path.join(out, "common_grid", warped[0])) as a, \
            rasterio.open(os.path.join(out, "common_grid", warped[2])) as b:
        assert a.transform == b.transform and a.shape == b.shape
    res = run_pipeline(str(folder), out, PipelineParams(step=8))
    assert res.steps["grid"]["status"] == "skipped"
    assert res.steps["correlation"]["status"] == "skipped"
