"""Robust per-pixel inversion of a pair network into displacement time series.

Model (per pixel, east and north)
---------------------------------
Unknowns: the cumulative displacement ``d_k`` at every date ``t_k`` of the stack, with
``d_0 = 0`` at the first date. Each pair (reference date ``t_i``, secondary ``t_j``)
observes ``y_p = d_j - d_i`` (metres). The estimate minimises

    sum_p w_p (y_p - d_j + d_i)^2  +  lam * sum_k [ (v_{k+1} - v_k) * tau_k ]^2
                                   +  lam2 * sum_k [ (v_{k+2} - 2 v_{k+1} + v_k) * tau ]^2

with ``v_k = (d_{k+1} - d_k) / (t_{k+1} - t_k)`` the velocity between consecutive dates,
``tau_k = (dt_k + dt_{k+1}) / 2`` and ``tau`` the mean interval (days). Each
regularisation row is therefore a displacement (metres): ``lam`` is dimensionless and
compares "a change of velocity that moves the series by 1 m over an interval" with "a
unit-weight pair missing its value by 1 m". The first-order term penalises changes of
velocity (a steady motion is not penalised at all), the optional second-order term
penalises changes of acceleration.

Weights
-------
``w_p = prior_p * robust_p``:

* prior (``weighting="ncc"``, default): ``rho^2 / (1 - rho^2)`` with
  ``rho = clip(ncc, 0.05, 0.95)`` -- the Cramér-Rao-type scaling of the variance of a
  correlation offset, ``var ~ (1 - rho^2) / rho^2``. ``weighting="none"``: 1.
  Normalised per pixel to a mean of 1. A pair is not used (weight 0) where
  ``status != 0``, east or north is NaN, ``ncc < min_ncc`` or ``snr < min_snr``.
* robust (IRLS): standardised residual of a pair ``z = sqrt((z_e^2 + z_n^2) / 2)`` with
  ``z_c = sqrt(prior) * r_c / s_c`` and ``s_c = 1.4826 * MAD * sqrt(n / (n - p))`` (the
  leverage-corrected median absolute deviation, floored at ``sigma_floor`` = 1 cm: no
  correlation offset is that precise (0.001 px of a 10 m pixel), and the floor keeps
  noise-free or nearly exact pixels from rejecting good pairs over rounding-level
  residuals). ``robust=
  "tukey"`` (default): from the weighted least-squares start, ``n_start`` L1 iterations
  (IRLS weights ``1 / max(z, 0.1)``, scale re-estimated each time: an L1 fit is not
  dragged by a few gross outliers the way least squares is), then Tukey biweight
  (c = 4.685) iterations (scale re-estimated at every iteration), until the solution
  changes by less than ``tol`` sigma or ``max_iter`` iterations in all. If Tukey leaves
  fewer than half of the pairs (or fewer than ``min_obs``) with a non-zero weight -- no
  clear majority to trust -- the L1 estimate is kept instead. ``"huber"``: Huber
  (k = 1.345) iterations only. ``"none"``: one weighted least-squares solve.
  East and north share the robust weight: a mismatched pair is wrong in both.

Gaps and disconnected networks
------------------------------
A date without any valid observation is bridged by the regularisation (linear
interpolation of the cumulative series between the neighbouring dates, constant-velocity
extrapolation after the last observed date); flag bit 1. When the observed dates form
several connected components, their relative offsets are fixed by the regularisation
alone (the velocity is continued smoothly across the break); flag bit 2. When ``lam`` and
``lam2`` are both 0 a first-order term of 1e-6 is kept so that these cases stay solvable.
Other flag bits: 4 = at least one pair rejected by the robust weights, 8 = fewer than
``min_obs`` usable pairs (all outputs NaN, ``n_obs`` 0), 16 = solver failure (NaN).
A network of fewer pairs than ``min_obs`` (a single pair, two pairs) uses ``min_obs`` =
its number of pairs (:func:`effective_min_obs`): a pixel then needs every pair, and a
single pair's series is that pair's displacement, with no redundancy to reject it.

Parameters (:class:`InversionParams`)
-------------------------------------
The solver and step settings above (``lam``, ``lam2``, ``robust``, ``weighting``,
``min_obs``, ``min_ncc``, ``min_snr``, ``max_iter``, ``n_start``, ``tol``,
``sigma_floor``, ``lam_sample``, ``c_huber``, ``c_tukey``) are the fields of one
:class:`InversionParams` (defaults as documented here, units on each field;
:meth:`InversionParams.validate` raises :class:`.errors.ParameterError`).
:func:`invert_network` and :func:`invert_arrays` take it as ``params=`` and accept any
field as a keyword too (``invert_network(..., lam=5, robust="none")``): keywords replace
single fields of ``params`` (:func:`inversion_params`), an unknown keyword is refused by
name.

Outputs
-------
cumulative displacement per date; mean velocity = least-squares slope of the cumulative
series against time (m/yr, 365.25-day years); its sigma from the posterior covariance
``sigma0^2 * g^T N^-1 g`` (``g`` the slope functional, ``N`` the final normal matrix,
``sigma0^2 = sum w r^2 / (n_used - p)``); ``n_obs`` = pairs used with non-zero final
weight; ``rmse_m`` = RMS of the 2-D residual ``sqrt(r_e^2 + r_n^2)`` of the used pairs.

Choosing lam (default: from the temporal sampling)
--------------------------------------------------
Units. ``lam`` is dimensionless: with prior weights normalised to a mean of 1 it is the
weight of one regularisation row (a change of velocity times its interval, in metres)
relative to one average pair. TICOI (``inversion_core``, ``regu="1"``, ``coef``) solves
for displacements per interval with regularisation rows ``coef * (v_{k+1} - v_k)``, ``v``
in m/day -- so ``coef`` is a time in days -- next to pair rows of weight 1 (Tukey weights
<= 1 later): a penalty ``coef^2 dv^2`` against our ``lam tau_k^2 dv^2``. TICOI's
``coef`` therefore corresponds to ``lam = (coef / tau)^2`` for a sampling interval
``tau`` (days): its default 100 is ``lam`` 64 at the 12.4-day mean sampling of the
benchmark network, 400 at 5 days, 11 at 30 days.

Default (``lam=None``, :data:`DEFAULT_LAM`): :func:`default_lambda` =
``(LAM_TIME_SCALE_DAYS / tau_mean)^2`` with ``tau_mean`` the mean interval between the
output dates and :data:`LAM_TIME_SCALE_DAYS` = 150 days. Each regularisation row then
weighs about ``150 days x (change of velocity)``: a change of velocity costs as much as
a unit-weight pair missing by the displacement that this change produces in 150 days,
whatever the sampling (TICOI's convention, with 150 instead of 100 days). 150 days is
what the benchmark and the demo favour: on bench/bench_inversion.py (40 dates, 120
pairs, landslide-like accelerations) lam = 147 gives a lower RMSE than TICOI in every
scenario (see docs/benchmarks.md), and on the demo stack (make demo) the RMSE against the
true cumulative displacement falls from 0.26 m (lam 30) to 0.24 m (100) and 0.23 m (300)
with both landslides found. Smaller values (1-10) follow abrupt changes of velocity more
closely; a number given as ``lam`` is used as is (0 = no regularisation).

``lam="auto"`` chooses by generalised cross-validation (:func:`choose_lambda`), once per
call / raster run: the score ``n RSS_w / (n - tr H)^2`` over :data:`LAMBDA_GRID` (0.1 to
1000, a third of a decade apart) on a seeded random sample of ``lam_sample`` (400) valid
pixels, robust weights of a first run at the default lambda held fixed; the chosen value
is used for every pixel. The band solver and an O(m bw^2) selected-inverse trace make it
cheap (about 2x the cost of inverting the sample). Caveat: GCV sees only what is
inconsistent within the network; errors that belong to a date (co-registration,
illumination, shadows of one image) are consistent across all its pairs and look like
signal, so GCV then under-smooths -- on the demo stack it picks 0.1 (RMSE 0.34 m against
0.23-0.26 m for lam 30-300). Use it for networks whose errors are pair-specific.
"""

from dataclasses import dataclass, field, fields, replace

import numpy as np

from ..errors import InputError, ParameterError
from . import inversion_kernels as K
from ..products import DAYS_PER_YEAR, VELOCITY_BANDS  # noqa: F401 (re-exported)

#: default of ``lam`` (first-order, velocity-change regularisation): None = from the
#: temporal sampling, :func:`default_lambda`; "auto" = GCV; a number >= 0 is used as is
DEFAULT_LAM = None
#: time scale (days) of the default regularisation: lam = (this / mean interval)^2
LAM_TIME_SCALE_DAYS = 150.0
#: pixels sampled (seeded) for the GCV choice of lambda
DEFAULT_LAM_SAMPLE = 400
#: default weight of the optional second-order regularisation
DEFAULT_LAM2 = 0.0
ROBUST_MODES = {"none": K.ROBUST_NONE, "huber": K.ROBUST_HUBER, "tukey": K.ROBUST_TUKEY}
WEIGHTINGS = ("ncc", "none")
#: lambdas tried by GCV: 0.1 .. 1000, a third of a decade apart
LAMBDA_GRID = tuple(float(x) for x in np.logspace(-1, 3, 13))

FLAG_GAP = K.FLAG_GAP
FLAG_DISCONNECTED = K.FLAG_DISCONNECTED
FLAG_REJECTED = K.FLAG_REJECTED
FLAG_TOO_FEW = K.FLAG_TOO_FEW
FLAG_SOLVER = K.FLAG_SOLVER


@dataclass(frozen=True)
class InversionParams:
    """Settings of one inversion step (:func:`invert_network`, :func:`invert_arrays`),
    with units; see the module doc for the model they control.

    Frozen: derive variants with :func:`dataclasses.replace` or :func:`inversion_params`
    (``inversion_params(params, lam=5)``). :meth:`validate` raises
    :class:`.errors.ParameterError` naming the field and the value given.
    """

    #: first-order (velocity-change) regularisation, dimensionless: None = from the
    #: temporal sampling (:func:`default_lambda`), a number >= 0 (0 = none), or "auto"
    #: (generalised cross-validation, :func:`choose_lambda`)
    lam: object = DEFAULT_LAM
    #: second-order (acceleration-change) regularisation, dimensionless, >= 0
    lam2: float = DEFAULT_LAM2
    #: robust weights: "tukey" (L1 start then Tukey biweight), "huber" or "none"
    #: (one weighted least-squares solve), :data:`ROBUST_MODES`
    robust: str = "tukey"
    #: prior pair weights: "ncc" (rho^2 / (1 - rho^2)) or "none" (1), :data:`WEIGHTINGS`
    weighting: str = "ncc"
    #: pixels with fewer usable pairs are NaN (flag 8); >= 1, capped at the number of
    #: pairs of the network (:func:`effective_min_obs`)
    min_obs: int = 3
    #: pairs with an NCC below this (-1..1) are not used (None = no threshold)
    min_ncc: float = None
    #: pairs with an SNR below this are not used (None = no threshold)
    min_snr: float = None
    #: robust (IRLS) iterations in all, >= 1
    max_iter: int = 12
    #: L1 iterations before Tukey ("tukey" only), >= 0
    n_start: int = 5
    #: convergence: stop when the solution changes by less than this many sigma (> 0)
    tol: float = 1e-3
    #: metres: floor of the robust residual scale (MAD), > 0
    sigma_floor: float = 0.01
    #: pixels sampled (seeded) for lam="auto", >= 1
    lam_sample: int = DEFAULT_LAM_SAMPLE
    #: Huber threshold, in residual sigmas (> 0)
    c_huber: float = 1.345
    #: Tukey biweight cut-off, in residual sigmas (> 0)
    c_tukey: float = 4.685

    @classmethod
    def names(cls):
        """The field names (the keywords :func:`invert_network` accepts besides its data)."""
        return [f.name for f in fields(cls)]

    def validate(self):
        """Check every field; returns ``self``. Raises :class:`.errors.ParameterError`."""
        check_params(self.robust, self.min_obs, self.max_iter, self.n_start)
        if self.weighting not in WEIGHTINGS:
            raise ParameterError("weighting must be one of %s (got %r)."
                                 % (", ".join(WEIGHTINGS), self.weighting))
        check_lambda(self.lam)
        _check_number("lam2", self.lam2, 0.0)
        for name in ("min_ncc", "min_snr"):
            if getattr(self, name) is not None:
                _check_number(name, getattr(self, name))
        _check_number("tol", self.tol, 0.0, strict=True)
        _check_number("sigma_floor", self.sigma_floor, 0.0, strict=True)
        _check_number("lam_sample", self.lam_sample, 1.0)
        _check_number("c_huber", self.c_huber, 0.0, strict=True)
        _check_number("c_tukey", self.c_tukey, 0.0, strict=True)
        return self


def inversion_params(params=None, **overrides):
    """A validated :class:`InversionParams`: ``params`` (None = the defaults) with
    ``overrides`` (field names, e.g. ``lam=5, robust="none"``) replacing single fields.
    Raises :class:`.errors.ParameterError` for a keyword that is not a field or a value out
    of range."""
    if params is None:
        params = InversionParams()
    elif not isinstance(params, InversionParams):
        raise ParameterError("params must be an InversionParams or None (got %r); give "
                             "single settings as keywords, e.g. lam=5." % (params,))
    unknown = sorted(set(overrides) - set(InversionParams.names()))
    if unknown:
        raise ParameterError("Unknown inversion parameter(s): %s. Known: %s." % (
            ", ".join(unknown), ", ".join(InversionParams.names())))
    if overrides:
        params = replace(params, **overrides)
    return params.validate()


def _check_number(name, value, lo=None, strict=False):
    """ParameterError unless ``value`` is a finite number (``> lo`` if ``strict``, else
    ``>= lo``; no bound if ``lo`` is None)."""
    ok = not isinstance(value, (str, bytes, bool))
    if ok:
        try:
            x = float(value)
        except (TypeError, ValueError):
            ok = False
        else:
            ok = bool(np.isfinite(x)) and (lo is None or (x > lo if strict else x >= lo))
    if not ok:
        bound = "" if lo is None else (" > %g" % lo if strict else " >= %g" % lo)
        raise ParameterError("%s must be a finite number%s (got %r)." % (name, bound, value))

@dataclass
class InversionResult:
    """Per-pixel results; spatial shape ``S`` is the trailing shape of the inputs."""
    dates: list                 # ISO dates, length n_dates
    cum_east: np.ndarray        # (n_dates, *S) metres, 0 at the first date
    cum_north: np.ndarray       # (n_dates, *S)
    ve: np.ndarray              # (*S) m/yr
    vn: np.ndarray
    v: np.ndarray
    v_sigma: np.ndarray
    ve_sigma: np.ndarray
    vn_sigma: np.ndarray
    n_obs: np.ndarray           # (*S) int32
    rmse: np.ndarray            # (*S) metres
    flags: np.ndarray           # (*S) uint8, see module doc
    lam: float = 0.0            # the lambda used (resolved from the default or "auto")
    lam2: float = DEFAULT_LAM2
    info: dict = field(default_factory=dict)

    def step_velocities(self):
        """Velocity between consecutive dates (m/yr): arrays (n_dates-1, *S) east, north."""
        return step_velocities(self.cum_east, self.dates), step_velocities(self.cum_north,
                                                                            self.dates)


# ----------------------------------------------------------------------------- dates
def to_datetime64(dates):
    """Sequence of ISO strings / datetime.date / datetime64 -> datetime64[D] array."""
    try:
        return np.asarray([np.datetime64(str(d)[:10], "D") for d in dates], dtype="datetime64[D]")
    except ValueError as exc:
        raise InputError("Unreadable date in %r: %s. Dates must be ISO YYYY-MM-DD."
                         % (list(dates)[:5], exc)) from exc


def iso(d):
    return str(np.datetime64(d, "D"))


def network_dates(ref_dates, sec_dates, dates=None):
    """Sorted unique dates of the network (or ``dates`` if given) and the pair indices."""
    ref = to_datetime64(ref_dates)
    sec = to_datetime64(sec_dates)
    if ref.shape != sec.shape:
        raise InputError("Reference and secondary date lists differ in length (%d vs %d)."
                         % (ref.size, sec.size))
    if np.any(ref == sec):
        raise InputError("A pair has the same reference and secondary date (%s); remove it."
                         % iso(ref[ref == sec][0]))
    if dates is None:
        all_dates = np.unique(np.concatenate([ref, sec]))
    else:
        all_dates = np.unique(to_datetime64(dates))
        missing = np.setdiff1d(np.concatenate([ref, sec]), all_dates)
        if missing.size:
            raise InputError("Pair date %s is not among the requested dates." % iso(missing[0]))
    pi = np.searchsorted(all_dates, ref).astype(np.int64)
    pj = np.searchsorted(all_dates, sec).astype(np.int64)
    return all_dates, pi, pj


def years_since_first(dates64):
    days = (dates64 - dates64[0]).astype("timedelta64[D]").astype(np.float64)
    return days / DAYS_PER_YEAR


def step_velocities(cum, dates):
    """(n_dates, ...) cumulative -> (n_dates-1, ...) velocity between dates (m/yr)."""
    t = years_since_first(to_datetime64(dates))
    dt = np.diff(t).reshape((-1,) + (1,) * (np.ndim(cum) - 1))
    return np.diff(cum, axis=0) / dt


# ------------------------------------------------------------------- regularisation
def default_lambda(dates64, time_scale_days=LAM_TIME_SCALE_DAYS):
    """Default ``lam``: ``(time_scale_days / mean interval between dates in days)^2``
    (see "Choosing lam" in the module doc). 1.0 for fewer than 2 dates."""
    d = to_datetime64(dates64)
    if d.size < 2:
        return 1.0
    span = float((d.max() - d.min()).astype("timedelta64[D]").astype(np.float64))
    tau = max(span / (d.size - 1), 1.0)
    return float((float(time_scale_days) / tau) ** 2)


def regularisation_matrix(dates64, lam, lam2=DEFAULT_LAM2):
    """Normal matrix ``Q`` (n_dates-1 square, float64) of the temporal regularisation.

    ``lam`` must be a number here (None / "auto" are resolved by :func:`resolve_lambda`).
    Rows (over all dates, then the column of the fixed first date removed):
    first order  ``(v_{k+1} - v_k) * tau_k``, second order ``(v_{k+2} - 2v_{k+1} + v_k) * tau``.
    """
    try:
        lam = float(lam)
        lam2 = float(lam2)
    except (TypeError, ValueError):
        raise ParameterError("Regularisation weights must be numbers >= 0 (got lam=%r, "
                             "lam2=%r); resolve lam='auto' with resolve_lambda first."
                             % (lam, lam2)) from None
    if not np.isfinite(lam) or lam < 0 or not np.isfinite(lam2) or lam2 < 0:
        raise ParameterError("Regularisation weights must be >= 0 (got lam=%r, lam2=%r)."
                             % (lam, lam2))
    n = len(dates64)
    m = n - 1
    Q = np.zeros((m, m))
    if n < 2:
        return Q
    days = (dates64 - dates64[0]).astype("timedelta64[D]").astype(np.float64)
    dt = np.diff(days)
    # V (n-1 x n): v_k = (d_{k+1} - d_k) / dt_k
    V = np.zeros((n - 1, n))
    V[np.arange(n - 1), np.arange(n - 1)] = -1.0 / dt
    V[np.arange(n - 1), np.arange(1, n)] = 1.0 / dt
    lam_eff = lam if (lam > 0 or lam2 > 0) else 1e-6
    if n >= 3 and lam_eff > 0:
        tau = 0.5 * (dt[:-1] + dt[1:])
        R1 = (V[1:] - V[:-1]) * tau[:, None]
        R1 = R1[:, 1:]
        Q += lam_eff * R1.T @ R1
    if n >= 4 and lam2 > 0:
        R2 = (V[2:] - 2 * V[1:-1] + V[:-2]) * float(dt.mean())
        R2 = R2[:, 1:]
        Q += lam2 * R2.T @ R2
    if n == 2:
        # a single interval: nothing to regularise; keep the matrix definite if unobserved
        Q += 1e-12
    return Q


# ------------------------------------------------------------------------- weights
def prior_weights(east, north, ncc=None, snr=None, status=None,
                  weighting=InversionParams.weighting, min_ncc=None, min_snr=None):
    """Prior weight of every pair observation (0 = not used), float32, same shape."""
    if weighting not in WEIGHTINGS:
        raise ParameterError("weighting must be one of %s (got %r)." % (", ".join(WEIGHTINGS),
                                                                      weighting))
    east = np.asarray(east)
    north = np.asarray(north)
    usable = np.isfinite(east) & np.isfinite(north)
    if status is not None:
        usable &= np.asarray(status) == 0
    if weighting == "ncc" and ncc is not None:
        rho = np.asarray(ncc, dtype=np.float32)
        usable &= np.isfinite(rho)
        r = np.clip(np.nan_to_num(rho, nan=0.05), 0.05, 0.95)
        w = (r * r / (1.0 - r * r)).astype(np.float32)
    else:
        w = np.ones(east.shape, np.float32)
    if min_ncc is not None and ncc is not None:
        with np.errstate(invalid="ignore"):
            usable &= np.asarray(ncc) >= min_ncc
    if min_snr is not None and snr is not None:
        with np.errstate(invalid="ignore"):
            usable &= np.asarray(snr) >= min_snr
    w[~usable] = 0.0
    return w


# ---------------------------------------------------------------------------- core
def check_params(robust, min_obs, max_iter, n_start=5):
    """Raise ParameterError for an unknown robust mode or out-of-range iteration counts."""
    if robust not in ROBUST_MODES:
        raise ParameterError("robust must be one of %s (got %r)." % (", ".join(ROBUST_MODES),
                                                                   robust))
    if int(min_obs) < 1:
        raise ParameterError("min_obs must be >= 1 (got %r)." % min_obs)
    if int(max_iter) < 1 or int(n_start) < 0:
        raise ParameterError("max_iter must be >= 1 and n_start >= 0.")


def bandwidth(pi, pj, Q):
    """Half bandwidth of the per-pixel normal matrices: a pair couples dates up to its
    index span apart, the regularisation up to 2 (first order) or 3 (second order)."""
    pi = np.asarray(pi)
    pj = np.asarray(pj)
    span = int(np.max(np.abs(pj - pi))) if pi.size else 1
    return max(span, _q_bandwidth(Q))


def effective_min_obs(min_obs, n_pairs):
    """``min_obs`` capped at the number of pairs of the network (at least 1): a network
    smaller than ``min_obs`` (e.g. a single pair) needs every pair at a pixel instead of
    giving no pixel at all."""
    return max(1, min(int(min_obs), int(n_pairs)))


def invert_arrays(east, north, wprior, pi, pj, dates64, lam=None, params=None, Q=None,
                  **overrides):
    """Low-level call: (n_pairs, n_pix) float32 arrays -> raw kernel outputs.

    ``lam``: the resolved number, or None for ``params.lam`` (itself None =
    :func:`default_lambda`); ignored when ``Q`` (the regularisation matrix) is given;
    resolve "auto" first with :func:`resolve_lambda`. ``params``: an
    :class:`InversionParams` (None = defaults) for ``lam2`` and the solver settings;
    ``overrides``: any of its fields as keywords (``robust="huber"``, ``min_obs=4``).
    Only ``lam``, ``lam2``, ``robust``, ``min_obs``, ``max_iter``, ``n_start``, ``tol``,
    ``sigma_floor``, ``c_huber`` and ``c_tukey`` are used here (the weighting is already
    in ``wprior``).

    Returns ``cum_e, cum_n`` (n_dates, n_pix) float32 and ``stats`` (7, n_pix) float64
    rows ve, vn, sigma_ve, sigma_vn, n_obs, rmse, flags.
    """
    p = inversion_params(params, **overrides)
    east = np.ascontiguousarray(east, dtype=np.float32)
    north = np.ascontiguousarray(north, dtype=np.float32)
    wprior = np.ascontiguousarray(wprior, dtype=np.float32)
    n_pairs, n_pix = east.shape
    n_dates = len(dates64)
    # a network of fewer pairs than min_obs could never give a pixel: each pixel then needs
    # every pair (a single pair gives the pair's displacement, without redundancy)
    min_obs = effective_min_obs(p.min_obs, n_pairs)
    if Q is None:
        lam = p.lam if lam is None else lam
        Q = regularisation_matrix(dates64, default_lambda(dates64) if lam is None else lam,
                                  p.lam2)
    t_years = years_since_first(dates64)
    out_ce = np.empty((n_dates, n_pix), np.float32)
    out_cn = np.empty((n_dates, n_pix), np.float32)
    stats = np.empty((7, n_pix), np.float64)
    if n_pix == 0:
        return out_ce, out_cn, stats
    pi = np.asarray(pi, np.int64)
    pj = np.asarray(pj, np.int64)
    bw = bandwidth(pi, pj, Q)
    K.invert_block(east, north, wprior, pi, pj,
                   t_years, np.ascontiguousarray(Q, np.float64), int(bw), int(min_obs),
                   ROBUST_MODES[p.robust], int(p.n_start), int(p.max_iter),
                   float(p.c_huber), float(p.c_tukey), float(p.tol), float(p.sigma_floor),
                   out_ce, out_cn, stats)
    return out_ce, out_cn, stats


def _q_bandwidth(Q):
    nz = np.nonzero(np.asarray(Q))
    return int(np.max(np.abs(nz[0] - nz[1]))) if nz[0].size else 0


def choose_lambda(east, north, wprior, pi, pj, dates64, lam2=DEFAULT_LAM2, grid=LAMBDA_GRID,
                  sample=DEFAULT_LAM_SAMPLE, robust=InversionParams.robust, seed=0, **kw):
    """Pick lambda by generalised cross-validation on a random sample of pixels.

    A first robust run at :func:`default_lambda` gives each pair's final weight (robust
    weights recomputed from its residuals); with these weights fixed, the GCV score of
    every lambda in ``grid`` is computed per pixel, normalised by the pixel's median score
    and averaged over pixels; the lambda with the lowest mean wins (the default lambda if
    no pixel gives a finite score). ``sample`` pixels with at least 3 usable pairs are drawn
    with ``seed``. Returns ``(best_lam, grid, scores)``.
    """
    east = np.asarray(east, np.float32)
    north = np.asarray(north, np.float32)
    wprior = np.asarray(wprior, np.float32)
    grid = np.asarray(grid, float)
    lam0 = default_lambda(dates64)
    min_obs = int(kw.get("min_obs", InversionParams.min_obs))
    usable = (wprior > 0).sum(axis=0) >= max(min_obs, 3)
    idx = np.flatnonzero(usable)
    if idx.size == 0:
        return lam0, grid, np.full(grid.size, np.nan)
    rng = np.random.default_rng(seed)
    if idx.size > sample:
        idx = np.sort(rng.choice(idx, int(sample), replace=False))
    e = np.ascontiguousarray(east[:, idx])
    n = np.ascontiguousarray(north[:, idx])
    wp = np.ascontiguousarray(wprior[:, idx])
    ce, cn, _ = invert_arrays(e, n, wp, pi, pj, dates64, lam0, lam2=lam2, robust=robust,
                              **kw)
    wfinal = _final_weights(e, n, wp, pi, pj, ce, cn, robust)
    Q1 = regularisation_matrix(dates64, 1.0, 0.0)
    Q2 = (regularisation_matrix(dates64, 1.0, lam2) - Q1) if lam2 > 0 else np.zeros_like(Q1)
    qbw = max(_q_bandwidth(Q1), _q_bandwidth(Q2))
    scores = np.empty((grid.size, idx.size))
    K.gcv_block(e, n, wfinal, np.asarray(pi, np.int64), np.asarray(pj, np.int64),
                np.ascontiguousarray(Q1), np.ascontiguousarray(Q2),
                int(bandwidth(pi, pj, Q1 + Q2)), int(qbw), grid, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = scores / np.nanmedian(scores, axis=0, keepdims=True)
        good = np.isfinite(norm).all(axis=0)
        mean = np.nanmean(norm[:, good], axis=1) if good.any() else np.full(grid.size, np.nan)
    if not np.isfinite(mean).any():
        return lam0, grid, mean
    return float(grid[int(np.nanargmin(mean))]), grid, mean


def resolve_lambda(lam, east, north, wprior, pi, pj, dates64, lam2=DEFAULT_LAM2,
                   robust=InversionParams.robust, min_obs=InversionParams.min_obs,
                   sample=DEFAULT_LAM_SAMPLE):
    """The lambda to use: ``lam`` itself if it is a number >= 0, :func:`default_lambda`
    of the dates if it is None, the GCV choice of :func:`choose_lambda` on (a sample of)
    the given pixels if it is "auto".

    ``east``, ``north``, ``wprior``: (n_pairs, n_pix) observations and prior weights (only
    read for "auto"). Returns ``(lam, info)``; ``info["lambda_rule"]`` is "given",
    "sampling" or "gcv" (then with the GCV grid and scores). Raises ParameterError for
    anything else.
    """
    rule = check_lambda(lam)
    if rule == "sampling":
        return default_lambda(dates64), dict(lambda_rule="sampling",
                                             lambda_time_scale_days=LAM_TIME_SCALE_DAYS)
    if rule == "gcv":
        best, grid, scores = choose_lambda(east, north, wprior, pi, pj, dates64, lam2=lam2,
                                           sample=sample, robust=robust, min_obs=min_obs)
        return best, dict(lambda_rule="gcv", lambda_grid=[float(g) for g in grid],
                          lambda_gcv=[float(x) for x in scores])
    return float(lam), dict(lambda_rule="given")


def check_lambda(lam):
    """The rule a ``lam`` setting stands for: "sampling" (None), "gcv" ("auto") or
    "given" (a number >= 0); ParameterError for anything else."""
    if lam is None:
        return "sampling"
    if isinstance(lam, str):
        if lam.strip().lower() != "auto":
            raise ParameterError("lam must be a number >= 0, 'auto' or empty for the default "
                                 "(got %r)." % lam)
        return "gcv"
    try:
        value = float(lam)
    except (TypeError, ValueError):
        raise ParameterError("lam must be a number >= 0, 'auto' or empty for the default "
                             "(got %r)." % (lam,)) from None
    if not np.isfinite(value) or value < 0:
        raise ParameterError("lam must be a number >= 0, 'auto' or empty for the default "
                             "(got %r)." % (lam,))
    return "given"


def _final_weights(e, n, wp, pi, pj, ce, cn, robust):
    """Robust (Tukey, MAD) weights of each pair from the residuals of a solution."""
    pe = ce[pj] - ce[pi]
    pn = cn[pj] - cn[pi]
    re = e - pe
    rn = n - pn
    if robust == "none":
        return wp.copy()
    sw = np.sqrt(np.maximum(wp, 0))
    with np.errstate(invalid="ignore"):
        ae = np.where(wp > 0, np.abs(sw * re), np.nan)
        an = np.where(wp > 0, np.abs(sw * rn), np.nan)
        se = np.maximum(1.4826 * np.nanmedian(ae, axis=0), 0.01)
        sn = np.maximum(1.4826 * np.nanmedian(an, axis=0), 0.01)
        z = np.sqrt(0.5 * ((sw * re / se) ** 2 + (sw * rn / sn) ** 2))
        rw = np.where(z < 4.685, (1 - (z / 4.685) ** 2) ** 2, 0.0)
    w = np.where(np.isfinite(rw) & (wp > 0), wp * rw, 0.0).astype(np.float32)
    return w


def invert_network(east, north, ref_dates, sec_dates, ncc=None, snr=None, status=None,
                   dates=None, params=None, **overrides):
    """Invert pair displacements into cumulative displacement time series per pixel.

    Parameters
    ----------
    east, north : array (n_pairs, *S) pair displacements in metres (NaN = missing)
    ref_dates, sec_dates : sequences of n_pairs dates (ISO strings or datetime64)
    ncc, snr, status : optional arrays (n_pairs, *S) quality bands (status 0 = valid)
    dates : optional list of output dates (must contain every pair date; extra dates are
        bridged by the regularisation)
    params : :class:`InversionParams` (None = defaults): lam (None = :func:`default_lambda`
        of the dates, a float >= 0, or "auto": chosen once for the call by GCV on
        ``lam_sample`` pixels, :func:`choose_lambda`), lam2, robust ("tukey", "huber",
        "none"), weighting ("ncc", "none"), min_obs (pixels with fewer usable pairs are
        NaN), min_ncc, min_snr and the IRLS settings
    **overrides : any field of :class:`InversionParams`, replacing that field of
        ``params`` (``lam=5, robust="none"``); another keyword raises ParameterError

    Returns an :class:`InversionResult`.
    """
    p = inversion_params(params, **overrides)
    east = np.asarray(east, dtype=np.float32)
    north = np.asarray(north, dtype=np.float32)
    if east.shape != north.shape or east.ndim < 1:
        raise InputError("east and north must have the same shape (n_pairs, ...); got %s "
                         "and %s." % (east.shape, north.shape))
    n_pairs = east.shape[0]
    spatial = east.shape[1:]
    dates64, pi, pj = network_dates(ref_dates, sec_dates, dates)
    if len(pi) != n_pairs:
        raise InputError("%d pair dates for %d pair arrays." % (len(pi), n_pairs))
    wp = prior_weights(east, north, ncc, snr, status, p.weighting, p.min_ncc, p.min_snr)
    e2 = east.reshape(n_pairs, -1)
    n2 = north.reshape(n_pairs, -1)
    w2 = wp.reshape(n_pairs, -1)
    lam, info = resolve_lambda(p.lam, e2, n2, w2, pi, pj, dates64, p.lam2, p.robust,
                               p.min_obs, p.lam_sample)
    ce, cn, st = invert_arrays(e2, n2, w2, pi, pj, dates64, lam, params=p)
    return result_from_kernel(ce, cn, st, dates64, spatial, lam, p.lam2, info)


def result_from_kernel(ce, cn, st, dates64, spatial, lam, lam2, info=None):
    n_dates = len(dates64)
    ve, vn, sve, svn = st[0], st[1], st[2], st[3]
    v, vs = velocity_magnitude(ve, vn, sve, svn)
    shp = tuple(spatial)
    return InversionResult(
        dates=[iso(d) for d in dates64],
        cum_east=ce.reshape((n_dates,) + shp), cum_north=cn.reshape((n_dates,) + shp),
        ve=ve.astype(np.float32).reshape(shp), vn=vn.astype(np.float32).reshape(shp),
        v=v.reshape(shp), v_sigma=vs.reshape(shp),
        ve_sigma=sve.astype(np.float32).reshape(shp),
        vn_sigma=svn.astype(np.float32).reshape(shp),
        n_obs=st[4].astype(np.int32).reshape(shp),
        rmse=st[5].astype(np.float32).reshape(shp),
        flags=st[6].astype(np.uint8).reshape(shp), lam=float(lam), lam2=float(lam2),
        info=info or {})


def velocity_magnitude(ve, vn, sve, svn):
    """|v| and its first-order propagated sigma (float32)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        v = np.hypot(ve, vn)
        vs = np.where(v > 0, np.sqrt((ve * sve) ** 2 + (vn * svn) ** 2) / v,
                      np.sqrt(0.5 * (sve ** 2 + svn ** 2)))
    return v.astype(np.float32), vs.astype(np.float32)
