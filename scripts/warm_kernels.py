#!/usr/bin/env python3
"""Compile SlideWatch's numba kernels once (run by `make install`; safe to re-run).

Usage: .venv/bin/python scripts/warm_kernels.py [group ...]
       (groups: prefilter correlation inversion detection; default all)

Kernels go to $NUMBA_CACHE_DIR, default <plugin folder>/.cache/numba (see
core/numba_setup.py); QGIS, qgis_process, the tests and Dask workers read the same
entries (keyed by the kernel files' real path), so none of them compiles again.
SLIDEWATCH_WARM_JOBS=2 compiles the correlation kernels in a second process beside the
others; off by default: measured on 2 cores it was slower (315 s wall, inversion 289 s
beside correlation) than one process (235 s, inversion 78 s).
"""
import os
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
plugins = os.path.join(os.path.dirname(here), ".build", "plugins")
if os.path.isdir(os.path.join(plugins, "slidewatch")) and plugins not in sys.path:
    sys.path.insert(0, plugins)    # the same import path as qgis_process and the tests

from slidewatch.core import numba_setup  # noqa: E402


def main(groups):
    t0 = time.perf_counter()
    log = lambda s: print(s, flush=True)  # noqa: E731
    side = None
    header = True
    cold = numba_setup.cold_groups()
    if (not groups and os.environ.get("SLIDEWATCH_WARM_JOBS") == "2" and "correlation" in cold
            and len(cold) > 1):
        log("compiling SlideWatch kernels (one-off, about %d s on 2 cores, correlation in a "
            "second process) into %s" % (max(g[1] for g in numba_setup.GROUPS),
                                         numba_setup.cache_dir()))
        env = dict(os.environ, NUMBA_CACHE_DIR=numba_setup.cache_dir(),
                   SLIDEWATCH_WARM_NO_HEADER="1")
        side = subprocess.Popen([sys.executable, os.path.abspath(__file__), "correlation"],
                                env=env)
        groups = [g[0] for g in numba_setup.GROUPS if g[0] != "correlation"]
        header = False
    if os.environ.get("SLIDEWATCH_WARM_NO_HEADER"):
        header = False
    numba_setup.warm(log=log, groups=groups or None, header=header)
    if side is not None and side.wait() != 0:
        sys.exit("compiling the correlation kernels failed (exit %d)" % side.returncode)
    if side is not None or not groups:
        print("SlideWatch kernels ready in %.1f s (cache: %s)"
              % (time.perf_counter() - t0, numba_setup.cache_dir()), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
