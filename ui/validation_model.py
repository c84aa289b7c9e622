"""The validation workflow without Qt: list, filters, order, navigation, decisions, undo,
progress, report, and the re-ranking learned from the analyst's decisions.

Decisions are written to the GeoPackage at once through
``core.detections_store.record_decision`` (one short transaction per decision, which re-reads
the row under a lock), so a crash or a closed QGIS loses nothing and two docks or two QGIS
sessions on the same file do not corrupt it. After every write the list is re-read from the
file, so decisions made elsewhere appear too. Undo restores the previous state of the last
decision made here, and refuses (:class:`DecisionConflict`) when someone else changed that
detection in between.
"""

import csv
import datetime as _dt
import getpass
import io
import os
import time

import numpy as np

from ..core.detect import validation_learning as learning
from ..core.errors import InputError, SlideWatchError
from ..core.products import DETECTION_STATUSES

STATUSES = DETECTION_STATUSES
DECISIONS = ("confirmed", "rejected", "uncertain")
VALIDATION_FIELDS = ("status", "comment", "validated_by", "validated_at")
ORDERS = ("score", "probability")


class DecisionConflict(SlideWatchError):
    """The detection was changed by someone else since our decision; undo refused."""


def utc_now_iso():
    """Now, UTC, ISO 8601 ('2026-11-21T23:20:16.791Z')."""
    return normalize_timestamp(_dt.datetime.now(_dt.timezone.utc).isoformat())


def default_analyst():
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return os.environ.get("USER", "") or "analyst"


def _value(v):
    if v is None:
        return None
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v


def normalize_timestamp(value):
    """An OGR/GeoPackage DateTime ('2026/11/21 23:20:16.791+00', '2026-11-21T23:20:16.791Z',
    ...) as ISO 8601 UTC text 'YYYY-MM-DDTHH:MM:SS.sssZ' (None stays None)."""
    if value in (None, ""):
        return None
    text = str(value).strip().replace("/", "-").replace(" ", "T", 1)
    if text.endswith("+00"):
        text = text[:-3] + "+00:00"
    text = text.replace("Z", "+00:00")
    try:
        stamp = _dt.datetime.fromisoformat(text)
    except ValueError:
        return str(value)
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (stamp.microsecond // 1000)


def load_detections(gpkg, layer_name="detections", retries=5):
    """Records of the detections layer (``core.detections_store.read_detections``: all
    attributes + ``fid`` + ``geometry_wkt``), with ``validated_at`` as ISO 8601 UTC text and
    a valid ``status``. Retried briefly if a writer holds the file's lock at that moment."""
    from ..core.detect.detections_store import read_detections

    if not os.path.exists(gpkg):
        raise InputError("The detections file '%s' does not exist. Run the detection step "
                         "(or choose another detections layer)." % gpkg)
    for attempt in range(retries):
        try:
            records = read_detections(gpkg, layer_name)
            break
        except InputError:
            if attempt == retries - 1 or not os.path.exists(gpkg):
                raise
            time.sleep(0.1 * (attempt + 1))
    for rec in records:
        for key, value in list(rec.items()):
            rec[key] = _value(value)
        if rec.get("id") is None:
            rec["id"] = rec["fid"]
        if rec.get("status") not in STATUSES:
            rec["status"] = "unvalidated"
        rec["validated_at"] = normalize_timestamp(rec.get("validated_at"))
    return records


def _default_writer(gpkg, ident, status, comment, analyst, timestamp):
    from ..core.detect.detections_store import record_decision

    return record_decision(gpkg, ident, status, comment, analyst, timestamp)


def _number(v, default=np.nan):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return default
    return f if np.isfinite(f) else default


class ValidationModel:
    """State of one validation session on one detections GeoPackage.

    ``writer(gpkg, id, status, comment, analyst, timestamp)`` writes one decision (default:
    ``core.detections_store.record_decision``); ``reader(gpkg, layer_name)`` returns the
    records (default :func:`load_detections`).
    """

    def __init__(self, gpkg, layer_name="detections", writer=None, reader=None,
                 min_validated=learning.MIN_VALIDATED):
        self.gpkg = os.path.abspath(gpkg)
        self.layer_name = layer_name
        self.writer = writer or _default_writer
        self.reader = reader or load_detections
        self.min_validated = min_validated
        self.records = []
        self.by_id = {}
        self.status_filter = "all"
        self.min_score = None
        self.min_area = None
        self.max_area = None
        self.order = "score"
        self.current_id = None
        self.undo_stack = []
        self.classifier = None
        self.predictions = {}
        self.learning_message = ""
        self.reload()

    # -------------------------------------------------------------------- reading
    def reload(self):
        """Re-read the file (decisions from other docks/sessions appear) and re-learn."""
        self.records = self.reader(self.gpkg, self.layer_name)
        self.by_id = {rec["id"]: rec for rec in self.records}
        self._learn()
        if self.current_id not in self.by_id:
            self.current_id = None
        return self.records

    def read_states(self):
        """{id: validation fields} straight from the file (one light read-only query, no
        geometry), or None when that is not possible (then :meth:`reload` is used)."""
        import sqlite3

        if self.reader is not load_detections:
            return None
        try:
            import pathlib

            uri = pathlib.Path(self.gpkg).as_uri() + "?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=10)
            try:
                rows = conn.execute('SELECT "id", "status", "comment", "validated_by", '
                                    '"validated_at" FROM "%s"' % self.layer_name).fetchall()
            finally:
                conn.close()
        except sqlite3.Error:
            return None
        return {row[0]: dict(status=row[1] if row[1] in STATUSES else "unvalidated",
                             comment=row[2], validated_by=row[3],
                             validated_at=normalize_timestamp(row[4])) for row in rows}

    def refresh(self, learn=True):
        """Bring the validation fields up to date with the file (decisions made elsewhere
        included) without re-reading the geometries; a full :meth:`reload` when the set of
        detections changed (the detection step was re-run) or the quick read fails."""
        states = self.read_states()
        if states is None or set(states) != set(self.by_id):
            return self.reload()
        for ident, state in states.items():
            self.by_id[ident].update(state)
        if learn:
            self._learn()
        return self.records

    def evidence_names(self):
        """Numeric evidence fields (``ev_*``) present in the layer."""
        if not self.records:
            return []
        names = []
        for key in self.records[0]:
            if not key.startswith("ev_"):
                continue
            if any(np.isfinite(_number(r.get(key))) for r in self.records):
                names.append(key)
        return names

    def _learn(self):
        clf, predictions, message = learning.rank_unvalidated(
            self.records, self.evidence_names(), min_validated=self.min_validated)
        self.classifier = clf
        self.predictions = {self.records[i]["id"]: p for i, p in predictions.items()}
        self.learning_message = message

    @property
    def learning_active(self):
        return self.classifier is not None

    def probability(self, ident):
        p = self.predictions.get(ident)
        return None if p is None else p[0]

    def drivers(self, ident):
        p = self.predictions.get(ident)
        return [] if p is None else p[1]

    # ------------------------------------------------------------ filters, order
    def set_filters(self, status="all", min_score=None, min_area=None, max_area=None):
        if status not in ("all",) + STATUSES:
            raise ValueError("status filter must be 'all' or one of %s" % (STATUSES,))
        self.status_filter = status
        self.min_score, self.min_area, self.max_area = min_score, min_area, max_area

    def set_order(self, order):
        if order not in ORDERS:
            raise ValueError("order must be one of %s" % (ORDERS,))
        self.order = order

    def _keep(self, rec):
        if self.status_filter != "all" and rec["status"] != self.status_filter:
            return False
        score = _number(rec.get("score"))
        area = _number(rec.get("area_m2"))
        if self.min_score is not None and not score >= self.min_score:
            return False
        if self.min_area is not None and not area >= self.min_area:
            return False
        if self.max_area is not None and not area <= self.max_area:
            return False
        return True

    def _sort_key(self, rec):
        score = _number(rec.get("score"), -np.inf)
        if self.order == "probability" and self.learning_active:
            p = self.probability(rec["id"])
            # unvalidated with a prediction first, most probable first; then by score
            return (0 if p is not None else 1, -(p if p is not None else 0.0), -score,
                    str(rec["id"]))
        return (-score, str(rec["id"]))

    def visible(self):
        """Filtered records in display order."""
        return sorted((r for r in self.records if self._keep(r)), key=self._sort_key)

    # ----------------------------------------------------------------- navigation
    def current(self):
        return self.by_id.get(self.current_id)

    def select(self, ident):
        if ident not in self.by_id:
            raise KeyError("no detection with id %r" % (ident,))
        self.current_id = ident
        return self.by_id[ident]

    def _step(self, delta):
        items = self.visible()
        if not items:
            self.current_id = None
            return None
        ids = [r["id"] for r in items]
        if self.current_id in ids:
            i = min(max(ids.index(self.current_id) + delta, 0), len(ids) - 1)
        else:
            i = 0 if delta >= 0 else len(ids) - 1
        self.current_id = ids[i]
        return items[i]

    def next(self):
        return self._step(+1)

    def previous(self):
        return self._step(-1)

    def first(self):
        self.current_id = None
        return self._step(+1)

    # ------------------------------------------------------------------ decisions
    @staticmethod
    def _state(rec):
        return {k: rec.get(k) for k in VALIDATION_FIELDS}

    def decide(self, status, comment="", analyst=None, timestamp=None, advance=True):
        """Write a decision for the current detection at once; returns the record as
        re-read from the file. Moves to the next item of the list when ``advance``."""
        if status not in DECISIONS:
            raise ValueError("decision must be one of %s" % (DECISIONS,))
        rec = self.current()
        if rec is None:
            raise InputError("No detection selected: select one in the list first.")
        ident = rec["id"]
        # the item that follows in the list *before* the decision changes the list
        items = [r["id"] for r in self.visible()]
        following = None
        if ident in items:
            pos = items.index(ident)
            rest = items[pos + 1:] + items[:pos]
            following = rest[0] if rest else None
        self.refresh(learn=False)  # re-read before writing: undo restores the file's state
        before = self._state(self.by_id.get(ident, rec))
        analyst = analyst or default_analyst()
        timestamp = timestamp or utc_now_iso()
        stored = self.writer(self.gpkg, ident, status, comment or "", analyst, timestamp)
        after = dict(status=status, comment=comment or "", validated_by=analyst,
                     validated_at=normalize_timestamp(stored if isinstance(stored, str)
                                                      else timestamp))
        self.undo_stack.append((ident, before, after))
        self.refresh()
        if advance and following is not None and following in self.by_id:
            self.current_id = following
            if not self._keep(self.by_id[following]):
                self.first()
        else:
            self.current_id = ident
        return self.by_id.get(ident)

    def can_undo(self):
        return bool(self.undo_stack)

    def undo(self):
        """Restore the state before the last decision made in this session."""
        if not self.undo_stack:
            return None
        ident, before, after = self.undo_stack[-1]
        self.refresh(learn=False)
        now = self.by_id.get(ident)
        if now is None:
            self.undo_stack.pop()
            raise DecisionConflict("Detection %s no longer exists in '%s' (the detection "
                                   "step was re-run?); nothing to undo." % (ident, self.gpkg))
        if (now.get("status"), now.get("validated_by"), now.get("validated_at")) != (
                after["status"], after["validated_by"], after["validated_at"]):
            self.undo_stack.pop()
            raise DecisionConflict(
                "Detection %s was changed by %s at %s after your decision; undo refused so "
                "that their decision is not lost." % (ident, now.get("validated_by") or "someone",
                                                     now.get("validated_at") or "?"))
        # a never-validated item gets its NULL timestamp back ("" = store NULL)
        status = before["status"] or "unvalidated"
        stamp = before.get("validated_at")
        if not stamp:
            stamp = "" if status == "unvalidated" else None
        self.writer(self.gpkg, ident, status, before.get("comment"),
                    before.get("validated_by"), stamp)
        self.undo_stack.pop()
        self.refresh()
        self.current_id = ident
        return self.by_id.get(ident)

    # ------------------------------------------------------------ progress, report
    def counts(self):
        counts = {s: 0 for s in STATUSES}
        for rec in self.records:
            counts[rec["status"]] = counts.get(rec["status"], 0) + 1
        counts["total"] = len(self.records)
        counts["validated"] = counts["total"] - counts["unvalidated"]
        return counts

    def precision(self):
        """Precision of the detector on the validated items: confirmed / (confirmed +
        rejected); uncertain items are left out. None when nothing is decided."""
        c = self.counts()
        decided = c["confirmed"] + c["rejected"]
        return c["confirmed"] / decided if decided else None

    def report_rows(self):
        header = ["id", "score", "area_m2", "v_mean_m_per_yr", "status", "comment",
                  "validated_by", "validated_at", "predicted_probability"]
        rows = [header]
        for rec in sorted(self.records, key=lambda r: (-_number(r.get("score"), -np.inf),
                                                       str(r["id"]))):
            p = self.probability(rec["id"])
            rows.append([rec["id"], _fmt(rec.get("score")), _fmt(rec.get("area_m2")),
                         _fmt(rec.get("v_mean_m_per_yr")), rec["status"],
                         rec.get("comment") or "", rec.get("validated_by") or "",
                         rec.get("validated_at") or "", "" if p is None else "%.4f" % p])
        return rows

    def summary(self):
        c = self.counts()
        p = self.precision()
        decided = c["confirmed"] + c["rejected"]
        # 95 % Wilson interval of the precision
        lo = hi = None
        if decided:
            z = 1.96
            phat = c["confirmed"] / decided
            denom = 1 + z * z / decided
            centre = (phat + z * z / (2 * decided)) / denom
            half = z * np.sqrt(phat * (1 - phat) / decided + z * z / (4 * decided ** 2)) / denom
            lo, hi = max(0.0, centre - half), min(1.0, centre + half)
        return dict(file=self.gpkg, generated_at=utc_now_iso(), total=c["total"],
                    validated=c["validated"], unvalidated=c["unvalidated"],
                    confirmed=c["confirmed"], rejected=c["rejected"], uncertain=c["uncertain"],
                    precision=p, precision_ci95_low=lo, precision_ci95_high=hi,
                    learning=self.learning_message)

    def write_report(self, path):
        """Write ``path`` (CSV, one row per detection) and ``<path stem>_summary.csv``
        (counts and precision). Returns the two paths."""
        from ..core.raster_io import write_text_atomic

        write_text_atomic(path, _csv_text(self.report_rows()))
        summary_path = os.path.splitext(path)[0] + "_summary.csv"
        rows = [["key", "value"]] + [[k, "" if v is None else (
            "%.4f" % v if isinstance(v, float) else v)] for k, v in self.summary().items()]
        write_text_atomic(summary_path, _csv_text(rows))
        return path, summary_path


def _fmt(v):
    f = _number(v)
    return "" if not np.isfinite(f) else "%.6g" % f


def _csv_text(rows):
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def parse_explanation(text):
    """The score explanation as a list of (name, value) pairs when it is JSON (a dict, or a
    list of {name, value/contribution} items), else [("", text)]."""
    import json

    if text is None or text == "":
        return []
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return [("", str(text))]
    if isinstance(data, dict):
        return [(str(k), v) for k, v in data.items()]
    if isinstance(data, list):
        out = []
        for item in data:
            if isinstance(item, dict):
                name = item.get("name") or item.get("evidence") or item.get("key") or ""
                value = item.get("contribution", item.get("value", item))
                out.append((str(name), value))
            else:
                out.append(("", item))
        return out
    return [("", data)]
