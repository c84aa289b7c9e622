"""Compile-once numba kernels (issue 15): core/numba_setup.py, scripts/warm_kernels.py,
the plugin's background warm-up task."""

import ast
import glob
import hashlib
import json
import os
import subprocess
import sys
import time

import pytest

from slidewatch.core import numba_setup

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGINS = os.path.join(ROOT, ".build", "plugins")
PY = os.path.join(ROOT, ".venv", "bin", "python")
if not os.path.exists(PY):
    PY = sys.executable


def _njit_functions():
    """(module, function) of every @njit function of core/ (inline='always' ones are
    inlined into their callers, never compiled on their own)."""
    found = set()
    core = os.path.join(ROOT, "core")
    for path in glob.glob(os.path.join(core, "**", "*.py"), recursive=True):
        # dotted from core/, as in numba_setup.GROUPS: series.inversion_kernels
        module = os.path.splitext(os.path.relpath(path, core))[0].replace(os.sep, ".")
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if not isinstance(node, ast.FunctionDef):
                continue
            for dec in node.decorator_list:
                call = dec if isinstance(dec, ast.Call) else None
                target = call.func if call is not None else dec
                name = getattr(target, "id", None) or getattr(target, "attr", None)
                if name not in ("njit", "jit"):
                    continue
                inline = [k for k in (call.keywords if call else []) if k.arg == "inline"]
                if inline and getattr(inline[0].value, "value", None) == "always":
                    continue
                found.add((module, node.name))
    return found


def _run(code, env_extra=None, timeout=900):
    env = dict(os.environ, PYTHONPATH=PLUGINS)
    env.update(env_extra or {})
    out = subprocess.run([PY, "-c", code], env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_njit_scan_finds_the_kernels():
    kernels = _njit_functions()
    assert ("matching.correlation_kernels", "correlate_grid") in kernels
    assert ("detect.detection", "_evidence_kernel") in kernels
    assert ("matching.correlation_kernels", "_row_dot") not in kernels   # inline="always"
    assert len(kernels) > 30


def test_warm_up_compiles_every_njit_kernel_of_core():
    """After warm() alone (fresh process), every @njit function of core/ has a compiled
    signature or a cache entry (a callee is cached when its caller compiles; when the
    caller is loaded from the cache, the callee is not loaded again), or is listed in
    NOT_WARMED with the reason."""
    kernels = sorted(_njit_functions())
    code = (
        "import json, sys\n"
        "from slidewatch.core import numba_setup as s\n"
        "s.warm(log=lambda m: None)\n"
        "out = {}\n"
        "for m, f in json.loads(sys.argv[1] if len(sys.argv) > 1 else %r):\n"
        "    d = s.kernel(m, f)\n"
        "    out[m + '.' + f] = len(d.signatures) + len(s._index_entries(d))\n"
        "print(json.dumps(out))\n" % json.dumps(kernels))
    counts = json.loads(_run(code).stdout.strip().splitlines()[-1])
    missing = [k for k, n in counts.items()
               if n == 0 and tuple(k.rsplit(".", 1)) not in numba_setup.NOT_WARMED]
    assert missing == [], "kernels the warm-up does not compile: %s" % missing
    stale = [k for k in numba_setup.NOT_WARMED if k not in set(kernels)]
    assert stale == []


def test_pipeline_after_warm_up_compiles_nothing(tmp_path):
    """The warm-up uses the pipeline's argument types: a whole pipeline run afterwards adds
    no signature to any kernel (so nothing compiles at run time after `make install`)."""
    code = (
        "import json, sys\n"
        "from slidewatch.core import numba_setup as s\n"
        "s.warm(log=lambda m: None)\n"
        "import slidewatch.core.matching.correlation_kernels, slidewatch.core.series.inversion_kernels\n"
        "import slidewatch.core.matching.prefilter_kernels, slidewatch.core.detect.detection\n"
        "from numba.core.registry import CPUDispatcher\n"
        "def sigs():\n"
        "    out = {}\n"
        "    for name, mod in list(sys.modules.items()):\n"
        "        if name.startswith('slidewatch.core.'):\n"
        "            for k, v in vars(mod).items():\n"
        "                if isinstance(v, CPUDispatcher):\n"
        "                    out[name + '.' + k] = sorted(map(str, v.signatures))\n"
        "    return out\n"
        "before = sigs()\n"
        "from slidewatch.core.synth.synthetic import generate_stack\n"
        "from slidewatch.core.run.pipeline import run_pipeline\n"
        "generate_stack(%r, n_dates=8, shape=(128, 128), seed=1)\n"
        "run_pipeline(%r, %r)\n"
        "after = sigs()\n"
        "print(json.dumps({k: v for k, v in after.items() if v != before.get(k, [])}))\n"
        % (str(tmp_path / "images"), str(tmp_path / "images"), str(tmp_path / "out")))
    new = json.loads(_run(code).stdout.strip().splitlines()[-1])
    assert new == {}, "signatures compiled by the pipeline, not by the warm-up: %s" % new


def test_default_cache_dir_is_the_plugin_cache(tmp_path):
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    assert numba_setup.default_cache_dir(str(plugin)) == str(plugin / ".cache" / "numba")
    assert os.path.isdir(plugin / ".cache" / "numba")


def test_default_cache_dir_falls_back_to_the_user_cache(tmp_path, monkeypatch):
    plugin = tmp_path / "readonly_plugin"
    plugin.mkdir()
    (plugin / ".cache").write_text("not a folder")     # cannot hold the cache
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert numba_setup.default_cache_dir(str(plugin)) == str(tmp_path / "xdg" / "slidewatch"
                                                               / "numba")


def test_unset_cache_dir_defaults_before_numba_reads_it():
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["PYTHONPATH"] = PLUGINS
    code = ("import os, slidewatch.core, numba\n"
            "print(os.environ['NUMBA_CACHE_DIR']); print(numba.config.CACHE_DIR)")
    out = subprocess.run([PY, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    expected = os.path.join(os.path.realpath(ROOT), ".cache", "numba")
    assert lines == [expected, expected]


def test_cache_keyed_by_real_path_whatever_the_import_path():
    """Imported through .build/plugins/slidewatch (a link), the kernels' cache folder is
    the one of the real source folder: QGIS desktop's profile link, qgis_process and the
    checkout share one cache."""
    from slidewatch.core.matching import prefilter_kernels as pk

    real_folder = os.path.realpath(os.path.join(ROOT, "core", "matching"))
    sub = "matching_" + hashlib.sha1(real_folder.encode()).hexdigest()
    path = pk._highpass_bands._cache._cache_path
    assert path == os.path.join(numba_setup.cache_dir(), sub)


def test_cold_cache_detected_and_runtime_compile_announced(tmp_path):
    code = (
        "from slidewatch.core import numba_setup as s\n"
        "print('QUICK', s.quick_cold_groups()); print('COLD', s.cold_groups())\n"
        "lines = []\n"
        "with s.compile_notices(lines.append):\n"
        "    s.GROUPS[3][3]()\n"         # detection: a small kernel, compiled by a call
        "print('LINES', lines)\n"
        "print('AFTER', s.cold_groups(), s.quick_cold_groups())\n")
    out = _run(code, {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}).stdout
    assert "QUICK ['prefilter', 'correlation', 'inversion', 'detection']" in out
    assert "COLD ['prefilter', 'correlation', 'inversion', 'detection']" in out
    lines = [l for l in out.splitlines() if l.startswith("LINES")][0]
    assert "compiling numba kernel detection._evidence_kernel on first use" in lines
    assert lines.count("compiling numba kernel") == 1      # said once
    assert "AFTER ['prefilter', 'correlation', 'inversion'] ['prefilter', 'correlation', " \
           "'inversion']" in out


def test_warm_kernels_script_reports_each_group(tmp_path):
    env = dict(os.environ, PYTHONPATH=PLUGINS, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    out = subprocess.run([PY, os.path.join(ROOT, "scripts", "warm_kernels.py"), "detection"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "compiling SlideWatch kernels (one-off, about 5 s): detection ..." in out.stdout
    assert "detection: compiled in" in out.stdout
    out2 = subprocess.run([PY, os.path.join(ROOT, "scripts", "warm_kernels.py"), "detection"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert "already compiled" in out2.stdout and "loaded from the cache" in out2.stdout


def test_plugin_compiles_in_a_background_task(qgis_iface):
    from qgis.core import QgsApplication, QgsTask

    from slidewatch.plugin import SlideWatchPlugin

    plugin = SlideWatchPlugin(qgis_iface)
    done = []
    task = plugin.start_kernel_warmup(groups=["detection"], force=True)
    assert task is not None and plugin.warmup_task is task
    task.on_done = lambda ok, msg, level: done.append((ok, msg))
    t0 = time.time()
    # the GUI thread keeps processing events while the task runs
    while not done and time.time() - t0 < 300:
        QgsApplication.processEvents()
        time.sleep(0.02)
    assert done and done[0][0], (done, task.error)
    assert task.status() == getattr(QgsTask, "TaskStatus", QgsTask).Complete
    assert "detection" in task.times
    assert "kernels compiled" in done[0][1]


def test_vector_width_forced_once_and_remarks_kept_out_of_stderr(tmp_path):
    """Loops are vectorised 8 lanes wide (issue 18); LLVM then prints a 'remark: loop not
    vectorized' line for every loop it cannot vectorise, which must not reach stderr,
    while the other lines written during a compile still do."""
    code = (
        "import sys\n"
        "from slidewatch.core import numba_setup as s\n"
        "import numpy as np\n"
        "from numba import njit\n"
        "@njit\n"
        "def f(a, b):\n"
        "    t = 0.0\n"
        "    for i in range(a.size):\n"
        "        if a[i] > 0:\n"
        "            t += a[i] * b[i]\n"
        "            b[i] = t\n"
        "    return t\n"
        "s._set_vector_width()\n"
        "print('width', s.vector_width())\n"
        "f(np.ones(10), np.ones(10))\n"
        "print('after', file=sys.stderr)\n")
    out = _run(code, {"NUMBA_CACHE_DIR": str(tmp_path / "c1")})
    assert "width 8" in out.stdout
    assert "remark" not in out.stderr and "after" in out.stderr, out.stderr
    off = _run(code, {"NUMBA_CACHE_DIR": str(tmp_path / "c2"), "SLIDEWATCH_VECTOR_WIDTH": "0"})
    assert "width 0" in off.stdout


def test_remark_filter_replays_other_lines():
    """What is written to file descriptor 2 while a compile runs comes out afterwards,
    minus LLVM's remark lines."""
    code = (
        "import os\n"
        "from slidewatch.core import numba_setup as s\n"
        "r = s._RemarkFilter()\n"
        "r.enter()\n"
        "os.write(2, b'remark: <unknown>:0:0: loop not vectorized\\n')\n"
        "os.write(2, b'kept line\\n')\n"
        "r.enter(); r.leave()\n"
        "os.write(2, b'remark: again\\n')\n"
        "r.leave()\n"
        "os.write(2, b'after\\n')\n")
    err = _run(code).stderr
    assert "remark" not in err
    assert err.index("kept line") < err.index("after")
