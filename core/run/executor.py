"""One interface to run independent tasks: local threads or a Dask distributed cluster.

SlideWatch's heavy work is made of independent tasks: one task per image pair to
correlate, one task per block of rows of the time-series inversion. Each task reads its
inputs from *paths* (shared storage), writes its own outputs atomically
(:mod:`.raster_io`) and returns only a small result (a path, a few statistics). The
driver never moves image data.

:func:`get_executor` returns an executor with the same API whatever runs the tasks:

- ``scheduler=None`` or ``""`` (default): a local :class:`~concurrent.futures.ThreadPoolExecutor`.
  Numba kernels release the GIL (``nogil=True``), so threads run in parallel.
- ``"tcp://host:8786"`` (or ``tls://``, ``ws://``, ``wss://``, ``inproc://``): connect a
  ``distributed.Client`` to an existing Dask scheduler (dask-jobqueue on SLURM,
  Kubernetes, ``dask scheduler`` by hand...). Workers must see the same file paths
  (shared storage) and be able to import ``slidewatch`` (see docs/scaling.md).
- ``"scheduler-file:/path/scheduler.json"``: same, through a scheduler file (HPC).
- ``"local:N"``: start a ``distributed.LocalCluster`` of N single-threaded worker
  *processes* on this machine (useful to bound memory per process). It works from a
  Python script and from QGIS (desktop, ``qgis_process``): there, ``sys.executable`` is
  not a usable Python, so the workers are spawned with :func:`worker_python` (the
  plugin's ``.venv`` Python, else the system Python matching QGIS's, or
  ``$SLIDEWATCH_WORKER_PYTHON``), checked first; multiprocessing's executable is put
  back when the executor is closed.
- an existing ``distributed.Client`` object (scripts).

Robustness:

- a failed task is retried (``retries``, default 2): Dask's own ``retries=`` on a cluster,
  the same number of re-submissions for local threads; a task whose worker died
  (``KilledWorker``) is re-submitted too. Tasks are written to be resumable (the pair and
  block drivers reuse an output already renamed into place with the same parameters), so a
  re-submitted task does not redo finished work and a dead worker never loses finished
  outputs.
- the driver polls the futures as they complete and calls ``progress.check()`` between
  completions (and at least every ``poll_interval`` seconds); on cancel, pending futures are
  cancelled, running tasks are told to stop through a cancel flag (a
  ``threading.Event`` locally, a ``distributed.Event`` on a cluster) that tasks accepting a
  ``cancelled`` keyword poll between their chunks, and :class:`~.errors.Cancelled` is raised.

Example::

    from slidewatch.core.run.executor import get_executor
    with get_executor("tcp://scheduler:8786") as ex:
        stats = ex.map(correlate_one_pair, pair_jobs, progress=progress)
"""

import concurrent.futures as cf
import contextlib
import logging
import os
import sys
import threading
import time
import uuid

from ..errors import Cancelled, InputError, ParameterError, SlideWatchError
from ..numba_setup import PLUGIN_DIR
from ..progress import as_progress

__all__ = ["get_executor", "LocalExecutor", "DaskExecutor", "TaskFailure", "CancelFlag",
           "parse_scheduler", "DEFAULT_RETRIES", "WORKER_PYTHON_ENV", "worker_python",
           "worker_python_candidates", "manual_cluster_commands", "executor_or_local"]

#: default number of re-tries of a failed task (so up to 3 attempts)
DEFAULT_RETRIES = 2

#: errors that are not worth retrying: the same inputs give the same error
_NO_RETRY = (Cancelled, ParameterError)

_log = logging.getLogger(__name__)


class TaskFailure:
    """Result of a task that failed after all its attempts (``on_error="collect"``)."""

    def __init__(self, item, error, attempts):
        self.item = item
        self.error = error
        self.attempts = attempts

    def __repr__(self):
        return "TaskFailure(%r, %s: %s, attempts=%d)" % (self.item, type(self.error).__name__,
                                                          self.error, self.attempts)

    def __bool__(self):
        return False


class CancelFlag:
    """A picklable callable telling a running task whether the driver asked to stop.

    Locally it wraps a ``threading.Event``; on a cluster it looks up a
    ``distributed.Event`` by name (at most once per ``interval`` seconds, so a task can
    call it between every chunk without loading the scheduler).
    """

    def __init__(self, name=None, event=None, interval=1.0):
        self.name = name
        self._event = event
        self.interval = interval
        self._last = 0.0
        self._value = False
        self._dask_event = None

    def __getstate__(self):
        return {"name": self.name, "interval": self.interval}

    def __setstate__(self, state):
        self.__init__(state["name"], None, state["interval"])

    def __call__(self):
        if self._event is not None:
            return self._event.is_set()
        if self._value or self.name is None:
            return self._value
        now = time.monotonic()
        if now - self._last < self.interval:
            return False
        self._last = now
        try:
            if self._dask_event is None:
                from distributed import Event
                self._dask_event = Event(self.name)
            self._value = bool(self._dask_event.is_set())
        except Exception:  # no client in this process, scheduler gone: keep working
            self._value = False
        return self._value


def _describe(describe, item, index):
    if describe is not None:
        try:
            return str(describe(item))
        except Exception:
            pass
    return "task %d" % (index + 1)


def _failure_error(label, exc, attempts):
    """A user-facing error naming the task, keeping the class of SlideWatch errors."""
    if isinstance(exc, Cancelled):
        return exc
    text = "%s failed after %d attempt%s: %s" % (label, attempts, "" if attempts == 1 else "s",
                                                exc if isinstance(exc, SlideWatchError)
                                                else "%s: %s" % (type(exc).__name__, exc))
    if isinstance(exc, SlideWatchError):
        try:
            return type(exc)(text)
        except Exception:
            return SlideWatchError(text)
    return SlideWatchError(text)


class _BaseExecutor:
    kind = ""
    #: number of parallel task slots (threads or worker threads)
    n_workers = 1

    def __init__(self, retries=DEFAULT_RETRIES, poll_interval=0.25):
        if retries is None or int(retries) < 0:
            raise ParameterError("retries must be >= 0 (got %r)." % (retries,))
        self.retries = int(retries)
        self.poll_interval = float(poll_interval)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        pass

    # -- the common driver loop -------------------------------------------------------
    def map(self, fn, items, progress=None, describe=None, pass_cancel=False,
            on_error="raise", retries=None, label="tasks"):
        """Run ``fn(item)`` for every item; return the results in the order of ``items``.

        Parameters
        ----------
        fn : callable
            A module-level function (it is pickled for a cluster). It reads its inputs
            from paths and writes its own outputs; it returns something small.
        progress : Progress or None
            Receives ``done / total`` after each completion; ``progress.check()`` is called
            between completions (cancel: pending tasks are cancelled, running tasks are
            told to stop, :class:`Cancelled` is raised).
        describe : callable(item) -> str, optional
            Names a task in log lines and error messages ("pair 2019-01-01 / 2019-02-01").
        pass_cancel : bool
            Call ``fn(item, cancelled=flag)`` where ``flag()`` becomes True when the driver
            is cancelled, so long tasks can stop between their chunks.
        on_error : "raise" or "collect"
            ``"raise"``: the first task failing after all its attempts cancels the rest
            and raises (a :class:`SlideWatchError` naming the task). ``"collect"``: its
            result is a :class:`TaskFailure` and the other tasks go on.
        retries : int or None
            Re-tries per failed task (default: the executor's ``retries``).
        """
        if on_error not in ("raise", "collect"):
            raise ParameterError("on_error must be 'raise' or 'collect' (got %r)." % (on_error,))
        items = list(items)
        progress = as_progress(progress)
        retries = self.retries if retries is None else int(retries)
        n = len(items)
        results = [None] * n
        if n == 0:
            progress.update(1.0, "%s: nothing to do" % label)
            return results
        progress.check()
        flag = self._new_cancel_flag()
        attempts = [0] * n
        pending = {}  # future -> index
        done_count = 0
        try:
            for i, item in enumerate(items):
                pending[self._submit(fn, item, flag if pass_cancel else None, retries, i)] = i
                attempts[i] = 1
            progress.update(0.0, "%s: 0/%d" % (label, n))
            while pending:
                finished = self._wait_some(list(pending))
                progress.check()
                for fut in finished:
                    i = pending.pop(fut)
                    ok, value = self._outcome(fut)
                    if ok is None:          # not done after all (result lost, recomputing)
                        pending[fut] = i
                        continue
                    if ok:
                        results[i] = value
                        done_count += 1
                        progress.update(done_count / n, "%s: %d/%d" % (label, done_count, n))
                        continue
                    exc = value
                    name = _describe(describe, items[i], i)
                    if isinstance(exc, Cancelled) and flag():
                        raise Cancelled()
                    if self._should_resubmit(exc, attempts[i], retries):
                        attempts[i] += 1
                        progress.info("%s: attempt %d failed (%s: %s); retrying"
                                      % (name, attempts[i] - 1, type(exc).__name__, exc))
                        pending[self._submit(fn, items[i], flag if pass_cancel else None,
                                             retries, i)] = i
                        continue
                    total_attempts = self._attempts_made(exc, attempts[i], retries)
                    if on_error == "collect":
                        progress.info("%s failed after %d attempt(s): %s: %s"
                                      % (name, total_attempts, type(exc).__name__, exc))
                        results[i] = TaskFailure(items[i], exc, total_attempts)
                        done_count += 1
                        progress.update(done_count / n, "%s: %d/%d" % (label, done_count, n))
                        continue
                    raise _failure_error(name, exc, total_attempts) from exc
        except BaseException:
            self._set_cancel_flag(flag)
            self._cancel(list(pending))
            raise
        finally:
            self._drop_cancel_flag(flag)
        return results

    # -- backend hooks ----------------------------------------------------------------
    def _new_cancel_flag(self):
        raise NotImplementedError

    def _set_cancel_flag(self, flag):
        raise NotImplementedError

    def _drop_cancel_flag(self, flag):
        pass

    def _submit(self, fn, item, flag, retries, index):
        raise NotImplementedError

    def _wait_some(self, futures):
        raise NotImplementedError

    def _outcome(self, fut):
        raise NotImplementedError

    def _cancel(self, futures):
        raise NotImplementedError

    def _should_resubmit(self, exc, attempts, retries):
        raise NotImplementedError

    def _attempts_made(self, exc, attempts, retries):
        return attempts


def _call(fn, item, flag):
    if flag is None:
        return fn(item)
    return fn(item, cancelled=flag)


class LocalExecutor(_BaseExecutor):
    """Tasks on a local thread pool (Numba kernels release the GIL).

    ``max_workers`` defaults to the number of CPUs available to this process.
    """

    kind = "threads"

    def __init__(self, max_workers=None, retries=DEFAULT_RETRIES, poll_interval=0.25):
        super().__init__(retries, poll_interval)
        if max_workers is None or int(max_workers) <= 0:
            max_workers = _available_cpus()
        self.n_workers = int(max_workers)
        self._pool = cf.ThreadPoolExecutor(max_workers=self.n_workers,
                                           thread_name_prefix="slidewatch")

    @property
    def description(self):
        return "local threads (%d)" % self.n_workers

    def submit(self, fn, *args, **kwargs):
        """Submit one call; returns a ``concurrent.futures.Future``."""
        return self._pool.submit(fn, *args, **kwargs)

    def close(self):
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _new_cancel_flag(self):
        return CancelFlag(event=threading.Event())

    def _set_cancel_flag(self, flag):
        flag._event.set()

    def _submit(self, fn, item, flag, retries, index):
        return self._pool.submit(_call, fn, item, flag)

    def _wait_some(self, futures):
        done, _ = cf.wait(futures, timeout=self.poll_interval, return_when=cf.FIRST_COMPLETED)
        return done

    def _outcome(self, fut):
        exc = fut.exception()
        if exc is not None:
            return False, exc
        return True, fut.result()

    def _cancel(self, futures):
        for fut in futures:
            fut.cancel()
        # running tasks see the cancel flag at their next chunk; wait for them so that no
        # thread keeps writing after the driver returned
        cf.wait(futures)

    def _should_resubmit(self, exc, attempts, retries):
        return not isinstance(exc, _NO_RETRY) and attempts <= retries


class DaskExecutor(_BaseExecutor):
    """Tasks on a Dask distributed cluster (``distributed.Client``)."""

    kind = "dask"

    def __init__(self, client, owns=(), retries=DEFAULT_RETRIES, poll_interval=0.25,
                 address=""):
        super().__init__(retries, poll_interval)
        self.client = client
        self._owns = list(owns)   # objects to close with the executor (client, cluster)
        self.address = address or getattr(client, "scheduler", None) and client.scheduler.address
        try:
            threads = client.nthreads()
            self.n_workers = max(1, sum(threads.values()))
            self.n_processes = len(threads)
        except Exception:
            self.n_workers, self.n_processes = 1, 1

    @property
    def description(self):
        return "Dask cluster at %s (%d worker process(es), %d thread(s))" % (
            self.address, self.n_processes, self.n_workers)

    def submit(self, fn, *args, **kwargs):
        """Submit one call; returns a ``distributed.Future`` (not pure, retried)."""
        kwargs.setdefault("pure", False)
        kwargs.setdefault("retries", self.retries)
        return self.client.submit(fn, *args, **kwargs)

    def close(self):
        for obj in reversed(self._owns):
            try:
                obj.close()
            except Exception as exc:  # closing must never mask the real outcome
                _log.debug("closing %r: %s", obj, exc)
        self._owns = []

    def _new_cancel_flag(self):
        from distributed import Event
        name = "slidewatch-cancel-" + uuid.uuid4().hex
        flag = CancelFlag(name=name)
        flag._driver_event = Event(name, client=self.client)
        return flag

    def _set_cancel_flag(self, flag):
        try:
            flag._driver_event.set()
        except Exception as exc:
            _log.debug("cannot set the cancel event: %s", exc)

    def _drop_cancel_flag(self, flag):
        flag._driver_event = None

    def _submit(self, fn, item, flag, retries, index):
        key = "slidewatch-%s-%d-%s" % (getattr(fn, "__name__", "task"), index,
                                       uuid.uuid4().hex[:12])
        return self.client.submit(_call, fn, item, flag, key=key, pure=False, retries=retries)

    def _wait_some(self, futures):
        from distributed import wait
        try:
            done, _ = wait(futures, timeout=self.poll_interval, return_when="FIRST_COMPLETED")
        except (TimeoutError, cf.TimeoutError):
            return []
        return done

    def _outcome(self, fut):
        status = fut.status
        if status in ("pending", "lost"):
            # reported done, then its result was lost with a dead worker: the scheduler
            # recomputes it (the finished output on disk is reused); keep waiting
            return None, None
        if status == "finished":
            try:
                value = fut.result()
            except Exception as exc:  # lost between completion and gather (dead worker)
                return False, exc
            fut.release()
            return True, value
        if status == "cancelled":
            return False, Cancelled()
        try:
            exc = fut.exception()
        except Exception as exc2:
            exc = exc2
        if exc is None:             # recomputed successfully meanwhile, or recomputing
            return self._outcome(fut) if fut.status == "finished" else (None, None)
        fut.release()
        return False, exc

    def _cancel(self, futures):
        if futures:
            try:
                self.client.cancel(futures)
            except Exception as exc:
                _log.debug("cancel: %s", exc)

    def _should_resubmit(self, exc, attempts, retries):
        # Dask already retried exceptions raised by the task (retries=); a task whose
        # worker(s) died is not retried by Dask beyond allowed-failures: resubmit it.
        return _is_lost_worker(exc) and attempts <= retries

    def _attempts_made(self, exc, attempts, retries):
        if _is_lost_worker(exc) or isinstance(exc, _NO_RETRY):
            return attempts
        return attempts * (retries + 1)


def _is_lost_worker(exc):
    name = type(exc).__name__
    return name in ("KilledWorker", "CommClosedError", "FutureCancelledError") and not \
        isinstance(exc, Cancelled)


def _available_cpus():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def parse_scheduler(scheduler):
    """Normalise a scheduler setting into ``(kind, value)``.

    ``kind`` is ``"threads"``, ``"local-cluster"`` (value = number of workers),
    ``"address"`` (value = scheduler address), ``"scheduler-file"`` (value = path) or
    ``"client"`` (value = an existing distributed.Client).
    """
    if scheduler is None:
        return "threads", None
    if not isinstance(scheduler, str):
        if type(scheduler).__name__ == "Client":
            return "client", scheduler
        raise ParameterError("Dask scheduler must be an address string such as "
                             "'tcp://host:8786' (got %r)." % (scheduler,))
    text = scheduler.strip()
    if text == "" or text.lower() in ("threads", "local"):
        return "threads", None
    low = text.lower()
    if low.startswith("local:"):
        try:
            n = int(text.split(":", 1)[1])
        except ValueError:
            n = 0
        if n < 1:
            raise ParameterError("Dask scheduler '%s': 'local:N' needs a number of worker "
                                 "processes N >= 1, e.g. 'local:2'." % text)
        return "local-cluster", n
    if low.startswith("scheduler-file:"):
        path = text.split(":", 1)[1]
        if not os.path.isfile(path):
            raise InputError("Dask scheduler file '%s' does not exist. Give the file written "
                             "by 'dask scheduler --scheduler-file', or a tcp:// address."
                             % path)
        return "scheduler-file", path
    for prefix in ("tcp://", "tls://", "ws://", "wss://", "inproc://", "ucx://"):
        if low.startswith(prefix):
            if len(text) <= len(prefix):
                break
            return "address", text
    if ":" in text and "/" not in text and text.rsplit(":", 1)[1].isdigit():
        return "address", "tcp://" + text   # host:port
    raise ParameterError(
        "Dask scheduler '%s' is not understood. Leave it empty for local threads, or give a "
        "scheduler address such as 'tcp://host:8786', 'scheduler-file:/path/scheduler.json', "
        "or 'local:2' for a local cluster of 2 worker processes." % text)


#: environment variable naming the Python interpreter that runs the worker processes of a
#: ``local:N`` cluster (overrides the automatic choice, see :func:`worker_python`)
WORKER_PYTHON_ENV = "SLIDEWATCH_WORKER_PYTHON"

# run by a candidate worker interpreter: like a spawned worker, it starts with its own
# standard library, then gets the driver's module path (multiprocessing.spawn.prepare
# replaces sys.path) and imports what the tasks need
_PROBE = ("import sys, os, json, multiprocessing.spawn; "
          "print('%d.%d' % sys.version_info[:2], os.path.realpath(os.path.dirname(os.__file__)),"
          " flush=True); sys.path[:] = json.loads(sys.argv[1]); "
          "import distributed, numba, numpy, rasterio, slidewatch.core.run.pipeline_tasks; "
          "print('ok')")
_probe_cache = {}
_spawn_lock = threading.Lock()


def _plugin_parent():
    """The folder holding the ``slidewatch`` package (to put on the workers' path)."""
    return os.path.dirname(PLUGIN_DIR)


def _is_own_python(exe):
    """True when ``exe`` is a Python interpreter of this very installation (a normal
    Python process: ``python script.py``, pytest), False for the QGIS binary or for a
    ``python3`` found on PATH by an embedded interpreter (e.g. a pyenv shim)."""
    if not exe or not os.path.basename(exe).lower().startswith("python"):
        return False
    real = os.path.realpath(exe)
    if not os.path.isfile(real):
        return False
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        if prefix and real.startswith(os.path.realpath(prefix) + os.sep):
            return True
    return False


def _inside_qgis():
    """Running in QGIS (desktop, qgis_process) rather than in a plain Python process."""
    return "qgis.core" in sys.modules or not _is_own_python(sys.executable)


def worker_python_candidates():
    """The interpreters tried, in order, for the worker processes of a ``local:N`` cluster
    started from inside QGIS: ``$SLIDEWATCH_WORKER_PYTHON``; the ``.venv`` Python of the
    plugin folder (made by ``make install``, it has numba and dask); the Python matching
    QGIS's embedded interpreter (``<sys.base_prefix>/bin/python3.X``, or ``python.exe``
    there on Windows); ``/usr/bin/python3``."""
    override = os.environ.get(WORKER_PYTHON_ENV, "").strip()
    if override:
        return [override]
    plugin = PLUGIN_DIR
    version = "%d.%d" % sys.version_info[:2]
    out = [os.path.join(plugin, ".venv", "bin", "python"),
           os.path.join(plugin, ".venv", "Scripts", "python.exe"),
           os.path.join(sys.base_prefix, "bin", "python" + version),
           os.path.join(sys.base_prefix, "python.exe"),
           "/usr/bin/python" + version, "/usr/bin/python3"]
    seen, unique = set(), []
    for c in out:
        if c not in seen:
            seen.add(c)
            unique.append(c)
    return unique


def _probe(exe, timeout=120):
    """``None`` if ``exe`` can run the workers (same Python version as this process, and
    distributed, numba, rasterio and slidewatch importable with this process's module
    path, which is what a spawned worker gets), else the reason why not."""
    key = (exe, tuple(sys.path))
    if key in _probe_cache:
        return _probe_cache[key]
    import json
    import subprocess

    path = [_plugin_parent()] + [p for p in sys.path if p]
    env = dict(os.environ)
    env["PYTHONPATH"] = _plugin_parent()
    try:
        res = subprocess.run([exe, "-c", _PROBE, json.dumps(path)], env=env,
                             capture_output=True, text=True, timeout=timeout)
        first = res.stdout.splitlines()[0].split(None, 1) if res.stdout.strip() else []
        version = "%d.%d" % sys.version_info[:2]
        stdlib = os.path.realpath(os.path.dirname(os.__file__))
        error = (res.stderr.strip().splitlines() or ["no output"])[-1]
        if len(first) != 2:
            reason = "it does not run (%s)" % error
        elif first[0] != version:
            reason = "it is Python %s, QGIS runs Python %s" % (first[0], version)
        elif first[1] != stdlib:
            reason = "its standard library is %s, QGIS's is %s" % (first[1], stdlib)
        elif res.returncode != 0 or res.stdout.split()[-1] != "ok":
            reason = "it cannot import the dependencies (%s)" % error
        else:
            reason = None
    except (OSError, subprocess.SubprocessError) as exc:
        reason = "it does not run (%s)" % exc
    _probe_cache[key] = reason
    return reason


def worker_python():
    """The Python interpreter for the worker processes of a ``local:N`` cluster.

    ``None`` in a plain Python process (scripts, tests): multiprocessing's default (this
    interpreter) is right. Inside QGIS, ``sys.executable`` is the QGIS binary or whatever
    ``python3`` comes first on PATH, neither of which can run the workers: the first of
    :func:`worker_python_candidates` that exists, is the same Python version as QGIS and
    imports distributed, numba, rasterio and slidewatch. ``$SLIDEWATCH_WORKER_PYTHON``
    forces a choice (in any process). Raises :class:`ParameterError` (telling how to start
    a cluster by hand) when no interpreter fits.
    """
    override = os.environ.get(WORKER_PYTHON_ENV, "").strip()
    if not override and not _inside_qgis():
        return None
    tried = []
    for exe in worker_python_candidates():
        if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
            if override:
                tried.append("%s: not an executable file" % exe)
            continue
        reason = _probe(exe)
        if reason is None:
            return exe
        tried.append("%s: %s" % (exe, reason))
    raise ParameterError(
        "Cannot start a local Dask cluster ('local:N'): no Python interpreter found to run "
        "its worker processes (%s). Either set the environment variable %s to a Python %d.%d "
        "that has SlideWatch's dependencies (numba, dask/distributed, rasterio) and restart "
        "QGIS, or start a cluster yourself in two terminals:\n%s\nand give the Dask "
        "scheduler 'tcp://127.0.0.1:8786' (or leave it empty to use local threads)."
        % ("; ".join(tried) or "none of " + ", ".join(worker_python_candidates()),
           WORKER_PYTHON_ENV, sys.version_info[0], sys.version_info[1],
           manual_cluster_commands()))


def manual_cluster_commands(n_workers=2, port=8786, python=None):
    """Shell commands starting a Dask scheduler and ``n_workers`` single-threaded workers
    on this machine that can run SlideWatch's tasks (for the user to paste in terminals)."""
    plugin = PLUGIN_DIR
    if python is None:
        venv = os.path.join(plugin, ".venv", "bin", "python")
        python = venv if os.path.exists(venv) else "python3"
    from ..numba_setup import cache_dir

    env = "PYTHONPATH=%s NUMBA_CACHE_DIR=%s" % (_plugin_parent(), cache_dir())
    return ("  %s -m dask scheduler --host 127.0.0.1 --port %d --no-dashboard\n"
            "  %s %s -m dask worker tcp://127.0.0.1:%d --nthreads 1 --nworkers %d "
            "--no-dashboard" % (python, port, env, python, port, n_workers))


class _SpawnSettings:
    """Points multiprocessing's spawn at ``exe`` (and the workers' PYTHONPATH at the plugin)
    for the lifetime of a local cluster, then restores what was there before.

    The worker processes are started -- and re-started by their nanny after a crash --
    with ``multiprocessing.spawn``'s executable, so the setting must stay while the cluster
    lives. The Nanny also sets a few variables of this process's environment before each
    spawn (``distributed.nanny.pre-spawn-environ``: OMP_NUM_THREADS=1...): those are put
    back too, so QGIS's later subprocesses are not affected.
    """

    _active = []   # live settings, oldest first (several local clusters at once)
    _saved = {}    # executable and environment from before the first live settings

    def __init__(self, exe):
        import multiprocessing.spawn as mp_spawn

        self._spawn = mp_spawn
        self.exe = exe
        self.closed = False
        with _spawn_lock:
            if not self._active:
                keys = {"PYTHONPATH", "PYTHONHASHSEED"}
                try:
                    import dask
                    keys.update(dask.config.get("distributed.nanny.pre-spawn-environ", {})
                                or {})
                except Exception:
                    pass
                type(self)._saved = {"exe": mp_spawn.get_executable(),
                                     "env": {k: os.environ.get(k) for k in keys}}
            mp_spawn.set_executable(exe)
            parent = _plugin_parent()
            paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
            if parent not in paths:
                os.environ["PYTHONPATH"] = os.pathsep.join([parent] + paths)
            self._active.append(self)

    def close(self):
        with _spawn_lock:
            if self.closed:
                return
            self.closed = True
            self._active.remove(self)
            if self._active:        # another local cluster still runs: keep its settings
                self._spawn.set_executable(self._active[-1].exe)
                return
            self._spawn.set_executable(self._saved["exe"])
            for k, v in self._saved["env"].items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _import_distributed():
    try:
        import distributed
    except Exception as exc:
        raise ParameterError(
            "A Dask scheduler was given but the 'distributed' package cannot be imported "
            "(%s). Install it (pip install 'distributed==2024.8.0', see requirements.txt) or "
            "leave the scheduler empty to use local threads." % exc) from exc
    return distributed


def get_executor(scheduler=None, max_workers=None, retries=DEFAULT_RETRIES, timeout=20):
    """Return an executor for ``scheduler`` (see the module documentation).

    Parameters
    ----------
    scheduler : None, str or distributed.Client
        ``None``/``""``: local threads. ``"tcp://host:port"``, ``"host:port"``,
        ``"scheduler-file:/path"``: an existing Dask scheduler. ``"local:N"``: a new
        LocalCluster of N single-threaded worker processes (closed with the executor).
    max_workers : int or None
        Local threads (default: CPUs available). Ignored on a cluster.
    retries : int
        Re-tries of a failed task.
    timeout : float
        Seconds to wait for the scheduler connection.

    Use it as a context manager (``with get_executor(...) as ex:``) or call ``close()``.
    """
    kind, value = parse_scheduler(scheduler)
    if kind == "threads":
        return LocalExecutor(max_workers=max_workers, retries=retries)
    distributed = _import_distributed()
    if kind == "client":
        return DaskExecutor(value, owns=(), retries=retries)
    if kind == "local-cluster":
        exe = worker_python()   # inside QGIS: a real Python for the workers (or an error)
        spawn = _SpawnSettings(exe) if exe else None
        try:
            # each worker's numba kernels get their share of the cores (not all of them:
            # N workers x all cores would oversubscribe the machine)
            share = max(1, (os.cpu_count() or 1) // max(1, int(value)))
            cluster = distributed.LocalCluster(n_workers=value, threads_per_worker=1,
                                               processes=True, dashboard_address=":0",
                                               silence_logs=logging.ERROR,
                                               env={"NUMBA_NUM_THREADS": str(share)})
        except BaseException:
            if spawn is not None:
                spawn.close()
            raise
        try:
            client = distributed.Client(cluster, timeout=timeout)
        except BaseException:
            cluster.close()
            if spawn is not None:
                spawn.close()
            raise
        owns = (spawn, client, cluster) if spawn is not None else (client, cluster)
        return DaskExecutor(client, owns=owns, retries=retries, address="local:%d" % value)
    try:
        if kind == "scheduler-file":
            client = distributed.Client(scheduler_file=value, timeout=timeout)
        else:
            client = distributed.Client(value, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise InputError(
            "Cannot connect to the Dask scheduler '%s' within %d s (%s). Check that the "
            "scheduler runs and that this machine can reach it, or leave the scheduler empty "
            "to use local threads." % (scheduler, timeout, exc)) from exc
    return DaskExecutor(client, owns=(client,), retries=retries, address=str(value))


@contextlib.contextmanager
def executor_or_local(executor=None):
    """``with executor_or_local(executor) as ex``: ``executor`` itself (left open), or,
    when None, local threads on every CPU (:class:`LocalExecutor`), closed on exit. The
    step drivers take ``executor=None`` through it."""
    if executor is not None:
        yield executor
        return
    with get_executor(None) as ex:
        yield ex
