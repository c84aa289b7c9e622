"""Pair selection: the fewest correlation pairs for the best displacement time series.

Pipeline of :func:`select_pairs`
--------------------------------
1. **Candidates** (:func:`candidate_pairs`): every pair of dates, flagged in range when
   ``min_baseline_days <= baseline <= max_baseline_days``; with ``seasonal_window_days``
   anniversary pairs (baseline within the window of a whole number of years, up to
   ``max_seasonal_baseline_days``) are candidates too (same illumination and snow state).
   Out-of-range pairs are kept in ``pairs.csv`` with the reason.
2. **Cheap features** per candidate (:func:`.quality_model.pair_features`): cloud and
   invalid fractions of both images, sun elevation/azimuth differences, baseline, season
   difference, expected motion against the search range.
3. **Previews**: a small sample of candidates (by default 1.5 per date: every date
   with its next date, so that every date is seen in two previews, plus random pairs
   among the longer baselines, which measure the fastest motion) is correlated with the project's correlator
   (:func:`.correlation.correlate`) on images block-averaged by ``preview_factor``
   (about 512 px on the long side, at least 2×), on a sparse grid (16 px windows, step 8,
   parabolic sub-pixel). Measured preview quality = good fraction × spatial coherence
   (:func:`.quality_model.field_quality`). Each date is read, block-averaged and
   pre-filtered once for all its previews, and the small preview kernels run
   single-threaded (:func:`_run_previews`).
4. **Model**: a multiplicative model (per-date clear factor × ridge regression on the
   pair features, :class:`.quality_model.QualityModel`) fitted on the previews (and on full results of
   earlier runs found in ``history_folder/pairs``) predicts the quality of every other
   candidate. A date that is fully clouded correlates badly in all its previews, so all
   its pairs are predicted poor -- no cloud mask needed. Previewed pairs keep their
   measured quality.
5. **Selection** under a budget ``B`` (``budget_pairs``, or ``budget_pairs_per_date`` ×
   number of dates, or ``budget_cpu_s`` / estimated seconds per pair; the smallest given):

   * ``optimal``: greedy optimal design on the inversion's design matrix. Unknowns are
     the cumulative displacements ``d_k``; a pair (i, j) is the row ``d_j - d_i``. The
     scene is split into ``blocks`` × ``blocks`` spatial blocks (4 × 4); in block g the
     pair's weight is ``w_g = u^p · m`` (``p = quality_weighting``, 1 by default; "odds"
     gives ``u / (1.1 - u)``) with ``u`` its expected good fraction
     there (measured by its preview, or ``c_i(g) · c_j(g)`` scaled to its predicted
     quality, where ``c_i(g)`` is the best preview of date i in block g: a partly clouded
     date stays useful where it is clear) and ``m = 1 / (1 + (gamma v dt / sigma_c)^2)``
     the motion term (a pair's error grows with the displacement it has to measure:
     strain and surface change; ``gamma = motion_error_fraction`` = 0.2, ``v`` the
     expected velocity or the fastest motion measured by the long-baseline previews,
     ``sigma_c`` the correlation noise from the previews). The information matrix of
     block g is the weighted graph Laplacian ``L_g``; a small regularisation
     ``lambda I + 11^T/n`` keeps it invertible whatever the network. ``criterion="D"``
     (default) maximises ``sum_g log det L_g`` (the weighted number of spanning trees:
     many independent paths between dates, robust to the outliers a bad pair brings);
     ``criterion="A"`` minimises ``sum_g trace(L_g^-1)``, the mean variance of every
     date's displacement under a white-noise model (sum of effective resistances,
     reference free). On the benchmark stack D gave the lower time-series error
     (systematic pair errors are not white noise). Gains
     of all candidates are evaluated exactly with Sherman-Morrison rank-1 updates of
     ``M_g = L_g^-1`` (and ``M_g^2`` for A). Phases: (a) bridges -- only pairs joining
     two connected components, best gain first, until the usable network is connected;
     (b) at least ``min_pairs_per_date`` pairs per date, best gain first; (c) best gain
     until the budget is spent.
   * ``seasonal``: the same connectivity and minimum-degree phases, then the best
     predicted quality, among short pairs (baseline <= the seasonal window) and
     anniversary pairs only.
   * ``sequential``: each date with its next ``ceil(B / n)`` dates (classic, not quality
     aware); ``random``: ``B`` in-range pairs drawn with ``seed``; ``all``: every in-range
     pair (no budget).

   Pairs whose predicted quality is below ``max(min_quality, min_quality_rel × q_ref)``
   are not used by ``optimal``/``seasonal`` ("rejected: predicted quality ..."); a date
   with no usable pair at all is reported as excluded instead of being forced in.

   **Unusable dates.** A date whose clear factor (the lower of the model's ``c_i`` -- its
   best measured pair quality relative to the reference quality -- and ``1 - cloud
   fraction``, the catalog's mask, metadata or image-only estimate) is below ``min_clear_factor`` (0.2) is unusable: every pair
   touching it is rejected ("rejected: date 2020-01-05 unusable: clear factor 0.05 <
   0.2") and the date is excluded with one note line giving the reason (an expected
   consequence of clouds, not a problem of the run). Such a pair
   can pass the quality threshold (``q_min`` is only 10 % of the reference quality and a
   pair's block weights are normalised by its mean clear fraction), so without this rule
   the minimum-degree and budget phases filled the budget with pairs of fully clouded
   dates (issue 14). The budget is a ceiling, not a quota: phases (a)-(c) only use
   usable pairs, so connectivity between the usable dates is restored only through the
   best remaining usable pairs; a usable date that cannot be joined to the main network
   through usable pairs is named in the problems.

Every pair gets a ``reason`` ("selected: D-optimal gain 0.42", "selected: bridge between
components ...", "rejected: predicted quality 0.05 < 0.20 (2019-03-04 poor in all
previews: mean 0.03)", "rejected: baseline 400 d > max 365 d", "rejected: budget
reached ..."), written to ``pairs.csv``.
"""

import csv
import io
import json
import math
import os
import time
from dataclasses import dataclass, field, fields, replace

import numpy as np

from . import pairs_file
from ..matching.correlation_params import CorrelationParams
from ..errors import InputError, ParameterError
from ..products import DAYS_PER_YEAR, PAIRS_COLUMNS, pair_stem
from ..progress import as_progress
from .quality_model import (FEATURES, QualityModel, field_quality, merge_training_rows,
                            pair_features, read_full_results, read_training_csv)
from ..raster_io import write_text_atomic

__all__ = ["Pair", "PairSelection", "PairsTable", "PairingParams", "candidate_pairs",
           "select_pairs", "pairing_params",
           "write_pairs_csv", "read_pairs_csv", "network_summary", "write_network_summary",
           "connected_components", "STRATEGIES", "CRITERIA", "PAIRS_COLUMNS", "preview_pairs"]

STRATEGIES = ("optimal", "sequential", "seasonal", "all", "random")
#: design criteria of the optimal strategy: log det (D) or mean variance (A)
CRITERIA = ("A", "D")
#: columns written after the SPEC ones (:data:`.pairs_file.EXTRA_COLUMNS`)
EXTRA_COLUMNS = pairs_file.EXTRA_COLUMNS


@dataclass
class Pair:
    reference_date: str
    secondary_date: str
    reference_path: str = ""
    secondary_path: str = ""
    baseline_days: int = 0
    score: float = float("nan")
    selected: bool = False
    reason: str = ""
    i: int = -1
    j: int = -1
    in_range: bool = True
    predicted_quality: float = float("nan")
    preview: dict = None
    weight: float = 0.0
    gain: float = float("nan")
    stage: str = ""
    features: object = None
    block_weights: object = None
    extra: dict = field(default_factory=dict)

    @property
    def key(self):
        return (self.reference_date, self.secondary_date)

    @property
    def name(self):
        return pair_stem(self.reference_date, self.secondary_date)


@dataclass
class PairSelection:
    """Result of :func:`select_pairs`: every candidate with its decision."""

    dates: list
    paths: list
    pairs: list
    strategy: str
    budget: int
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    model: object = None
    excluded_dates: list = field(default_factory=list)
    params: dict = field(default_factory=dict)

    @property
    def selected(self):
        return [p for p in self.pairs if p.selected]

    def selected_index_pairs(self):
        return [(p.i, p.j) for p in self.pairs if p.selected]

    def report(self):
        s = network_summary(self)
        lines = ["strategy %s: %d pair(s) selected of %d candidate(s) in range (budget %s); "
                 "%d connected component(s); mean predicted quality %.2f" % (
                     self.strategy, s["n_selected"], s["n_candidates_in_range"],
                     self.budget if self.budget is not None else "-", s["n_components"],
                     s["mean_predicted_quality"] if s["mean_predicted_quality"] is not None
                     else float("nan"))]
        if self.timings:
            lines.append("timings: " + ", ".join("%s %.2f s" % kv for kv in
                                                  sorted(self.timings.items())))
        lines += ["problem: " + p for p in self.problems]
        lines += ["note: " + n for n in self.notes]
        return "\n".join(lines)


@dataclass
class PairsTable:
    """Pairs read back from ``pairs.csv`` (:func:`read_pairs_csv`)."""

    pairs: list
    problems: list = field(default_factory=list)

    @property
    def selected(self):
        return [p for p in self.pairs if p.selected]

@dataclass
class PairingParams:
    """Parameters of :func:`select_pairs` (one pair selection), with units and bounds.

    The Processing algorithm *Select correlation pairs* and :class:`.pipeline.PipelineParams`
    take their defaults (and the dialog's bounds, :data:`BOUNDS`) from here. Where the
    selection reads or writes files (``history_folder``, ``training_csv``) is not a
    parameter of the selection: those are arguments of :func:`select_pairs`.
    :meth:`validate` raises :class:`.errors.ParameterError` naming the field, its bound
    and the value given.
    """

    #: "optimal" (quality model + greedy optimal design), "sequential", "seasonal",
    #: "all" or "random" (:data:`STRATEGIES`)
    strategy: str = "optimal"
    #: budget: average number of selected pairs per date (None = no such limit)
    budget_pairs_per_date: float = 3
    #: budget: total number of pairs (None = no such limit)
    budget_pairs: int = None
    #: budget: seconds of full-resolution correlation, with the time per pair estimated
    #: from a crop (or ``pair_cost_s``); None = no such limit. The smallest budget applies
    budget_cpu_s: float = None
    #: at least this many pairs per date where usable pairs exist (k)
    min_pairs_per_date: int = 2
    #: candidate baselines, days: min_baseline_days <= baseline <= max_baseline_days
    min_baseline_days: int = 1
    max_baseline_days: int = 365
    #: days: anniversary pairs (baseline within this many days of a whole number of
    #: years) are candidates too, and the width of the season of "seasonal" (None = no
    #: anniversary pairs; "seasonal" then uses 30 d)
    seasonal_window_days: int = None
    #: correlate a sample of candidates at coarse resolution (needs one common grid)
    previews: bool = True
    #: number of previews (None = n_dates - 1 + n_dates // 2)
    preview_sample: int = None
    #: block-averaging factor of the previews (None = image long side / 512, at least 2)
    preview_factor: int = None
    #: preview correlation window and grid step, pixels of the block-averaged images
    preview_window: int = 16
    preview_step: int = 8
    #: preview search range, pixels of the block-averaged images (None = search /
    #: factor + 1, at least 3)
    preview_search: int = None
    #: full-resolution correlation window, step and search range (pixels) that will be
    #: used: for the CPU estimate and the expected-motion check
    window: int = CorrelationParams.window
    step: int = CorrelationParams.step
    search: int = CorrelationParams.search
    #: fastest expected motion, m/yr: pairs where it exceeds the search range are
    #: rejected (None = no limit; otherwise measured by the long-baseline previews)
    expected_velocity_m_per_yr: float = None
    #: design criterion: "D" (log det of the network information) or "A" (mean variance)
    criterion: str = "D"
    #: usability threshold on predicted quality (0-1): absolute, and relative to the 90th
    #: percentile of the preview qualities; the larger applies
    min_quality: float = 0.03
    min_quality_rel: float = 0.1
    #: seconds to correlate one full-resolution pair, for ``budget_cpu_s`` (None =
    #: measured on a central crop)
    pair_cost_s: float = None
    #: random generator seed (preview sample, "random"): same seed, same selection
    seed: int = 0
    #: NCC a preview window needs to count as good (-1..1)
    ncc_min: float = 0.5
    #: the design is evaluated on blocks x blocks spatial blocks
    blocks: int = 4
    #: gamma of the motion error term, the error of a pair as a fraction of the
    #: displacement it measures (>= 0)
    motion_error_fraction: float = 0.2
    #: pair weight = (expected good fraction) ** this (>= 0), or "odds" (u / (1.1 - u))
    quality_weighting: float = 1.0
    #: clear factor (0-1) below which a date is unusable by "optimal" / "seasonal"
    #: (0 disables)
    min_clear_factor: float = 0.2
    #: m/day: the correlation's fast-motion setting
    #: (:func:`.pair_correlation.correlate_pair_rasters`); a pair's reach is then
    #: max(search, v * baseline / pixel) px (None = search only)
    max_velocity_m_per_day: float = None

    #: the fields that may be None ("no limit" / "automatic", see each field)
    OPTIONAL = ("budget_pairs_per_date", "budget_pairs", "budget_cpu_s",
                "seasonal_window_days", "preview_sample", "preview_factor", "preview_search",
                "expected_velocity_m_per_yr", "pair_cost_s", "max_velocity_m_per_day")
    #: (lowest, highest) allowed value of the numeric fields (None = unbounded); the
    #: Processing dialog uses the same
    BOUNDS = {
        "budget_pairs_per_date": (0, None), "budget_pairs": (0, None),
        "budget_cpu_s": (0, None), "min_pairs_per_date": (0, None),
        "min_baseline_days": (0, None), "max_baseline_days": (1, None),
        "seasonal_window_days": (0, 182), "preview_sample": (0, None),
        "preview_factor": (1, None), "preview_window": (4, None), "preview_step": (1, None),
        "preview_search": (1, None), "window": (4, None), "step": (1, None),
        "search": (1, None), "expected_velocity_m_per_yr": (0, None),
        "min_quality": (0, 1), "min_quality_rel": (0, 1), "pair_cost_s": (0, None),
        "seed": (0, None), "ncc_min": (-1, 1), "blocks": (1, None),
        "motion_error_fraction": (0, None), "max_velocity_m_per_day": (0, None),
    }

    @classmethod
    def names(cls):
        """The field names (the keyword parameters :func:`select_pairs` accepts)."""
        return [f.name for f in fields(cls)]

    def validate(self):
        """Check every field; returns ``self`` with ``min_clear_factor`` as a float.
        Raises :class:`.errors.ParameterError` with the field, its bound and the value."""
        if self.strategy not in STRATEGIES:
            raise ParameterError("Unknown pairing strategy '%s'; choose one of %s." % (
                self.strategy, ", ".join(STRATEGIES)))
        if self.criterion not in CRITERIA:
            raise ParameterError("criterion must be 'A' or 'D' (got %r)." % self.criterion)
        try:
            self.min_clear_factor = float(self.min_clear_factor)
        except (TypeError, ValueError):
            raise ParameterError("min_clear_factor must be a number in [0, 1) (got %r)."
                                 % (self.min_clear_factor,))
        if not (0.0 <= self.min_clear_factor < 1.0):
            raise ParameterError("min_clear_factor must be in [0, 1) (got %r): it is the "
                                 "clear factor below which a date is unusable."
                                 % self.min_clear_factor)
        if self.quality_weighting != "odds":
            _check_bound("quality_weighting", self.quality_weighting, 0, None,
                         ' (or "odds")')
        for name, (lo, hi) in self.BOUNDS.items():
            value = getattr(self, name)
            if value is None and name in self.OPTIONAL:
                continue
            _check_bound(name, value, lo, hi)
        if self.max_baseline_days < self.min_baseline_days:
            raise ParameterError("Baselines must satisfy 0 <= min_baseline_days (%s) <= "
                                 "max_baseline_days (%s)." % (self.min_baseline_days,
                                                              self.max_baseline_days))
        return self


def _check_bound(name, value, lo, hi, alternative=""):
    """ParameterError unless ``lo <= value <= hi`` (None: no bound on that side)."""
    span = "in [%s, %s]" % (lo, hi) if hi is not None else ">= %s" % lo
    try:
        ok = np.all(np.asarray(value, dtype=float) >= lo) and (
            hi is None or np.all(np.asarray(value, dtype=float) <= hi))
    except (TypeError, ValueError):
        raise ParameterError("Pairing parameter %s must be a number %s%s (got %r)." % (
            name, span, alternative, value)) from None
    if not ok:
        raise ParameterError("Pairing parameter %s must be %s%s (got %r)." % (
            name, span, alternative, value))


# ----------------------------------------------------------------------------- candidates

def _season_days(d1, d2):
    dd = abs(d1.timetuple().tm_yday - d2.timetuple().tm_yday)
    return min(dd, DAYS_PER_YEAR - dd)


def candidate_pairs(catalog, min_baseline_days=1, max_baseline_days=365,
                    seasonal_window_days=None, max_seasonal_baseline_days=None,
                    list_out_of_range_up_to_days=None):
    """Every pair (i < j) of dates as :class:`Pair`, with ``in_range`` and a reason for
    those out of range. Pairs with baselines beyond ``list_out_of_range_up_to_days``
    (default: 2 × the largest allowed baseline) are not listed at all."""
    if min_baseline_days < 0 or max_baseline_days < min_baseline_days:
        raise ParameterError("Baselines must satisfy 0 <= min_baseline_days (%s) <= "
                             "max_baseline_days (%s)." % (min_baseline_days, max_baseline_days))
    if seasonal_window_days is not None and seasonal_window_days < 0:
        raise ParameterError("seasonal_window_days must be >= 0.")
    recs = catalog.records
    if max_seasonal_baseline_days is None:
        max_seasonal_baseline_days = 3 * DAYS_PER_YEAR + (seasonal_window_days or 0)
    top = max(max_baseline_days, max_seasonal_baseline_days if seasonal_window_days else 0)
    listed = list_out_of_range_up_to_days or 2 * top
    out = []
    for i in range(len(recs)):
        for j in range(i + 1, len(recs)):
            b = (recs[j].date - recs[i].date).days
            if b > listed:
                break
            p = Pair(recs[i].iso, recs[j].iso, recs[i].path, recs[j].path, b, i=i, j=j)
            if b < min_baseline_days:
                p.in_range, p.reason = False, "rejected: baseline %d d < min %d d" % (
                    b, min_baseline_days)
            elif b > max_baseline_days:
                years = round(b / DAYS_PER_YEAR)
                if (seasonal_window_days is not None and years >= 1
                        and abs(b - years * DAYS_PER_YEAR) <= seasonal_window_days
                        and b <= max_seasonal_baseline_days):
                    p.extra["anniversary"] = True
                else:
                    p.in_range, p.reason = False, "rejected: baseline %d d > max %d d" % (
                        b, max_baseline_days)
            out.append(p)
    return out


# ----------------------------------------------------------------------------- graph utils

def connected_components(n, edges):
    """Union-find components: list of sorted index lists (isolated nodes included)."""
    parent = list(range(n))

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i, j in edges:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[ri] = rj
    comps = {}
    for k in range(n):
        comps.setdefault(find(k), []).append(k)
    return sorted(comps.values(), key=lambda c: c[0])


class _UF:
    def __init__(self, n):
        self.p = list(range(n))

    def find(self, a):
        while self.p[a] != a:
            self.p[a] = self.p[self.p[a]]
            a = self.p[a]
        return a

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.p[ra] = rb
        return True


class _Design:
    """Greedy optimal-design state for G spatial blocks: per block
    M_g = (L_g + lambda I + 11^T/n)^-1 (and M_g^2 for the A criterion), where L_g is the
    Laplacian of the network weighted by the pairs' expected quality in block g."""

    def __init__(self, n, criterion, reg, blocks=1):
        self.n = n
        self.criterion = criterion
        A = np.full((n, n), 1.0 / n) + reg * np.eye(n)
        M = np.linalg.inv(A)
        self.M = np.repeat(M[None], blocks, axis=0)
        self.M2 = (self.M @ self.M) if criterion == "A" else None

    def gains(self, I, J, W):
        """Total gain (sum over blocks) of adding each pair (I, J) with block weights
        W (len(I), G)."""
        M = self.M
        r = np.maximum(M[:, I, I] + M[:, J, J] - 2.0 * M[:, I, J], 0.0)   # (G, C)
        Wt = W.T
        if self.criterion == "D":
            return np.log1p(Wt * r).sum(axis=0)
        M2 = self.M2
        s = np.maximum(M2[:, I, I] + M2[:, J, J] - 2.0 * M2[:, I, J], 0.0)
        return (Wt * s / (1.0 + Wt * r)).sum(axis=0)

    def add(self, i, j, w):
        for g in range(self.M.shape[0]):
            wg = float(w[g])
            if wg <= 0:
                continue
            M = self.M[g]
            v = M[:, i] - M[:, j]
            r = max(v[i] - v[j], 0.0)
            c = wg / (1.0 + wg * r)
            if self.criterion == "A":
                M2 = self.M2[g]
                mv = M2[:, i] - M2[:, j]
                vv = float(v @ v)
                M2 -= c * (np.outer(mv, v) + np.outer(v, mv)) - (c * c * vv) * np.outer(v, v)
            M -= c * np.outer(v, v)


# ----------------------------------------------------------------------------- previews

def preview_pairs(pairs, n_dates, sample, rng, n_long=None):
    """Indices (into ``pairs``) of the candidates to preview, in this order until
    ``sample`` is reached: every date with its next date (so every date is seen in two
    previews, its neighbours on both sides), ``n_long`` (default ``n_dates // 2``) random
    pairs among the longer half of the baselines (they measure how fast the fastest
    ground moves), every date with its next-but-one date, then random pairs."""
    by_ij = {(p.i, p.j): k for k, p in enumerate(pairs) if p.in_range}
    partners = {i: [] for i in range(n_dates)}
    for (i, j) in sorted(by_ij):
        partners[i].append(j)
    chosen, seen = [], set()

    def add(layer):
        layer = [k for k in layer if k not in seen]
        room = sample - len(chosen)
        if room <= 0:
            return
        if len(layer) > room:
            layer = sorted(rng.choice(layer, size=room, replace=False).tolist())
        chosen.extend(layer)
        seen.update(layer)

    add([by_ij[(i, partners[i][0])] for i in range(n_dates) if partners[i]])
    inr = sorted(by_ij.values())
    if inr:
        med = float(np.median([pairs[k].baseline_days for k in inr]))
        longs = [k for k in inr if pairs[k].baseline_days >= med and k not in seen]
        m = min(len(longs), n_dates // 2 if n_long is None else int(n_long))
        if m:
            add(sorted(rng.choice(longs, size=m, replace=False).tolist()))
    add([by_ij[(i, partners[i][1])] for i in range(n_dates) if len(partners[i]) > 1])
    rest = [k for k in inr if k not in seen]
    if rest and len(chosen) < sample:
        add(sorted(rng.choice(rest, size=min(len(rest), sample - len(chosen)),
                              replace=False).tolist()))
    return chosen


def _block_mean(a, f):
    if f <= 1:
        return a
    H, W = (a.shape[0] // f) * f, (a.shape[1] // f) * f
    b = a[:H, :W].reshape(H // f, f, W // f, f)
    valid = np.isfinite(b)
    cnt = valid.sum(axis=(1, 3))
    s = np.where(valid, b, 0.0).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (s / cnt).astype(np.float32)
    out[cnt < 0.5 * f * f] = np.nan
    return out


def _load_preview(rec, factor):
    """Block-averaged image (NaN nodata); reads decimated via rasterio for big images."""
    from ..stack.catalog import load_image
    if rec.height * rec.width <= 4096 * 4096:
        return _block_mean(load_image(rec), factor)
    shape = (max(1, rec.height // factor), max(1, rec.width // factor))
    avg = load_image(rec, out_shape=shape, resampling="average")
    near = load_image(rec, out_shape=shape, resampling="nearest")
    avg[~np.isfinite(near)] = np.nan
    return avg


def _block_fractions(mask, blocks):
    """Fraction of good windows in each of blocks x blocks spatial blocks (row-major).

    Blocks as ``np.array_split`` cuts each axis (the first ``n % blocks`` blocks one
    longer); an empty block (fewer rows/columns than blocks) counts 0."""
    mask = np.asarray(mask, dtype=bool)

    def cuts(n):
        sizes = np.full(blocks, n // blocks, dtype=np.int64)
        sizes[:n % blocks] += 1
        return sizes

    hs, ws = cuts(mask.shape[0]), cuts(mask.shape[1])
    rb = np.repeat(np.arange(blocks), hs)
    cb = np.repeat(np.arange(blocks), ws)
    counts = np.zeros((blocks, blocks))
    r, c = np.nonzero(mask)
    np.add.at(counts, (rb[r], cb[c]), 1.0)
    size = np.outer(hs, ws).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(size > 0, counts / np.maximum(size, 1.0), 0.0)
    return out.ravel()


def _measure_pair_cost(catalog, pair, window, step, search, side=160):
    """Seconds to correlate one full-resolution pair, measured on a central crop and
    scaled by the number of windows."""
    from rasterio.windows import Window
    from ..stack.catalog import load_image
    from ..matching.correlation import correlate
    r = catalog.records[pair.i]
    H, W = r.height, r.width
    h, w = min(H, side), min(W, side)
    win = Window((W - w) // 2, (H - h) // 2, w, h)
    a = load_image(catalog.records[pair.i], window=win)
    b = load_image(catalog.records[pair.j], window=win)
    t0 = time.perf_counter()
    res = correlate(a, b, window=window, step=step, search=search)
    dt = time.perf_counter() - t0
    return dt * ((H // step) * (W // step)) / max(res.dx.size, 1)


def _run_previews(catalog, pairs, idx, factor, window, step, search, ncc_min, progress,
                  blocks=4, threads=1):
    """Correlate the preview pairs ``idx`` at 1/``factor`` resolution.

    Each date is read and block-averaged once, and pre-filtered once (the correlator's
    :func:`.correlation.prepare`, the same filter :func:`.correlation.correlate` applies
    to both images of every pair); its prepared image is kept only until its last
    preview. The kernel is called on the prepared images
    (:func:`.correlation.correlate_prepared`), which gives the same fields as
    ``correlate(a, b, window, step, search, rows, cols, subpixel="parabola")`` without
    re-reading or re-filtering a date for each of its previews.

    The numba kernels run single-threaded here (``threads``, 1 by default; the setting
    is local to the calling thread and restored afterwards): a preview is small (about
    512 px on the long side, a few hundred windows, one or two chunks of the shared
    integer search), so parallel regions cost more in start-up and synchronisation than
    they save -- on a loaded 2-core machine 3x more (issue 4 round 3, docs/benchmarks.md).
    The fields do not depend on the number of threads.

    Returns (results by pair index, number of windows, seconds in correlation kernels).
    """
    import numba
    old_threads = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(threads), old_threads)))
    try:
        return _run_previews_body(catalog, pairs, idx, factor, window, step, search,
                                  ncc_min, progress, blocks)
    finally:
        numba.set_num_threads(old_threads)


def _run_previews_body(catalog, pairs, idx, factor, window, step, search, ncc_min, progress,
                       blocks):
    import rasterio
    from ..matching.correlation import (correlate_prepared, normalize_params, pad_image, prepare,
                               read_margin)
    params = normalize_params(window, step, search, subpixel="parabola")
    margin = read_margin(params)
    last_use = {}
    for k, pk in enumerate(idx):
        last_use[pairs[pk].i] = k
        last_use[pairs[pk].j] = k
    prepared = {}
    grids = {}
    results = {}
    n_windows = 0
    t_corr = 0.0
    with rasterio.Env():       # one GDAL environment for every read (not one per file)
        for k, pk in enumerate(idx):
            progress.check()
            p = pairs[pk]
            for d in (p.i, p.j):
                if d not in prepared:
                    img = np.asarray(_load_preview(catalog.records[d], factor), np.float32)
                    img[~np.isfinite(img)] = np.nan
                    prepared[d] = (prepare(pad_image(img, margin), params), img.shape)
            (rs, shape), (ss, shape_j) = prepared[p.i], prepared[p.j]
            if shape != shape_j:
                raise InputError("Preview images of %s and %s differ in shape (%s, %s): "
                                 "bring the images onto a common grid first." % (
                                     p.reference_date, p.secondary_date, shape, shape_j))
            if shape not in grids:
                H, W = shape
                m = window // 2 + search + 1     # centres whose window + search area is inside
                grids[shape] = (
                    np.arange(m, H - m + 1, step) if H > 2 * m else np.array([H // 2]),
                    np.arange(m, W - m + 1, step) if W > 2 * m else np.array([W // 2]))
            rows, cols = grids[shape]
            t0 = time.perf_counter()
            dx, dy, ncc, _snr, status = correlate_prepared(rs, ss, rows, cols, shape, 0,
                                                           params)
            t_corr += time.perf_counter() - t0
            for d in (p.i, p.j):
                if last_use[d] == k:
                    del prepared[d]
            n_windows += dx.size
            q = field_quality(dx, dy, ncc, status, ncc_min=ncc_min, tol_px=1.0)
            mask = q.pop("mask")
            q["blocks"] = _block_fractions(mask, blocks)
            if mask.sum() >= 10:
                ddx = dx[mask] - np.median(dx[mask])
                ddy = dy[mask] - np.median(dy[mask])
                # fastest motion seen (99th percentile of the de-meaned vectors), full-res px
                q["motion_px"] = float(np.percentile(np.hypot(ddx, ddy), 99)) * factor
            results[pk] = q
            progress.update((k + 1) / len(idx), "preview %s / %s: quality %.2f" % (
                p.reference_date, p.secondary_date, q["quality"]))
    return results, n_windows, t_corr


# ----------------------------------------------------------------------------- selection

def _budget(n_dates, budget_pairs, budget_pairs_per_date, budget_cpu_s, pair_cost_s):
    """The pair budget: the smallest of the given limits (None = no limit). The bounds
    of the limits are checked by :meth:`PairingParams.validate`."""
    limits = []
    if budget_pairs is not None:
        limits.append(int(budget_pairs))
    if budget_pairs_per_date is not None:
        limits.append(int(round(budget_pairs_per_date * n_dates)))
    if budget_cpu_s is not None:
        if not pair_cost_s or not np.isfinite(pair_cost_s) or pair_cost_s <= 0:
            raise ParameterError("A CPU-time budget needs an estimate of the time per pair: "
                                 "enable previews or give pair_cost_s.")
        limits.append(int(budget_cpu_s // pair_cost_s))
    return min(limits) if limits else None


def pairing_params(params=None, **overrides):
    """A validated copy of ``params`` (:class:`PairingParams`, None = defaults, or a
    strategy name) with ``overrides`` (field names) applied."""
    if params is None:
        params = PairingParams()
    elif isinstance(params, str):
        if "strategy" in overrides:
            raise ParameterError("The strategy is given twice (%r and strategy=%r)."
                                 % (params, overrides["strategy"]))
        overrides = dict(overrides, strategy=params)
        params = PairingParams()
    elif not isinstance(params, PairingParams):
        raise ParameterError("params must be a PairingParams (or a strategy name), got %r."
                             % (params,))
    unknown = sorted(set(overrides) - set(PairingParams.names()))
    if unknown:
        raise ParameterError("Unknown pairing parameter(s): %s. Known: %s." % (
            ", ".join(unknown), ", ".join(PairingParams.names())))
    return replace(params, **overrides).validate()


@dataclass
class _Run:
    """What the phases of one :func:`select_pairs` call share and fill in, in order."""

    catalog: object
    prm: PairingParams
    progress: object
    history_folder: object = None
    training_csv: object = None
    recs: list = None
    n: int = 0
    rng: object = None
    timings: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    # candidates
    pairs: list = None
    inr: list = None
    pixel: float = float("nan")
    exp_px: float = 0.0
    cloud_fill: float = 0.0
    # previews and model
    preview_results: dict = field(default_factory=dict)
    pair_cost: object = None
    model: object = None
    prior: dict = None
    # usability and weights
    q_ref: float = float("nan")
    q_min: float = float("nan")
    date_prev: dict = None
    unusable: dict = None
    date_clear: list = None
    usable: list = None
    # selection
    budget: object = None
    excluded: list = field(default_factory=list)


def select_pairs(catalog, params=None, *, history_folder=None, training_csv=None,
                 progress=None, **overrides):
    """Choose the pairs to correlate; see the module documentation.

    Parameters
    ----------
    catalog : :class:`~.catalog.Catalog` (one image per date, one grid for previews)
    params : :class:`PairingParams` (None: the defaults). For the calls written before
        it existed, a string here is the strategy (``select_pairs(cat, "sequential")``).
    history_folder : output folder of earlier runs: its ``pairs/pair_*.tif`` (full
        results) train the model; ``quality_training.csv`` there (or ``training_csv``)
        is read and updated.
    progress : a :class:`.progress.Progress` (or None).
    **overrides : fields of :class:`PairingParams` replacing those of ``params``
        (``select_pairs(cat, strategy="random", seed=3, previews=False)``); an unknown
        name is a :class:`.errors.ParameterError`.

    Returns a :class:`PairSelection`: every candidate with its decision and reason.
    Phases, in this order (module documentation): :func:`_start`, :func:`_candidates`,
    :func:`_previews`, :func:`_pair_cost`, :func:`_fit_model`, :func:`_usability`,
    :func:`_select`, :func:`_network_report`, :func:`_selection_result`.
    """
    run = _Run(catalog, pairing_params(params, **overrides), as_progress(progress),
               history_folder, training_csv)
    _start(run)
    _candidates(run)
    _previews(run)
    _pair_cost(run)
    _fit_model(run)
    _usability(run)
    _select(run)
    _network_report(run)
    return _selection_result(run)


def _start(run):
    """The catalog's dates (at least two) and the random generator."""
    run.recs = run.catalog.records
    run.n = len(run.recs)
    if run.n < 2:
        raise InputError("At least two dated images are needed to form pairs (the catalog "
                         "has %d). Check the catalog problems." % run.n)
    run.rng = np.random.default_rng(run.prm.seed)


def _candidates(run):
    """Phase 1-2: every candidate pair (:func:`candidate_pairs`) with its cheap features
    and its reach (search range, or the fast-motion setting's displacement)."""
    prm, recs = run.prm, run.recs
    pairs = candidate_pairs(run.catalog, prm.min_baseline_days, prm.max_baseline_days,
                            prm.seasonal_window_days)
    run.pairs = pairs
    run.inr = [k for k, p in enumerate(pairs) if p.in_range]
    if not run.inr:
        raise ParameterError("No pair has a baseline between %s and %s days: widen the "
                             "baseline range." % (prm.min_baseline_days,
                                                  prm.max_baseline_days))
    pixel = abs(recs[0].transform[0]) if recs[0].transform else float("nan")
    v = prm.expected_velocity_m_per_yr
    run.pixel = pixel
    run.exp_px = (v / pixel) if (v and np.isfinite(pixel) and pixel > 0) else 0.0
    known = [r.cloud_fraction for r in recs if np.isfinite(r.cloud_fraction)]
    run.cloud_fill = float(np.median(known)) if known else 0.0
    vmax = float(prm.max_velocity_m_per_day or 0.0)
    for p in pairs:
        p.extra["reach_px"] = max(float(prm.search), vmax * p.baseline_days / pixel
                                  if vmax > 0 and np.isfinite(pixel) and pixel > 0 else 0.0)
        p.features = pair_features(recs[p.i], recs[p.j], p.baseline_days, run.exp_px,
                                   p.extra["reach_px"], 0.0, run.cloud_fill)


def _previews(run):
    """Phase 3: the preview correlations (and the confirmation previews of dates seen
    only beside poor dates); their results go to ``run.preview_results`` and to the
    previewed pairs."""
    prm, pairs, recs, n = run.prm, run.pairs, run.recs, run.n
    if not prm.previews:
        return
    from ..stack.common_grid import require_common_grid
    require_common_grid(run.catalog)
    t0 = time.perf_counter()
    H, W = recs[0].height, recs[0].width
    factor = int(prm.preview_factor or max(2, int(math.ceil(max(H, W) / 512.0))))
    psearch = int(prm.preview_search or max(3, int(math.ceil(prm.search / factor)) + 1))
    sample = int(prm.preview_sample if prm.preview_sample is not None else n - 1 + n // 2)
    idx = preview_pairs(pairs, n, max(0, min(sample, len(run.inr))), run.rng)
    preview_results, n_win, t_corr = _run_previews(
        run.catalog, pairs, idx, factor, prm.preview_window, prm.preview_step, psearch,
        prm.ncc_min, run.progress.sub(0.0, 0.8), prm.blocks)
    # a date judged only through pairs with poor partners is not known to be poor:
    # one more preview with a partner that is known to be good (issue 14)
    extra = confirmation_previews(pairs, preview_results, run.inr, n, prm.min_clear_factor)
    if extra:
        more, n_more, t_more = _run_previews(
            run.catalog, pairs, extra, factor, prm.preview_window, prm.preview_step, psearch,
            prm.ncc_min, run.progress.sub(0.8, 0.85), prm.blocks)
        preview_results.update(more)
        t_corr += t_more
        idx = list(idx) + list(extra)
        run.notes.append("%d confirmation preview(s) for date(s) seen only beside poor "
                         "dates" % len(extra))
    run.timings["previews_s"] = time.perf_counter() - t0
    run.timings["previews_correlation_s"] = t_corr
    for pk, q in preview_results.items():
        pairs[pk].preview = q
    run.notes.append("%d preview correlation(s) at 1/%d resolution (window %d, step %d, "
                     "search %d) in %.2f s" % (len(idx), factor, prm.preview_window,
                                               prm.preview_step, psearch,
                                               run.timings["previews_s"]))
    run.preview_results = preview_results


def _pair_cost(run):
    """The seconds per full-resolution pair: given, or measured on a crop when a CPU
    budget needs it."""
    prm = run.prm
    run.pair_cost = prm.pair_cost_s
    if run.pair_cost is None and prm.budget_cpu_s is not None:
        t0 = time.perf_counter()
        run.pair_cost = _measure_pair_cost(run.catalog, run.pairs[run.inr[0]], prm.window,
                                           prm.step, prm.search)
        run.timings["cost_probe_s"] = time.perf_counter() - t0
    run.timings["pair_cost_estimate_s"] = (float(run.pair_cost) if run.pair_cost
                                           else float("nan"))


def _training_rows(run):
    """(rows of this run, every training row, number of full-resolution rows, path of
    the training file or None): the previews, the full results of earlier runs in the
    history folder and the rows of the training file."""
    pairs, notes = run.pairs, run.notes
    new_rows = [_training_row(pairs[pk], q, "preview")
                for pk, q in run.preview_results.items()]
    tr_path = run.training_csv or (os.path.join(run.history_folder, "quality_training.csv")
                                   if run.history_folder else None)
    full_used = 0
    if run.history_folder:
        by_key = {(p.reference_date, p.secondary_date): p for p in pairs}
        for r in read_full_results(run.history_folder, ncc_min=run.prm.ncc_min):
            if "problem" in r:
                notes.append("earlier result skipped: " + r["problem"])
                continue
            p = by_key.get((r["reference_date"], r["secondary_date"]))
            if p is None:
                continue
            row = _training_row(p, r, "full")
            row["full_res"] = 1.0
            new_rows.append(row)
            full_used += 1
    have = {(r["reference_date"], r["secondary_date"], r["source"]) for r in new_rows}
    rows = new_rows + [r for r in (read_training_csv(tr_path) if tr_path else [])
                       if (r["reference_date"], r["secondary_date"], r["source"]) not in have]
    full_used += sum(1 for r in rows[len(new_rows):] if r["source"] == "full")
    return new_rows, rows, full_used, tr_path


def _fit_model(run):
    """Phase 4: the quality model fitted on the training rows predicts every candidate
    (without any row: a prior from the cheap features); previewed pairs keep their
    measured quality; the training file is updated."""
    t0 = time.perf_counter()
    pairs, notes = run.pairs, run.notes
    new_rows, rows, full_used, tr_path = _training_rows(run)
    train_X = [np.array([float(r[f]) for f in FEATURES]) for r in rows]
    train_q = [float(r["quality"]) for r in rows]
    ti = [r["reference_date"] for r in rows]
    tj = [r["secondary_date"] for r in rows]
    tw = [1.0] * len(rows)
    run.prior = prior = {r.iso: 1.0 - (r.cloud_fraction if np.isfinite(r.cloud_fraction)
                                       else run.cloud_fill) for r in run.recs}
    if train_q:
        model = QualityModel().fit(np.array(train_X), np.array(train_q), ti, tj, tw)
        X = np.array([p.features for p in pairs])
        if full_used:
            X[:, FEATURES.index("full_res")] = 1.0
        pred = model.predict(X, [p.reference_date for p in pairs],
                             [p.secondary_date for p in pairs], prior_clear=prior)
        for p, q in zip(pairs, pred):
            p.predicted_quality = float(q)
        notes.append(model.describe())
        run.model = model
    else:
        # no preview, no history: prior from the cheap features only
        for p in pairs:
            f = p.features
            q = (1 - f[0]) * (1 - f[2]) * math.exp(-0.5 * f[7]) / (1 + 0.5 * f[6])
            if f[8] > 1:
                q *= 0.1
            p.predicted_quality = float(q)
        notes.append("no previews or earlier results: quality predicted from cloud/valid "
                     "fractions, season and baseline only")
    for pk, q in run.preview_results.items():
        pairs[pk].predicted_quality = float(q["quality"])
    if tr_path and new_rows:
        try:
            merge_training_rows(tr_path, new_rows)
        except Exception as exc:  # keep going: the training file is a cache
            notes.append("could not update %s: %s" % (tr_path, exc))
    run.timings["model_s"] = time.perf_counter() - t0


def _date_clear_blocks(run, bref):
    """(previews' qualities by date, per-date clear fraction in each spatial block):
    the best preview of the date in the block relative to ``bref``, or ``1 - cloud
    fraction`` for a date without a preview."""
    G = run.prm.blocks * run.prm.blocks
    date_prev = {}
    clear = np.zeros((run.n, G))
    seen = np.zeros(run.n, bool)
    for pk, q in run.preview_results.items():
        for d in (run.pairs[pk].i, run.pairs[pk].j):
            date_prev.setdefault(d, []).append(q["quality"])
            clear[d] = np.maximum(clear[d], q["blocks"])
            seen[d] = True
    clear = np.minimum(clear / bref, 1.0)
    for d in range(run.n):
        if not seen[d]:
            cf = run.recs[d].cloud_fraction
            clear[d] = 1.0 - (cf if np.isfinite(cf) else run.cloud_fill)
    return date_prev, clear


def _usability(run):
    """Phase 5 (first half): reference and minimum quality, unusable dates, and each
    in-range pair's block weights (quality x motion term) or the reason it is not usable;
    the weights of the usable pairs are normalised to a maximum of 1."""
    prm, pairs, recs, preview_results = run.prm, run.pairs, run.recs, run.preview_results
    pq = [q["quality"] for q in preview_results.values()]
    q_ref = float(np.percentile(pq, 90)) if pq else float(
        np.percentile([pairs[k].predicted_quality for k in run.inr], 90))
    q_ref = max(q_ref, 1e-3)
    q_min = max(prm.min_quality, prm.min_quality_rel * q_ref)
    bref = max(float(np.percentile(np.concatenate([q["blocks"] for q in preview_results.values()]),
                                   90)) if preview_results else 1.0, 1e-3)
    date_prev, clear = _date_clear_blocks(run, bref)
    # motion-dependent error: sigma_p^2 = sigma_c^2 + (gamma * v * dt)^2 (see module doc)
    v_px, sigma_c = _motion_model(pairs, preview_results, run.exp_px, q_min, run.notes,
                                  run.pixel)
    # per-date clear factor: the lower of the previews' evidence (the model's c_i) and
    # the images' own (1 - cloud / perturbed fraction); unusable dates (module doc)
    prior, model = run.prior, run.model
    date_clear = [min(float(model.date_effects.get(r.iso, prior[r.iso])), float(prior[r.iso]))
                  if model is not None else float(prior[r.iso]) for r in recs]
    quality_aware = prm.strategy in ("optimal", "seasonal")
    unusable = {d: "date %s unusable: clear factor %.2f < %.2g" % (
        recs[d].iso, date_clear[d], prm.min_clear_factor)
        for d in range(run.n) if quality_aware and date_clear[d] < prm.min_clear_factor}
    usable = [k for k in run.inr
              if _pair_usable(pairs[k], prm, v_px, sigma_c, bref, clear, q_ref, q_min,
                              unusable, recs, date_prev)]
    wmax = max([float(pairs[k].block_weights.max()) for k in usable] or [1.0])
    for k in usable:
        pairs[k].block_weights = pairs[k].block_weights / wmax
        pairs[k].weight /= wmax
    run.q_ref, run.q_min, run.date_prev = q_ref, q_min, date_prev
    run.unusable, run.date_clear, run.usable = unusable, date_clear, usable


def _pair_usable(p, prm, v_px, sigma_c, bref, clear, q_ref, q_min, unusable, recs, date_prev):
    """Set the score, motion factor, block weights and weight of the in-range pair
    ``p``; False (with the reason) when it is not usable: expected motion beyond its
    reach, predicted quality too low, or an unusable date."""
    p.score = round(p.predicted_quality, 4)
    ratio = prm.motion_error_fraction * v_px * (p.baseline_days / DAYS_PER_YEAR) / sigma_c
    p.extra["motion_factor"] = 1.0 / (1.0 + ratio * ratio)
    if p.preview is not None:
        qb = np.minimum(p.preview["blocks"] / bref, 1.0)
    else:
        cc = clear[p.i] * clear[p.j]
        qb = np.minimum(cc * (p.predicted_quality / q_ref) / max(float(cc.mean()), 0.05), 1.0)
    qb = np.clip(qb, 0.0, 1.0)
    qw = prm.quality_weighting
    wq = qb / (1.1 - qb) if qw == "odds" else qb ** float(qw)
    p.block_weights = np.where(qb * q_ref >= q_min, wq, 0.0) * p.extra["motion_factor"]
    p.weight = float(p.block_weights.mean())
    motion = p.features[FEATURES.index("motion_ratio")]
    if motion > 1.0:
        p.reason = "rejected: expected motion %.1f px > search %.0f px" % (
            motion * p.extra["reach_px"], p.extra["reach_px"])
        p.weight = 0.0
        return False
    if p.predicted_quality < q_min or not (p.block_weights > 0).any():
        p.reason = "rejected: predicted quality %.2f < %.2f%s" % (
            p.predicted_quality, q_min, _why_poor(p, recs, date_prev, q_min))
        p.weight = 0.0
        return False
    bad_dates = [unusable[d] for d in (p.i, p.j) if d in unusable]
    if bad_dates:
        p.reason = "rejected: " + "; ".join(bad_dates)
        p.weight = 0.0
        return False
    return True


def _select(run):
    """Phase 5 (second half): the budget, then the strategy's selection."""
    prm, pairs, inr, n = run.prm, run.pairs, run.inr, run.n
    budget = _budget(n, prm.budget_pairs, prm.budget_pairs_per_date, prm.budget_cpu_s,
                     run.pair_cost)
    t0 = time.perf_counter()
    strategy = prm.strategy
    if strategy == "all":
        for k in inr:
            pairs[k].selected = True
            pairs[k].stage = "all"
            pairs[k].reason = "selected: all pairs within the baseline range"
        if budget is not None and budget < len(inr):
            run.notes.append("strategy 'all' ignores the budget (%d pairs instead of %d)" % (
                len(inr), budget))
        budget = None
    elif strategy == "sequential":
        _select_sequential(pairs, inr, n, budget)
    elif strategy == "random":
        _select_random(pairs, inr, budget, run.rng, prm.seed)
    else:
        cand = run.usable
        if strategy == "seasonal":
            cand = _seasonal_candidates(run)
        _select_design(pairs, cand, n, budget, prm.min_pairs_per_date, prm.criterion,
                       by_quality=(strategy == "seasonal"),
                       progress=run.progress.sub(0.8, 1.0))
    run.timings["selection_s"] = time.perf_counter() - t0
    run.budget = budget


def _seasonal_candidates(run):
    """The usable pairs that are short or anniversary pairs (the others get their
    reason)."""
    pairs, recs = run.pairs, run.recs
    win = run.prm.seasonal_window_days if run.prm.seasonal_window_days is not None else 30
    cand = [k for k in run.usable if _is_seasonal(pairs[k], win)]
    for k in run.usable:
        if k not in set(cand):
            pairs[k].reason = "rejected: not seasonal (baseline %d d, season " \
                              "difference %.0f d > %d d)" % (
                                  pairs[k].baseline_days,
                                  _season_days(recs[pairs[k].i].date,
                                               recs[pairs[k].j].date), win)
    return cand


def _network_report(run):
    """Reasons for the pairs left without one, excluded dates and the connectivity
    problems of the selected network."""
    prm, pairs, recs, n = run.prm, run.pairs, run.recs, run.n
    for k in run.inr:
        p = pairs[k]
        if not p.selected and not p.reason:
            p.reason = "rejected: budget reached"
            if np.isfinite(p.gain):
                p.reason += " (gain %.3g)" % p.gain
    sel_edges = [(p.i, p.j) for p in pairs if p.selected]
    deg = np.zeros(n, int)
    for i, j in sel_edges:
        deg[i] += 1
        deg[j] += 1
    _excluded_dates(run, deg)
    comps = [c for c in connected_components(n, sel_edges) if any(deg[k] for k in c)]
    if len(comps) > 1:
        _disconnected_parts(run, comps)
    if prm.strategy in ("optimal", "seasonal"):
        for d in range(n):
            if 0 < deg[d] < prm.min_pairs_per_date:
                run.notes.append("date %s has only %d selected pair(s) (< %d): not enough "
                                 "usable pairs within the budget" % (
                                     recs[d].iso, deg[d], prm.min_pairs_per_date))
    if run.budget is not None:
        run.timings["estimated_correlation_s"] = len(sel_edges) * (run.pair_cost
                                                                   or float("nan"))


def _excluded_dates(run, deg):
    """Dates excluded (unusable, or without a usable pair) and dates in no selected pair
    (``deg``: selected pairs per date)."""
    recs, unusable, date_prev = run.recs, run.unusable, run.date_prev
    usable_dates = set()
    for k in run.usable:
        usable_dates.update((run.pairs[k].i, run.pairs[k].j))
    for d in range(run.n):
        if d in unusable:
            run.excluded.append(recs[d].iso)
            run.notes.append("date %s excluded: clear factor %.2f < min_clear_factor %.2g, "
                             "none of its pairs is used (%s)" % (
                                 recs[d].iso, run.date_clear[d], run.prm.min_clear_factor,
                                 _date_evidence(d, recs, date_prev)))
        elif deg[d] == 0:
            if d not in usable_dates and run.prm.strategy in ("optimal", "seasonal"):
                run.excluded.append(recs[d].iso)
                run.problems.append("date %s excluded: no usable pair (%s)" % (
                    recs[d].iso, _date_evidence(d, recs, date_prev)))
            else:
                run.problems.append("date %s is in no selected pair (budget %s too small or "
                                    "strategy %s)" % (recs[d].iso, run.budget,
                                                      run.prm.strategy))


def _disconnected_parts(run, comps):
    """The problem lines of a selected network in several parts (``comps``), naming the
    parts cut off next to unusable dates."""
    recs, pairs, unusable = run.recs, run.pairs, run.unusable
    run.problems.append("the selected network has %d disconnected parts (%s): their "
                        "relative displacement is fixed only by the inversion's "
                        "regularisation" % (len(comps), "; ".join(
                            "%s..%s (%d dates)" % (recs[c[0]].iso, recs[c[-1]].iso, len(c))
                            for c in comps)))
    if not unusable:
        return
    # a part cut off from the main network next to unusable dates: say which
    main = set(max(comps, key=len))
    for c in comps:
        if set(c) == main:
            continue
        near = sorted({recs[b].iso for k in run.inr
                       for a, b in ((pairs[k].i, pairs[k].j), (pairs[k].j, pairs[k].i))
                       if a in c and b in unusable})
        if near:
            run.problems.append("date(s) %s cannot be connected to the main network "
                                "(%s..%s) through usable pairs; their in-range pairs "
                                "with unusable date(s) %s were not used" % (
                                    ", ".join(recs[k].iso for k in c), recs[min(main)].iso,
                                    recs[max(main)].iso, ", ".join(near)))


def _selection_result(run):
    """The :class:`PairSelection` of a finished run (its ``params``: the main settings
    and the quality thresholds used)."""
    prm, recs = run.prm, run.recs
    params = dict(strategy=prm.strategy, budget_pairs_per_date=prm.budget_pairs_per_date,
                  budget_pairs=prm.budget_pairs, budget_cpu_s=prm.budget_cpu_s,
                  min_pairs_per_date=prm.min_pairs_per_date,
                  min_baseline_days=prm.min_baseline_days,
                  max_baseline_days=prm.max_baseline_days,
                  seasonal_window_days=prm.seasonal_window_days, previews=bool(prm.previews),
                  preview_sample=prm.preview_sample, criterion=prm.criterion, seed=prm.seed,
                  min_clear_factor=prm.min_clear_factor, q_ref=run.q_ref, q_min=run.q_min)
    return PairSelection([r.iso for r in recs], [r.path for r in recs], run.pairs,
                         prm.strategy, run.budget, run.problems, run.notes, run.timings,
                         run.model, run.excluded, params)


def _motion_model(pairs, preview_results, exp_px, q_min, notes, pixel):
    """(fastest velocity in px/yr, correlation noise in px) for the motion error term.

    The velocity is ``expected_velocity_m_per_yr`` when given, otherwise the slope of the
    previews' 99th-percentile motion against their baseline (least squares with an
    intercept, the noise floor); the noise is a third of that intercept (floored at
    0.05 px)."""
    rows = [(pairs[k].baseline_days / DAYS_PER_YEAR, q["motion_px"]) for k, q in
            preview_results.items() if "motion_px" in q and q["quality"] >= q_min]
    sigma_c, v_fit = 0.05, 0.0
    if len(rows) >= 5:
        t, m = np.array(rows).T
        if np.ptp(t) > 0.05:
            A = np.vstack([np.ones_like(t), t]).T
            (a, b), *_ = np.linalg.lstsq(A, m, rcond=None)
            sigma_c = max(0.05, float(a) / 3.0)
            v_fit = max(float(b), 0.0)
    if exp_px:
        v = float(exp_px)
        notes.append("motion error term: expected velocity %.2f px/yr (given), correlation "
                     "noise %.2f px" % (v, sigma_c))
    else:
        v = v_fit
        if rows:
            notes.append("motion error term: fastest motion estimated from the previews "
                         "%.2f px/yr (%.1f m/yr), correlation noise %.2f px" % (
                             v, v * pixel if np.isfinite(pixel) else float("nan"), sigma_c))
    return v, sigma_c


def confirmation_previews(pairs, preview_results, inr, n, min_clear_factor):
    """Pairs to preview so that no date is judged only by poor partners.

    After the first previews, a date whose best preview quality is below
    ``min_clear_factor`` of the 90th percentile of all preview qualities may be clouded,
    or may only have been paired with clouded dates. For each such date that has an
    in-range pair not yet previewed whose partner's best preview is good, the pair with
    the nearest such partner is added (at most one per date). Returns pair indices."""
    if not preview_results or min_clear_factor <= 0:
        return []
    qs = [float(q["quality"]) for q in preview_results.values()]
    q_ref = max(float(np.percentile(qs, 90)), 1e-3)
    best = np.zeros(n)
    for pk, q in preview_results.items():
        for d in (pairs[pk].i, pairs[pk].j):
            best[d] = max(best[d], float(q["quality"]))
    good = best >= min_clear_factor * q_ref
    extra = []
    for d in np.flatnonzero(~good):
        cands = [k for k in inr if k not in preview_results and d in (pairs[k].i, pairs[k].j)
                 and good[pairs[k].j if pairs[k].i == d else pairs[k].i]]
        if cands:
            extra.append(min(cands, key=lambda k: (pairs[k].baseline_days, k)))
    return sorted(set(extra))


def _training_row(p, q, source):
    row = dict(reference_date=p.reference_date, secondary_date=p.secondary_date,
               source=source, quality=float(q["quality"]),
               good_fraction=float(q.get("good_fraction", float("nan"))),
               coherence=float(q.get("coherence", float("nan"))),
               ncc_median=float(q.get("ncc_median", float("nan"))))
    row.update({name: float(v) for name, v in zip(FEATURES, p.features)})
    return row


def _date_evidence(d, recs, date_prev):
    parts = []
    if d in date_prev:
        parts.append("mean preview quality %.2f over %d preview(s)" % (
            float(np.mean(date_prev[d])), len(date_prev[d])))
    r = recs[d]
    if np.isfinite(r.cloud_fraction):
        parts.append("cloud fraction %.2f (%s)" % (r.cloud_fraction, r.cloud_source or "?"))
    if np.isfinite(r.valid_fraction) and r.valid_fraction < 0.9:
        parts.append("valid fraction %.2f" % r.valid_fraction)
    return ", ".join(parts) or "all its pairs predicted poor"


def _why_poor(p, recs, date_prev, q_min):
    bad = []
    for d in (p.i, p.j):
        prev = date_prev.get(d)
        if prev and np.mean(prev) < q_min:
            bad.append("%s poor in its previews: mean %.2f" % (recs[d].iso, np.mean(prev)))
        elif np.isfinite(recs[d].cloud_fraction) and recs[d].cloud_fraction > 0.5:
            bad.append("%s cloud fraction %.2f" % (recs[d].iso, recs[d].cloud_fraction))
    if not bad and p.preview is not None:
        bad.append("measured in preview")
    return (" (" + "; ".join(bad) + ")") if bad else ""


def _is_seasonal(p, win):
    if p.baseline_days <= max(win, 1):
        return True
    years = round(p.baseline_days / DAYS_PER_YEAR)
    return years >= 1 and abs(p.baseline_days - years * DAYS_PER_YEAR) <= win


def _select_sequential(pairs, inr, n, budget):
    by_ij = {(pairs[k].i, pairs[k].j): k for k in inr}
    kmax = n if budget is None else max(1, int(math.ceil(budget / max(n - 1, 1))))
    order = []
    for gap in range(1, n):
        for i in range(n):
            # the gap-th in-range neighbour
            partners = [j for j in range(i + 1, n) if (i, j) in by_ij]
            if len(partners) >= gap:
                order.append((gap, by_ij[(i, partners[gap - 1])]))
        if gap >= kmax and (budget is None or len(order) >= budget):
            break
    taken = 0
    for gap, k in order:
        if budget is not None and taken >= budget:
            pairs[k].reason = "rejected: budget reached (sequential neighbour +%d)" % gap
            continue
        pairs[k].selected, pairs[k].stage = True, "sequential"
        pairs[k].reason = "selected: sequential neighbour +%d" % gap
        taken += 1
    for k in inr:
        if not pairs[k].selected and not pairs[k].reason:
            pairs[k].reason = "rejected: not among the nearest sequential neighbours"


def _select_random(pairs, inr, budget, rng, seed):
    m = len(inr) if budget is None else min(budget, len(inr))
    pick = set(rng.choice(len(inr), size=m, replace=False).tolist())
    for t, k in enumerate(inr):
        if t in pick:
            pairs[k].selected, pairs[k].stage = True, "random"
            pairs[k].reason = "selected: random draw (seed %s)" % seed
        else:
            pairs[k].reason = "rejected: not drawn (random, seed %s)" % seed


def _select_design(pairs, cand, n, budget, kmin, criterion, by_quality=False, progress=None):
    """Phases (a) bridges, (b) minimum degree, (c) greedy gain (or quality) to budget."""
    progress = as_progress(progress)
    if not cand:
        return
    budget = len(cand) if budget is None else min(budget, len(cand))
    I = np.array([pairs[k].i for k in cand])
    J = np.array([pairs[k].j for k in cand])
    W = np.array([pairs[k].block_weights for k in cand])          # (C, G)
    Q = np.array([pairs[k].predicted_quality for k in cand])
    B = np.array([pairs[k].baseline_days for k in cand], float)
    reg = 1e-3 * float(np.mean(W[W > 0])) if (W > 0).any() else 1e-3
    design = _Design(n, criterion, reg, W.shape[1])
    free = np.ones(len(cand), bool)
    deg = np.zeros(n, int)
    uf = _UF(n)
    crit = "%s-optimal" % criterion
    taken = [0]
    last_gain = [float("nan")]

    def take(t, stage, reason):
        k = cand[t]
        p = pairs[k]
        p.selected, p.stage, p.reason = True, stage, reason
        free[t] = False
        design.add(p.i, p.j, W[t])
        deg[p.i] += 1
        deg[p.j] += 1
        uf.union(p.i, p.j)
        taken[0] += 1

    def score(mask):
        g = np.full(len(cand), -np.inf)
        idx = np.nonzero(mask)[0]
        if len(idx):
            if by_quality:
                # seasonal: quality first, shorter baseline as tie-break
                g[idx] = Q[idx] - 1e-6 * B[idx]
            else:
                g[idx] = design.gains(I[idx], J[idx], W[idx])
        return g

    # (a) bridges
    while taken[0] < budget:
        roots = np.array([uf.find(a) for a in range(n)])
        bridge = free & (roots[I] != roots[J])
        if not bridge.any():
            break
        g = score(bridge)
        t = int(np.argmax(g))
        take(t, "bridge", "selected: bridge between components (%s %.3g, predicted quality "
             "%.2f)" % ("quality" if by_quality else crit + " gain", g[t], Q[t]))
        progress.check()
    # (b) minimum pairs per date
    while taken[0] < budget:
        low = deg < kmin
        need = free & (low[I] | low[J])
        if not need.any():
            break
        g = score(need)
        # serve the most deprived dates first
        g = np.where(need, g + 1e6 * (np.minimum(deg[I], deg[J]) == np.min(
            np.minimum(deg[I], deg[J])[need])), g)
        t = int(np.argmax(g))
        d = pairs[cand[t]].i if deg[pairs[cand[t]].i] < kmin else pairs[cand[t]].j
        gg = score(np.eye(1, len(cand), t, dtype=bool)[0])[t]
        day = pairs[cand[t]].reference_date if d == pairs[cand[t]].i \
            else pairs[cand[t]].secondary_date
        take(t, "min_pairs", "selected: at least %d pairs for %s (%s %.3g, predicted quality "
             "%.2f)" % (kmin, day, "quality" if by_quality else crit + " gain", gg, Q[t]))
    # (c) greedy to budget
    rank = 0
    while taken[0] < budget and free.any():
        g = score(free)
        t = int(np.argmax(g))
        rank += 1
        take(t, "design", "selected: %s %.3g (predicted quality %.2f, rank %d)" % (
            "quality" if by_quality else crit + " gain", g[t], Q[t], rank))
        last_gain[0] = g[t]
        if rank % 20 == 0:
            progress.check()
            progress.update(taken[0] / max(budget, 1))
    # gains of the rejected (for the csv)
    g = score(free)
    for t in np.nonzero(free)[0]:
        p = pairs[cand[t]]
        p.gain = float(g[t])
        p.reason = "rejected: budget reached (%s %.3g%s)" % (
            "quality" if by_quality else crit + " gain", g[t],
            (" < last selected %.3g" % last_gain[0]) if np.isfinite(last_gain[0]) else "")


# ----------------------------------------------------------------------------- csv
# the pairs.csv contract (columns, cell vocabulary, writer, strict reader): .pairs_file

_f = pairs_file.format_number


def _csv_row(p):
    """The cells of one pair of ``pairs.csv`` (values; formatted by the writer)."""
    pv = p.preview or {}
    feats = p.features if p.features is not None else [float("nan")] * len(FEATURES)
    return dict(reference_date=p.reference_date, secondary_date=p.secondary_date,
                reference_path=p.reference_path, secondary_path=p.secondary_path,
                baseline_days=p.baseline_days, score=p.score, selected=p.selected,
                reason=p.reason, predicted_quality=p.predicted_quality,
                preview_quality=pv.get("quality"),
                preview_good_fraction=pv.get("good_fraction"),
                preview_coherence=pv.get("coherence"),
                preview_ncc_median=pv.get("ncc_median"), weight=p.weight, gain=p.gain,
                stage=p.stage, in_range=p.in_range,
                cloud_max=feats[FEATURES.index("cloud_max")],
                season_diff=feats[FEATURES.index("season_diff")])


def pairs_csv_text(selection):
    """The text of ``pairs.csv`` of a :class:`PairSelection` (SPEC columns, then the
    extra columns; :func:`.pairs_file.pairs_text`)."""
    return pairs_file.pairs_text(_csv_row(p) for p in selection.pairs)


def write_pairs_csv(selection, path):
    """Write ``pairs.csv`` atomically (SPEC columns, then the extra columns)."""
    write_text_atomic(path, pairs_csv_text(selection))
    return path


def read_pairs_csv(path):
    """Read ``pairs.csv`` strictly (:func:`.pairs_file.read_pairs`): any bad cell (a date,
    ``selected`` not 1/0/true/false, a number) or a pair listed twice raises InputError
    naming the file, the line, the column and the value. Relative paths are resolved
    against the CSV's folder. Returns a :class:`PairsTable` (``problems`` empty)."""
    pairs = []
    for r in pairs_file.read_pairs(path):
        p = Pair(r.reference_date, r.secondary_date, r.reference_path, r.secondary_path,
                 r.baseline_days, score=r.score, selected=r.selected, reason=r.reason)
        for c in EXTRA_COLUMNS:
            if c in r.extra:
                p.extra[c] = r.extra[c]
        if "predicted_quality" in p.extra:
            p.predicted_quality = float(p.extra["predicted_quality"])
        pairs.append(p)
    return PairsTable(pairs, [])


# ----------------------------------------------------------------------------- summary

def network_summary(selection, dates=None):
    """Network summary of a :class:`PairSelection` (or a :class:`PairsTable` + ``dates``):
    dates, redundancy per date, connected components, predicted quality."""
    if dates is None:
        dates = getattr(selection, "dates", None)
    pairs = selection.pairs
    if dates is None:
        dates = sorted({p.reference_date for p in pairs} | {p.secondary_date for p in pairs})
    index = {d: k for k, d in enumerate(dates)}
    sel = [p for p in pairs if p.selected]
    edges = [(index[p.reference_date], index[p.secondary_date]) for p in sel
             if p.reference_date in index and p.secondary_date in index]
    deg = [0] * len(dates)
    qsum = [0.0] * len(dates)
    for (i, j), p in zip(edges, sel):
        deg[i] += 1
        deg[j] += 1
        q = p.predicted_quality if math.isfinite(p.predicted_quality) else 0.0
        qsum[i] += q
        qsum[j] += q
    comps = [c for c in connected_components(len(dates), edges) if len(c) > 1 or deg[c[0]]]
    comp_of = {}
    for c_id, c in enumerate(comps, start=1):
        for k in c:
            comp_of[k] = c_id
    quals = [p.predicted_quality for p in sel if math.isfinite(p.predicted_quality)]
    per_date = [dict(date=d, n_pairs=deg[k], component=comp_of.get(k, 0),
                     mean_predicted_quality=(round(qsum[k] / deg[k], 4) if deg[k] else None))
                for k, d in enumerate(dates)]
    bl = [p.baseline_days for p in sel]
    return dict(
        strategy=getattr(selection, "strategy", ""), n_dates=len(dates),
        n_candidates=len(pairs),
        n_candidates_in_range=sum(1 for p in pairs if p.in_range),
        n_selected=len(sel), budget=getattr(selection, "budget", None),
        n_components=len(comps),
        components=[[dates[k] for k in c] for c in comps],
        isolated_dates=[d for k, d in enumerate(dates) if deg[k] == 0],
        excluded_dates=list(getattr(selection, "excluded_dates", [])),
        mean_pairs_per_date=round(2.0 * len(sel) / max(len(dates), 1), 3),
        min_pairs_per_date=min(deg) if deg else 0,
        mean_predicted_quality=round(float(np.mean(quals)), 4) if quals else None,
        baseline_days=dict(min=min(bl), median=float(np.median(bl)), max=max(bl)) if bl else None,
        timings={k: round(v, 4) for k, v in getattr(selection, "timings", {}).items()
                 if isinstance(v, float) and math.isfinite(v)},
        problems=list(getattr(selection, "problems", [])),
        dates=per_date)


def write_network_summary(summary, json_path, csv_path=None):
    """Write the summary as JSON (and the per-date table as CSV), atomically."""
    write_text_atomic(json_path, json.dumps(summary, indent=2, default=str))
    if csv_path:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["date", "n_pairs", "component", "mean_predicted_quality"])
        for row in summary["dates"]:
            w.writerow([row["date"], row["n_pairs"], row["component"],
                        "" if row["mean_predicted_quality"] is None
                        else row["mean_predicted_quality"]])
        write_text_atomic(csv_path, buf.getvalue())
    return json_path
