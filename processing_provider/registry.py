"""The algorithms the provider registers, as "module:Class" in this package.

Modules are imported lazily by the provider, one by one, so that an algorithm whose
module fails to import is reported (log) without hiding the others.
"""

ALGORITHMS = [
    "alg_catalog:CatalogAlgorithm",
    "alg_pairing:SelectPairsAlgorithm",
    "alg_detect:DetectAlgorithm",
    "alg_synthetic_stack:SyntheticStackAlgorithm",
    "alg_pipeline:PipelineAlgorithm",
    "alg_correlate_pair:CorrelatePairAlgorithm",
    "alg_correlate_pairs:CorrelatePairsAlgorithm",
    "alg_invert:InvertTimeseriesAlgorithm",
    "alg_import_offsets:ImportOffsetsAlgorithm",
    "alg_quality_layers:QualityLayersAlgorithm",
    "alg_export:ExportAlgorithm",
    "alg_accuracy_sampling:AccuracySamplingAlgorithm",
    "alg_accuracy_estimate:AccuracyEstimateAlgorithm",
]
