"""Shared fixtures. pytest-qgis starts a real QgsApplication for the whole session."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data", "s2_pair_no_motion")


class RecordingIface:
    """Wraps pytest-qgis's mock iface and records what a plugin adds and removes.

    The mock's menu/dock methods are no-ops; this records them so tests can prove that
    ``unload`` removes every trace.
    """

    def __init__(self, iface):
        self._iface = iface
        self.menu_actions = []
        self.docks = []
        self.toolbars = []

    def __getattr__(self, name):
        return getattr(self._iface, name)

    def addPluginToMenu(self, menu, action):  # noqa: N802
        self.menu_actions.append((menu, action))

    def removePluginMenu(self, menu, action):  # noqa: N802
        self.menu_actions.remove((menu, action))

    def addDockWidget(self, area, dock):  # noqa: N802
        self.docks.append(dock)
        self._iface.mainWindow().addDockWidget(area, dock)

    def removeDockWidget(self, dock):  # noqa: N802
        self.docks.remove(dock)
        self._iface.mainWindow().removeDockWidget(dock)

    def addToolBar(self, name):  # noqa: N802
        toolbar = self._iface.addToolBar(name)
        self.toolbars.append(toolbar)
        return toolbar


@pytest.fixture()
def recording_iface(qgis_iface):
    return RecordingIface(qgis_iface)


@pytest.fixture()
def provider(qgis_iface, qgis_processing):
    """The SlideWatch provider registered as qgis_process does (initProcessing only)."""
    from slidewatch.plugin import SlideWatchPlugin

    plugin = SlideWatchPlugin(qgis_iface)
    plugin.initProcessing()
    yield plugin.provider
    plugin.unload()


@pytest.fixture(scope="session")
def real_pair_paths():
    """The real Sentinel-2 pair (no motion) from ../shared/data, or skip if absent."""
    ref = os.path.join(SHARED_DATA, "ref_S2A_20160608T153121_T33UUU_sub.jp2")
    tgt = os.path.join(SHARED_DATA, "tgt_S2A_20160529T153631_T33UUU_sub.jp2")
    if not (os.path.exists(ref) and os.path.exists(tgt)):
        pytest.skip("real Sentinel-2 pair not found in ../shared/data")
    return ref, tgt


def qgis_process_command():
    """The qgis_process binary (Debian 12's wrapper passes an option 3.22 rejects)."""
    return os.environ.get("SLIDEWATCH_QGIS_PROCESS", "/usr/bin/qgis_process.bin")


_QGIS_PROCESS_CONFIG = []


def _qgis_process_config_path():
    """A private QGIS settings folder in which the SlideWatch plugin is enabled.

    qgis_process (3.22) loads only the plugins enabled in its profile; pytest-qgis points
    QGIS_CUSTOM_CONFIG_PATH at an empty temporary folder, so the subprocess gets its own.
    """
    if not _QGIS_PROCESS_CONFIG:
        import tempfile

        sys.path.insert(0, os.path.join(ROOT, "scripts"))
        from enable_plugin import enable

        folder = tempfile.mkdtemp(prefix="slidewatch-qgis-process-")
        enable(os.path.join(folder, "profiles", "default"))
        _QGIS_PROCESS_CONFIG.append(folder)
    return _QGIS_PROCESS_CONFIG[0]


def qgis_process_env():
    env = dict(os.environ)
    env["QGIS_CUSTOM_CONFIG_PATH"] = _qgis_process_config_path()
    env["QT_QPA_PLATFORM"] = "offscreen"
    env["QGIS_PLUGINPATH"] = os.path.join(ROOT, ".build", "plugins")
    env["PYTHONPATH"] = os.pathsep.join(p for p in [os.path.join(ROOT, ".build", "plugins"),
                                                     env.get("PYTHONPATH", "")] if p)
    env.setdefault("NUMBA_CACHE_DIR", os.path.join(ROOT, ".cache", "numba"))
    return env


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def stack_folder(tmp_path_factory):
    """The small synthetic stack of the pipeline tests (8 dates, 128 x 128 px, seed 3),
    made once per test module."""
    from slidewatch.core.synth.synthetic import generate_stack
    folder = tmp_path_factory.mktemp("stack") / "images"
    generate_stack(str(folder), n_dates=8, shape=(128, 128), seed=3)
    return str(folder)


@pytest.fixture(scope="module")
def first_run(stack_folder, tmp_path_factory):
    """One pipeline run with defaults on ``stack_folder``: (output folder, result, log
    lines), once per test module."""
    from slidewatch.core.run.pipeline import PipelineParams, run_pipeline
    from slidewatch.core.progress import Progress
    out = str(tmp_path_factory.mktemp("run") / "results")
    lines = []
    result = run_pipeline(stack_folder, out, PipelineParams(), progress=Progress(log=lines.append))
    return out, result, lines
