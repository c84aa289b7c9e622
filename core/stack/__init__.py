"""The image stack: dates from names and tags, catalog.csv, common grid, perturbed share
per date, the analyst's stable-area mask."""
