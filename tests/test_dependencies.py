"""A missing or broken Python module: the plugin still loads and says what to install."""

import sys

import pytest
from qgis.core import QgsApplication

from slidewatch.core import deps


@pytest.fixture()
def numba_missing(monkeypatch):
    """Make `import numba` fail as it would on a machine without numba."""
    deps.clear_cache()
    for name in [m for m in sys.modules if m == "numba" or m.startswith("numba.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba -> ImportError
    yield
    deps.clear_cache()


def test_nothing_missing_in_the_test_environment():
    deps.clear_cache()
    assert deps.missing("core") == []
    assert deps.describe("core") == ""


def test_missing_module_is_named_with_its_install_command(numba_missing):
    problems = deps.missing("core")
    assert len(problems) == 1 and problems[0].startswith("numba")
    text = deps.describe("core")
    assert "numba" in text
    assert "pip install" in text and "numba==" in text and "numpy<2" in text
    assert "make install" in text


def test_simulated_missing_via_environment(monkeypatch):
    deps.clear_cache()
    monkeypatch.setenv(deps.SIMULATE_MISSING_ENV, "rasterio,pyqtgraph")
    assert any(p.startswith("rasterio") for p in deps.missing("core"))
    assert any(p.startswith("pyqtgraph") for p in deps.missing("ui"))
    assert "python3-rasterio" in deps.describe("core")


def test_too_new_numpy_is_reported(monkeypatch):
    import numpy

    deps.clear_cache()
    monkeypatch.setattr(numpy, "__version__", "2.1.0")
    assert any("too new" in p for p in deps.missing("core"))
    deps.clear_cache()


def test_plugin_loads_reports_and_blocks_algorithms(numba_missing, recording_iface,
                                                    qgis_processing):
    import slidewatch

    plugin = slidewatch.classFactory(recording_iface)
    plugin.initGui()
    try:
        provider = QgsApplication.processingRegistry().providerById("slidewatch")
        assert provider is not None
        assert not provider.load_errors, provider.load_errors
        assert len(provider.algorithms()) >= 1
        message = plugin.report_missing_dependencies()
        assert message and "numba" in message and "pip install" in message
        for alg in provider.algorithms():
            if alg.NEEDS == "core":
                ok, why = alg.canExecute()
                assert not ok and "numba" in why
                assert "numba" in alg.shortHelpString()
    finally:
        plugin.unload()
