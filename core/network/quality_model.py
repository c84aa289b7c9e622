"""Quality of a correlation pair: measured (previews, full results) and predicted.

*Measured quality* of a displacement field (:func:`field_quality`) is the product

    q = good_fraction × coherence

where ``good_fraction`` is the fraction of windows with a valid estimate
(status 0, finite) and NCC ≥ ``ncc_min``, and ``coherence`` is the fraction of
those good vectors that agree within ``tol_px`` with the median of their good
3×3 neighbours. Clouds, snow, nodata and decorrelation lower the first term;
random matches (which can have a high NCC on repeated texture) lower the second.
A pair correlating a fully clouded image comes out near 0, a clean pair near 1.

*Predicted quality* (:class:`QualityModel`) is a small multiplicative model

    q_ij = c_i · c_j · exp(x_ij · beta)

fitted on the preview correlations (and on full-resolution results of earlier
runs, read from ``pairs/pair_*.tif``): ``c_i`` is a per-date clear factor (the
best measured quality of any pair with date *i*, relative to the reference
quality: a date is at least as good as its best pair), and ``beta`` a ridge
regression of ``log(q_ij / (c_i c_j))`` on the cheap pair features of
:data:`FEATURES` (cloud and invalid fractions of both images, sun-angle
differences, baseline, season, expected motion against the search range,
full-resolution flag). The date factor is what makes the optimiser work without
any cloud mask: a fully clouded date has low quality in *all* its previews, so
``c_i`` ≈ 0 and every pair with that date is predicted poor, including the pairs
that were never previewed. (An additive logit model cannot do this: it predicts
about 0.5 for a clear/clouded pair when it has seen clear/clear and
clouded/clouded pairs.)

Training rows are kept in ``quality_training.csv`` (merged across runs, written
atomically) so the model improves as a project accumulates full results.
"""

import csv
import glob
import io
import json
import math
import os

import numpy as np

from ..errors import InputError
from ..products import (BAND_EAST, BAND_NCC, BAND_NORTH, BAND_STATUS, DAYS_PER_YEAR, PAIR_GLOB,
                        PAIRS_FOLDER, TAG_PARAMS, parse_pair_name)
from ..raster_io import write_text_atomic

__all__ = ["FEATURES", "field_quality", "pair_features", "QualityModel",
           "read_full_results", "read_training_csv", "write_training_csv",
           "merge_training_rows", "TRAINING_COLUMNS"]

FEATURES = ("cloud_max", "cloud_min", "invalid_max", "invalid_min", "sun_elevation_diff",
            "sun_azimuth_diff", "baseline_years", "season_diff", "motion_ratio", "full_res")

TRAINING_COLUMNS = ("reference_date", "secondary_date", "source", "quality", "good_fraction",
                    "coherence", "ncc_median") + FEATURES


def _nan0(v, default=0.0):
    try:
        v = float(v)
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) else default


def field_quality(dx, dy, ncc, status=None, ncc_min=0.5, tol_px=1.0):
    """Measured quality of a displacement field (see module doc).

    Returns a dict with ``quality``, ``good_fraction``, ``coherence``,
    ``valid_fraction``, ``ncc_median`` and ``n``.
    """
    dx = np.asarray(dx, dtype=np.float64)
    dy = np.asarray(dy, dtype=np.float64)
    ncc = np.asarray(ncc, dtype=np.float64)
    valid = np.isfinite(dx) & np.isfinite(dy) & np.isfinite(ncc)
    if status is not None:
        valid &= np.asarray(status) == 0
    n = dx.size
    if n == 0:
        return dict(quality=0.0, good_fraction=0.0, coherence=0.0, valid_fraction=0.0,
                    ncc_median=float("nan"), n=0)
    good = valid & (ncc >= ncc_min)
    ng = int(good.sum())
    if ng == 0:
        return dict(quality=0.0, good_fraction=0.0, coherence=0.0, mask=good,
                    valid_fraction=float(valid.mean()),
                    ncc_median=float(np.median(ncc[valid])) if valid.any() else float("nan"),
                    n=n)
    # coherence: agreement with the NaN-aware median of the good 3x3 neighbours
    coh = _coherent(dx, dy, good, tol_px)
    coherence = float(coh.sum()) / ng
    gf = ng / float(n)
    return dict(quality=gf * coherence, good_fraction=gf, coherence=coherence,
                valid_fraction=float(valid.mean()), ncc_median=float(np.median(ncc[valid])), n=n,
                mask=coh)


def _coherent(dx, dy, good, tol):
    """Boolean: good vectors within ``tol`` of the median of their good 3x3 neighbours
    (a vector without any good neighbour counts as incoherent).

    The median is NaN-aware like ``np.nanmedian`` (mean of the two middle values for an
    even count), computed for all vectors at once: the 8 neighbours are sorted (NaN
    last) and the middle values picked by each vector's count of good neighbours."""
    H, W = dx.shape
    out = np.zeros((H, W), bool)
    if not good.any():
        return out

    def neighbours(a):
        p = np.pad(np.where(good, a, np.nan), 1, mode="constant", constant_values=np.nan)
        return np.stack([p[1 + r:1 + r + H, 1 + c:1 + c + W] for r in (-1, 0, 1)
                         for c in (-1, 0, 1) if (r, c) != (0, 0)])

    sx, sy = neighbours(dx), neighbours(dy)            # (8, H, W)
    cnt = np.isfinite(sx).sum(axis=0)
    sx.sort(axis=0)
    sy.sort(axis=0)
    lo = np.maximum(cnt - 1, 0) // 2
    hi = cnt // 2
    hi = np.where(cnt > 0, hi, 0)

    def median(s):
        a = np.take_along_axis(s, lo[None], axis=0)[0]
        b = np.take_along_axis(s, hi[None], axis=0)[0]
        return (a + b) / 2.0

    mx, my = median(sx), median(sy)
    with np.errstate(invalid="ignore"):
        ok = good & (cnt >= 1) & (np.hypot(dx - mx, dy - my) <= tol)
    return ok


def pair_features(rec_i, rec_j, baseline_days, expected_px_per_year=0.0, search_px=8,
                  full_res=0.0, cloud_fill=0.0):
    """Cheap features of a pair (order of :data:`FEATURES`) from two catalog records."""
    ci = _nan0(rec_i.cloud_fraction, cloud_fill)
    cj = _nan0(rec_j.cloud_fraction, cloud_fill)
    vi = 1.0 - _nan0(rec_i.valid_fraction, 1.0)
    vj = 1.0 - _nan0(rec_j.valid_fraction, 1.0)
    se_i, se_j = _nan0(rec_i.sun_elevation, float("nan")), _nan0(rec_j.sun_elevation, float("nan"))
    sa_i, sa_j = _nan0(rec_i.sun_azimuth, float("nan")), _nan0(rec_j.sun_azimuth, float("nan"))
    dse = abs(se_i - se_j) / 30.0 if math.isfinite(se_i) and math.isfinite(se_j) else 0.0
    dsa = abs(((sa_i - sa_j) + 180.0) % 360.0 - 180.0) / 30.0 if (
        math.isfinite(sa_i) and math.isfinite(sa_j)) else 0.0
    by = abs(baseline_days) / DAYS_PER_YEAR
    doy_i = rec_i.date.timetuple().tm_yday
    doy_j = rec_j.date.timetuple().tm_yday
    dd = abs(doy_i - doy_j)
    season = min(dd, DAYS_PER_YEAR - dd) / (DAYS_PER_YEAR / 2)  # 0 same season, 1 opposite
    motion = (expected_px_per_year * by / float(search_px)) if search_px else 0.0
    return np.array([max(ci, cj), min(ci, cj), max(vi, vj), min(vi, vj), dse, dsa, by,
                     season, motion, float(full_res)], dtype=np.float64)


class QualityModel:
    """Multiplicative quality model ``q_ij = c_i · c_j · exp(x_ij · beta)`` (module doc).

    ``c_i`` (per-date clear factor, 0..1) is the best measured quality of any training
    pair involving date *i* relative to the reference quality (90th percentile of all
    measured qualities): a date is at least as good as its best pair. ``beta`` is a
    ridge regression of ``log(q_ij / (c_i c_j))`` on the standardised features, rows
    weighted by ``c_i c_j`` (pairs with a clouded date carry no information about the
    pair-level effects). Dates without any training pair use ``prior_clear`` (e.g.
    1 - cloud fraction) or 1.

    Parameters
    ----------
    ridge : ridge penalty on the (standardised) feature coefficients
    """

    def __init__(self, ridge=1.0):
        self.ridge = float(ridge)
        self.beta = None
        self.intercept = 0.0
        self.mean = None
        self.std = None
        self.date_effects = {}      # date -> clear factor c_i
        self.q_ref = 1.0
        self.n_train = 0
        self.rmse = float("nan")

    @property
    def fitted(self):
        return self.beta is not None

    def fit(self, X, q, dates_i, dates_j, weights=None):
        """Fit on features ``X`` (n, len(FEATURES)), measured qualities ``q`` (n,),
        and the date keys (ISO strings) of both images of each row."""
        X = np.asarray(X, dtype=np.float64)
        q = np.clip(np.asarray(q, dtype=np.float64), 0.0, 1.0)
        n = len(q)
        if n == 0:
            raise InputError("The quality model needs at least one preview or earlier result.")
        w0 = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
        self.q_ref = max(float(np.percentile(q, 90)), 1e-3)
        best = {}
        for a, b, v in zip(dates_i, dates_j, q):
            best[a] = max(best.get(a, 0.0), v)
            best[b] = max(best.get(b, 0.0), v)
        self.date_effects = {k: min(v / self.q_ref, 1.0) for k, v in best.items()}
        ci = np.array([self.date_effects[a] for a in dates_i])
        cj = np.array([self.date_effects[b] for b in dates_j])
        cc = ci * cj
        self.mean = X.mean(axis=0)
        self.std = X.std(axis=0)
        self.std[self.std < 1e-9] = 1.0
        Z = (X - self.mean) / self.std
        y = np.log(np.clip(q / np.maximum(cc, 1e-3), 0.02, 1.5))
        w = w0 * cc
        A = np.hstack([np.ones((n, 1)), Z])
        pen = np.concatenate([[1e-6], np.full(Z.shape[1], self.ridge)])
        sw = np.sqrt(w)[:, None]
        coef = np.linalg.solve((A * sw).T @ (A * sw) + np.diag(pen) + 1e-9 * np.eye(A.shape[1]),
                               (A * sw).T @ (y * sw[:, 0]))
        self.intercept = float(coef[0])
        self.beta = coef[1:]
        pred = np.clip(cc * np.exp(A @ coef), 0.0, 1.0)
        self.rmse = float(np.sqrt(np.mean((pred - q) ** 2)))
        self.n_train = n
        return self

    def predict(self, X, dates_i=None, dates_j=None, prior_clear=None):
        """Predicted quality in [0, 1] for feature rows ``X`` and the pairs' dates."""
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        if not self.fitted:
            raise RuntimeError("QualityModel.predict called before fit")
        prior_clear = prior_clear or {}
        z = self.intercept + ((X - self.mean) / self.std) @ self.beta
        c = np.ones(len(X))
        for dates in (dates_i, dates_j):
            if dates is not None:
                c = c * np.array([self.date_effects.get(d, prior_clear.get(d, 1.0))
                                  for d in dates])
        return np.clip(c * np.exp(z), 0.0, 1.0)

    def describe(self):
        if not self.fitted:
            return "quality model not fitted"
        parts = ["%s %+.2f" % (f, b) for f, b in zip(FEATURES, self.beta) if abs(b) > 0.02]
        poor = sorted(d for d, c in self.date_effects.items() if c < 0.2)
        return ("quality model on %d row(s), fit RMSE %.3f; log-quality coefficients: %s; "
                "dates with clear factor < 0.2: %s" % (self.n_train, self.rmse,
                                                       ", ".join(parts) or "all ~0",
                                                       ", ".join(poor) or "none"))


# ----------------------------------------------------------------------------- history

def read_full_results(output_folder, ncc_min=0.5):
    """Measured quality of full-resolution results ``<output_folder>/pairs/pair_*.tif``.

    Returns a list of dicts (reference_date, secondary_date ISO, quality, good_fraction,
    coherence, ncc_median). Unreadable files are skipped (listed under ``"problem"``).
    """
    import rasterio
    from ..raster_io import band_index_by_description
    out = []
    for path in sorted(glob.glob(os.path.join(output_folder, PAIRS_FOLDER, PAIR_GLOB))):
        dates = parse_pair_name(path)
        if dates is None:
            continue
        try:
            with rasterio.open(path) as src:
                e = src.read(band_index_by_description(src, BAND_EAST)).astype(np.float64)
                n = src.read(band_index_by_description(src, BAND_NORTH)).astype(np.float64)
                c = src.read(band_index_by_description(src, BAND_NCC)).astype(np.float64)
                s = src.read(band_index_by_description(src, BAND_STATUS))
                tags = src.tags()
                res = abs(src.transform.a)
            step = None
            try:
                step = float(json.loads(tags.get(TAG_PARAMS, "{}")).get("step"))
            except (ValueError, TypeError, AttributeError):
                pass
            if not step:
                try:
                    step = float(tags.get("STEP") or tags.get("step"))
                except (TypeError, ValueError):
                    step = 8.0
            px = res / step if step else res  # source pixel size in metres
            q = field_quality(e / px, n / px, c, s, ncc_min=ncc_min)
        except Exception as exc:  # unreadable or not a SlideWatch pair: skip, say why
            out.append(dict(problem="%s: %s" % (path, exc)))
            continue
        out.append(dict(reference_date=dates[0], secondary_date=dates[1],
                        quality=q["quality"], good_fraction=q["good_fraction"],
                        coherence=q["coherence"], ncc_median=q["ncc_median"], path=path))
    return out


def read_training_csv(path):
    """Rows of ``quality_training.csv`` as dicts (bad rows skipped)."""
    if not os.path.exists(path):
        return []
    rows = []
    with open(path, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                row["quality"] = float(row["quality"])
                for f in FEATURES:
                    row[f] = float(row.get(f) or 0.0)
            except (ValueError, KeyError, TypeError):
                continue
            rows.append(row)
    return rows


def write_training_csv(path, rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(TRAINING_COLUMNS)
    for r in rows:
        w.writerow([("%.6g" % r[c]) if isinstance(r.get(c), float) else r.get(c, "")
                    for c in TRAINING_COLUMNS])
    write_text_atomic(path, buf.getvalue())


def merge_training_rows(path, new_rows):
    """Merge ``new_rows`` into ``quality_training.csv`` (key: dates + source; new wins)."""
    old = read_training_csv(path)
    key = lambda r: (r["reference_date"], r["secondary_date"], r["source"])  # noqa: E731
    merged = {key(r): r for r in old}
    for r in new_rows:
        merged[key(r)] = r
    rows = [merged[k] for k in sorted(merged)]
    write_training_csv(path, rows)
    return rows
