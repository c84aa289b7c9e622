"""SlideWatch QGIS plugin: ground motion from optical image time series."""

import glob
import os
import sys


def _add_bundled_venv():
    """Make packages installed by ``make install`` (``.venv`` in the plugin folder) importable.

    The venv is created with ``--system-site-packages`` from QGIS's own Python, so only the
    extra packages (numba, dask, ...) are taken from it; they are appended after QGIS's
    own paths so that QGIS keeps its numpy.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    pattern = os.path.join(here, ".venv", "lib", "python%d.%d" % sys.version_info[:2],
                           "site-packages")
    for path in glob.glob(pattern):
        if path not in sys.path:
            sys.path.append(path)


_add_bundled_venv()


def classFactory(iface):  # noqa: N802 (QGIS API name)
    from .plugin import SlideWatchPlugin

    return SlideWatchPlugin(iface)
