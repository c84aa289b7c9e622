"""The product contract is defined once (issue 16): every SPEC file name, pair / velocity
band name and the length of the year appear as a literal only in core/products.py; the
other modules of the plugin import them."""

import io
import os
import tokenize

import pytest

from slidewatch.core import products as prod

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("core", "processing_provider", "ui")
HOME = os.path.join(ROOT, "core", "products.py")

#: band names that are also ordinary words of other tables (a detection's status, a
#: sample's ncc column): not checked
GENERIC = ("ncc", "snr", "status", "n_obs", "rmse_m")
NAMES = (prod.CATALOG_CSV, prod.PAIRS_CSV, prod.TS_EAST_TIF, prod.TS_NORTH_TIF,
         prod.VELOCITY_TIF, prod.NETWORK_FLAGS_TIF, prod.DETECTIONS_GPKG,
         prod.PROJECT_QGZ, prod.VELOCITY_ARROWS_GPKG) + tuple(
             b for b in prod.PAIR_BANDS + prod.VELOCITY_BANDS if b not in GENERIC)


def _sources():
    """Every module of the plugin's packages, subpackages included (core/stack/, ...)."""
    for pkg in PACKAGES:
        for folder, dirs, files in os.walk(os.path.join(ROOT, pkg)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(files):
                path = os.path.join(folder, name)
                if name.endswith(".py") and path != HOME:
                    yield path
    for name in ("plugin.py", "__init__.py"):
        yield os.path.join(ROOT, name)


def test_sources_include_the_subpackages():
    rel = {os.path.relpath(p, ROOT) for p in _sources()}
    assert os.path.join("core", "run", "pipeline.py") in rel
    assert os.path.join("core", "series", "timeseries_io.py") in rel
    assert os.path.join("core", "products.py") not in rel


def _literals(path):
    """(kind, value, line) of the string and number tokens of a module (docstrings and
    comments are not literals of a name: a string token equal to the quoted name is)."""
    with open(path, encoding="utf-8") as fh:
        src = fh.read()
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.STRING:
            yield "str", tok.string.strip("rbuRBU").strip("'\""), tok.start[0]
        elif tok.type == tokenize.NUMBER:
            yield "num", tok.string, tok.start[0]


def test_the_contract_home_defines_them():
    assert prod.DAYS_PER_YEAR == 365.25
    assert len(set(NAMES)) == len(NAMES)


#: literals still restated, per module (a ratchet: a module may lose them, never gain).
#: Empty since the last two modules (core/series/quality_layers.py, project_writer.py) import
#: the constants: issue 16's target, no literal of the contract outside products.py.
STILL_RESTATED = {}


def test_each_spec_name_and_the_year_are_defined_once():
    found = {}
    for path in _sources():
        rel = os.path.relpath(path, ROOT)
        for kind, value, line in _literals(path):
            if (kind == "str" and value in NAMES) or (
                    kind == "num" and value in ("365.25", "365.2425")):
                found.setdefault(rel, []).append("%s:%d %s" % (rel, line, value))
    over = {rel: hits for rel, hits in found.items()
            if len(hits) > STILL_RESTATED.get(rel, 0)}
    assert not over, ("new literal(s) of the product contract outside core/products.py "
                      "(import them from slidewatch.core.products):\n"
                      + "\n".join(h for hits in over.values() for h in hits))
