"""One numba kernel cache for every SlideWatch process, compiled once (issue 15).

- :func:`configure` (called by ``slidewatch/core/__init__.py``, before any kernel module is
  imported) sets ``NUMBA_CACHE_DIR`` when it is unset -- to :func:`default_cache_dir` --
  and keys numba's cache by the *real* path of the kernel files, so that the plugin
  imported through ``.build/plugins/slidewatch`` (qgis_process, tests, Dask workers),
  through the QGIS profile's ``python/plugins/slidewatch`` link (QGIS desktop) or through
  the checkout itself all read and write the same cache entries. (numba keys its cache
  directory by the source folder's path as imported: three links, three caches before.)
- :data:`GROUPS` / :func:`warm` compile every kernel the pipeline runs with its default
  settings, with the argument types the pipeline uses (``scripts/warm_kernels.py``, run by
  ``make install``; the plugin runs it in a background QgsTask on first use).
- :func:`cold_groups` tells, without compiling, which groups are not in the cache yet.
- a numba compile-event listener says, once per process, when a kernel compiles at run
  time anyway (:func:`compile_notices` routes the line to a run's log / Processing
  feedback).
"""

import contextlib
import os
import sys
import threading
import time

CACHE_ENV = "NUMBA_CACHE_DIR"
PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_REAL_PLUGIN_DIR = os.path.realpath(PLUGIN_DIR)


def default_cache_dir(plugin_dir=None):
    """Where the kernels are cached when ``NUMBA_CACHE_DIR`` is unset.

    ``<plugin folder>/.cache/numba`` (real path; what ``make install`` fills) when it can
    be created and written, else the per-user ``$XDG_CACHE_HOME/slidewatch/numba``
    (``~/.cache/slidewatch/numba``).
    """
    plugin_dir = os.path.realpath(plugin_dir or PLUGIN_DIR)
    candidate = os.path.join(plugin_dir, ".cache", "numba")
    if _writable_dir(candidate):
        return candidate
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    fallback = os.path.join(base, "slidewatch", "numba")
    _writable_dir(fallback)
    return fallback


def _writable_dir(path):
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return False
    return os.access(path, os.W_OK | os.X_OK)


def cache_dir():
    """The cache directory in use (``NUMBA_CACHE_DIR``, set by :func:`configure`)."""
    return os.environ.get(CACHE_ENV) or default_cache_dir()


_configured = False


def configure():
    """Set ``NUMBA_CACHE_DIR`` if unset and key the cache by real paths (idempotent)."""
    global _configured
    if not os.environ.get(CACHE_ENV):
        os.environ[CACHE_ENV] = default_cache_dir()
    if _configured:
        return
    try:
        from numba.core import caching, config
    except Exception:   # numba missing or broken: core.deps reports it
        return
    _configured = True
    if not config.CACHE_DIR:    # numba imported before us with the variable unset
        config.CACHE_DIR = os.environ[CACHE_ENV]
    _install_locator(caching)
    _install_listener()
    _set_vector_width()


#: environment variable: LLVM loop-vectorisation width of the kernels compiled in this
#: process (default :data:`DEFAULT_VECTOR_WIDTH`; 0 = LLVM's own choice)
VECTOR_WIDTH_ENV = "SLIDEWATCH_VECTOR_WIDTH"
DEFAULT_VECTOR_WIDTH = 8
_vector_width = None


def _set_vector_width():
    """Vectorise loops 8 lanes wide (``-force-vector-width``), once per process.

    The correlator's loops run over window rows of 32 to 64 samples whose length is
    known only at run time. On a CPU with AVX-512, LLVM's default vectorises such a loop
    16 lanes x 4 interleaved (64 samples per step), so a 32-sample row never enters the
    vector loop and runs in the scalar remainder: the refinement's template set-up took
    3.6 us instead of 1.8 (issue 18, docs/benchmarks.md). Eight lanes (one AVX2 register
    of float32, or two of float64) fit every window row. The option is LLVM's, process
    wide and settable only once: it changes only how loops are vectorised (the results of
    reductions may differ in the last bits, as between two CPUs), and it applies to what
    compiles after it (kernels already in the cache keep their code until their source
    changes)."""
    global _vector_width
    if _vector_width is not None:
        return
    raw = os.environ.get(VECTOR_WIDTH_ENV, str(DEFAULT_VECTOR_WIDTH)).strip()
    try:
        width = int(raw)
    except ValueError:
        width = DEFAULT_VECTOR_WIDTH
    _vector_width = width
    if width <= 0:
        return
    try:
        import llvmlite.binding as ll
        ll.set_option("slidewatch", "-force-vector-width=%d" % width)
    except Exception:   # llvmlite missing or the option refused: LLVM's default
        _vector_width = 0


def vector_width():
    """The loop-vectorisation width set for this process (0: LLVM's default)."""
    return _vector_width or 0


def _install_locator(caching):
    base = getattr(caching, "_UserProvidedCacheLocator", None)
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    if base is None or impl is None or not hasattr(impl, "_locator_classes"):
        return

    class RealPathCacheLocator(base):
        """numba's NUMBA_CACHE_DIR locator, keyed by the kernel file's real path."""

        @classmethod
        def from_function(cls, py_func, py_file):
            real = os.path.realpath(py_file)
            if not real.startswith(_REAL_PLUGIN_DIR + os.sep):
                return None          # someone else's kernel: numba's own rules
            return super().from_function(py_func, real)

    if not any(c.__name__ == "RealPathCacheLocator" for c in impl._locator_classes):
        impl._locator_classes.insert(0, RealPathCacheLocator)


# ------------------------------------------------------------------ run-time compile notice
_sinks = []
_sinks_lock = threading.Lock()
_state = threading.local()
_announced = set()


def _emit(message):
    with _sinks_lock:
        sinks = list(_sinks)
    if not sinks:
        print("SlideWatch: " + message, file=sys.stderr, flush=True)
    for sink in sinks:
        try:
            sink(message)
        except Exception:
            pass


@contextlib.contextmanager
def compile_notices(sink):
    """Send run-time compile notices to ``sink(str)`` (e.g. a Progress's ``info``) while
    the block runs (without a sink they go to stderr)."""
    with _sinks_lock:
        _sinks.append(sink)
    try:
        yield
    finally:
        with _sinks_lock:
            _sinks.remove(sink)


def _install_listener():
    try:
        from numba.core import event
    except Exception:
        return

    class _CompileListener(event.Listener):
        def on_start(self, ev):
            depth = getattr(_state, "depth", 0)
            _state.depth = depth + 1
            if depth == 0:
                _state.t0 = time.perf_counter()
                if not getattr(_state, "quiet", False):
                    name = _kernel_name(ev)
                    if name and "first" not in _announced:
                        _announced.add("first")
                        _emit("compiling numba kernel %s on first use (one-off: it is saved "
                              "in %s and not compiled again; `make install` or "
                              "scripts/warm_kernels.py compiles every kernel beforehand)"
                              % (name, cache_dir()))
                _REMARKS.enter()

        def on_end(self, ev):
            _state.depth = max(0, getattr(_state, "depth", 1) - 1)
            if _state.depth == 0:
                _REMARKS.leave()
                if not getattr(_state, "quiet", False):
                    name = _kernel_name(ev)
                    if name:
                        _emit("compiled numba kernel %s in %.1f s (cached for the next runs)"
                              % (name, time.perf_counter() - getattr(_state, "t0", 0.0)))

    event.register("numba:compile", _CompileListener())


class _RemarkFilter:
    """Keeps LLVM's "remark: ... loop not vectorized" lines out of stderr while numba
    compiles. With a forced vectorisation width (:func:`_set_vector_width`) LLVM prints
    one such line, always, for every loop it cannot vectorise (hundreds per kernel group)
    and has no option to silence them. While any thread compiles, file descriptor 2 goes
    to a temporary file; when the last compile ends it is restored and every other line
    written meanwhile (Python's or a library's) is written to it, in order, only later."""

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._saved = None
        self._file = None

    def enter(self):
        if not _vector_width:
            return
        with self._lock:
            self._depth += 1
            if self._depth > 1:
                return
            try:
                import tempfile
                sys.stderr.flush()
                self._file = tempfile.TemporaryFile()
                self._saved = os.dup(2)
                os.dup2(self._file.fileno(), 2)
            except Exception:   # no file descriptors to play with: leave stderr alone
                self._restore()

    def leave(self):
        if not _vector_width:
            return
        with self._lock:
            if self._depth == 0:
                return
            self._depth -= 1
            if self._depth == 0:
                self._restore()

    def _restore(self):
        f, saved = self._file, self._saved
        self._file = self._saved = None
        if saved is None:
            return
        try:
            sys.stderr.flush()
        except Exception:
            pass
        os.dup2(saved, 2)
        os.close(saved)
        if f is None:
            return
        try:
            f.seek(0)
            kept = [ln for ln in f.read().splitlines(True) if not ln.startswith(b"remark: ")]
            if kept:
                os.write(2, b"".join(kept))
        finally:
            f.close()


_REMARKS = _RemarkFilter()


def _kernel_name(ev):
    data = getattr(ev, "data", None) or {}
    disp = data.get("dispatcher")
    fn = getattr(disp, "py_func", None)
    if fn is None or not os.path.realpath(fn.__code__.co_filename).startswith(
            _REAL_PLUGIN_DIR + os.sep):
        return None
    return "%s.%s" % (fn.__module__.rsplit(".", 1)[-1], fn.__name__)


# ----------------------------------------------------------------------------- warm-up
def _warm_prefilter():
    import numpy as np

    from .matching.prefilter_kernels import gaussian_highpass, gaussian_highpass_rects

    x = np.random.default_rng(0).random((40, 40), dtype=np.float32)
    gaussian_highpass(x, 1.0)
    # the second pass's prefilter around a few windows (float32 blocks, as the pipeline)
    gaussian_highpass_rects(x, 3.0, np.array([[4, 20, 4, 20]], np.int64))


def _warm_correlation():
    import numpy as np

    from .matching.correlation import correlate

    rng = np.random.default_rng(0)
    ref = rng.random((96, 96), dtype=np.float32)
    sec = np.roll(ref, 1, axis=1)
    correlate(ref, sec, window=16, step=8, search=4)
    # the wide-window pass (its refinement-only kernel) on every valid window
    correlate(ref, sec, window=16, step=8, search=4, wide_sigma=1e-9)


def _warm_inversion():
    import numpy as np

    from .series.inversion import invert_arrays

    dates = np.array(["2020-01-01", "2020-01-11", "2020-01-21", "2020-01-31"],
                     dtype="datetime64[D]")
    pi = np.array([0, 1, 2, 0, 1], np.int64)
    pj = np.array([1, 2, 3, 2, 3], np.int64)
    rng = np.random.default_rng(0)
    east = rng.normal(size=(5, 20)).astype(np.float32)
    north = rng.normal(size=(5, 20)).astype(np.float32)
    invert_arrays(east, north, np.ones((5, 20), np.float32), pi, pj, dates)


def _warm_detection():
    import numpy as np

    from .detect.detection import temporal_evidence

    rng = np.random.default_rng(0)
    E = rng.normal(size=(5, 8, 8))
    N = rng.normal(size=(5, 8, 8))
    valid = np.ones((5, 8, 8), bool)
    temporal_evidence(E, N, valid, np.arange(5, dtype=np.float64), E.mean(0), N.mean(0))


#: (group, about how many seconds a cold compile takes on 2 cores, top-level kernels
#: (module, name) the group compiles with their callees, warm-up function); ``module`` is
#: dotted from core/ (``series.inversion_kernels``: core/series/inversion_kernels.py). The
#: seconds are the slower of the machines measured: `make install` on a fresh machine on
#: 2026-12-07 took prefilter 9 s, correlation 351 s, inversion 167 s, detection 3 s (an
#: earlier machine: 5 / 120 / 40 / 5 s)
GROUPS = (
    ("prefilter", 10, (("matching.prefilter_kernels", "_highpass_bands"),
                      ("matching.prefilter_kernels", "_highpass_rects")), _warm_prefilter),
    ("correlation", 350, (("matching.correlation_kernels", "correlate_grid"),
                          ("matching.correlation_kernels", "refine_windows")), _warm_correlation),
    ("inversion", 170, (("series.inversion_kernels", "invert_block"),), _warm_inversion),
    ("detection", 5, (("detect.detection", "_evidence_kernel"),), _warm_detection),
)

#: numba kernels of core/ that the pipeline's defaults do not run (compiled on first use)
NOT_WARMED = {
    ("series.inversion_kernels", "gcv_block"):
        "only with the inversion's lambda 'gcv' / 'auto'",
    ("series.inversion_kernels", "_band_inverse_trace"): "called by gcv_block only",
}


def kernel(module, name):
    import importlib

    return getattr(importlib.import_module("slidewatch.core." + module), name)


def _index_entries(dispatcher):
    """Cache entries of ``dispatcher`` valid for this source file and this CPU."""
    cache = getattr(dispatcher, "_cache", None)
    cache_file = getattr(cache, "_cache_file", None)
    if cache_file is None:
        return []
    try:
        overloads = cache_file._load_index()
        magic = dispatcher.targetctx.codegen().magic_tuple()
    except Exception:
        return []
    return [k for k in overloads if len(k) > 1 and k[1] == magic]


def cold_groups():
    """Names of the :data:`GROUPS` whose kernels are not in the cache yet (no compiling)."""
    configure()
    cold = []
    for name, _, kernels, _ in GROUPS:
        try:
            if not all(_index_entries(kernel(m, k)) for m, k in kernels):
                cold.append(name)
        except Exception:
            cold.append(name)
    return cold


def warm(log=print, groups=None, progress=None, is_cancelled=None, header=True):
    """Compile (or load from the cache) the kernels of ``groups`` (default: all).

    ``log(str)`` gets one line per group; ``progress(fraction)`` is called after each.
    Returns ``{group: seconds}``.
    """
    configure()
    todo = [g for g in GROUPS if groups is None or g[0] in groups]
    cold = set(cold_groups()) & {g[0] for g in todo}
    about = sum(g[1] for g in todo if g[0] in cold)
    if not header:
        pass
    elif cold:
        log("compiling SlideWatch kernels (one-off, about %d s on 2 cores) into %s"
            % (about, cache_dir()))
    else:
        log("SlideWatch kernels already compiled in %s" % cache_dir())
    times = {}
    _state.quiet = True
    try:
        for i, (name, seconds, _, fn) in enumerate(todo):
            if is_cancelled is not None and is_cancelled():
                break
            t0 = time.perf_counter()
            if name in cold:
                log("compiling SlideWatch kernels (one-off, about %d s): %s ..." % (seconds, name))
            fn()
            times[name] = time.perf_counter() - t0
            log("  %s: %s in %.1f s" % (name, "compiled" if name in cold else "loaded from "
                                        "the cache", times[name]))
            if progress is not None:
                progress((i + 1) / len(todo))
    finally:
        _state.quiet = False
    return times


def quick_cold_groups():
    """Like :func:`cold_groups` but from file names only (no numba import, no kernel
    module import): groups with a kernel whose cache index file is absent. Cheap enough
    for QGIS start-up; a stale index (edited source) is caught at run time instead."""
    import glob
    import hashlib

    core = os.path.realpath(os.path.dirname(os.path.abspath(__file__)))
    tag = "py%d%d" % sys.version_info[:2]
    cold = []
    for name, _, kernels, _ in GROUPS:
        for module, fn in kernels:
            # numba's cache folder of a source file: <its folder's name>_<sha1 of the folder>
            parts = module.split(".")
            src = os.path.join(core, *parts[:-1])
            sub = "%s_%s" % (os.path.basename(src), hashlib.sha1(src.encode()).hexdigest())
            folder = os.path.join(cache_dir(), sub)
            if not glob.glob(os.path.join(glob.escape(folder), "%s.%s-*.%s.nbi"
                                          % (parts[-1], fn, tag))):
                cold.append(name)
                break
    return cold
