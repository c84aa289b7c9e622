"""``pairs.csv``: the one reader and the one writer of the pairs file (SPEC).

Every module that reads or writes ``pairs.csv`` (pair selection, correlation of the
selected pairs, inversion, the input checks, the QGIS panels) goes through this module,
so that one file has one meaning everywhere: a row that is selected for the correlation
is selected for the inversion and in the pair-network panel, and a cell that is not in
the vocabulary below is an error everywhere, never skipped by one reader and guessed by
another.

Columns
-------
:data:`COLUMNS` (SPEC, in this order): ``reference_date, secondary_date,
reference_path, secondary_path, baseline_days, score, selected, reason``, then the
pair selection's :data:`EXTRA_COLUMNS` (any further column is kept as text).
:data:`REQUIRED_COLUMNS` must be in the header line; ``baseline_days``, ``score``,
``reason`` and the extra columns may be absent.

Cells (blanks around a cell are ignored)
----------------------------------------
- ``reference_date``, ``secondary_date``: ``YYYY-MM-DD`` or ``YYYYMMDD``, a real calendar
  date; the secondary date after the reference date. Read back as ISO ``YYYY-MM-DD``.
- ``reference_path``, ``secondary_path``: absolute, or relative to the folder of the
  CSV; may be empty where no image is needed (the correlation needs them for the
  selected rows: :func:`image_path_problems`).
- ``selected`` (and ``in_range``): :func:`.products.parse_bool` -- ``1``/``0`` or
  ``true``/``false`` (any case). ``t``, ``yes``, ``y``, an empty cell, ... are refused.
- ``baseline_days``: a number (days) or empty (then the days between the two dates);
  ``score`` and the numeric extra columns: a number or empty (NaN).
- ``reason``, ``stage``: free text.
- Rows whose cells are all empty are ignored; a pair listed twice is an error.

Reading
-------
:func:`read_pairs` (strict): every row as a :class:`PairRow`; on any bad cell an
:class:`~.errors.InputError` listing every bad row with its line number, the column,
the rejected value and what to write instead. :func:`scan_pairs` is the same pass
returning the problems instead of raising (for the row-by-row checks of
:func:`.input_checks.validate_pairs_csv`, which adds the image-path checks).

Writing
-------
:func:`pairs_text` / :func:`write_pairs` (atomic): the header, then one line per row,
cells formatted by :func:`format_cell` (``selected`` as ``1``/``0``, numbers with 6
significant digits, an empty cell for NaN/None).
"""

import csv
import datetime as _dt
import io
import math
import os
from dataclasses import dataclass, field

from ..errors import InputError
from ..products import PAIRS_COLUMNS, format_bool, parse_bool

__all__ = ["COLUMNS", "REQUIRED_COLUMNS", "EXTRA_COLUMNS", "ALL_COLUMNS", "BOOL_COLUMNS",
           "NUMBER_COLUMNS", "DATE_FORMATS_TEXT", "MAX_LISTED", "CellProblem", "PairRow",
           "parse_date", "parse_selected", "parse_number", "resolve_path", "parse_row",
           "scan_pairs", "read_pairs", "read_selected", "image_path_problems",
           "bad_rows_message", "format_number", "format_cell", "pairs_text", "write_pairs"]

#: SPEC columns, in the written order
COLUMNS = tuple(PAIRS_COLUMNS)
#: columns a pairs file must have (the others may be absent)
REQUIRED_COLUMNS = ("reference_date", "secondary_date", "reference_path", "secondary_path",
                    "selected")
#: columns the pair selection writes after the SPEC ones (core/network/pairing.py)
EXTRA_COLUMNS = ("predicted_quality", "preview_quality", "preview_good_fraction",
                 "preview_coherence", "preview_ncc_median", "weight", "gain", "stage",
                 "in_range", "cloud_max", "season_diff")
ALL_COLUMNS = COLUMNS + EXTRA_COLUMNS
#: boolean cells (the vocabulary of :func:`.products.parse_bool`)
BOOL_COLUMNS = ("selected", "in_range")
#: numeric cells (empty = NaN)
NUMBER_COLUMNS = ("score", "predicted_quality", "preview_quality", "preview_good_fraction",
                  "preview_coherence", "preview_ncc_median", "weight", "gain", "cloud_max",
                  "season_diff")
DATE_FORMATS_TEXT = "YYYY-MM-DD (or YYYYMMDD)"
#: at most this many bad rows are spelled out in one message (the rest are counted)
MAX_LISTED = 10

_FIX = "Fix or delete these rows (or re-run the pair selection to regenerate the file)."


class CellProblem(ValueError):
    """One bad cell (or row): ``column`` and ``value`` concerned (None for a row
    problem) and ``text``, which names them and says what to write instead."""

    def __init__(self, text, column=None, value=None):
        super().__init__(text)
        self.text, self.column, self.value = text, column, value


# ----------------------------------------------------------------------------- cells

def parse_date(value, column="date"):
    """:class:`datetime.date` of a ``YYYY-MM-DD`` or ``YYYYMMDD`` cell (a real calendar
    date, blanks stripped); :class:`CellProblem` otherwise."""
    text = "" if value is None else str(value).strip()
    for fmt, n in (("%Y-%m-%d", 10), ("%Y%m%d", 8)):
        if len(text) == n:
            try:
                return _dt.datetime.strptime(text, fmt).date()
            except ValueError:
                break
    raise CellProblem("%s %r is not a date: write %s" % (column, text, DATE_FORMATS_TEXT),
                      column, value)


def parse_selected(value, column="selected"):
    """True/False of a boolean cell through :func:`.products.parse_bool` (1/0/true/false);
    :class:`CellProblem` naming the column and the value otherwise."""
    try:
        return parse_bool(value)
    except ValueError as exc:
        raise CellProblem("%s %s" % (column, exc), column, value) from None


def parse_number(value, column, what="a number"):
    """float of a numeric cell, NaN when empty; :class:`CellProblem` otherwise."""
    text = "" if value is None else str(value).strip()
    if not text:
        return float("nan")
    try:
        return float(text)
    except ValueError:
        raise CellProblem("%s %r is not a number: write %s (or leave it empty)"
                          % (column, text, what), column, value) from None


def resolve_path(value, folder):
    """Absolute path of a path cell: as is when absolute, else relative to ``folder``
    (the CSV's folder); "" for an empty cell."""
    text = "" if value is None else str(value).strip()
    if not text:
        return ""
    return text if os.path.isabs(text) else os.path.normpath(os.path.join(folder, text))


# ----------------------------------------------------------------------------- rows

@dataclass
class PairRow:
    """One row of ``pairs.csv``, parsed. ``extra``: the non-empty cells of the columns
    after the SPEC ones, as written (text); ``cells``: every cell of the row as written
    (column -> text)."""

    line: int
    reference_date: str
    secondary_date: str
    reference_path: str = ""
    secondary_path: str = ""
    baseline_days: int = 0
    score: float = float("nan")
    selected: bool = False
    reason: str = ""
    extra: dict = field(default_factory=dict)
    cells: dict = field(default_factory=dict)

    @property
    def key(self):
        return (self.reference_date, self.secondary_date)


def parse_row(cells, line, folder):
    """(:class:`PairRow`, list of :class:`CellProblem`) of one row (``cells``: column ->
    text), every bad cell listed. The row is good only when the list is empty; otherwise
    it holds what could be read (a bad date as its text, a bad ``selected`` as False),
    for the row checks of :func:`scan_pairs` only."""
    problems = []

    def cell(column):
        v = cells.get(column)
        return "" if v is None else str(v).strip()

    def take(fn, *args):
        try:
            return fn(*args)
        except CellProblem as exc:
            problems.append(exc)
            return None

    d1 = take(parse_date, cell("reference_date"), "reference_date")
    d2 = take(parse_date, cell("secondary_date"), "secondary_date")
    if d1 and d2 and d2 <= d1:
        problems.append(CellProblem(
            "secondary_date %r is not after reference_date %s: write a later date than "
            "the reference date (or swap the two dates)" % (cell("secondary_date"),
                                                            d1.isoformat()),
            "secondary_date", cells.get("secondary_date")))
    selected = take(parse_selected, cells.get("selected"), "selected")
    baseline = None
    if cell("baseline_days"):
        baseline = take(parse_number, cell("baseline_days"), "baseline_days",
                        "the number of days between the two dates")
        if baseline is not None and not math.isfinite(baseline):
            problems.append(CellProblem(
                "baseline_days %r is not a number of days: write the number of days "
                "between the two dates (or leave it empty)" % cell("baseline_days"),
                "baseline_days", cells.get("baseline_days")))
            baseline = None
    score = take(parse_number, cell("score"), "score")
    for column in NUMBER_COLUMNS[1:]:
        if column in cells:
            take(parse_number, cell(column), column)
    if "in_range" in cells:
        take(parse_selected, cells.get("in_range"), "in_range")
    if baseline is None:
        baseline = (d2 - d1).days if d1 and d2 and not problems else 0
    extra = {k: v for k, v in cells.items() if k not in COLUMNS and v not in (None, "")}
    row = PairRow(line, d1.isoformat() if d1 else cell("reference_date"),
                  d2.isoformat() if d2 else cell("secondary_date"),
                  resolve_path(cells.get("reference_path"), folder),
                  resolve_path(cells.get("secondary_path"), folder),
                  int(baseline), float("nan") if score is None else score, bool(selected),
                  cells.get("reason") or "", extra, dict(cells))
    return row, problems


def image_path_problems(row, check_exists=True):
    """Problems of the image paths of one :class:`PairRow` (the correlation needs both
    images of a selected row): empty, or (with ``check_exists``) not on disk."""
    out = []
    for column in ("reference_path", "secondary_path"):
        p = getattr(row, column)
        if not p:
            out.append(CellProblem("%s is empty: write the path of the image (absolute, or "
                                   "relative to the folder of the pairs file)" % column,
                                   column, p))
        elif check_exists and not os.path.exists(p):
            out.append(CellProblem("%s '%s' does not exist: write the path of an existing "
                                   "image (absolute, or relative to the folder of the pairs "
                                   "file)" % (column, p), column, p))
    return out


# ----------------------------------------------------------------------------- file

def _open_rows(path):
    """(line, cells) of every row of ``path`` (header checked, names and cells kept as
    read, header names stripped); InputError for a missing/unreadable file or header."""
    if not os.path.isfile(path):
        raise InputError("Pairs file '%s' does not exist. Run the pair selection first, or "
                         "choose an existing pairs.csv." % path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            names = [(c or "").strip() for c in (reader.fieldnames or [])]
            missing = [c for c in REQUIRED_COLUMNS if c not in names]
            if missing:
                raise InputError("'%s' is not a pairs file: column(s) %s missing in its first "
                                 "line (expected at least %s). Restore the header line."
                                 % (path, ", ".join(missing), ",".join(REQUIRED_COLUMNS)))
            reader.fieldnames = names
            for row in reader:
                yield reader.line_num, row
    except UnicodeDecodeError as exc:
        raise InputError("'%s' is not a text CSV file (%s). Save it as UTF-8 CSV." % (path, exc)
                         ) from exc
    except csv.Error as exc:
        raise InputError("'%s' is not a valid CSV file (%s). Fix the line or re-run the pair "
                         "selection." % (path, exc)) from exc
    except OSError as exc:
        raise InputError("Cannot read pairs file '%s': %s." % (path, exc)) from exc


def scan_pairs(path, row_checks=()):
    """One pass over ``path``: (rows, bad). ``rows``: the :class:`PairRow` of the good
    rows in file order; ``bad``: (line, [problem text, ...]) of every bad row, in order.
    ``row_checks``: functions PairRow -> list of :class:`CellProblem`, run on every row
    (on a bad row with what could be read of it); a failing check makes the row bad."""
    folder = os.path.dirname(os.path.abspath(path))
    rows, bad, seen = [], [], {}
    for line, raw in _open_rows(path):
        if None in raw:
            bad.append((line, ["%d value(s) more than columns: remove them (quote a cell "
                               "that holds a comma)" % len(raw[None])]))
            continue
        cells = {k: v for k, v in raw.items() if k}
        if not any((v or "").strip() for v in cells.values()):
            continue  # blank line
        row, problems = parse_row(cells, line, folder)
        for check in row_checks:
            problems += check(row)
        try:  # duplicates, also among rows with other bad cells
            key = (parse_date(cells.get("reference_date")),
                   parse_date(cells.get("secondary_date")))
        except CellProblem:
            key = None
        if key is not None:
            if key in seen:
                problems.append(CellProblem(
                    "pair %s / %s already listed on line %d: delete one of the two rows"
                    % (key[0], key[1], seen[key])))
            else:
                seen[key] = line
        if problems:
            bad.append((line, [p.text for p in problems]))
        else:
            rows.append(row)
    return rows, bad


def bad_rows_message(path, bad):
    """The message of the bad rows of ``scan_pairs``: file, count, every row (line:
    problems) up to :data:`MAX_LISTED`, what to do."""
    items = ["line %d: %s" % (line, ", ".join(texts)) for line, texts in bad]
    text = "; ".join(items[:MAX_LISTED])
    if len(items) > MAX_LISTED:
        text += "; ... and %d more" % (len(items) - MAX_LISTED)
    return "'%s' has %d bad row(s): %s. %s" % (path, len(items), text, _FIX)


def read_pairs(path, selected_only=False):
    """Every row of ``pairs.csv`` as a :class:`PairRow` (file order; only the selected ones
    with ``selected_only``). Strict: any bad cell or duplicate pair raises
    :class:`~.errors.InputError` listing every bad row (line, column, value, what to
    write)."""
    rows, bad = scan_pairs(path)
    if bad:
        raise InputError(bad_rows_message(path, bad))
    return [r for r in rows if r.selected] if selected_only else rows


def read_selected(path, require_paths=False):
    """The selected rows of ``pairs.csv`` (strict, as :func:`read_pairs`). With
    ``require_paths`` a selected row without both image paths is an error too."""
    checks = (lambda r: image_path_problems(r, check_exists=False) if r.selected else [],) \
        if require_paths else ()
    rows, bad = scan_pairs(path, checks)
    if bad:
        raise InputError(bad_rows_message(path, bad))
    return [r for r in rows if r.selected]


# ----------------------------------------------------------------------------- writing

def format_number(v, nd=4):
    """A numeric cell: ``nd + 2`` significant digits, empty for None/NaN/inf; text that
    is not a number is written as is."""
    if v is None:
        return ""
    try:
        v = float(v)
    except (TypeError, ValueError):
        return str(v)
    return "" if not math.isfinite(v) else ("%.*g" % (nd + 2, v))


def format_cell(column, value):
    """The written form of one cell of ``column``."""
    if column in BOOL_COLUMNS:
        return format_bool(value)
    if column in NUMBER_COLUMNS:
        return format_number(value)
    if column == "baseline_days":
        return int(value)
    return value


def pairs_text(rows, columns=ALL_COLUMNS):
    """The text of a pairs file: header ``columns`` (the SPEC columns first), then one
    line per row (``rows``: mappings column -> value, a missing column is written
    empty), ``\\n`` line ends."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(columns))
    for row in rows:
        w.writerow([format_cell(c, row[c]) if c in row else "" for c in columns])
    return buf.getvalue()


def write_pairs(path, rows, columns=ALL_COLUMNS):
    """Write ``pairs.csv`` atomically (:func:`pairs_text`); returns ``path``."""
    from ..raster_io import write_text_atomic
    write_text_atomic(path, pairs_text(rows, columns))
    return path
