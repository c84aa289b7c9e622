"""The plugin in real QGIS: loads, registers its provider and algorithms, unloads clean."""

from qgis.core import QgsApplication

EXPECTED_ALGORITHMS = {
    "synthetic_stack", "catalog", "select_pairs", "correlate_pair", "correlate_pairs",
    "invert_timeseries", "detect", "pipeline",
    # issue 17: imports, quality layers, exports, accuracy assessment
    "import_offsets", "quality_layers", "export", "accuracy_sampling", "accuracy_estimate",
}


def _provider():
    return QgsApplication.processingRegistry().providerById("slidewatch")


def test_class_factory_and_metadata(qgis_iface):
    import configparser
    import os

    import slidewatch

    plugin = slidewatch.classFactory(qgis_iface)
    assert type(plugin).__name__ == "SlideWatchPlugin"
    meta = configparser.ConfigParser()
    meta.read(os.path.join(os.path.dirname(slidewatch.__file__), "metadata.txt"))
    general = meta["general"]
    assert general["name"] == "SlideWatch"
    assert general["qgisMinimumVersion"] == "3.22"
    assert general["hasProcessingProvider"] == "yes"
    assert general["supportsQt6"] == "True"
    for key in ("description", "about", "tags", "homepage", "tracker", "repository", "icon"):
        assert general[key].strip(), key
    assert os.path.exists(os.path.join(os.path.dirname(slidewatch.__file__), general["icon"]))


def test_load_and_unload_twice_leaves_nothing(recording_iface, qgis_processing):
    import slidewatch

    assert _provider() is None
    n_providers = len(QgsApplication.processingRegistry().providers())
    for _round in range(2):
        plugin = slidewatch.classFactory(recording_iface)
        plugin.initGui()
        provider = _provider()
        assert provider is not None
        names = {alg.name() for alg in provider.algorithms()}
        assert EXPECTED_ALGORITHMS <= names, EXPECTED_ALGORITHMS - names
        assert not provider.load_errors
        assert recording_iface.menu_actions
        assert len(QgsApplication.processingRegistry().providers()) == n_providers + 1
        plugin.unload()
        assert _provider() is None
        assert recording_iface.menu_actions == []
        assert recording_iface.docks == []
        assert plugin.actions == [] and plugin.toolbar is None
        assert len(QgsApplication.processingRegistry().providers()) == n_providers


def test_init_processing_alone_registers_provider(qgis_iface):
    """What qgis_process calls: initProcessing without initGui."""
    from slidewatch.plugin import SlideWatchPlugin

    plugin = SlideWatchPlugin(qgis_iface)
    plugin.initProcessing()
    plugin.initProcessing()  # idempotent
    try:
        assert _provider() is not None
        alg = QgsApplication.processingRegistry().algorithmById("slidewatch:synthetic_stack")
        assert alg is not None and alg.group()
        assert alg.shortHelpString()
    finally:
        plugin.unload()
    assert _provider() is None
