"""core.executor: local threads and a Dask LocalCluster behind one interface.

The Dask part starts a real ``distributed.LocalCluster`` of 2 single-threaded worker
processes (module fixture). Task functions of this module are pickled by value so that the
worker processes do not need to import the tests package.
"""

import os
import sys
import threading
import time

import numpy as np
import pytest

from slidewatch.core.errors import Cancelled, InputError, ParameterError, SlideWatchError
from slidewatch.core.run.executor import (CancelFlag, LocalExecutor, TaskFailure, get_executor,
                                          parse_scheduler)
from slidewatch.core.progress import Progress

distributed = pytest.importorskip("distributed")
import cloudpickle  # noqa: E402  (comes with distributed)

cloudpickle.register_pickle_by_value(sys.modules[__name__])


# -- task functions (module level: they are pickled for the cluster) ----------------------
def square_and_write(item):
    """Writes its own output atomically and returns only a small result."""
    folder, i = item
    path = os.path.join(folder, "out_%03d.npy" % i)
    arr = np.arange(1000, dtype=np.float64) * i
    tmp = path + ".partial"
    np.save(tmp, arr ** 2)
    os.replace(tmp + ".npy", path)
    return path, float((arr ** 2).sum()), os.getpid()


def fail_first_time(item):
    """Fails on its first attempt (a marker file records attempts across processes)."""
    folder, i = item
    marker = os.path.join(folder, "attempt_%d" % i)
    with open(marker, "a") as fh:
        fh.write("x")
    with open(marker) as fh:
        n = len(fh.read())
    if n == 1:
        raise OSError("transient failure of task %d" % i)
    return i * 10


def always_fail(item):
    raise InputError("cannot read input %s" % (item,))


def parameter_error(item):
    folder = item
    with open(os.path.join(folder, "param_attempts"), "a") as fh:
        fh.write("x")
    raise ParameterError("window must be even")


def wait_for_cancel(item, cancelled):
    """A long task made of chunks, checking the cancel flag between them."""
    folder, i = item
    for _ in range(400):          # at most ~20 s
        if cancelled():
            open(os.path.join(folder, "stopped_%d" % i), "w").close()
            return "stopped"
        time.sleep(0.05)
    return "ran to the end"


def die_once_after_others(item):
    """Task 3 kills its worker process on its first attempt (a dead worker)."""
    folder, i = item
    out = os.path.join(folder, "done_%d" % i)
    if i == 3:
        marker = os.path.join(folder, "died_once")
        if not os.path.exists(marker):
            # let the other tasks finish first
            for _ in range(200):
                if sum(os.path.exists(os.path.join(folder, "done_%d" % k))
                       for k in range(3)) == 3:
                    break
                time.sleep(0.05)
            open(marker, "w").close()
            os._exit(1)
    with open(out + ".partial", "w") as fh:
        fh.write(str(os.getpid()))
    os.replace(out + ".partial", out)
    return i


# -- parsing -------------------------------------------------------------------------------
def test_parse_scheduler_forms(tmp_path):
    assert parse_scheduler(None) == ("threads", None)
    assert parse_scheduler("  ") == ("threads", None)
    assert parse_scheduler("tcp://10.0.0.1:8786") == ("address", "tcp://10.0.0.1:8786")
    assert parse_scheduler("node7:8786") == ("address", "tcp://node7:8786")
    assert parse_scheduler("local:3") == ("local-cluster", 3)
    f = tmp_path / "scheduler.json"
    f.write_text("{}")
    assert parse_scheduler("scheduler-file:%s" % f) == ("scheduler-file", str(f))
    for bad in ("local:0", "local:x", "http//oops", "tcp://"):
        with pytest.raises(ParameterError, match="scheduler"):
            parse_scheduler(bad)
    with pytest.raises(InputError, match="does not exist"):
        parse_scheduler("scheduler-file:%s" % (tmp_path / "nope.json"))


def test_unreachable_scheduler_is_an_actionable_error():
    with pytest.raises(InputError, match="Cannot connect to the Dask scheduler"):
        get_executor("tcp://127.0.0.1:9", timeout=1)


def test_cancel_flag_pickles_without_the_event():
    import pickle
    flag = CancelFlag(name="abc")
    clone = pickle.loads(pickle.dumps(flag))
    assert clone.name == "abc" and clone._event is None
    # no Dask client in this process: the flag says "not cancelled" rather than failing
    assert clone() is False


# -- local threads -------------------------------------------------------------------------
def test_local_map_keeps_order_and_reports_progress(tmp_path):
    seen = []
    prog = Progress(callback=lambda p, m: seen.append(p))
    with get_executor(None, max_workers=2) as ex:
        assert isinstance(ex, LocalExecutor) and ex.n_workers == 2
        res = ex.map(square_and_write, [(str(tmp_path), i) for i in range(7)], progress=prog)
    assert [os.path.basename(r[0]) for r in res] == ["out_%03d.npy" % i for i in range(7)]
    assert res[3][1] == pytest.approx(float(((np.arange(1000) * 3.0) ** 2).sum()))
    assert seen[-1] == pytest.approx(100.0) and seen == sorted(seen)


def test_local_failed_task_is_retried(tmp_path):
    log = []
    with get_executor(None, max_workers=2, retries=1) as ex:
        res = ex.map(fail_first_time, [(str(tmp_path), i) for i in range(4)],
                     progress=Progress(log=log.append), describe=lambda it: "job %d" % it[1])
    assert res == [0, 10, 20, 30]
    assert sum("retrying" in line for line in log) == 4
    assert all((tmp_path / ("attempt_%d" % i)).read_text() == "xx" for i in range(4))


def test_local_failure_after_retries_names_the_task(tmp_path):
    with get_executor(None, max_workers=2, retries=2) as ex:
        with pytest.raises(InputError, match=r"job [ab] failed after 3 attempts: cannot read input [ab]"):
            ex.map(always_fail, ["a", "b"], describe=lambda it: "job %s" % it)
        # a parameter error is not worth retrying
        with pytest.raises(ParameterError, match="1 attempt"):
            ex.map(parameter_error, [str(tmp_path)])
        assert (tmp_path / "param_attempts").read_text() == "x"
        res = ex.map(always_fail, ["a"], on_error="collect", retries=0)
        assert isinstance(res[0], TaskFailure) and isinstance(res[0].error, InputError)


def test_local_cancel_stops_running_and_pending_tasks(tmp_path):
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    t0 = time.monotonic()
    with get_executor(None, max_workers=2) as ex:
        with pytest.raises(Cancelled):
            ex.map(wait_for_cancel, [(str(tmp_path), i) for i in range(6)],
                   progress=Progress(is_cancelled=cancel.is_set), pass_cancel=True)
    assert time.monotonic() - t0 < 10
    stopped = sorted(p for p in os.listdir(tmp_path) if p.startswith("stopped_"))
    assert len(stopped) == 2          # the two running tasks stopped; the others never ran


# -- Dask LocalCluster (2 worker processes) ------------------------------------------------
@pytest.fixture(scope="module")
def cluster_executor():
    ex = get_executor("local:2", retries=2)
    try:
        yield ex
    finally:
        ex.close()


def test_dask_map_identical_to_local(tmp_path, cluster_executor):
    ex = cluster_executor
    assert ex.kind == "dask" and ex.n_workers == 2
    a, b = tmp_path / "local", tmp_path / "dask"
    a.mkdir()
    b.mkdir()
    with get_executor(None, max_workers=2) as loc:
        res_local = loc.map(square_and_write, [(str(a), i) for i in range(6)])
    res_dask = ex.map(square_and_write, [(str(b), i) for i in range(6)])
    assert [r[1] for r in res_local] == [r[1] for r in res_dask]
    for (pa, _, _), (pb, _, _) in zip(res_local, res_dask):
        np.testing.assert_array_equal(np.load(pa), np.load(pb))
    # ran in the worker processes, not in the driver
    assert os.getpid() not in {r[2] for r in res_dask}
    # the workers share the cores instead of each taking all of them
    share = str(max(1, (os.cpu_count() or 1) // 2))
    env = ex.client.run(lambda: os.environ.get("NUMBA_NUM_THREADS"))
    assert set(env.values()) == {share}, env


def test_dask_failed_task_is_retried(tmp_path, cluster_executor):
    res = cluster_executor.map(fail_first_time, [(str(tmp_path), i) for i in range(3)])
    assert res == [0, 10, 20]
    assert all((tmp_path / ("attempt_%d" % i)).read_text() == "xx" for i in range(3))
    with pytest.raises(InputError, match="failed after 3 attempts"):
        cluster_executor.map(always_fail, ["z"])


def test_dask_cancel(tmp_path, cluster_executor):
    cancel = threading.Event()
    threading.Timer(1.0, cancel.set).start()
    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        cluster_executor.map(wait_for_cancel, [(str(tmp_path), i) for i in range(5)],
                             progress=Progress(is_cancelled=cancel.is_set), pass_cancel=True)
    assert time.monotonic() - t0 < 10
    # the running tasks saw the distributed cancel event and stopped early
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(
            [p for p in os.listdir(tmp_path) if p.startswith("stopped_")]) < 2:
        time.sleep(0.1)
    assert len([p for p in os.listdir(tmp_path) if p.startswith("stopped_")]) == 2
    # the cluster is still usable afterwards
    assert cluster_executor.map(fail_first_time, [(str(tmp_path), 9)]) == [90]


def test_dask_dead_worker_keeps_finished_outputs(tmp_path, cluster_executor):
    res = cluster_executor.map(die_once_after_others, [(str(tmp_path), i) for i in range(5)])
    assert res == [0, 1, 2, 3, 4]
    assert (tmp_path / "died_once").exists()
    assert all((tmp_path / ("done_%d" % i)).exists() for i in range(5))


# -- inversion blocks over the executor: identical to the local block-wise driver ----------
def _write_pair_stack(folder, n_rows=37, n_cols=29):
    """A small network of pair rasters with a known motion + noise + a few bad values."""
    from rasterio.transform import from_origin
    from slidewatch.core.series.timeseries_io import write_pair_raster

    rng = np.random.default_rng(5)
    dates = np.array(["2020-01-01", "2020-01-21", "2020-02-10", "2020-03-01", "2020-03-21",
                      "2020-04-10"], dtype="datetime64[D]")
    t = (dates - dates[0]).astype(float) / 365.25
    ve = rng.normal(0, 2, (n_rows, n_cols))
    vn = rng.normal(0, 2, (n_rows, n_cols))
    pairs = [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3), (2, 4), (3, 4), (3, 5), (4, 5), (0, 3)]
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, j in pairs:
        e = (ve * (t[j] - t[i]) + rng.normal(0, 0.05, ve.shape)).astype(np.float32)
        n = (vn * (t[j] - t[i]) + rng.normal(0, 0.05, vn.shape)).astype(np.float32)
        e[rng.random(e.shape) < 0.05] = np.nan
        ncc = rng.uniform(0.4, 0.95, e.shape).astype(np.float32)
        snr = rng.uniform(1.5, 5, e.shape).astype(np.float32)
        status = np.where(np.isfinite(e), 0, 2).astype(np.float32)
        p = os.path.join(folder, "pair_%s_%s.tif" % (str(dates[i]).replace("-", ""),
                                                     str(dates[j]).replace("-", "")))
        write_pair_raster(p, e, n, ncc, snr, status, from_origin(500000, 5100000, 80, 80),
                          "EPSG:32632", str(dates[i]), str(dates[j]))
        paths.append(p)
    return paths


def _read_all(folder):
    import rasterio
    out = {}
    for name in ("ts_east_m.tif", "ts_north_m.tif", "velocity.tif", "network_flags.tif"):
        with rasterio.open(os.path.join(folder, "timeseries", name)) as src:
            out[name] = (src.read(), list(src.descriptions), src.transform,
                         src.tags().get("DATES"))
    return out


INV_PARAMS = dict(lam=1.0, lam2=0.0, robust="tukey", weighting="ncc", min_obs=3,
                  min_ncc=None, min_snr=None, max_iter=12)


def test_inversion_blocks_identical_to_local_driver(tmp_path, cluster_executor):
    from slidewatch.core.run.pipeline_tasks import invert_pairs_over_executor
    from slidewatch.core.series.timeseries_io import invert_pair_rasters

    paths = _write_pair_stack(str(tmp_path / "pairs"))
    ref = tmp_path / "ref"
    invert_pair_rasters(str(tmp_path / "pairs"), str(ref), lam=1.0, lam2=0.0, robust="tukey",
                        weighting="ncc", min_obs=3, max_iter=12, block_size=16)
    expected = _read_all(str(ref))
    with get_executor(None, max_workers=2) as loc:
        info = invert_pairs_over_executor(paths, str(tmp_path / "threads"), loc, INV_PARAMS,
                                          block_rows=7)
    assert info["n_blocks"] == 6 and info["n_dates"] == 6
    info = invert_pairs_over_executor(paths, str(tmp_path / "dask"), cluster_executor,
                                      INV_PARAMS, block_rows=10)
    assert info["n_blocks"] == 4
    for run in ("threads", "dask"):
        got = _read_all(str(tmp_path / run))
        for name, (arr, desc, transform, dates) in expected.items():
            np.testing.assert_array_equal(got[name][0], arr, err_msg="%s %s" % (run, name))
            assert got[name][1] == desc and got[name][2] == transform
            assert got[name][3] == dates
        # the parts are gone once assembled
        assert not os.path.exists(tmp_path / run / "timeseries" / ".parts")
    assert np.isfinite(expected["velocity.tif"][0][2]).mean() > 0.9


def test_inversion_reuses_finished_blocks(tmp_path):
    """A block part already renamed into place (e.g. by a worker that died afterwards) is
    reused by the next attempt instead of being recomputed."""
    from slidewatch.core.run import pipeline_tasks as pt

    paths = _write_pair_stack(str(tmp_path / "pairs"), n_rows=20, n_cols=12)
    calls = []
    real = pt.invert_rows_task

    def counting(job, cancelled=None):
        res = real(job, cancelled)
        calls.append(res["reused"])
        return res

    with get_executor(None, max_workers=1) as loc:
        info1 = pt.invert_pairs_over_executor(paths, str(tmp_path / "a"), loc, INV_PARAMS,
                                              block_rows=5, run_key="k")
        # simulate an interrupted run: compute two parts, then run the whole thing again
        from slidewatch.core.series.timeseries_io import PairRaster, pair_dates
        pairs = sorted((PairRaster(p, *pair_dates(p)) for p in paths),
                       key=lambda r: (r.reference_date, r.secondary_date))
        import glob
        assert not glob.glob(str(tmp_path / "a" / "timeseries" / ".parts" / "*"))
        pt.invert_rows_task = counting
        try:
            first = pt.invert_pairs_over_executor(paths, str(tmp_path / "b"), loc, INV_PARAMS,
                                                  block_rows=5, run_key="k")
            assert calls == [False] * 4
            # an interrupted run leaves parts: fake one by re-running one task by hand
            jobs = pt.inversion_jobs(pairs, 20, 12, str(tmp_path / "c" / "timeseries" /
                                                        ".parts" / "manual"), dict(INV_PARAMS),
                                     5)
            assert real(jobs[0])["reused"] is False
            assert real(jobs[0])["reused"] is True
        finally:
            pt.invert_rows_task = real
    assert info1["n_blocks"] == first["n_blocks"] == 4
    np.testing.assert_array_equal(_read_all(str(tmp_path / "a"))["velocity.tif"][0],
                                  _read_all(str(tmp_path / "b"))["velocity.tif"][0])


# -- pair correlation over the executor: identical on threads and on the cluster -----------
def test_correlation_tasks_identical_local_and_dask(tmp_path, cluster_executor):
    import rasterio
    from slidewatch.core.run.pipeline_tasks import correlate_pair_task
    from slidewatch.core.synth.synthetic import generate_stack

    stack = generate_stack(str(tmp_path / "img"), n_dates=3, shape=(96, 96), seed=2,
                           cloudy_date_fraction=0.0, fully_clouded_dates=0)
    params = dict(window=24, step=8, search=6)

    def jobs(folder):
        return [dict(reference_path=stack.paths[i], secondary_path=stack.paths[j],
                     reference_date=str(stack.dates[i]), secondary_date=str(stack.dates[j]),
                     out_path=os.path.join(folder, "pair_%s_%s.tif" % (
                         str(stack.dates[i]).replace("-", ""),
                         str(stack.dates[j]).replace("-", ""))), params=params)
                for i, j in ((0, 1), (0, 2), (1, 2))]

    with get_executor(None, max_workers=2) as loc:
        r_loc = loc.map(correlate_pair_task, jobs(str(tmp_path / "loc")), pass_cancel=True)
    r_dask = cluster_executor.map(correlate_pair_task, jobs(str(tmp_path / "dask")),
                                  pass_cancel=True)
    assert [r["reused"] for r in r_loc + r_dask] == [False] * 6
    for a, b in zip(r_loc, r_dask):
        with rasterio.open(a["path"]) as sa, rasterio.open(b["path"]) as sb:
            np.testing.assert_array_equal(sa.read(), sb.read())
            assert sa.transform == sb.transform
            assert sa.tags()["SLIDEWATCH_PARAMS"] == sb.tags()["SLIDEWATCH_PARAMS"]
        assert a["valid_fraction"] == b["valid_fraction"] > 0.2
    # resubmitting finished pairs reuses their outputs (what a retry after a dead worker does)
    again = cluster_executor.map(correlate_pair_task, jobs(str(tmp_path / "dask")))
    assert [r["reused"] for r in again] == [True] * 3


def _worker_executable(_=None):
    return sys.executable


def test_worker_python_outside_and_inside_qgis(monkeypatch):
    """A plain Python process keeps multiprocessing's default; inside QGIS (sys.executable
    is the QGIS binary) a checked real interpreter is chosen for the workers."""
    from slidewatch.core.run import executor

    monkeypatch.delenv(executor.WORKER_PYTHON_ENV, raising=False)
    monkeypatch.delitem(sys.modules, "qgis.core", raising=False)
    assert executor.worker_python() is None          # pytest's own Python: nothing to change
    monkeypatch.setattr(sys, "executable", "/usr/bin/qgis_process.bin")
    exe = executor.worker_python()
    assert exe in executor.worker_python_candidates() and os.access(exe, os.X_OK)
    assert executor._probe(exe) is None
    # an interpreter that is not this installation's (e.g. a pyenv shim found on PATH by
    # QGIS's embedded interpreter) is not trusted as it is
    monkeypatch.setattr(sys, "executable", "/opt/elsewhere/bin/python3")
    assert executor.worker_python() == exe


def test_worker_python_override_and_actionable_error(monkeypatch, tmp_path):
    from slidewatch.core.run import executor

    monkeypatch.setenv(executor.WORKER_PYTHON_ENV, sys.executable)
    assert executor.worker_python() == sys.executable   # forced, even in a plain process
    bad = tmp_path / "python3"
    bad.write_text("#!/bin/sh\necho 2.7 /nowhere\n")
    bad.chmod(0o755)
    for value, why in ((str(tmp_path / "missing"), "not an executable file"),
                       (str(bad), "it is Python 2.7")):
        monkeypatch.setenv(executor.WORKER_PYTHON_ENV, value)
        with pytest.raises(ParameterError) as info:
            executor.worker_python()
        text = str(info.value)
        assert why in text and executor.WORKER_PYTHON_ENV in text
        # the message gives the commands to start a cluster by hand, and the address
        assert "-m dask scheduler --host 127.0.0.1 --port 8786" in text
        assert "-m dask worker tcp://127.0.0.1:8786 --nthreads 1" in text
        assert "PYTHONPATH=%s" % executor._plugin_parent() in text
        assert "'tcp://127.0.0.1:8786'" in text


def test_spawn_settings_are_restored(monkeypatch):
    import multiprocessing.spawn as mp_spawn

    from slidewatch.core.run import executor

    # isolated from the module's cluster (whose settings are live during this test)
    monkeypatch.setattr(executor._SpawnSettings, "_active", [])
    monkeypatch.setattr(executor._SpawnSettings, "_saved", {})
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("PYTHONPATH", "/some/where")
    before = mp_spawn.get_executable()
    outer = executor._SpawnSettings("/opt/py/bin/python3")
    inner = executor._SpawnSettings("/opt/py/bin/python3")
    assert mp_spawn.get_executable() in ("/opt/py/bin/python3", b"/opt/py/bin/python3")
    assert os.environ["PYTHONPATH"].split(os.pathsep) == [executor._plugin_parent(),
                                                          "/some/where"]
    os.environ["OMP_NUM_THREADS"] = "1"    # what a Nanny sets before spawning a worker
    inner.close()                          # the other cluster still runs: keep the settings
    assert mp_spawn.get_executable() in ("/opt/py/bin/python3", b"/opt/py/bin/python3")
    outer.close()
    outer.close()                          # idempotent
    assert mp_spawn.get_executable() == before
    assert os.environ["PYTHONPATH"] == "/some/where"
    assert "OMP_NUM_THREADS" not in os.environ


def test_local_cluster_from_inside_qgis(monkeypatch, tmp_path):
    """As in qgis_process: sys.executable is the QGIS binary. The workers run the chosen
    real Python, do the work, and multiprocessing's executable is restored on close."""
    import multiprocessing.spawn as mp_spawn

    from slidewatch.core.run import executor

    monkeypatch.delenv(executor.WORKER_PYTHON_ENV, raising=False)
    monkeypatch.setattr(sys, "executable", "/usr/bin/qgis_process.bin")
    before = mp_spawn.get_executable()
    exe = executor.worker_python()
    with get_executor("local:1") as ex:
        assert ex.kind == "dask" and ex.n_processes == 1
        assert mp_spawn.get_executable() in (exe, os.fsencode(exe))
        assert set(ex.client.run(_worker_executable).values()) == {exe}
        res = ex.map(square_and_write, [(str(tmp_path), i) for i in range(3)])
        assert os.getpid() not in {r[2] for r in res}
        assert all(os.path.exists(r[0]) for r in res)
    assert mp_spawn.get_executable() == before
