"""Reliability (issue 9): faults lose nothing.

- Cancel or SIGKILL during correlation, inversion or detection: no truncated output under
  its final name; a re-run resumes and gives results identical to an uninterrupted run.
- Validation decisions survive a crash of the process that made them, and two writers at
  once (both decisions kept, file intact per ``PRAGMA integrity_check``).
"""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from rel_fixtures import fast_params, read_all, stack
from slidewatch.core.errors import Cancelled
from slidewatch.core.run.pipeline import run_pipeline
from slidewatch.core.progress import Progress

TESTS = os.path.dirname(os.path.abspath(__file__))


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([TESTS] + [p for p in sys.path if p.endswith(
        os.path.join(".build", "plugins"))] + [env.get("PYTHONPATH", "")])
    return env


def _python(code, *args, timeout=600):
    """Run ``code`` in a fresh Python; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)] + [str(a) for a in args],
                          capture_output=True, text=True, env=_env(), timeout=timeout)


def _final_files(folder):
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        out.extend(os.path.join(root, f) for f in files if not f.startswith("."))
    return out


def _assert_nothing_truncated(folder):
    """Every file under its final name is complete: rasters read back entirely, GeoPackages
    pass integrity_check, CSV/JSON parse."""
    import csv
    import json

    import rasterio
    for path in _final_files(folder):
        if path.endswith(".tif"):
            with rasterio.open(path) as src:
                src.read()
        elif path.endswith(".gpkg"):
            with sqlite3.connect(path) as conn:
                assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok", path
        elif path.endswith(".json"):
            with open(path, encoding="utf-8") as fh:
                json.load(fh)
        elif path.endswith(".csv"):
            with open(path, encoding="utf-8", newline="") as fh:
                rows = list(csv.reader(fh))
            assert rows and all(len(r) == len(rows[0]) for r in rows), path


def _detections(path):
    with sqlite3.connect(path) as conn:
        return sorted(conn.execute("SELECT id, area_m2, v_mean_m_per_yr, score, status "
                                   "FROM detections").fetchall())


def _assert_same_outputs(a, b):
    """The SPEC rasters and detections of two output folders are identical."""
    rel = sorted(os.path.relpath(p, a) for p in _final_files(a)
                 if p.endswith(".tif") and "common_grid" not in p)
    assert rel == sorted(os.path.relpath(p, b) for p in _final_files(b)
                         if p.endswith(".tif") and "common_grid" not in p)
    assert any(r.startswith("pairs") for r in rel) and "timeseries/velocity.tif" in rel
    for r in rel:
        np.testing.assert_array_equal(read_all(os.path.join(a, r)), read_all(os.path.join(b, r)),
                                      err_msg=r)
    assert _detections(os.path.join(a, "detections.gpkg")) == \
        _detections(os.path.join(b, "detections.gpkg"))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rel_faults") / "images"
    stack(str(folder), n=4, slide=True)
    return str(folder)


@pytest.fixture(scope="module")
def reference_run(images, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("rel_ref") / "results")
    run_pipeline(images, out, fast_params())
    return out


KILLER = """
import os, signal, sys
from rel_fixtures import fast_params
from slidewatch.core.run.pipeline import run_pipeline
from slidewatch.core.progress import Progress
inp, out, at = sys.argv[1], sys.argv[2], float(sys.argv[3])
seen = []
def callback(pct, msg):
    seen.append(pct)
    if pct >= at:
        print("killed at %.1f %%: %s" % (pct, msg), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
run_pipeline(inp, out, fast_params(), progress=Progress(callback=callback))
print("finished without being killed", seen, flush=True)
"""


# pipeline progress: catalog/grid/pairing 0-12 %, correlation 12-70 %, inversion 70-90 %,
# detection 90-97 %, overview 97-100 %
@pytest.mark.parametrize("step,at", [("correlation", 30.0), ("inversion", 70.5),
                                     ("detection", 90.5)])
def test_sigkill_during_a_step_then_resume(step, at, images, reference_run, tmp_path):
    out = str(tmp_path / "results")
    proc = _python(KILLER, images, out, at)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    assert "killed at" in proc.stdout
    _assert_nothing_truncated(out)
    result = run_pipeline(images, out, fast_params())
    done = [s for s, v in result.steps.items() if v["status"] == "done"]
    assert step in done
    if step != "correlation":   # finished steps were reused, not recomputed
        assert result.steps["correlation"]["status"] == "skipped"
    _assert_nothing_truncated(out)
    _assert_same_outputs(reference_run, out)


REPLACE_KILLER = """
import os, signal, sys
from rel_fixtures import fast_params
from slidewatch.core.run.pipeline import run_pipeline
inp, out, target = sys.argv[1], sys.argv[2], sys.argv[3]
real = os.replace
def replace(src, dst):
    if os.path.basename(str(dst)) == target:
        # the complete temporary file exists; die before it gets its final name
        print("killed before renaming", dst, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst)
os.replace = replace
run_pipeline(inp, out, fast_params())
"""


def test_sigkill_at_the_rename_leaves_no_final_file(images, reference_run, tmp_path):
    out = str(tmp_path / "results")
    proc = _python(REPLACE_KILLER, images, out, "velocity.tif")
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    assert not os.path.exists(os.path.join(out, "timeseries", "velocity.tif"))
    _assert_nothing_truncated(out)
    leftovers = [os.path.join(r, f) for r, _d, fs in os.walk(out) for f in fs
                 if f.startswith(".") and ".partial" in f]
    assert leftovers, "the killed run should have left its complete temporary file"
    old = time.time() - 2 * 3600
    for path in leftovers:
        os.utime(path, (old, old))
    # a fresh temporary file (another run still writing) must not be touched
    fresh = os.path.join(out, ".other.tif.0123abcd.partial")
    open(fresh, "wb").close()
    result = run_pipeline(images, out, fast_params())
    _assert_same_outputs(reference_run, out)
    assert not any(os.path.exists(p) for p in leftovers)
    assert os.path.exists(fresh)
    assert any("left by an interrupted earlier run" in line for line in result.log)


# -- cancel in each core step ----------------------------------------------------------------
def _cancel_after(n_checks):
    state = {"n": 0}

    def is_cancelled():
        state["n"] += 1
        return state["n"] > n_checks
    return Progress(is_cancelled=is_cancelled)


def test_cancel_correlation_inversion_detection_then_resume(reference_run, tmp_path):
    """Cancel (between chunks) in each core step: no file under its final name; running
    again gives exactly the outputs of the uninterrupted run."""
    import shutil

    from slidewatch.core.detect.detection import detect_from_folder
    from slidewatch.core.matching.pair_correlation import correlate_pair_rasters, read_selected_pairs
    from slidewatch.core.series.timeseries_io import invert_pair_rasters
    rows = read_selected_pairs(os.path.join(reference_run, "pairs.csv"))
    row = rows[0]
    name = "pair_%s_%s.tif" % (row["reference_date"].replace("-", ""),
                               row["secondary_date"].replace("-", ""))
    ref_pair = os.path.join(reference_run, "pairs", name)
    # correlation, cancelled after the first block
    out = str(tmp_path / "corr" / name)
    with pytest.raises(Cancelled):
        correlate_pair_rasters(row["reference_path"], row["secondary_path"], out,
                               progress=_cancel_after(1), block_rows=2, window=16, step=8,
                               search=4, stable="median")
    assert os.listdir(str(tmp_path / "corr")) == []
    # same parameters as the pipeline run (its default stable-ground correction included)
    correlate_pair_rasters(row["reference_path"], row["secondary_path"], out, block_rows=2,
                           window=16, step=8, search=4, stable="median")
    np.testing.assert_array_equal(read_all(out), read_all(ref_pair))
    # inversion
    pair_dir = str(tmp_path / "pairs")
    shutil.copytree(os.path.join(reference_run, "pairs"), pair_dir)
    ts_out = str(tmp_path / "inv")
    with pytest.raises(Cancelled):
        invert_pair_rasters(pair_dir, ts_out, progress=_cancel_after(1))
    assert not [p for p in _final_files(ts_out) if p.endswith(".tif")]
    invert_pair_rasters(pair_dir, ts_out)
    again = str(tmp_path / "inv2")
    invert_pair_rasters(pair_dir, again)
    _assert_nothing_truncated(ts_out)
    files = sorted(os.path.relpath(p, ts_out) for p in _final_files(ts_out) if p.endswith(".tif"))
    assert "timeseries/velocity.tif" in files or "velocity.tif" in files
    for f in files:
        np.testing.assert_array_equal(read_all(os.path.join(ts_out, f)),
                                      read_all(os.path.join(again, f)), err_msg=f)
    # detection
    gpkg = str(tmp_path / "detections.gpkg")
    ts_dir = os.path.join(reference_run, "timeseries")
    with pytest.raises(Cancelled):
        detect_from_folder(ts_dir, out_gpkg=gpkg, progress=_cancel_after(1))
    assert not os.path.exists(gpkg)
    detect_from_folder(ts_dir, out_gpkg=gpkg)
    assert _detections(gpkg) == _detections(os.path.join(reference_run, "detections.gpkg"))


# -- validation decisions ----------------------------------------------------------------------
def _detections_file(path, n=12):
    from slidewatch.core.detect.detections_store import write_detections
    feats = []
    for i in range(n):
        x, y = 500000 + 200 * i, 5000000
        feats.append({"geometry": "POLYGON ((%d %d, %d %d, %d %d, %d %d, %d %d))" % (
            x, y, x + 100, y, x + 100, y - 100, x, y - 100, x, y),
            "area_m2": 10000.0, "v_mean_m_per_yr": 0.1 * i, "score": 0.5})
    write_detections(str(path), feats, crs_wkt="EPSG:32633")
    return str(path)


def test_decision_survives_a_crash(tmp_path):
    gpkg = _detections_file(tmp_path / "detections.gpkg")
    code = """
        import os, signal, sys
        from slidewatch.core.detect.detections_store import record_decision
        record_decision(sys.argv[1], 3, "confirmed", comment="scarp seen", analyst="ana")
        os.kill(os.getpid(), signal.SIGKILL)   # QGIS crashes right after the click
    """
    proc = _python(code, gpkg)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with sqlite3.connect(gpkg) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        row = conn.execute("SELECT status, comment, validated_by, validated_at FROM detections "
                           "WHERE id = 3").fetchone()
    assert row[:3] == ("confirmed", "scarp seen", "ana") and row[3]
    assert not os.path.exists(gpkg + "-journal") or os.path.getsize(gpkg + "-journal") == 0


def test_two_writers_at_once(tmp_path):
    gpkg = _detections_file(tmp_path / "detections.gpkg", n=20)
    code = """
        import sys, time
        from slidewatch.core.detect.detections_store import record_decision
        gpkg, parity, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
        while time.time() < start:
            time.sleep(0.005)
        for rnd in range(3):
            for i in range(1 + parity, 21, 2):
                record_decision(gpkg, i, "rejected" if parity else "confirmed",
                                comment="w%d r%d" % (parity, rnd), analyst="w%d" % parity)
        print("ok")
    """
    start = time.time() + 3.0
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), gpkg, str(k),
                               str(start)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=_env()) for k in (0, 1)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (o, e) in zip(procs, outs):
        assert p.returncode == 0 and "ok" in o, e
    with sqlite3.connect(gpkg) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT id, status, comment, validated_by FROM detections "
                            "ORDER BY id").fetchall()
    assert len(rows) == 20
    for ident, status, comment, who in rows:
        parity = (ident - 1) % 2
        assert status == ("rejected" if parity else "confirmed"), ident
        assert comment == "w%d r2" % parity and who == "w%d" % parity


# -- what the user sees in Processing and headless ---------------------------------------------


def test_cancel_in_processing_says_how_to_resume(images, tmp_path, provider):
    from qgis.core import (QgsApplication, QgsProcessingAlgorithm, QgsProcessingContext,
                           QgsProcessingException, QgsProcessingFeedback)
    paths = sorted(os.path.join(images, f) for f in os.listdir(images))
    alg = QgsApplication.processingRegistry().createAlgorithmById("slidewatch:correlate_pair")
    feedback = QgsProcessingFeedback()
    feedback.cancel()
    out = str(tmp_path / "pair_20200101_20200301.tif")
    with pytest.raises(QgsProcessingException) as info:
        QgsProcessingAlgorithm.run(alg, {"REFERENCE": paths[0], "SECONDARY": paths[1],
                                         "WINDOW": 16, "SEARCH": 4, "OUTPUT": out},
                                   QgsProcessingContext(), feedback, {}, False)
    msg = str(info.value)
    assert "was cancelled" in msg and "Run it again to resume" in msg
    assert os.listdir(str(tmp_path)) == []


def test_headless_bad_input_is_a_message_not_a_traceback(tmp_path):
    """qgis_process (the headless entry point) on a folder with one image: exit code != 0,
    the actionable message is printed, no Python traceback."""
    from conftest import qgis_process_command, qgis_process_env
    stack(str(tmp_path / "in"), n=1)
    if not os.path.exists(qgis_process_command()):
        pytest.skip("qgis_process not installed")
    proc = subprocess.run([qgis_process_command(), "run", "slidewatch:pipeline", "--",
                           "INPUT=%s" % (tmp_path / "in"),
                           "OUTPUT_FOLDER=%s" % (tmp_path / "out")],
                          capture_output=True, text=True, env=qgis_process_env(), timeout=120)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Only 1 usable dated image" in text and "add more images" in text, text[-2000:]
    assert "Traceback" not in text, text[-2000:]
