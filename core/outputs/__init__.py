"""Exchange with other tools and people: exports (InSAR Explorer, CSV, GeoPackage,
reports), import of other correlators' offsets, design-based accuracy assessment of the
detection map."""
