"""Dask from QGIS: the real ``qgis_process`` runs ``slidewatch:pipeline`` on a Dask cluster.

- ``tcp://``: a scheduler and 2 single-threaded workers are started as subprocesses with
  the very commands SlideWatch tells users to type (:func:`manual_cluster_commands`), on a
  free port; qgis_process connects to them with ``DASK_SCHEDULER=tcp://...``. The outputs
  must equal a local-threads run, and the scheduler's task stream must show that the
  workers ran every correlation and inversion task.
- ``local:2``: qgis_process starts its own LocalCluster (the worker processes are spawned
  with a real Python, not the QGIS binary); same outputs.
- no usable worker Python: the error tells how to start a cluster by hand.

Tiny stack (6 clear dates of 96 x 96 px, 1 pair per date) to stay at a few tens of seconds.
"""

import os
import shlex
import signal
import socket
import subprocess
import time

import numpy as np
import pytest

from conftest import qgis_process_command, qgis_process_env

distributed = pytest.importorskip("distributed")

ALG_PARAMS = ["WINDOW=16", "STEP=8", "SEARCH=4", "PAIRS_PER_DATE=1", "WRITE_PROJECT=false"]
OUTPUTS = ("timeseries/ts_east_m.tif", "timeseries/ts_north_m.tif", "timeseries/velocity.tif",
           "timeseries/footprint.tif")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _qgis_process(stack, out, scheduler, extra_env=None, timeout=300):
    exe = qgis_process_command()
    if not os.path.exists(exe):
        pytest.fail("%s not found: run 'make install'" % exe)
    env = qgis_process_env()
    env.pop("SLIDEWATCH_WORKER_PYTHON", None)
    env.update(extra_env or {})
    return subprocess.run([exe, "run", "slidewatch:pipeline", "--", "INPUT=%s" % stack,
                           "OUTPUT_FOLDER=%s" % out, "DASK_SCHEDULER=%s" % scheduler]
                          + ALG_PARAMS, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from slidewatch.core.synth.synthetic import generate_stack

    folder = tmp_path_factory.mktemp("dask_qgis") / "images"
    generate_stack(str(folder), n_dates=6, shape=(96, 96), seed=3, cloudy_date_fraction=0.0,
                   fully_clouded_dates=0)
    return str(folder)


@pytest.fixture(scope="module")
def reference(stack, tmp_path_factory):
    """The same pipeline on local threads, in this process."""
    from slidewatch.core.run.pipeline import PipelineParams, run_pipeline

    out = str(tmp_path_factory.mktemp("dask_qgis") / "threads")
    run_pipeline(stack, out, PipelineParams(window=16, step=8, search=4, pairs_per_date=1))
    return out


def _read(folder, rel):
    import rasterio
    with rasterio.open(os.path.join(folder, rel)) as src:
        return src.read(), list(src.descriptions), src.transform


def _assert_same_outputs(out, ref):
    pairs = sorted(f for f in os.listdir(os.path.join(ref, "pairs")) if f.endswith(".tif"))
    assert len(pairs) >= 5
    assert sorted(os.listdir(os.path.join(out, "pairs"))) == sorted(pairs + ["footprint"])
    for fp in sorted(os.listdir(os.path.join(ref, "pairs", "footprint"))):
        np.testing.assert_array_equal(np.load(os.path.join(out, "pairs", "footprint", fp)),
                                      np.load(os.path.join(ref, "pairs", "footprint", fp)))
    for rel in [os.path.join("pairs", p) for p in pairs] + list(OUTPUTS):
        got, want = _read(out, rel), _read(ref, rel)
        np.testing.assert_array_equal(got[0], want[0], err_msg=rel)
        assert got[1:] == want[1:], rel
    assert os.path.exists(os.path.join(out, "detections.gpkg"))
    velocity = _read(out, "timeseries/velocity.tif")[0]
    assert np.isfinite(velocity[2]).mean() > 0.5
    return pairs


def _stop(proc):
    """Stop one subprocess started here (and its worker processes: its own session)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)   # leftovers of this process's group only
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def tcp_cluster(tmp_path_factory):
    """``dask scheduler`` + ``dask worker --nworkers 2`` as subprocesses, with the commands
    of the error message; yields (address, client, log folder)."""
    from slidewatch.core.run.executor import manual_cluster_commands

    port = _free_port()
    logs = tmp_path_factory.mktemp("dask_logs")
    procs, client = [], None
    try:
        for n, line in enumerate(manual_cluster_commands(n_workers=2, port=port).splitlines()):
            words = shlex.split(line)
            env = dict(os.environ)
            while "=" in words[0] and not words[0].startswith("/"):
                key, value = words.pop(0).split("=", 1)
                env[key] = value
            with open(logs / ("process_%d.log" % n), "w") as log:
                procs.append(subprocess.Popen(words, env=env, stdout=log,
                                              stderr=subprocess.STDOUT,
                                              start_new_session=True))
        address = "tcp://127.0.0.1:%d" % port
        client = distributed.Client(address, timeout=90)
        client.wait_for_workers(2, timeout=120)
        client.get_task_stream()        # makes the scheduler record the task stream
        yield address, client, logs
    finally:
        if client is not None:
            client.close()
        for proc in reversed(procs):
            _stop(proc)


def test_pipeline_on_tcp_scheduler_from_qgis_process(stack, reference, tcp_cluster,
                                                      tmp_path):
    address, client, logs = tcp_cluster
    workers = set(client.scheduler_info()["workers"])
    assert len(workers) == 2
    t0 = time.time()
    out = str(tmp_path / "tcp")
    res = _qgis_process(stack, out, address)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    log = open(os.path.join(out, "slidewatch.log")).read()
    assert "Executor: Dask cluster at %s (2 worker process(es), 2 thread(s))" % address in log
    pairs = _assert_same_outputs(out, reference)
    # the workers did the work: every pair and every inversion block ran on them
    stream = client.get_task_stream(start=t0)
    ran = [(t["key"], t["worker"]) for t in stream if t.get("status") == "OK"]
    correlations = {k.split("-")[2] for k, _ in ran if "correlate_pair_task" in k}
    inversions = [k for k, _ in ran if "invert_rows_task" in k]
    assert correlations == {str(i) for i in range(len(pairs))}, ran
    assert inversions, ran
    assert {w for _, w in ran} <= workers
    # the cluster outlives the client: still 2 workers, no task left behind
    assert len(client.scheduler_info()["workers"]) == 2
    assert not client.processing() or not any(client.processing().values())


def test_pipeline_on_local_cluster_from_qgis_process(stack, reference, tmp_path):
    out = str(tmp_path / "local2")
    res = _qgis_process(stack, out, "local:2")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    log = open(os.path.join(out, "slidewatch.log")).read()
    assert "Executor: Dask cluster at local:2 (2 worker process(es), 2 thread(s))" in log
    assert "correlation: done" in log and "inversion: done" in log
    _assert_same_outputs(out, reference)


def test_local_cluster_without_worker_python_tells_what_to_do(stack, tmp_path):
    res = _qgis_process(stack, str(tmp_path / "refused"), "local:2",
                        extra_env={"SLIDEWATCH_WORKER_PYTHON": str(tmp_path / "no_python")})
    text = res.stdout + res.stderr
    assert res.returncode != 0
    assert "SLIDEWATCH_WORKER_PYTHON" in text and "not an executable file" in text
    assert "-m dask scheduler --host 127.0.0.1 --port 8786" in text
    assert "tcp://127.0.0.1:8786" in text
    assert not os.path.exists(tmp_path / "refused" / "pairs")
