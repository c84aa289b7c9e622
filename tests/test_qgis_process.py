"""Headless: the real qgis_process binary sees the plugin and runs an algorithm."""

import json
import os
import subprocess

import pytest

from conftest import qgis_process_command, qgis_process_env


def _run(args, timeout=600):
    exe = qgis_process_command()
    if not os.path.exists(exe):
        pytest.fail("%s not found: run 'make install'" % exe)
    return subprocess.run([exe] + args, env=qgis_process_env(), capture_output=True,
                          text=True, timeout=timeout)


def test_qgis_process_lists_the_plugin_and_algorithms():
    res = _run(["plugins"])
    assert res.returncode == 0, res.stderr
    assert "slidewatch" in res.stdout
    res = _run(["list"])
    assert res.returncode == 0, res.stderr
    assert "slidewatch:synthetic_stack" in res.stdout


def test_qgis_process_runs_synthetic_stack(tmp_path):
    out = tmp_path / "stack"
    res = _run(["run", "slidewatch:synthetic_stack", "--", "N_DATES=4", "SIZE=96", "SEED=3",
                "OUTPUT_FOLDER=%s" % out])
    assert res.returncode == 0, res.stdout + res.stderr
    tifs = sorted(p for p in os.listdir(out) if p.endswith(".tif") and p != "dem.tif")
    assert len(tifs) == 4
    truth = json.loads((out / "truth.json").read_text())
    assert truth
