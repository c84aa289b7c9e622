"""core/network/pairs_file.py: the one pairs.csv contract (columns, strict cell vocabulary, writer,
reader), and every reader of pairs.csv giving one file one meaning."""

import math
import os

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from slidewatch.core import input_checks as ic
from slidewatch.core.matching import pair_correlation as pc
from slidewatch.core.network import pairing as pr
from slidewatch.core.network import pairs_file as pf
from slidewatch.core import products as prod
from slidewatch.core.series import timeseries_io as tio
from slidewatch.core.errors import InputError
from slidewatch.ui import timeseries_reader as tr

HEADER = ",".join(prod.PAIRS_COLUMNS)
DATES = ("2020-01-01", "2020-01-11", "2020-01-21", "2020-01-31")


def _write(folder, lines, header=HEADER, name="pairs.csv"):
    os.makedirs(str(folder), exist_ok=True)
    path = os.path.join(str(folder), name)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write("".join(line + "\n" for line in [header] + list(lines)))
    return path


def _row(i, j, selected, ref=None, sec=None, baseline=None, score="0.5", reason="r"):
    return ",".join([DATES[i], DATES[j], ref if ref is not None else "img_%d.tif" % i,
                     sec if sec is not None else "img_%d.tif" % j,
                     str(10 * (j - i)) if baseline is None else baseline, score, selected,
                     reason])


def _images(folder):
    for k in range(len(DATES)):
        open(os.path.join(str(folder), "img_%d.tif" % k), "w").close()


def _pair_rasters(folder, keys):
    """Tiny pair rasters (SPEC bands and tags) for the (reference, secondary) ``keys``."""
    d = os.path.join(str(folder), prod.PAIRS_FOLDER)
    os.makedirs(d, exist_ok=True)
    for ref, sec in keys:
        with rasterio.open(os.path.join(d, prod.pair_file_name(ref, sec)), "w", driver="GTiff",
                           height=2, width=2, count=5, dtype="float32", crs="EPSG:32633",
                           transform=from_origin(500000, 5100000, 10, 10)) as dst:
            dst.write(np.zeros((5, 2, 2), np.float32))
            for b, name in enumerate(prod.PAIR_BANDS, start=1):
                dst.set_band_description(b, name)
            dst.update_tags(REFERENCE_DATE=ref, SECONDARY_DATE=sec)
    return d


# --- every entry point that reads pairs.csv: path -> the selected (reference, secondary)
def _validation(path):
    return [(r["reference_date"], r["secondary_date"])
            for r in ic.validate_pairs_csv(path, check_paths=False)]


def _correlation(path):
    return [(r["reference_date"], r["secondary_date"]) for r in pc.read_selected_pairs(path)]


def _correlate_pairs(path):
    # the Processing algorithm's core: checks the whole file before correlating anything
    pc.correlate_pairs_csv(path, os.path.join(os.path.dirname(path), "out"), window=16,
                           search=4)
    raise AssertionError("not reached in these tests")


def _pairing(path):
    return [p.key for p in pr.read_pairs_csv(path).selected]


def _timeseries(path):
    return [(str(r.reference_date), str(r.secondary_date))
            for r in tio.find_pair_rasters(path)]


def _timeseries_dates(path):
    tio.stack_dates_from_csv(path)
    return None


def _panel(path):
    return [(r["reference_date"], r["secondary_date"]) for r in tr.read_pair_table(path)
            if r["selected"]]


READERS = {"validation": _validation, "correlation": _correlation, "pairing": _pairing,
           "timeseries": _timeseries, "pair panel": _panel}
ENTRY_POINTS = dict(READERS, correlate_pairs=_correlate_pairs,
                    timeseries_dates=_timeseries_dates)


# ----------------------------------------------------------------------------- writer
def _selection(tmp_path):
    pairs = [pr.Pair(DATES[0], DATES[1], str(tmp_path / "img_0.tif"), str(tmp_path / "img_1.tif"),
                     10, score=0.123456789, selected=True, reason="selected: D-optimal gain 0.42",
                     predicted_quality=0.8765432, preview=dict(quality=0.5, good_fraction=1.0,
                                                               coherence=float("nan")),
                     weight=0.25, gain=float("inf"), stage="design", in_range=True,
                     features=None),
             pr.Pair(DATES[0], DATES[2], "img_0.tif", "sub dir/img, 2.tif", 20,
                     score=float("nan"), selected=False,
                     reason="rejected: baseline 20 d > 15 d", in_range=False)]
    return pr.PairSelection(dates=list(DATES[:3]), paths=[], pairs=pairs, strategy="optimal",
                            budget=1)


def test_writer_bytes(tmp_path):
    """The written form (unchanged by the move to pairs_file: outputs stay bit-identical)."""
    sel = _selection(tmp_path)
    text = pr.pairs_csv_text(sel)
    lines = text.split("\n")
    assert lines[0] == ",".join(pf.ALL_COLUMNS) and lines[0].startswith(HEADER + ",")
    assert lines[1] == ("2020-01-01,2020-01-11,%s,%s,10,0.123457,1,selected: D-optimal gain "
                        "0.42,0.876543,0.5,1,,,0.25,,design,1,,"
                        % (tmp_path / "img_0.tif", tmp_path / "img_1.tif"))
    assert lines[2] == ('2020-01-01,2020-01-21,img_0.tif,"sub dir/img, 2.tif",20,,0,'
                        'rejected: baseline 20 d > 15 d,,,,,,0,,,0,,')
    assert lines[3:] == [""] and "\r" not in text
    path = pr.write_pairs_csv(sel, str(tmp_path / "out" / prod.PAIRS_CSV))
    with open(path, "rb") as fh:
        assert fh.read() == text.encode("utf-8")
    # the module's own writer: same bytes from plain row dicts
    rows = [pr._csv_row(p) for p in sel.pairs]
    assert pf.pairs_text(rows) == text
    pf.write_pairs(str(tmp_path / "again.csv"), rows)
    assert (tmp_path / "again.csv").read_bytes() == text.encode("utf-8")


def test_round_trip_writer_reader(tmp_path):
    sel = _selection(tmp_path)
    path = pr.write_pairs_csv(sel, str(tmp_path / prod.PAIRS_CSV))
    rows = pf.read_pairs(path)
    assert [r.line for r in rows] == [2, 3]
    a, b = rows
    assert (a.reference_date, a.secondary_date, a.baseline_days, a.selected) == (
        DATES[0], DATES[1], 10, True)
    assert a.reference_path == str(tmp_path / "img_0.tif")
    assert math.isclose(a.score, 0.123457) and a.reason == "selected: D-optimal gain 0.42"
    assert a.extra == {"predicted_quality": "0.876543", "preview_quality": "0.5",
                       "preview_good_fraction": "1", "weight": "0.25", "stage": "design",
                       "in_range": "1"}
    assert not b.selected and math.isnan(b.score) and b.baseline_days == 20
    assert b.secondary_path == str(tmp_path / "sub dir" / "img, 2.tif")  # relative -> CSV folder
    assert b.reason == "rejected: baseline 20 d > 15 d"
    assert [r.key for r in pf.read_pairs(path, selected_only=True)] == [(DATES[0], DATES[1])]
    # the pairing reader gives back the pairs that were written
    back = pr.read_pairs_csv(path)
    assert back.problems == []
    assert [(p.key, p.selected, p.reason, p.baseline_days) for p in back.pairs] == [
        (p.key, p.selected, p.reason, p.baseline_days) for p in sel.pairs]
    assert back.pairs[0].predicted_quality == 0.876543
    # written again from what was read: the same selected rows and decisions
    again = pr.write_pairs_csv(pr.PairSelection(list(DATES[:3]), [], back.pairs, "optimal", 1),
                               str(tmp_path / "again.csv"))
    assert [(r.key, r.selected, r.reason) for r in pf.read_pairs(again)] == [
        (r.key, r.selected, r.reason) for r in rows]


# ----------------------------------------------------------------------------- vocabulary
@pytest.mark.parametrize("value", ["t", "yes", "", "y", "selected", "2", "no"])
@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_bad_selected_refused_by_every_entry_point(tmp_path, entry, value):
    _images(tmp_path)
    _pair_rasters(tmp_path, [(DATES[0], DATES[1]), (DATES[1], DATES[2]), (DATES[2], DATES[3])])
    path = _write(tmp_path, [_row(0, 1, "1"), _row(1, 2, value), _row(2, 3, "0")])
    with pytest.raises(InputError) as info:
        ENTRY_POINTS[entry](path)
    msg = str(info.value)
    assert path in msg and "1 bad row(s)" in msg, msg
    assert "line 3: selected must be 1 or 0 (or true/false), not %r" % value in msg, msg
    assert "line 2" not in msg and "line 4" not in msg
    assert "Fix or delete these rows" in msg
    assert not os.path.exists(os.path.join(str(tmp_path), "out", prod.PAIRS_FOLDER))


def test_every_bad_row_is_listed(tmp_path):
    path = _write(tmp_path, [_row(0, 1, "t"), _row(1, 2, "1"), _row(2, 3, "yes")])
    for read in READERS.values():
        with pytest.raises(InputError) as info:
            read(path)
        msg = str(info.value)
        assert "2 bad row(s)" in msg and "line 2: selected" in msg and "line 4: selected" in msg
        assert "'t'" in msg and "'yes'" in msg


@pytest.mark.parametrize("yes,no", [("1", "0"), ("true", "false"), ("TRUE", "FALSE"),
                                    ("True", "False"), (" 1 ", " 0 "), ("tRuE", "fAlSe")])
def test_vocabulary_accepted_and_one_meaning_everywhere(tmp_path, yes, no):
    _images(tmp_path)
    rows = [_row(0, 1, yes), _row(0, 2, no), _row(1, 2, yes), _row(2, 3, yes), _row(1, 3, no)]
    path = _write(tmp_path, rows)
    keys = [(DATES[i], DATES[j]) for i, j in ((0, 1), (0, 2), (1, 2), (2, 3), (1, 3))]
    _pair_rasters(tmp_path, keys)  # a raster for every row, selected or not
    want = [keys[0], keys[2], keys[3]]
    for name, read in READERS.items():
        assert read(path) == want, name
    assert [r.selected for r in pf.read_pairs(path)] == [True, False, True, True, False]
    # the panel marks exactly those rasters selected
    flags = {(p["reference_date"], p["secondary_date"]): p["selected"]
             for p in tr.list_pairs(tr.SeriesSources(
                 pairs_dir=os.path.join(str(tmp_path), prod.PAIRS_FOLDER), pairs_csv=path))}
    assert sorted(k for k, v in flags.items() if v) == sorted(want)
    # every date of the file is a date of the stack, selected or not
    assert [str(d) for d in tio.stack_dates_from_csv(path)] == list(DATES)


def test_parse_selected_is_products_parse_bool():
    for text in ("1", "true", "TRUE", " True "):
        assert pf.parse_selected(text) is True
    for text in ("0", "false", "FALSE"):
        assert pf.parse_selected(text) is False
    for text in ("t", "f", "yes", "no", "", None, "1.0", "selected"):
        with pytest.raises(pf.CellProblem) as info:
            pf.parse_selected(text)
        assert info.value.column == "selected" and prod.BOOL_WORDS_TEXT in info.value.text
        with pytest.raises(ValueError):
            prod.parse_bool(text)


# ----------------------------------------------------------------------------- dates
def test_dates_iso_or_compact(tmp_path):
    path = _write(tmp_path, ["20200101,2020-01-11,a.tif,b.tif,,,1,x",
                             " 2020-01-11 , 20200121 ,a.tif,b.tif,,,true,x"])
    rows = pf.read_pairs(path)
    assert [r.key for r in rows] == [(DATES[0], DATES[1]), (DATES[1], DATES[2])]
    assert [r.baseline_days for r in rows] == [10, 10]  # empty: days between the dates
    assert _pairing(path) == _correlation(path) == _validation(path) == [r.key for r in rows]
    assert _panel(path) == [r.key for r in rows]


@pytest.mark.parametrize("cell,column,text", [
    ("2020-02-30,2020-03-01", "reference_date", "reference_date '2020-02-30' is not a date"),
    ("2020/01/01,2020-03-01", "reference_date", "reference_date '2020/01/01' is not a date"),
    ("2020-01-01,2020-03-01T10:00", "secondary_date",
     "secondary_date '2020-03-01T10:00' is not a date"),
    ("2020-01-01,", "secondary_date", "secondary_date '' is not a date"),
    ("2020-03-01,2020-01-01", "secondary_date",
     "secondary_date '2020-01-01' is not after reference_date 2020-03-01"),
    ("2020-03-01,2020-03-01", "secondary_date",
     "secondary_date '2020-03-01' is not after reference_date 2020-03-01"),
])
def test_bad_dates(tmp_path, cell, column, text):
    path = _write(tmp_path, [_row(0, 1, "1"), cell + ",a.tif,b.tif,10,0.5,0,x"])
    for read in READERS.values():
        with pytest.raises(InputError) as info:
            read(path)
        msg = str(info.value)
        assert path in msg and "line 3: " + text in msg, msg
        assert "write" in msg  # says what to write instead
    if "not after" not in text:
        with pytest.raises(pf.CellProblem) as info:
            pf.parse_date(cell.split(",")[0 if column == "reference_date" else 1], column)
        assert info.value.column == column and info.value.text.startswith(text)


@pytest.mark.parametrize("line,text", [
    ("2020-01-01,2020-01-11,a.tif,b.tif,sixty,0.5,1,x", "baseline_days 'sixty' is not a number"),
    ("2020-01-01,2020-01-11,a.tif,b.tif,nan,0.5,1,x", "baseline_days 'nan' is not a number"),
    ("2020-01-01,2020-01-11,a.tif,b.tif,10,high,1,x", "score 'high' is not a number"),
    ("2020-01-01,2020-01-11,a.tif,b.tif,10,0.5,1,x,extra", "1 value(s) more than columns"),
])
def test_bad_numbers_and_rows(tmp_path, line, text):
    path = _write(tmp_path, [line])
    for read in READERS.values():
        with pytest.raises(InputError) as info:
            read(path)
        assert "line 2: " + text in str(info.value), str(info.value)


def test_extra_columns_checked_with_the_same_vocabulary(tmp_path):
    head = HEADER + ",predicted_quality,in_range,note"
    path = _write(tmp_path, ["2020-01-01,2020-01-11,a.tif,b.tif,10,0.5,1,x,0.7,1,free text"],
                  header=head)
    (row,) = pf.read_pairs(path)
    assert row.extra == {"predicted_quality": "0.7", "in_range": "1", "note": "free text"}
    assert pr.read_pairs_csv(path).pairs[0].predicted_quality == 0.7
    path = _write(tmp_path, ["2020-01-01,2020-01-11,a.tif,b.tif,10,0.5,1,x,0.7,yes,"],
                  header=head)
    with pytest.raises(InputError, match=r"line 2: in_range must be 1 or 0 \(or true/false\), "
                                         r"not 'yes'"):
        pf.read_pairs(path)


def test_duplicate_pair(tmp_path):
    path = _write(tmp_path, [_row(0, 1, "1"), _row(1, 2, "1"), "20200101,20200111,a,b,,,0,x"])
    for read in READERS.values():
        with pytest.raises(InputError) as info:
            read(path)
        assert "line 4: pair 2020-01-01 / 2020-01-11 already listed on line 2" in str(info.value)


def test_blank_lines_and_bom(tmp_path):
    path = _write(tmp_path, ["", ",,,,,,,", _row(0, 1, "1")])
    assert [r.line for r in pf.read_pairs(path)] == [4]
    with open(path, "rb") as fh:
        data = fh.read()
    with open(path, "wb") as fh:
        fh.write(b"\xef\xbb\xbf" + data)  # saved by a spreadsheet
    assert [r.key for r in pf.read_pairs(path)] == [(DATES[0], DATES[1])]


# ----------------------------------------------------------------------------- paths
def test_relative_paths_against_the_csv_folder(tmp_path, monkeypatch):
    folder = tmp_path / "project" / "run"
    os.makedirs(folder / "images")
    for name in ("a.tif", "b.tif"):
        open(folder / "images" / name, "w").close()
    open(tmp_path / "project" / "c.tif", "w").close()
    absolute = str(tmp_path / "project" / "c.tif")
    path = _write(folder, [_row(0, 1, "1", ref="images/a.tif", sec=" images/b.tif "),
                           _row(1, 2, "1", ref="images/../images/b.tif", sec="../c.tif"),
                           _row(2, 3, "1", ref=absolute, sec=absolute)])
    monkeypatch.chdir(tmp_path)  # not the CSV's folder
    want = [(str(folder / "images" / "a.tif"), str(folder / "images" / "b.tif")),
            (str(folder / "images" / "b.tif"), absolute), (absolute, absolute)]
    assert [(r.reference_path, r.secondary_path) for r in pf.read_pairs(path)] == want
    assert [(r["reference_path"], r["secondary_path"]) for r in pc.read_selected_pairs(path)] \
        == want
    assert [(r["reference_path"], r["secondary_path"]) for r in ic.validate_pairs_csv(path)] \
        == want  # and they exist
    assert [(p.reference_path, p.secondary_path) for p in pr.read_pairs_csv(path).pairs] == want
    assert [(r["reference_path"], r["secondary_path"]) for r in tr.read_pair_table(path)] == want
    assert pf.resolve_path("", str(folder)) == ""


def test_image_paths_of_selected_rows(tmp_path):
    _images(tmp_path)
    path = _write(tmp_path, [_row(0, 1, "1"), _row(1, 2, "0", ref="", sec=""),
                             _row(2, 3, "1", sec="missing.tif")])
    # not needed by the pairing, the inversion or the panel
    assert len(pf.read_pairs(path)) == 3 and len(_pairing(path)) == 2
    with pytest.raises(InputError) as info:
        ic.validate_pairs_csv(path)
    msg = str(info.value)
    assert "1 bad row(s)" in msg and "line 4: secondary_path '%s' does not exist" % (
        tmp_path / "missing.tif") in msg
    assert len(ic.validate_pairs_csv(path, check_paths=False)) == 2
    path = _write(tmp_path, [_row(0, 1, "1"), _row(1, 2, "1", ref="")])
    for read in (_correlation, _validation):
        with pytest.raises(InputError, match="line 3: reference_path is empty: write the path"):
            read(path)


# ----------------------------------------------------------------------------- columns
@pytest.mark.parametrize("column", pf.REQUIRED_COLUMNS)
def test_missing_column(tmp_path, column):
    cols = [c for c in prod.PAIRS_COLUMNS if c != column]
    values = dict(zip(prod.PAIRS_COLUMNS, [DATES[0], DATES[1], "a.tif", "b.tif", "10", "0.5",
                                           "1", "x"]))
    path = _write(tmp_path, [",".join(values[c] for c in cols)], header=",".join(cols))
    _pair_rasters(tmp_path, [(DATES[0], DATES[1])])
    for name, read in ENTRY_POINTS.items():
        with pytest.raises(InputError) as info:
            read(path)
        msg = str(info.value)
        assert path in msg and "column(s) %s missing" % column in msg, (name, msg)
        assert "Restore the header line" in msg


def test_optional_columns_may_be_absent(tmp_path):
    path = _write(tmp_path, ["2020-01-01,2020-01-21,a.tif,b.tif,1"],
                  header="reference_date,secondary_date,reference_path,secondary_path,selected")
    (row,) = pf.read_pairs(path)
    assert row.baseline_days == 20 and math.isnan(row.score) and row.reason == ""
    assert _pairing(path) == _panel(path) == [(DATES[0], DATES[2])]


def test_missing_file(tmp_path):
    path = str(tmp_path / "nowhere" / "pairs.csv")
    for name, read in dict(READERS, timeseries=_timeseries_dates).items():
        with pytest.raises(InputError, match="Pairs file '%s' does not exist" % path):
            read(path)


def test_header_names_with_blanks(tmp_path):
    path = _write(tmp_path, [_row(0, 1, "1")], header=", ".join(prod.PAIRS_COLUMNS))
    assert [r.key for r in pf.read_pairs(path)] == [(DATES[0], DATES[1])]


def test_contract_columns():
    assert pf.COLUMNS == prod.PAIRS_COLUMNS
    assert pf.ALL_COLUMNS[:8] == prod.PAIRS_COLUMNS and pr.EXTRA_COLUMNS == pf.EXTRA_COLUMNS
    assert ic.PAIRS_REQUIRED_COLUMNS == pf.REQUIRED_COLUMNS
    assert set(pf.REQUIRED_COLUMNS) <= set(prod.PAIRS_COLUMNS)
