"""Regional detection of active unstable slopes, with an explainable score.

Pipeline of :func:`detect` (arrays) / :func:`detect_from_folder` (SlideWatch files):

1. **Bias removal** (:mod:`.bias_removal`): per date, a robust fit on stable ground of the
   co-registration ramp and, with a DEM, of elevation/gradient-correlated apparent motion,
   removed everywhere. Done twice: the second time with the pixels that look like motion
   after the first pass excluded from the stable ground.
2. **Velocity** per pixel: weighted least-squares line through the corrected cumulative
   series (date weights = 1 / noise variance of each date measured on stable ground, so
   cloudy/bad dates count less), with per-pixel rejection of outlying dates
   (> ``outlier_k`` date-sigmas from the first fit). Its formal standard deviation grows
   where dates are missing.
3. **Noise model** (:mod:`.noise_model`): robust, spatially varying noise level of the
   (lightly smoothed) velocity on stable ground. Significance ``z = |v| / sigma_local``
   (times a gap factor where a pixel has fewer valid dates than usual). All thresholds
   are in units of this noise: nothing is detected on a scene where nothing moves.
4. **Evidence per pixel**: significance; vector coherence of the per-interval
   displacement vectors ``|sum d_i| / sum |d_i|``; temporal consistency (Kendall's tau of
   the displacement projected on the pixel's direction of motion against time); with a
   DEM, agreement of the motion with the downslope direction weighted by the slope.
   Coherence and consistency are expressed relative to their median on stable ground.
5. **Objects**: hysteresis on significance (seeds ``z >= z_seed`` grown into
   ``z >= z_grow``, the extent also significant without smoothing, ``z >= z_edge``),
   morphological opening/closing, holes filled, minimum area; an object is kept when it
   has at least ``min_seed_px`` seed pixels, at least ``min_independent_obs`` independent
   observations (its area over the noise correlation area measured on stable ground,
   :func:`.noise_model.correlation_area`, times its number of intervals between valid
   dates: neighbouring correlation windows share image content, so N pixels are not N
   measurements) and its score (the weighted mean of its
   evidence, missing evidence counting as 0, stored with each contribution) is
   ``>= min_score``. With fewer than 3 dates (a single pair) there is no temporal
   evidence (the spatial coherence of the object's vectors, relative to that of noise
   with as many independent vectors, stands in for the vector coherence) and the
   object becomes a detection only where the evidence is overwhelming
   (``single_pair_min_independent_obs`` and ``single_pair_min_significance``, both far
   above the largest artefact of the real no-motion pair), and its explanation says it
   comes from a single pair; the others stay candidates (``candidates_rejected``), and
   ``require_temporal_evidence=True`` makes every single-pair object a candidate: one
   pair cannot tell a moving slope from a local correlation artefact (docs/detection.md).
6. **Acceleration** (:mod:`.acceleration`) of each object's mean displacement series.
7. Polygons (``rasterio.features.shapes``) and ``detections.gpkg``
   (:mod:`.detections_store`, validations preserved across re-runs).
"""

import dataclasses
import datetime as _dt
import json
import os
import warnings

import numpy as np
from scipy import ndimage

from . import acceleration as _accel
from .bias_removal import remove_bias, summarize_report, terrain_derivatives
from ..errors import InputError, ParameterError
from .footprint import cells_per_pixel, read_footprint
from .noise_model import correlation_area, local_noise, nan_gaussian, robust_sigma
from ..products import (DAYS_PER_YEAR, DETECTIONS_GPKG, TAG_STABLE_GROUND_PAIRS,
                        TS_EAST_TIF, TS_NORTH_TIF)
from ..progress import as_progress

try:  # numba is a core dependency; keep a numpy fallback for robustness
    from numba import njit, prange
    _HAVE_NUMBA = True
except ImportError:  # pragma: no cover
    _HAVE_NUMBA = False



@dataclasses.dataclass
class DetectionParams:
    """Parameters of :func:`detect` (all thresholds are in units of noise)."""

    #: Gaussian smoothing (pixels) of velocities and series before evidence (0 = none)
    smooth_px: float = 1.0
    #: block size (pixels) of the local noise estimate
    noise_block_px: int = 32
    #: significance of seed pixels (|v| / local noise)
    z_seed: float = 5.0
    #: significance to which seeds are grown
    z_grow: float = 3.0
    #: significance of the unsmoothed velocity required inside an object's extent
    z_edge: float = 2.0
    #: minimum number of seed pixels in an object
    min_seed_px: int = 3
    #: minimum object area in m^2
    min_area_m2: float = 10000.0
    #: minimum score (0..1) of an object
    min_score: float = 0.45
    #: evidence weights
    w_significance: float = 0.4
    w_coherence: float = 0.2
    w_consistency: float = 0.2
    w_downslope: float = 0.2
    #: significance mapped linearly to evidence 0 at sig_zero and 1 at sig_full
    sig_zero: float = 2.0
    sig_full: float = 8.0
    #: slope (degrees) at which the downslope evidence reaches its full weight
    slope_full_deg: float = 10.0
    #: True: a series of fewer than 3 dates (a single pair) gives candidates only, never
    #: detections. False (default): a single pair gives a detection only where the
    #: evidence is overwhelming (the two ``single_pair_*`` thresholds below), flagged as
    #: such in its explanation; see docs/detection.md, "What a single pair can and cannot show"
    require_temporal_evidence: bool = False
    #: a single pair's object needs at least this many independent observations (the
    #: largest coherent artefact of the real no-motion pair has 3.8, docs/detection.md)
    single_pair_min_independent_obs: float = 10.0
    #: ... and a mean significance (|v| / noise over the object) of at least this
    #: (= ``sig_full``, full significance evidence; that artefact has 6.7)
    single_pair_min_significance: float = 8.0
    #: minimum number of independent observations of an object: (object area / noise
    #: correlation area, at most its pixel count) x (number of independent intervals,
    #: T - 1); the correlation area is measured on stable ground
    min_independent_obs: float = 3.0
    #: fit elevation/gradient terms when a DEM is given
    use_topography: bool = True
    #: per-pixel date rejection threshold (in date-sigmas)
    outlier_k: float = 4.0
    #: minimum number of valid dates for a pixel
    min_dates: int = 4
    #: morphological opening/closing radius in pixels (0 = none)
    morph_px: int = 1
    #: acceleration test (see acceleration.detect_acceleration)
    accel_min_delta_bic: float = 10.0
    accel_min_t: float = 3.0
    accel_min_ratio: float = 1.5
    #: longest gradual velocity rise (days) fitted for the onset date (0 = hinge date)
    accel_max_ramp_days: float = 60.0
    #: fraction of an object's pixels (the fastest) whose series is tested (object_series)
    accel_core_fraction: float = 0.5
    #: a date enters the object's series only if at least this fraction of those pixels
    #: is valid on it (a majority: see object_series)
    accel_min_valid_fraction: float = 0.5

    #: (lowest, highest) allowed value of the thresholds users set most (None =
    #: unbounded), checked by :meth:`validate`; the Processing dialogs use the same. A
    #: bound in :data:`EXCLUSIVE` is not itself allowed. ``z_seed`` must also be >= ``z_grow``.
    BOUNDS = {"smooth_px": (0.0, None), "z_seed": (0.0, None), "z_grow": (0.0, None),
              "min_area_m2": (0.0, None), "min_score": (0.0, 1.0), "noise_block_px": (8, None)}
    EXCLUSIVE = {("z_seed", "lo"), ("z_grow", "lo")}

    def validate(self):
        b = self.BOUNDS
        if not self.smooth_px >= b["smooth_px"][0]:
            raise ParameterError("Smoothing must be >= 0 pixels (got %s)." % self.smooth_px)
        if self.z_grow <= b["z_grow"][0] or self.z_seed < self.z_grow:
            raise ParameterError("Significance thresholds must satisfy 0 < z_grow <= z_seed "
                                 "(got z_grow=%s, z_seed=%s)." % (self.z_grow, self.z_seed))
        if self.min_area_m2 < b["min_area_m2"][0]:
            raise ParameterError("Minimum area must be >= 0 m2 (got %s)." % self.min_area_m2)
        if not b["min_score"][0] <= self.min_score <= b["min_score"][1]:
            raise ParameterError("Minimum score must be in [0, 1] (got %s)." % self.min_score)
        if self.noise_block_px < b["noise_block_px"][0]:
            raise ParameterError("Noise block size must be >= 8 pixels (got %s)."
                                 % self.noise_block_px)
        if self.single_pair_min_independent_obs < 0 or self.single_pair_min_significance < 0:
            raise ParameterError("Single-pair thresholds must be >= 0 (got %s observations, "
                                 "significance %s)." % (self.single_pair_min_independent_obs,
                                                        self.single_pair_min_significance))
        if min(self.w_significance, self.w_coherence, self.w_consistency, self.w_downslope) < 0:
            raise ParameterError("Evidence weights must be >= 0.")
        if not 0 < self.accel_core_fraction <= 1:
            raise ParameterError("accel_core_fraction must be in (0, 1] (got %s)."
                                 % self.accel_core_fraction)
        if not 0 < self.accel_min_valid_fraction <= 1:
            raise ParameterError("accel_min_valid_fraction must be in (0, 1] (got %s)."
                                 % self.accel_min_valid_fraction)
        return self


@dataclasses.dataclass
class DetectionResult:
    """Everything :func:`detect` found, for writing, display and benchmarking."""

    features: list            # dicts with geometry + attributes (detections_store fields)
    labels: np.ndarray        # 2-D int32, 0 = background, k = feature index + 1
    velocity_east: np.ndarray
    velocity_north: np.ndarray
    significance: np.ndarray
    evidence: dict            # name -> 2-D array in [0, 1] (+ 'score')
    noise: object             # NoiseModel
    bias_report: dict
    params: DetectionParams
    dates: list
    transform: object
    crs: object
    store_summary: dict = None
    candidates_rejected: list = None

    def run_info(self):
        return {"params": dataclasses.asdict(self.params), "dates": list(self.dates),
                "noise": self.noise.as_dict(), "bias_removal": _compact_bias(self.bias_report),
                "n_detections": len(self.features),
                "rejected_candidates": self.candidates_rejected or []}


def _compact_bias(report):
    out = {"terms": report["terms"], "stable_source": report["stable_source"],
           "rms_removed_m": report["rms_removed_m"], "per_date": [],
           "signal_rms_m": report.get("signal_rms_m"), "stable_share": report.get("stable_share"),
           "stable_velocity_over_scatter": report.get("stable_velocity_over_scatter")}
    for e in report["per_date"]:
        out["per_date"].append({c: {"rms_removed_m": round(e[c]["rms_removed_m"], 5),
                                    "coefficients": {k: float("%.6g" % v) for k, v in
                                                     e[c]["coefficients"].items()}}
                                for c in ("east", "north")})
    return out


# ----------------------------------------------------------------------------- helpers

def dates_to_years(dates):
    """Decimal years since the first date from ISO strings."""
    try:
        ds = [_dt.date.fromisoformat(str(d)[:10]) for d in dates]
    except ValueError as exc:
        raise InputError("Dates must be ISO 8601 (YYYY-MM-DD); got %s." % (list(dates)[:3],)) from exc
    return np.array([(d - ds[0]).days for d in ds], dtype=np.float64) / DAYS_PER_YEAR


def _wls_line(Y, valid, t, w):
    """Per-pixel weighted line fit. Y, valid: (T, H, W); t, w: (T,). Returns v, a, sv, n."""
    W = valid * w[:, None, None]
    Yz = np.where(valid, Y, 0.0)
    tt = t[:, None, None]
    S = W.sum(0)
    St = (W * tt).sum(0)
    Stt = (W * tt * tt).sum(0)
    Sy = (W * Yz).sum(0)
    Sty = (W * tt * Yz).sum(0)
    den = S * Stt - St * St
    n = valid.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        v = (S * Sty - St * Sy) / den
        a = (Sy - v * St) / S
        sv = np.sqrt(S / den)
    bad = (n < 2) | ~(den > 0)
    v[bad] = np.nan
    a[bad] = np.nan
    sv[bad] = np.nan
    return v, a, sv, n


def fit_velocity(east, north, t, stable=None, outlier_k=4.0, min_dates=4):
    """Robust per-pixel velocity (m/yr) of cumulative displacement series.

    Returns dict with ``ve``, ``vn``, ``sigma_formal`` (per-component formal std of the
    velocity, m/yr, for unit-variance-scaled weights), ``n_dates``, ``valid`` (T, H, W
    mask of the dates used), ``date_sigma`` (per-date noise, m) and ``intercept_e/n``.
    """
    valid = np.isfinite(east) & np.isfinite(north)
    T = east.shape[0]
    st = np.ones(east.shape[1:], bool) if stable is None else stable
    w = np.ones(T)
    ve, ae, _, _ = _wls_line(east, valid, t, w)
    vn, an, _, _ = _wls_line(north, valid, t, w)
    # per-date noise on stable ground from residuals of the unweighted fit
    re = east - (ae[None] + ve[None] * t[:, None, None])
    rn = north - (an[None] + vn[None] * t[:, None, None])
    ds = np.array([np.sqrt(0.5 * (robust_sigma(re[k][st]) ** 2 + robust_sigma(rn[k][st]) ** 2))
                   for k in range(T)])
    good = np.isfinite(ds) & (ds > 0)
    med = np.median(ds[good]) if good.any() else 1.0
    ds = np.where(good, ds, med)
    ds = np.maximum(ds, 0.5 * med)  # the reference date is zero by construction
    # reject outlying dates per pixel: far from the line both in units of the date noise
    # and of the pixel's own robust residual scale (so that a non-linear, e.g.
    # accelerating, motion is not mistaken for outliers)
    rr = np.hypot(re, rn)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pixels without any valid date
        pix_scale = np.nanmedian(np.where(valid, rr, np.nan), axis=0) / 1.18
    ref = np.maximum(ds[:, None, None], np.nan_to_num(pix_scale)[None])
    valid2 = valid & ~(rr / ref > outlier_k * 1.18)  # 1.18: median of a unit 2-D Rayleigh
    w = 1.0 / ds ** 2
    ve, ae, sv, n = _wls_line(east, valid2, t, w)
    vn, an, _, _ = _wls_line(north, valid2, t, w)
    # a-posteriori variance factor per pixel (1 when the scatter matches the date noise)
    tt = t[:, None, None]
    r2 = (np.where(valid2, east - (ae[None] + ve[None] * tt), 0.0) ** 2
          + np.where(valid2, north - (an[None] + vn[None] * tt), 0.0) ** 2)
    with np.errstate(all="ignore"):
        vf = (w[:, None, None] * r2).sum(0) / (2.0 * np.maximum(n - 2, 1))
    few = n < min_dates
    for arr in (ve, vn, sv, ae, an, vf):
        arr[few] = np.nan
    vf[n <= 2] = np.nan
    return {"ve": ve, "vn": vn, "sigma_formal": sv, "n_dates": n, "valid": valid2 & ~few[None],
            "date_sigma": ds, "intercept_e": ae, "intercept_n": an, "variance_factor": vf}


if _HAVE_NUMBA:
    @njit(cache=True, nogil=True, parallel=True)
    def _evidence_kernel(E, N, valid, t, ue, un, coh, tau):  # pragma: no cover - numba
        T, H, W = E.shape
        for i in prange(H):
            xs = np.empty(T)
            ts = np.empty(T)
            for j in range(W):
                coh[i, j] = np.nan
                tau[i, j] = np.nan
                if not (ue[i, j] == ue[i, j]):
                    continue
                m = 0
                sx = 0.0
                sy = 0.0
                sl = 0.0
                pe = 0.0
                pn = 0.0
                first = True
                for k in range(T):
                    if valid[k, i, j]:
                        e = E[k, i, j]
                        n = N[k, i, j]
                        if not first:
                            de = e - pe
                            dn = n - pn
                            sx += de
                            sy += dn
                            sl += np.sqrt(de * de + dn * dn)
                        first = False
                        pe = e
                        pn = n
                        xs[m] = e * ue[i, j] + n * un[i, j]
                        ts[m] = t[k]
                        m += 1
                if m < 3:
                    continue
                if sl > 0:
                    coh[i, j] = np.sqrt(sx * sx + sy * sy) / sl
                else:
                    coh[i, j] = 0.0
                conc = 0.0
                npair = 0
                for a in range(m):
                    for b in range(a + 1, m):
                        d = (xs[b] - xs[a]) * (ts[b] - ts[a])
                        if d > 0:
                            conc += 1.0
                        elif d < 0:
                            conc -= 1.0
                        npair += 1
                tau[i, j] = conc / npair


def _evidence_numpy(E, N, valid, t, ue, un):
    T, H, W = E.shape
    coh = np.full((H, W), np.nan)
    tau = np.full((H, W), np.nan)
    Ef = np.where(valid, E, np.nan)
    Nf = np.where(valid, N, np.nan)
    # forward fill over invalid dates
    for k in range(1, T):
        Ef[k] = np.where(np.isfinite(Ef[k]), Ef[k], Ef[k - 1])
        Nf[k] = np.where(np.isfinite(Nf[k]), Nf[k], Nf[k - 1])
    de = np.diff(Ef, axis=0)
    dn = np.diff(Nf, axis=0)
    sl = np.nansum(np.hypot(de, dn), 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        coh = np.hypot(np.nansum(de, 0), np.nansum(dn, 0)) / sl
    X = np.where(valid, E * ue[None] + N * un[None], np.nan)
    conc = np.zeros((H, W))
    npair = np.zeros((H, W))
    for a in range(T):
        for b in range(a + 1, T):
            d = (X[b] - X[a]) * (t[b] - t[a])
            ok = np.isfinite(d)
            conc += np.where(ok, np.sign(np.nan_to_num(d)), 0)
            npair += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = conc / npair
    bad = ~np.isfinite(ue) | (valid.sum(0) < 3)
    coh[bad] = np.nan
    tau[bad] = np.nan
    return coh, tau


def temporal_evidence(E, N, valid, t, ue, un, progress=None, chunk_rows=256):
    """Vector coherence and Kendall-tau consistency per pixel (chunked, cancellable)."""
    progress = as_progress(progress)
    T, H, W = E.shape
    coh = np.full((H, W), np.nan)
    tau = np.full((H, W), np.nan)
    for r0 in range(0, H, chunk_rows):
        progress.check()
        sl = slice(r0, min(H, r0 + chunk_rows))
        args = (np.ascontiguousarray(E[:, sl]), np.ascontiguousarray(N[:, sl]),
                np.ascontiguousarray(valid[:, sl]), t.astype(np.float64),
                np.ascontiguousarray(ue[sl]), np.ascontiguousarray(un[sl]))
        if _HAVE_NUMBA:
            c = np.empty(args[4].shape)
            k = np.empty(args[4].shape)
            _evidence_kernel(*args, c, k)
        else:
            c, k = _evidence_numpy(*args)
        coh[sl] = c
        tau[sl] = k
        progress.update(min(1.0, (r0 + chunk_rows) / H), "Temporal evidence")
    return coh, tau


def slow_ground(east, north, t, valid_any, outlier_k=4.0, min_dates=4):
    """First guess of stable ground without a mask: the slower half of the valid pixels.

    The bias model (per-date offset and ramp, topographic terms) is then fitted on it in
    the first pass. Fitting it robustly on the whole scene instead centres the fit on
    the majority: when a moving body covers a large share of the scene (a glacier, a
    whole valley flank), the robust fit follows the body and removes its motion (issue
    14: "Bias removed ... east 9.0 m, north 10.4 m" on a glacier stack, 0 detections).
    Co-registration errors change from date to date and barely trend, so the slower half
    of the raw velocities is stable ground whenever the moving part covers less than
    half of the scene (and its slowest part otherwise). Returns a bool array; ``None``
    when fewer than 100 pixels would be left.
    """
    fit0 = fit_velocity(east, north, t, valid_any, outlier_k, min_dates)
    spd = np.hypot(fit0["ve"], fit0["vn"])
    ok = valid_any & np.isfinite(spd)
    if ok.sum() < 200:
        return None
    slow = ok & (spd <= np.median(spd[ok]))
    return slow if slow.sum() >= 100 else None


#: component sigma of the slower half of 2-D Gaussian noise vectors over that of all:
#: sqrt((1 - (1 + ln 2) / 2) * 2), see detect()
SLOW_HALF_SIGMA_RATIO = float(np.sqrt(2.0 * (1.0 - 0.5 * (1.0 + np.log(2.0)))))

#: stable ground whose velocities exceed this many times their own temporal scatter
#: is not stable (measured: 2.9 on the demo's stable ground, 507 on GIV's Perito
#: Moreno stack, where the glacier fills the valid area)
NO_STABLE_RATIO = 20.0

#: ... but only when the correlation itself found no stable ground in most pairs. Each
#: pair's co-registration step looks for a tight cluster of window displacements near
#: zero (:mod:`.stable_offset`: <= 0.3 px, >= 10 % of the windows), a test in pixels that
#: the smoothing of the inversion does not touch. When at least this share of the
#: inverted pairs had one (or a stable-area mask), the scene has stable ground and the
#: temporal-scatter test is not applied: regularised series barely scatter in time, so
#: still rock reaches 21 x its scatter (Sverdrup, 19 of 24 pairs with stable ground),
#: while a glacier filling the valid area gives none (GIV Perito Moreno: 1 of 69).
MIN_PAIRS_WITH_STABLE_GROUND = 0.5


def _scatter_sigma(fit, smooth_px):
    """Velocity noise from each pixel's temporal scatter around its line (formal sigma x
    sqrt of the local median variance factor), insensitive to the motion itself."""
    sf = fit["sigma_formal"]
    vf = fit["variance_factor"]
    vf_fill = np.where(np.isfinite(vf), vf, np.nanmedian(vf) if np.isfinite(vf).any() else 1.0)
    size = max(3, int(2 * round(2 * max(smooth_px, 1.0)) + 3))
    vf_loc = ndimage.median_filter(vf_fill, size=size, mode="nearest")
    return sf * np.sqrt(np.maximum(vf_loc, 1e-12))


def _no_bias_report(report, calib, stable, some, E, N):
    out = dict(report)
    out["stable_source"] = ("none found: the slowest ground moves %.0f x its temporal "
                            "scatter; no bias removed, significance from each pixel's "
                            "temporal scatter" % calib)
    out["per_date"] = [{"index": e["index"],
                        **{c: {"coefficients": {k: 0.0 for k in report["terms"]},
                               "rms_removed_m": 0.0, "n_samples": 0, "fitted": False}
                           for c in ("east", "north")}} for e in report["per_date"]]
    out["rms_removed_m"] = {"east": 0.0, "north": 0.0}
    out["stable_share"] = float(stable.sum()) / max(int(some.sum()), 1)
    out["signal_rms_m"] = _signal_rms(E, N, stable, some)
    out["no_stable_ground"] = True
    return out


def _signal_rms(E, N, stable, some):
    """RMS over dates of the median |cumulative displacement| off stable ground, per
    component (m): the scale of the signal beside the bias removed."""
    off = some & ~stable
    if off.sum() < 10:
        off = some
    out = {}
    for name, X in (("east", E), ("north", N)):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.array([np.nanmedian(np.abs(X[k][off])) for k in range(X.shape[0])])
        med = med[np.isfinite(med)]
        out[name] = float(np.sqrt(np.mean(med ** 2))) if med.size else 0.0
    return out


def _relative(x, stable):
    """Map x to [0, 1]: 0 at its median on stable ground, 1 at 1."""
    ref = x[stable & np.isfinite(x)]
    x0 = float(np.median(ref)) if ref.size else 0.0
    x0 = min(max(x0, 0.0), 0.95)
    with np.errstate(invalid="ignore"):
        return np.clip((x - x0) / (1.0 - x0), 0.0, 1.0), x0


def _disk(radius):
    r = int(radius)
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return (x * x + y * y) <= r * r + r


def cleanup_mask(mask, seeds=None, min_area_px=1, morph_px=1, min_seed_px=1):
    """Shared clean-up: opening/closing, hole filling, hysteresis seeds, minimum area.

    Returns the labelled objects (int32, 8-connectivity) and their number.
    """
    m = np.asarray(mask, bool)
    if morph_px and morph_px > 0:
        st = _disk(morph_px)
        m = ndimage.binary_opening(m, structure=st)
        m = ndimage.binary_closing(m, structure=st) | m
    m = ndimage.binary_fill_holes(m)
    lab, n = ndimage.label(m, structure=np.ones((3, 3), bool))
    if n == 0:
        return lab.astype(np.int32), 0
    idx = np.arange(1, n + 1)
    area = ndimage.sum(np.ones_like(lab), lab, idx)
    keep = area >= min_area_px
    if seeds is not None:
        nseed = ndimage.sum(np.asarray(seeds, bool) & m, lab, idx)
        keep &= nseed >= min_seed_px
    lut = np.zeros(n + 1, np.int32)
    lut[1:][keep] = np.arange(1, int(keep.sum()) + 1)
    return lut[lab], int(keep.sum())


def percentile_baseline(speed, transform, percentile=95.0, min_area_m2=10000.0, morph_px=1):
    """Baseline used by some published tools: threshold the velocity magnitude at its
    ``percentile``-th percentile, then the same clean-up and minimum area as SlideWatch.

    Returns (labels, n_objects, threshold).
    """
    sp = np.asarray(speed, dtype=np.float64)
    fin = np.isfinite(sp)
    if not fin.any():
        return np.zeros(sp.shape, np.int32), 0, float("nan")
    thr = float(np.percentile(sp[fin], percentile))
    px_area = abs(transform.a * transform.e)
    lab, n = cleanup_mask(fin & (sp > thr), None, max(1, int(np.ceil(min_area_m2 / px_area))),
                          morph_px)
    return lab, n, thr


def _polygons(labels, transform, n):
    """GeoJSON-like MultiPolygon per label 1..n (rasterio.features.shapes)."""
    from rasterio import features as rfeatures

    polys = {k: [] for k in range(1, n + 1)}
    if n == 0:
        return polys
    for geom, value in rfeatures.shapes(labels.astype(np.int32), mask=labels > 0,
                                        connectivity=8, transform=transform):
        polys[int(value)].append(geom["coordinates"])
    return {k: {"type": "MultiPolygon", "coordinates": v} for k, v in polys.items()}


def _nanmean(a):
    a = np.asarray(a, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else None


def _azimuth(ve, vn):
    return float(np.degrees(np.arctan2(ve, vn)) % 360.0)


def _biweight_rows(x, c=4.685, iterations=10):
    """Tukey biweight location and robust scale (1.4826 MAD) of each row of ``x`` (NaN
    ignored); NaN for rows without a finite value."""
    x = np.asarray(x, np.float64)
    loc = np.full(x.shape[0], np.nan)
    scale = np.full(x.shape[0], np.nan)
    for k in range(x.shape[0]):
        v = x[k][np.isfinite(x[k])]
        if v.size == 0:
            continue
        mu = float(np.median(v))
        s = 1.4826 * float(np.median(np.abs(v - mu)))
        scale[k] = s
        if s > 0:
            for _ in range(iterations):
                u = (v - mu) / (c * s)
                w = np.where(np.abs(u) < 1.0, (1.0 - u * u) ** 2, 0.0)
                if w.sum() <= 0:
                    break
                new = float((w * v).sum() / w.sum())
                if abs(new - mu) <= 1e-6 * s:
                    mu = new
                    break
                mu = new
        loc[k] = mu
    return loc, scale


def object_series(E, N, fit, t, sl, m, core_fraction=0.5, min_valid_fraction=0.5):
    """Displacement series of one object, projected on its mean direction of motion.

    E, N : (T, H, W) bias-corrected cumulative displacement; fit : the dict of
    :func:`fit_velocity` on them (``valid`` dates per pixel, ``ve``, ``vn``,
    ``intercept_e``, ``intercept_n``, ``date_sigma``); t : (T,) years; ``sl`` (slices)
    and ``m`` (bool mask inside them) select the object.

    Series: over the faster ``core_fraction`` of the object's pixels (its tapered edges
    carry little signal), per date, the mean of the pixels' own straight lines in time
    plus the Tukey-biweight location of the pixels' residuals about them. Taking each
    pixel's line out removes the spread of the velocity across the object from the
    residuals, so a minority of mismatched (cloud-contaminated) pixels stands out and
    is rejected rather than averaged, while a departure from linearity common to the
    object (an acceleration) is kept.

    Dates on which fewer than ``min_valid_fraction`` (default half) of these pixels are
    valid are NaN (dropped, not down-weighted). A robust location needs a majority of
    good values (the biweight breaks down at 50 %; the inversion keeps its L1 estimate
    by the same rule). When most pixels of a date are missing or rejected, the object
    lies under a cloud or shadow and the survivors are mismatches too: a minority that
    passed the per-pixel test against each pixel's straight line, so nothing on that
    date can be trusted, whatever its weight.

    Per-date noise ``sigma`` (only ratios between dates matter to the acceleration
    test): the date noise on stable ground, divided by the square root of the fraction
    of the pixels valid on the date, and multiplied by the **date's own scatter inside
    the object** relative to the typical date: the robust spread (MAD) of the residuals,
    over the median of that spread across dates (never below 1). A date on which the
    object lies under a cloud -- its surviving values are mismatches, all of them, so no
    estimator over the object can be right -- has a spread several times the usual one
    and is weighted down accordingly, instead of counting as a clear date.

    Returns a dict: ``series`` (T,), ``sigma`` (T,), ``spread`` (T,) the scatter
    factor, ``pixels`` (bool mask inside ``sl`` of the pixels used) and ``direction``
    (unit east, north).
    """
    ve, vn, valid = fit["ve"], fit["vn"], fit["valid"]
    vpe, vpn = ve[sl][m], vn[sl][m]
    sp = np.hypot(vpe, vpn)
    mve, mvn = float(np.nanmean(vpe)), float(np.nanmean(vpn))
    mdir = np.hypot(mve, mvn) or 1.0
    ue, un = mve / mdir, mvn / mdir
    tsl = (slice(None),) + tuple(sl)
    proj = E[tsl][:, m] * ue + N[tsl][:, m] * un
    proj = np.where(valid[tsl][:, m], proj, np.nan)  # per-pixel outlier dates out
    # each pixel's own straight line, projected: residuals measure the date's scatter
    line = ((fit["intercept_e"][sl][m] * ue + fit["intercept_n"][sl][m] * un)[None, :]
            + (vpe * ue + vpn * un)[None, :] * np.asarray(t, np.float64)[:, None])
    use = np.ones(sp.shape, bool)
    if core_fraction < 1.0 and np.isfinite(sp).sum() >= 10:
        # the faster core of the object carries the signal; its tapered edges mostly noise
        use = sp >= np.nanquantile(sp, 1.0 - core_fraction)
        proj = proj[:, use]
        line = line[:, use]
    frac = np.isfinite(proj).mean(1)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN dates
        # residuals of the pixels about their own straight line: the spread of the
        # velocity across the object is removed, what is left on a date is its departure
        # from linearity (common to the object: acceleration) plus noise and mismatches
        res = proj - line
        loc, spread = _biweight_rows(res)
        # series = the object's mean line + the robust (biweight) location of the
        # residuals: a minority of cloud-contaminated pixels is rejected, not averaged
        series = np.where(frac >= min_valid_fraction, np.nanmean(line, axis=1) + loc, np.nan)
        ok = np.isfinite(spread) & (spread > 0) & np.isfinite(series)
        ref = float(np.median(spread[ok])) if ok.sum() >= 3 else float("nan")
        factor = (np.where(np.isfinite(spread), np.maximum(spread / ref, 1.0), 1.0)
                  if np.isfinite(ref) and ref > 0 else np.ones(spread.shape))
        # per-date noise of the object's series: date noise on stable ground, larger
        # where few of the object's pixels are valid, and where they disagree (clouds)
        sigma = (np.asarray(fit["date_sigma"], np.float64) / np.sqrt(np.maximum(frac, 1e-3))
                 * factor)
    pixels = np.zeros(m.shape, bool)
    pixels[m] = use
    return {"series": series, "sigma": sigma, "spread": factor, "pixels": pixels,
            "direction": (ue, un), "valid_fraction": frac}


# ----------------------------------------------------------------------------- detect

def detect(east, north, dates, transform, crs=None, dem=None, stable_mask=None, params=None,
           progress=None, pairs_with_stable_ground=None, footprint=None, **overrides):
    """Detect moving slopes in a displacement time series.

    Parameters
    ----------
    east, north : 3-D arrays (date, row, col), cumulative displacement since the first
        date in metres (NaN = no data), as in ``timeseries/ts_east_m.tif``.
    dates : ISO dates, one per band.
    transform : affine transform of the grid (north-up); crs : its CRS (stored only).
    dem : 2-D elevation on the same grid, or None.
    stable_mask : 2-D bool (True = known stable ground), or None (whole scene, robustly).
    params : :class:`DetectionParams`; ``overrides`` replace single fields.
    pairs_with_stable_ground : share (0-1) of the inverted pairs in which the correlation
        found stable ground (``STABLE_GROUND_PAIRS`` tag of the series, see
        :func:`read_pairs_with_stable_ground`), or None when unknown. From
        ``MIN_PAIRS_WITH_STABLE_GROUND`` on, the scene is never taken as without stable
        ground.
    footprint : 2-D mean window footprint of the pairs (``timeseries/footprint.tif``, see
        core/detect/footprint.py), or None (every window nominal): an object's independent
        observations are counted with the footprint of its own pixels.

    Returns
    -------
    DetectionResult (``features`` ready for :func:`detections_store.write_detections`).

    Phases (module doc): :func:`_checked_inputs`, :func:`_noise_passes` (bias removal,
    velocity, noise; :func:`_without_stable_ground` when no ground is stable),
    :func:`_evidence_maps`, :func:`_candidate_objects`, then :func:`_judge_object` and
    :func:`_feature` for each object.
    """
    progress = as_progress(progress)
    p = dataclasses.replace(params or DetectionParams(), **overrides).validate()
    east, north, dates, t, dem, user_stable, p = _checked_inputs(east, north, dates, dem,
                                                                 stable_mask, p)
    T, H, W = east.shape
    px_area = abs(transform.a * transform.e)
    some = np.isfinite(east).any(0) & np.isfinite(north).any(0)
    if not some.any():
        raise InputError("The time series has no valid pixel.")
    share = pairs_with_stable_ground
    if share is not None and not 0.0 <= float(share) <= 1.0:
        raise InputError("pairs_with_stable_ground must be a share in [0, 1] or None; got %r"
                         % (share,))
    s = _noise_passes(east, north, t, transform, dem, user_stable, some, p, progress,
                      None if share is None else float(share))
    ev = _evidence_maps(s, t, p, dem, transform, some, progress)
    progress.check()
    if footprint is not None and np.shape(footprint) != (H, W):
        raise InputError("footprint has shape %s, the series grid is %s."
                         % (np.shape(footprint), (H, W)))
    lab, n, corr_area = _candidate_objects(s, p, px_area)
    s["noise"].correlation_area_px = corr_area
    s["cells"] = (None if footprint is None else
                  cells_per_pixel(footprint, s["stable_final"] & np.isfinite(s["fit"]["ve"]),
                                  corr_area, (H, W)))
    features, rejected = [], []
    final = np.zeros((H, W), np.int32)
    objs = ndimage.find_objects(lab)
    kept = 0
    for k in range(1, n + 1):
        progress.check()
        sl = objs[k - 1]
        m = lab[sl] == k
        verdict = _judge_object(s, ev, p, T, sl, m, corr_area)
        if verdict["reason"]:
            rejected.append(_rejected_entry(s, verdict, sl, m))
            continue
        kept += 1
        final[sl][m] = kept
        features.append(_feature(s, ev, verdict, p, dates, t, sl, m, px_area, T,
                                 dem is not None))
    polys = _polygons(final, transform, kept)
    for i, f in enumerate(features, start=1):
        f["geometry"] = polys[i]
    progress.update(1.0, "%d detection(s)" % len(features))
    return DetectionResult(features=features, labels=final, velocity_east=s["fit"]["ve"],
                           velocity_north=s["fit"]["vn"], significance=s["z"],
                           evidence=ev["evidence"], noise=s["noise"],
                           bias_report=s["report"], params=p, dates=dates,
                           transform=transform, crs=crs, candidates_rejected=rejected)


def _checked_inputs(east, north, dates, dem, stable_mask, p):
    """Arrays as float64, dates as ISO strings, years, DEM and user stable mask checked
    against the grid, and ``p.min_dates`` lowered to the series length when shorter."""
    east = np.asarray(east, dtype=np.float64)
    north = np.asarray(north, dtype=np.float64)
    if east.ndim != 3 or east.shape != north.shape:
        raise InputError("East/north time series must be 3-D (date, row, col) arrays of equal "
                         "shape; got %s and %s." % (east.shape, north.shape))
    dates = [str(d)[:10] for d in dates]
    T, H, W = east.shape
    if len(dates) != T:
        raise InputError("%d dates given for %d bands of the time series." % (len(dates), T))
    if T < 2:
        raise InputError("The time series has %d date(s); detection needs at least 2." % T)
    if p.min_dates > T:
        # a short series (e.g. a single pair): use every date
        p = dataclasses.replace(p, min_dates=max(2, T))
    t = dates_to_years(dates)
    if np.any(np.diff(t) <= 0):
        raise InputError("Time-series dates must be strictly increasing; got %s." % dates)
    if dem is not None:
        dem = np.asarray(dem, dtype=np.float64)
        if dem.shape != (H, W):
            raise InputError("DEM shape %s differs from the time-series grid %s." % (dem.shape, (H, W)))
    user_stable = None
    if stable_mask is not None:
        user_stable = np.asarray(stable_mask, bool)
        if user_stable.shape != (H, W):
            raise InputError("Stable-area mask shape %s differs from the time-series grid %s."
                             % (user_stable.shape, (H, W)))
    return east, north, dates, t, dem, user_stable, p


def _noise_pass(east, north, t, transform, dem, stable, some, p, progress):
    """One pass: bias removal on ``stable``, velocity fit, local noise, significance."""
    # pass 2 fits on all the ground not moving after pass 1, not only its slower part:
    # a bias that grows with time (ramp, elevation terms) is itself apparent velocity,
    # and fitting it only where it is small would attenuate it
    E, N, report = remove_bias(east, north, transform, dem=dem, stable=stable,
                               use_topography=p.use_topography, progress=progress.sub(0, 0.6))
    progress.check()
    st_fit = (stable if stable is not None else some)
    fit = fit_velocity(E, N, t, st_fit, p.outlier_k, p.min_dates)
    ve_s = nan_gaussian(fit["ve"], p.smooth_px)
    vn_s = nan_gaussian(fit["vn"], p.smooth_px)
    sf = fit["sigma_formal"]
    ref = sf[st_fit & np.isfinite(sf)]
    sf_med = float(np.median(ref)) if ref.size else 1.0
    gap = np.clip(sf / sf_med, 1.0, 5.0)
    # (a) empirical local noise of the velocity on stable ground
    noise = local_noise([ve_s / gap, vn_s / gap], st_fit, block=p.noise_block_px,
                        center="zero")
    sigma = noise.sigma * gap
    # (b) motion-insensitive local noise from the temporal scatter around each pixel's
    # line (captures noisy, e.g. vegetated, patches even where they look like motion
    # and are therefore not stable ground), calibrated on stable ground
    calib = float("nan")
    vf = fit["variance_factor"]
    if np.isfinite(vf).sum() > 100:
        vf_fill = np.where(np.isfinite(vf), vf, np.nanmedian(vf))
        size = max(3, int(2 * round(2 * max(p.smooth_px, 1.0)) + 3))
        vf_loc = ndimage.median_filter(vf_fill, size=size, mode="nearest")
        s_res = sf * np.sqrt(np.maximum(vf_loc, 1e-12))
        with np.errstate(all="ignore"):
            ratio = np.concatenate([(ve_s / s_res)[st_fit], (vn_s / s_res)[st_fit]])
        c = robust_sigma(ratio)
        calib = float(c)
        if np.isfinite(c) and c > 0:
            sigma = np.fmax(sigma, c * s_res)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.hypot(ve_s, vn_s) / sigma
    return dict(E=E, N=N, report=report, fit=fit, ve_s=ve_s, vn_s=vn_s, sigma=sigma,
                noise=noise, z=z, calib=calib)


def _noise_passes(east, north, t, transform, dem, user_stable, some, p, progress,
                  pairs_stable=None):
    """Two passes of :func:`_noise_pass`; the second excludes what moves after the first.
    Returns the second pass's state plus ``stable_final`` and the report fields."""
    slow = None if user_stable is not None else slow_ground(
        east, north, t, some, p.outlier_k, p.min_dates)
    stable = user_stable if user_stable is not None else slow
    calib = float("nan")
    for it in range(2):
        s = _noise_pass(east, north, t, transform, dem, stable, some, p,
                        progress.sub(0.0 + 0.3 * it, 0.3 + 0.3 * it))
        # the calibration of a pass without enough scatter estimates keeps the last one
        calib = s["calib"] = s["calib"] if np.isfinite(s["calib"]) else calib
        if it == 0:
            z = s["z"]
            if user_stable is None and stable is not None:
                # the noise was measured on the slower half of the pixels: for pure 2-D
                # Gaussian noise that half has 0.554 x the component sigma of all of it
                # (E[r^2 | r < median] of a Rayleigh law); undo that selection bias
                # before flagging motion, or noisy stable ground is flagged as moving
                z = z * SLOW_HALF_SIGMA_RATIO
            moving = ndimage.binary_dilation(np.nan_to_num(z) > p.z_grow, iterations=2)
            stable = (user_stable if user_stable is not None else some) & ~moving
            if stable.sum() < 100:
                stable = user_stable
        progress.update(0.3 + 0.3 * it, "Noise model (pass %d)" % (it + 1))
    stable_final = stable if stable is not None else some
    report = s["report"]
    report["stable_source"] = ("%s minus pixels moving after a first pass (robust fit)"
                               % ("stable-area mask" if user_stable is not None else
                                  "whole scene (first pass: its slower half)"))
    report["stable_share"] = float(stable_final.sum()) / max(int(some.sum()), 1)
    report["signal_rms_m"] = _signal_rms(s["E"], s["N"], stable_final, some)
    # stable ground's velocities in units of their own temporal scatter: about 1 when it
    # is still, much more when the "stable" ground moves coherently (no stable ground)
    report["stable_velocity_over_scatter"] = calib
    report["pairs_with_stable_ground"] = pairs_stable
    s["stable_final"] = stable_final
    if user_stable is None and _no_stable_ground(calib, pairs_stable):
        _without_stable_ground(s, east, north, t, some, p)
    return s


def _no_stable_ground(calib, pairs_stable):
    """Whether the ground taken as stable moves coherently: it moves more than
    ``NO_STABLE_RATIO`` x its temporal scatter and the correlation did not find stable
    ground in ``MIN_PAIRS_WITH_STABLE_GROUND`` of the pairs (unknown: not used)."""
    if pairs_stable is not None and pairs_stable >= MIN_PAIRS_WITH_STABLE_GROUND:
        return False
    return bool(np.isfinite(calib) and calib > NO_STABLE_RATIO)


def _without_stable_ground(s, east, north, t, some, p):
    """The ground taken as stable moves coherently: there is no stable ground to fit a
    bias model on (e.g. a glacier filling the valid area); keep the series as they are
    (images assumed co-registered) and measure significance against each pixel's own
    temporal scatter only. Updates ``s`` in place."""
    E, N = east, north
    fit = fit_velocity(E, N, t, some, p.outlier_k, p.min_dates)
    ve_s = nan_gaussian(fit["ve"], p.smooth_px)
    vn_s = nan_gaussian(fit["vn"], p.smooth_px)
    sigma = _scatter_sigma(fit, p.smooth_px)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.hypot(ve_s, vn_s) / sigma
    moving = ndimage.binary_dilation(np.nan_to_num(z) > p.z_grow, iterations=2)
    stable_final = some & ~moving
    if stable_final.sum() < 100:
        stable_final = some
    report = _no_bias_report(s["report"], s["calib"], stable_final, some, E, N)
    s.update(E=E, N=N, fit=fit, ve_s=ve_s, vn_s=vn_s, sigma=sigma, z=z,
             stable_final=stable_final, report=report)


def _evidence_maps(s, t, p, dem, transform, some, progress):
    """Per-pixel evidence in [0, 1] (significance, coherence, consistency, downslope with
    a DEM), their weights and the weighted score."""
    E, N, fit, ve_s, vn_s, z = s["E"], s["N"], s["fit"], s["ve_s"], s["vn_s"], s["z"]
    T = E.shape[0]
    # ---- temporal evidence on lightly smoothed series
    if p.smooth_px > 0:
        Es = np.stack([nan_gaussian(np.where(fit["valid"][k], E[k], np.nan), p.smooth_px)
                       for k in range(T)])
        Ns = np.stack([nan_gaussian(np.where(fit["valid"][k], N[k], np.nan), p.smooth_px)
                       for k in range(T)])
    else:
        Es, Ns = E, N
    spd = np.hypot(ve_s, vn_s)
    with np.errstate(invalid="ignore", divide="ignore"):
        ue = np.where(spd > 0, ve_s / spd, np.nan)
        un = np.where(spd > 0, vn_s / spd, np.nan)
    valid = fit["valid"] & np.isfinite(Es) & np.isfinite(Ns)
    coh, tau = temporal_evidence(Es, Ns, valid, t, ue, un, progress.sub(0.6, 0.75))
    # relative to stable ground; without any, relative to 0 (what noise gives at best)
    ev_ref = np.zeros_like(some) if s["report"].get("no_stable_ground") else s["stable_final"]
    e_coh, coh0 = _relative(coh, ev_ref)
    e_cons, tau0 = _relative(tau, ev_ref)
    e_sig = np.clip((z - p.sig_zero) / (p.sig_full - p.sig_zero), 0.0, 1.0)
    evidence = {"significance": e_sig, "coherence": e_coh, "consistency": e_cons}
    weights = {"significance": p.w_significance, "coherence": p.w_coherence,
               "consistency": p.w_consistency}
    slope = agree = None
    if dem is not None:
        ter = terrain_derivatives(dem, transform)
        slope = ter["slope_deg"]
        mot_az = np.degrees(np.arctan2(ve_s, vn_s))
        agree = np.cos(np.radians(mot_az - ter["downslope_azimuth_deg"]))
        e_down = np.clip(agree, 0.0, 1.0) * np.clip(slope / p.slope_full_deg, 0.0, 1.0)
        evidence["downslope"] = e_down
        weights["downslope"] = p.w_downslope
    wsum = sum(weights.values()) or 1.0
    score = sum(weights[k] * np.nan_to_num(evidence[k]) for k in weights) / wsum
    evidence["score"] = score
    return dict(evidence=evidence, weights=weights, wsum=wsum, coh=coh, tau=tau,
                slope=slope, agree=agree)


def _candidate_objects(s, p, px_area):
    """Seeds grown to objects (labels, count) and the noise correlation area (pixels)."""
    z, fit, sigma, report, stable_final = (s["z"], s["fit"], s["sigma"], s["report"],
                                           s["stable_final"])
    zf = np.nan_to_num(z, nan=0.0)
    seeds = zf >= p.z_seed
    grow = zf >= p.z_grow
    if p.smooth_px > 0 and p.z_edge > 0:
        # smoothing spreads a sharp-edged slide beyond its border: the extent is also
        # required to be significant without smoothing (noise re-calibrated on stable
        # ground for the unsmoothed velocity)
        ve_r, vn_r = fit["ve"], fit["vn"]
        with np.errstate(all="ignore"):
            k_raw = (1.0 if report.get("no_stable_ground") else
                     robust_sigma(np.concatenate([(ve_r / sigma)[stable_final],
                                                  (vn_r / sigma)[stable_final]])))
            z_raw = np.hypot(ve_r, vn_r) / (sigma * (k_raw if np.isfinite(k_raw) and k_raw > 0
                                                     else 1.0))
        grow &= np.nan_to_num(z_raw, nan=0.0) >= p.z_edge
    min_px = max(1, int(np.ceil(p.min_area_m2 / px_area)))
    lab, n = cleanup_mask(grow, seeds, min_px, p.morph_px, p.min_seed_px)
    # spatial correlation of the noise: how many pixels make one independent observation
    with np.errstate(all="ignore"):
        corr_area = float(np.mean([correlation_area(fit[c] / sigma, stable_final)
                                   for c in ("ve", "vn")]))
    return lab, n, corr_area


def _judge_object(s, ev, p, T, sl, m, corr_area):
    """Evidence, independent observations, spatial coherence and score of one object, and
    the reason it is rejected (None when it is kept)."""
    fit, z = s["fit"], s["z"]
    weights, wsum = ev["weights"], ev["wsum"]
    # missing evidence (e.g. no temporal evidence from a single pair) counts as none
    vals = {name: float(np.mean(np.nan_to_num(arr[sl][m], nan=0.0)))
            for name, arr in ev["evidence"].items()}
    contrib = {name: weights[name] * vals[name] / wsum for name in weights}
    n_pix = int(m.sum())
    cells = s.get("cells")
    n_eff_space = min(float(n_pix), n_pix / corr_area if cells is None else
                      float(cells[sl][m].sum()))
    if cells is not None:
        corr_area = n_pix / n_eff_space  # the object's own (footprint-weighted) area
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        n_int = max(float(np.nanmedian(fit["n_dates"][sl][m])) - 1.0, 1.0)
    n_indep = n_eff_space * n_int
    # spatial coherence of the (unsmoothed) velocity vectors inside the object, and
    # what pure noise with n_eff_space independent vectors would give (1/sqrt(n))
    vu_e, vu_n = fit["ve"][sl][m], fit["vn"][sl][m]
    okv = np.isfinite(vu_e) & np.isfinite(vu_n)
    sum_len = float(np.hypot(vu_e[okv], vu_n[okv]).sum()) if okv.any() else 0.0
    sp_coh = (float(np.hypot(vu_e[okv].sum(), vu_n[okv].sum())) / sum_len
              if sum_len > 0 else 0.0)
    sp_coh0 = min(0.95, 1.0 / np.sqrt(max(n_eff_space, 1.0)))
    if T < 3:
        # no temporal evidence: the spatial coherence of the vectors, relative to that
        # of noise at this number of independent vectors, stands in for the coherence
        vals["coherence"] = float(np.clip((sp_coh - sp_coh0) / (1.0 - sp_coh0), 0.0, 1.0))
        contrib = {name: weights[name] * vals[name] / wsum for name in weights}
    obj_score = float(sum(contrib.values()))
    reason = None
    if n_indep < p.min_independent_obs:
        reason = ("%.1f independent observation(s) < %.1f: %.1f noise-correlation cell(s) "
                  "of %.0f px x %d interval(s); too few to tell motion from a "
                  "correlation artefact" % (n_indep, p.min_independent_obs, n_eff_space,
                                            corr_area, int(n_int)))
    elif obj_score < p.min_score:
        reason = "score %.2f < %.2f" % (obj_score, p.min_score)
    elif p.require_temporal_evidence and T < 3:
        reason = ("only %d dates: no temporal evidence (coherence/consistency need >= 3 "
                  "dates), a single pair cannot show that a slope is active" % T)
    elif T < 3 and (n_indep < p.single_pair_min_independent_obs
                    or np.nanmean(z[sl][m]) < p.single_pair_min_significance):
        reason = ("single pair: %.1f independent observation(s) and mean significance "
                  "%.1f; a pair gives a detection only with >= %.1f and >= %.1f (no "
                  "temporal evidence to tell motion from a coherent artefact)"
                  % (n_indep, float(np.nanmean(z[sl][m])),
                     p.single_pair_min_independent_obs, p.single_pair_min_significance))
    return dict(vals=vals, contrib=contrib, score=obj_score, n_indep=n_indep,
                sp_coh=sp_coh, reason=reason)


def _rejected_entry(s, v, sl, m):
    """The run-report entry of a rejected candidate."""
    return {"n_pixels": int(m.sum()), "score": round(v["score"], 3),
            "significance_max": round(float(np.nanmax(s["z"][sl][m])), 2),
            "v_mean_m_per_yr": round(float(np.nanmean(np.hypot(
                s["fit"]["ve"][sl][m], s["fit"]["vn"][sl][m]))), 3),
            "reason": v["reason"],
            "independent_obs": round(v["n_indep"], 2),
            "spatial_coherence": round(v["sp_coh"], 3),
            "evidence": {a: round(b, 3) for a, b in v["vals"].items()}}


def _feature(s, ev, v, p, dates, t, sl, m, px_area, T, has_dem):
    """The attributes of one kept object (detections_store fields), with its mean series
    and acceleration test."""
    fit, z, sigma = s["fit"], s["z"], s["sigma"]
    coh, tau, slope, agree = ev["coh"], ev["tau"], ev["slope"], ev["agree"]
    vals, contrib, obj_score, n_indep = v["vals"], v["contrib"], v["score"], v["n_indep"]
    vpe, vpn = fit["ve"][sl][m], fit["vn"][sl][m]
    sp = np.hypot(vpe, vpn)
    mve, mvn = float(np.nanmean(vpe)), float(np.nanmean(vpn))
    ser = object_series(s["E"], s["N"], fit, t, sl, m, p.accel_core_fraction,
                        p.accel_min_valid_fraction)
    series, ser_sigma = ser["series"], ser["sigma"]
    acc = _accel.detect_acceleration(dates, series, min_delta_bic=p.accel_min_delta_bic,
                                     min_t=p.accel_min_t, min_ratio=p.accel_min_ratio,
                                     sigma=ser_sigma,
                                     max_ramp_days=p.accel_max_ramp_days)
    zz = z[sl][m]
    f = {
        "area_m2": float(m.sum() * px_area),
        "v_mean_m_per_yr": float(np.nanmean(sp)),
        "v_p95_m_per_yr": float(np.nanpercentile(sp, 95)),
        "direction_deg": _azimuth(mve, mvn),
        "coherence": _nanmean(coh[sl][m]),
        "consistency": _nanmean(tau[sl][m]),
        "score": obj_score,
        "accel_flag": int(acc["accel_flag"]),
        "accel_onset_date": acc["onset_date"],
        "accel_v_before_m_per_yr": acc["v_before_m_per_yr"] if acc["accel_flag"] else None,
        "accel_v_after_m_per_yr": acc["v_after_m_per_yr"] if acc["accel_flag"] else None,
        "accel_delta_bic": acc["delta_bic"],
        "accel_onset_earliest": acc["onset_earliest"],
        "accel_onset_latest": acc["onset_latest"],
        "accel_ramp_days": acc["ramp_days"],
        "accel_onset_hinge_date": acc["onset_hinge_date"],
        "ev_significance": contrib["significance"],
        "ev_coherence": contrib["coherence"],
        "ev_consistency": contrib["consistency"],
        "ev_downslope": contrib.get("downslope"),
        "n_pixels": int(m.sum()),
        "independent_obs": float(n_indep),
        "spatial_coherence": v["sp_coh"],
        "significance_max": float(np.nanmax(zz)),
        "significance_mean": float(np.nanmean(zz)),
        "noise_sigma_m_per_yr": float(np.nanmean(sigma[sl][m])),
        "downslope_agreement": float(np.nanmean(agree[sl][m])) if agree is not None else None,
        "slope_deg": float(np.nanmean(slope[sl][m])) if slope is not None else None,
        "mean_series_m": [None if not np.isfinite(x) else float(x) for x in series],
    }
    f["score_explanation"] = _explain(f, vals, contrib, p, has_dem)
    if T < 3:
        f["score_explanation"] = (
            "Single pair (2 dates): no temporal evidence; the offset is overwhelming "
            "(%.0f independent observations, mean significance %.1f) but one interval "
            "cannot tell motion from a coherent artefact: confirm on a longer series. "
            % (n_indep, f["significance_mean"]) + f["score_explanation"])
    return f


def _explain(f, vals, contrib, p, has_dem):
    parts = ["score %.2f = significance %.2f (mean |v|/noise %.1f, max %.1f) x %.2f"
             % (f["score"], vals["significance"], f["significance_mean"], f["significance_max"],
                p.w_significance / _wsum(p, has_dem)),
             "+ coherence %.2f (vector coherence %s) x %.2f"
             % (vals["coherence"], _fmt(f["coherence"]), p.w_coherence / _wsum(p, has_dem)),
             "+ consistency %.2f (Kendall tau %s) x %.2f"
             % (vals["consistency"], _fmt(f["consistency"]), p.w_consistency / _wsum(p, has_dem))]
    if has_dem:
        parts.append("+ downslope %.2f (cos angle to downslope %.2f, slope %.0f deg) x %.2f"
                     % (vals["downslope"], f["downslope_agreement"], f["slope_deg"],
                        p.w_downslope / _wsum(p, has_dem)))
    txt = " ".join(parts) + ". Mean velocity %.2f m/yr towards %.0f deg, noise %.2f m/yr." % (
        f["v_mean_m_per_yr"], f["direction_deg"], f["noise_sigma_m_per_yr"])
    if f["accel_flag"]:
        txt += " Acceleration from %s (%.2f -> %.2f m/yr; onset between %s and %s)." % (
            f["accel_onset_date"], f["accel_v_before_m_per_yr"], f["accel_v_after_m_per_yr"],
            f.get("accel_onset_earliest"), f.get("accel_onset_latest"))
    return txt


def _fmt(x):
    return "n/a" if x is None or not np.isfinite(x) else "%.2f" % x


def _wsum(p, has_dem):
    return (p.w_significance + p.w_coherence + p.w_consistency
            + (p.w_downslope if has_dem else 0.0)) or 1.0


# ----------------------------------------------------------------------------- files

def read_timeseries(folder):
    """Read ``ts_east_m.tif`` and ``ts_north_m.tif`` of a SlideWatch ``timeseries`` folder.

    Returns (east, north, dates, transform, crs) with NaN nodata.
    """
    import rasterio

    paths = [os.path.join(folder, n) for n in (TS_EAST_TIF, TS_NORTH_TIF)]
    for pth in paths:
        if not os.path.exists(pth):
            raise InputError("'%s' not found. Choose the 'timeseries' folder written by the "
                             "inversion (it holds ts_east_m.tif and ts_north_m.tif)." % pth)
    arrays = []
    meta = None
    for pth in paths:
        try:
            with rasterio.open(pth) as src:
                a = src.read().astype(np.float64)
                if src.nodata is not None and np.isfinite(src.nodata):
                    a[a == src.nodata] = np.nan
                d = list(src.descriptions)
                m = (src.transform, src.crs, src.shape, d)
        except rasterio.errors.RasterioIOError as exc:
            raise InputError("Cannot read '%s': %s" % (pth, exc)) from exc
        if meta is not None and (m[2] != meta[2] or m[0] != meta[0]):
            raise InputError("ts_east_m.tif and ts_north_m.tif are not on the same grid.")
        if meta is not None and m[3] != meta[3]:
            raise InputError("ts_east_m.tif and ts_north_m.tif have different dates.")
        meta = m
        arrays.append(a)
    dates = meta[3]
    if any(not d for d in dates):
        raise InputError("Bands of '%s' must be described by their ISO date (YYYY-MM-DD)."
                         % paths[0])
    return arrays[0], arrays[1], [d[:10] for d in dates], meta[0], meta[1]


def read_pairs_with_stable_ground(folder):
    """Share of the inverted pairs in which the correlation found stable ground, from the
    ``STABLE_GROUND_PAIRS`` tag of ``ts_east_m.tif``; None when the tag is absent (older
    runs, series of other tools) or no pair carried the information."""
    import rasterio

    try:
        with rasterio.open(os.path.join(folder, TS_EAST_TIF)) as src:
            raw = src.tags().get(TAG_STABLE_GROUND_PAIRS)
    except rasterio.errors.RasterioIOError:
        return None
    if not raw:
        return None
    try:
        counts = json.loads(raw)
        identified, known = int(counts["identified"]), int(counts["not_identified"])
    except (ValueError, TypeError, KeyError):
        return None
    known += identified
    return identified / known if known > 0 else None


def _reproject_to(path, shape, transform, crs, resampling, what):
    import rasterio
    from rasterio.warp import Resampling, reproject

    try:
        with rasterio.open(path) as src:
            dst = np.full(shape, np.nan, dtype=np.float32)
            src_nodata = src.nodata
            reproject(source=rasterio.band(src, 1), destination=dst, src_nodata=src_nodata,
                      dst_nodata=np.nan, dst_transform=transform, dst_crs=crs or src.crs,
                      resampling=getattr(Resampling, resampling))
    except rasterio.errors.RasterioIOError as exc:
        raise InputError("Cannot read the %s '%s': %s" % (what, path, exc)) from exc
    if not np.isfinite(dst).any():
        raise InputError("The %s '%s' does not overlap the time-series grid." % (what, path))
    return dst.astype(np.float64)


def detect_from_folder(timeseries_folder, dem_path=None, stable_mask_path=None, out_gpkg=None,
                       params=None, progress=None, preserve_validations=True,
                       evidence_path=None, **overrides):
    """Run :func:`detect` on a ``timeseries`` folder and write ``detections.gpkg``.

    Parameters
    ----------
    timeseries_folder : folder holding ``ts_east_m.tif`` and ``ts_north_m.tif``.
    dem_path : optional DEM raster (any grid/CRS; resampled bilinearly to the series grid).
    stable_mask_path : optional raster, non-zero = stable ground (nearest resampling).
    out_gpkg : output GeoPackage; default ``detections.gpkg`` beside the timeseries folder.
    preserve_validations : carry analysts' validations over from an existing file.
    evidence_path : optional GeoTIFF of per-pixel evidence (significance, coherence,
        consistency, downslope, score, label).

    Returns the :class:`DetectionResult`, with ``store_summary`` from the writer.
    """
    from .detections_store import write_detections
    from ..raster_io import write_bands

    progress = as_progress(progress)
    east, north, dates, transform, crs = read_timeseries(timeseries_folder)
    shape = east.shape[1:]
    dem = stable = None
    if dem_path:
        dem = _reproject_to(dem_path, shape, transform, crs, "bilinear", "DEM")
    if stable_mask_path:
        sm = _reproject_to(stable_mask_path, shape, transform, crs, "nearest", "stable-area mask")
        stable = np.isfinite(sm) & (sm != 0)
        if stable.sum() < 100:
            raise InputError("The stable-area mask '%s' marks fewer than 100 pixels of the "
                             "time-series grid as stable; give a larger stable area."
                             % stable_mask_path)
    res = detect(east, north, dates, transform, crs=crs, dem=dem, stable_mask=stable,
                 params=params, progress=progress.sub(0.0, 0.9),
                 pairs_with_stable_ground=read_pairs_with_stable_ground(timeseries_folder),
                 footprint=read_footprint(timeseries_folder, shape), **overrides)
    if out_gpkg is None:
        out_gpkg = os.path.join(os.path.dirname(os.path.abspath(timeseries_folder)),
                                DETECTIONS_GPKG)
    info = res.run_info()
    info["inputs"] = {"timeseries_folder": os.path.abspath(timeseries_folder),
                      "dem": dem_path, "stable_mask": stable_mask_path}
    res.store_summary = write_detections(out_gpkg, res.features,
                                         crs.to_wkt() if crs is not None else None,
                                         preserve=preserve_validations, run_info=info)
    res.store_summary["path"] = os.path.abspath(out_gpkg)
    for line in summarize_report(res.bias_report, dates)[:1]:
        progress.info(line)
    br = res.bias_report
    sig = br.get("signal_rms_m", {})
    progress.info("Bias removed (RMS over dates): east %.3f m, north %.3f m; signal off "
                  "stable ground (RMS of median |displacement|): east %.3f m, north %.3f m; "
                  "stable ground %.0f %% of the valid area"
                  % (br["rms_removed_m"]["east"], br["rms_removed_m"]["north"],
                     sig.get("east", float("nan")), sig.get("north", float("nan")),
                     100.0 * br.get("stable_share", float("nan"))))
    share = br.get("pairs_with_stable_ground")
    if share is not None and not stable_mask_path:
        trusted = share >= MIN_PAIRS_WITH_STABLE_GROUND
        progress.info("Stable ground: the correlation found it in %.0f %% of the pairs%s"
                      % (100.0 * share, " (the scene is treated as having stable ground)"
                         if trusted else ""))
    if br.get("no_stable_ground"):
        progress.info("Warning: no stable ground found (%s). Give a stable-area mask "
                      "(STABLE_MASK) of rock or vegetation known not to move to remove "
                      "co-registration offsets." % br["stable_source"])
    elif br.get("stable_share", 1.0) < 0.3 and not stable_mask_path:
        progress.info("Warning: less than 30 %% of the valid area behaves as stable ground; "
                      "the bias model may have absorbed real motion. Give a stable-area "
                      "mask (STABLE_MASK) of rock or vegetation known not to move.")
    progress.info("Noise: %s" % json.dumps(res.noise.as_dict()))
    progress.info("%d detection(s) written to %s (%d validation(s) kept, %d archived)"
                  % (len(res.features), out_gpkg, res.store_summary["n_validations_kept"],
                     res.store_summary["n_archived"]))
    if evidence_path:
        ev = res.evidence
        bands = [res.significance, ev["coherence"], ev["consistency"],
                 ev.get("downslope", np.full(shape, np.nan)), ev["score"],
                 res.labels.astype(np.float32)]
        write_bands(evidence_path, bands, transform, crs,
                    descriptions=["significance", "ev_coherence", "ev_consistency",
                                  "ev_downslope", "score", "label"],
                    tags={"SLIDEWATCH_PARAMS": json.dumps(dataclasses.asdict(res.params))})
    progress.update(1.0, "Detection done")
    return res
