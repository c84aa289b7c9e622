"""Every Processing algorithm module imports, and its dialog builds, without numba (the
provider must list them and say what to install, tests/test_dependencies.py). Checked in
a fresh interpreter: in this session the core modules are already imported."""

import os
import subprocess
import sys

SCRIPT = r"""
import importlib, sys
sys.modules["numba"] = None
from qgis.core import QgsApplication
app = QgsApplication([], False)
app.initQgis()
from slidewatch.processing_provider.registry import ALGORITHMS
bad = []
for entry in ALGORITHMS:
    module, cls = entry.split(":")
    try:
        alg = getattr(importlib.import_module("slidewatch.processing_provider." + module), cls)()
        alg.initAlgorithm()
    except Exception as exc:
        bad.append("%s: %s: %s" % (entry, type(exc).__name__, exc))
print("BAD" if bad else "OK", bad)
"""


def test_every_algorithm_builds_its_dialog_without_numba():
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    res = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         env=env, timeout=120)
    assert "OK []" in res.stdout, res.stdout + res.stderr
