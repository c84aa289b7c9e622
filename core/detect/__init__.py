"""Detection of moving ground: noise model, bias removal, window footprints, evidence and
objects, acceleration onset, detections.gpkg, and learning from the analyst's
validations."""
