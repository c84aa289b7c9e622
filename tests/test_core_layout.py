"""core/ as subpackages (issue 16): every module moved into a subpackage keeps its old
import path for one release through an alias at the old place (``core/<name>.py``, which
puts the moved module object into ``sys.modules``), so old imports, ``mock.patch``
strings and Dask task functions pickled by their old path still work; SPEC's entry
point stays where it is."""

import importlib
import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORE = os.path.join(ROOT, "core")
SHIM = re.compile(r"^from \.(\w+) import (\w+) as _moved$", re.M)


def _shims():
    out = []
    for name in sorted(os.listdir(CORE)):
        path = os.path.join(CORE, name)
        if name.endswith(".py") and os.path.isfile(path):
            m = SHIM.search(open(path, encoding="utf-8").read())
            if m:
                assert m.group(2) == name[:-3], path
                out.append((m.group(1), m.group(2)))
    return out


SHIMS = _shims()


def test_the_moved_modules_have_aliases():
    subs = {sub for sub, _ in SHIMS}
    assert {"stack", "network", "series", "detect", "run", "outputs", "synth", "matching"} <= subs
    for sub, mod in SHIMS:
        assert os.path.isfile(os.path.join(CORE, sub, mod + ".py"))
        assert os.path.isfile(os.path.join(CORE, sub, "__init__.py"))


@pytest.mark.parametrize("sub,mod", SHIMS, ids=["%s.%s" % s for s in SHIMS])
def test_old_path_is_the_same_module_object(sub, mod):
    new = importlib.import_module("slidewatch.core.%s.%s" % (sub, mod))
    old = importlib.import_module("slidewatch.core." + mod)
    assert old is new
    assert sys.modules["slidewatch.core." + mod] is new
    assert getattr(importlib.import_module("slidewatch.core"), mod) is new
    assert new.__name__ == "slidewatch.core.%s.%s" % (sub, mod)


def test_no_subpackage_shadows_a_module():
    for name in os.listdir(CORE):
        if os.path.isdir(os.path.join(CORE, name)) and name != "__pycache__":
            assert not os.path.exists(os.path.join(CORE, name + ".py")), name


def test_moved_modules_import_the_new_paths():
    """Inside the subpackages nothing goes through an alias (they are for outside scripts)."""
    old = {mod for _, mod in SHIMS}
    hits = []
    for folder, _dirs, files in os.walk(CORE):
        if folder == CORE:
            continue
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            for i, line in enumerate(open(path, encoding="utf-8"), 1):
                m = re.match(r"\s*from \.\.(\w+)? ?import (\w+)", line)
                if m and (m.group(1) in old or (m.group(1) is None and m.group(2) in old)):
                    hits.append("%s:%d %s" % (os.path.relpath(path, ROOT), i, line.strip()))
                if re.search(r"slidewatch\.core\.(%s)\b" % "|".join(old), line):
                    hits.append("%s:%d %s" % (os.path.relpath(path, ROOT), i, line.strip()))
    assert hits == []


def test_spec_entry_point_of_the_correlator():
    from slidewatch.core.correlation import correlate
    import numpy as np

    rng = np.random.default_rng(0)
    ref = rng.random((64, 64), dtype=np.float32)
    out = correlate(ref, np.roll(ref, 1, axis=1), window=16, step=16, search=4)
    for name in ("dx", "dy", "ncc", "snr", "status", "rows", "cols"):
        assert hasattr(out, name)


def test_dask_task_functions_unpickle_by_their_old_path():
    """A task graph pickled before the move names slidewatch.core.pipeline_tasks.*"""
    import pickle

    from slidewatch.core.run import pipeline_tasks

    for name in ("correlate_pair_task", "invert_rows_task", "assemble_timeseries"):
        old = pickle.loads(b"cslidewatch.core.pipeline_tasks\n%s\n." % name.encode())
        assert old is getattr(pipeline_tasks, name)
        assert pickle.loads(pickle.dumps(old)) is old
