"""Issue 16: one source of defaults. The correlation parameter object gives the dict API
its defaults, the Processing dialogs take defaults / bounds / menus from the parameter
objects, and the pipeline's parameter hashes come from the checked objects (a value
given explicitly and the same value left to its default hash alike)."""

import dataclasses

import pytest

from slidewatch.core.matching import correlation as C
from slidewatch.core.matching.correlation_params import CorrelationParams as CP
from slidewatch.core.detect.detection import DetectionParams
from slidewatch.core.errors import ParameterError
from slidewatch.core.run.pipeline import PipelineParams, params_hash
from slidewatch.core.series.quality_layers import DEFAULT_NCC_THRESHOLD
from slidewatch.core.synth.synthetic import SyntheticStackParams

STEPS = ("catalog", "grid", "pairing", "correlation", "inversion", "quality", "detection",
         "overview")


def test_correlation_defaults_come_from_the_object():
    assert C.DEFAULTS == CP.defaults()
    assert list(C.DEFAULTS) == CP.option_names()
    p = C.normalize_params()
    assert p == CP.from_options().as_dict()
    assert (p["window"], p["step"], p["search"]) == ([CP.window] * 2, CP.step, CP.search)
    for name in CP.option_names():
        assert name in CP.HELP
    for name, (lo, hi) in CP.BOUNDS.items():
        assert name in CP.UNITS and (lo is None or hi is None or lo < hi)
    assert set(CP.CHOICES["subpixel"]) == set(C.SUBPIXEL_MODES)
    assert set(CP.CHOICES["interpolation"]) == set(C.INTERPOLATIONS)
    # the object is frozen and checked: replace() gives a checked copy
    obj = CP.from_options(window=(24, 40), min_ncc=0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        obj.min_ncc = 0.2
    assert obj.window == (24, 40) and obj.replace(min_ncc=0.4).min_ncc == 0.4
    with pytest.raises(ParameterError, match="min_ncc"):
        obj.replace(min_ncc=1.5)
    with pytest.raises(ParameterError, match="wide_sigma must be in \\[0, 10\\]"):
        CP.from_options(wide_sigma=11)
    with pytest.raises(ParameterError, match="Unknown correlation option"):
        CP.from_options(windw=3)


def test_pipeline_hashes_are_canonical():
    d = PipelineParams()
    explicit = PipelineParams(
        correlation_options={"min_ncc": 0.3, "subpixel": "iterative", "max_sigma": 0},
        detection_options={"z_seed": 5, "min_area_m2": 10000, "min_score": 0.45},
        inversion_options={"min_obs": 3, "lam2": 0}, pairing_options={"min_quality": 0.03})
    for step in STEPS:
        assert params_hash(explicit.step_params(step)) == params_hash(d.step_params(step)), step
    changed = PipelineParams(detection_options={"z_seed": 6.0},
                             correlation_options={"min_ncc": 0.4})
    for step in ("detection", "correlation"):
        assert params_hash(changed.step_params(step)) != params_hash(d.step_params(step))
    assert d.quality_ncc_threshold == DEFAULT_NCC_THRESHOLD
    assert (d.window, d.step, d.search) == (CP.window, CP.step, CP.search)
    with pytest.raises(ParameterError, match="Unknown detection option"):
        PipelineParams(detection_options={"zseed": 1}).step_params("detection")


def test_processing_pipeline_defaults_hash_like_python(provider, tmp_path):
    """The pipeline algorithm with its default values gives the same parameter hashes as
    PipelineParams() from Python, without dropping values equal to the defaults."""
    from qgis.core import QgsApplication, QgsProcessingContext
    alg = QgsApplication.processingRegistry().createAlgorithmById("slidewatch:pipeline")
    p = alg.params_from({"INPUT": str(tmp_path), "OUTPUT_FOLDER": str(tmp_path / "out")},
                        QgsProcessingContext())
    assert p.correlation_options["min_ncc"] == CP.min_ncc          # passed, not stripped
    assert p.detection_options["z_seed"] == DetectionParams.z_seed
    d = PipelineParams()
    for step in STEPS:
        assert params_hash(p.step_params(step)) == params_hash(d.step_params(step)), step
    for name, key in (("Z_SEED", "z_seed"), ("MIN_SCORE", "min_score")):
        definition = alg.parameterDefinition(name)
        assert definition.defaultValue() == getattr(DetectionParams, key)
    ncc = alg.parameterDefinition("MIN_NCC")
    assert (ncc.defaultValue(), ncc.minimum(), ncc.maximum()) == (CP.min_ncc, -1.0, 1.0)


def test_processing_dialogs_take_defaults_and_bounds_from_the_objects(provider):
    from qgis.core import QgsApplication
    reg = QgsApplication.processingRegistry()
    for alg_id in ("slidewatch:correlate_pair", "slidewatch:correlate_pairs"):
        alg = reg.createAlgorithmById(alg_id)
        for name, key in (("WINDOW", "window"), ("STEP", "step"), ("SEARCH", "search")):
            definition = alg.parameterDefinition(name)
            assert definition.defaultValue() == getattr(CP, key)
            assert definition.minimum() == CP.BOUNDS[key][0]
        nodata = alg.parameterDefinition("MAX_NODATA")
        assert nodata.defaultValue() == CP.max_nodata
        assert CP.BOUNDS["max_nodata"][0] == nodata.minimum() < nodata.maximum() < 1.0
        sub = alg.parameterDefinition("SUBPIXEL")
        assert sub.options()[sub.defaultValue()] == CP.subpixel
        pre = alg.parameterDefinition("PREFILTER")
        assert pre.options()[pre.defaultValue()] == CP.prefilter
        assert "default %s" % CP.prefilter in alg.shortHelpString()
    det = reg.createAlgorithmById("slidewatch:detect")
    for name in ("z_seed", "z_grow", "min_area_m2", "min_score", "smooth_px"):
        definition = det.parameterDefinition(name.upper() if name != "smooth_px"
                                             else "SMOOTH_PX")
        assert definition.defaultValue() == getattr(DetectionParams, name)
        assert definition.minimum() >= DetectionParams.BOUNDS[name][0]
    syn = reg.createAlgorithmById("slidewatch:synthetic_stack")
    s = SyntheticStackParams()
    assert syn.parameterDefinition("SEED").defaultValue() == s.seed
    assert syn.parameterDefinition("CLOUDY_FRACTION").defaultValue() == s.cloudy_date_fraction
    assert syn.parameterDefinition("SIZE").minimum() == SyntheticStackParams.BOUNDS["shape"][0]
