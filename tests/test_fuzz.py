"""Fuzz tests (issue 9): the correlator and the inversion with random shapes, NaN/Inf
patterns and dtypes never crash and never return garbage: every output is finite or NaN,
NaN comes with a status/flag saying why, and valid values are right.

Bounded (a few dozen small examples each, ``deadline=None``) so that the file stays fast.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slidewatch.core.matching.correlation import STATUS_MEANINGS, STATUS_VALID, correlate
from slidewatch.core.errors import SlideWatchError

FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

INT_DTYPES = ("uint8", "int16", "uint16", "int32")
FLOAT_DTYPES = ("float32", "float64", "float16")


def _texture(rng, h, w):
    from scipy.ndimage import gaussian_filter
    return gaussian_filter(rng.normal(size=(h, w)), 1.2)


def _as_dtype(a, dtype):
    """Scale a texture into the range of ``dtype`` (integers use most of their range)."""
    a = (a - a.min()) / max(np.ptp(a), 1e-12)
    if dtype in INT_DTYPES:
        hi = min(np.iinfo(dtype).max, 60000)
        lo = max(np.iinfo(dtype).min, -30000) if np.iinfo(dtype).min < 0 else 0
        return (lo + a * (hi - lo)).round().astype(dtype)
    return (1000.0 + 2000.0 * a).astype(dtype)


def _mask(rng, shape, kind, fraction):
    h, w = shape
    m = np.zeros(shape, bool)
    if kind == "random":
        m = rng.random(shape) < fraction
    elif kind == "block":
        bh, bw = max(1, int(h * fraction)), max(1, int(w * fraction))
        r, c = rng.integers(0, h - bh + 1), rng.integers(0, w - bw + 1)
        m[r:r + bh, c:c + bw] = True
    elif kind == "rows":
        m[rng.random(h) < fraction, :] = True
    elif kind == "all":
        m[:] = True
    return m


@FUZZ
@given(h=st.integers(4, 48), w=st.integers(4, 48),
       dtype=st.sampled_from(INT_DTYPES + FLOAT_DTYPES),
       window=st.integers(4, 16), step=st.integers(2, 8), search=st.integers(1, 4),
       subpixel=st.sampled_from(["iterative", "parabola", "none"]),
       prefilter=st.sampled_from(["none", "gaussian_hp", "wallis"]),
       mask_kind=st.sampled_from(["none", "random", "block", "rows", "all"]),
       fraction=st.floats(0.0, 0.6), inf=st.booleans(), flat=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_fuzz_correlate(h, w, dtype, window, step, search, subpixel, prefilter, mask_kind,
                        fraction, inf, flat, seed):
    rng = np.random.default_rng(seed)
    pad = search + 1
    big = _texture(rng, h + 2 * pad, w + 2 * pad)
    sy, sx = (int(v) for v in rng.integers(-search + 1, search, size=2)) if search > 1 \
        else (0, 0)
    ref = big[pad:pad + h, pad:pad + w]
    # a feature at (r, c) in ref is at (r + sy, c + sx) in sec
    sec = big[pad - sy:pad - sy + h, pad - sx:pad - sx + w]
    if flat:
        sec = np.full_like(sec, sec.mean())
    ref, sec = _as_dtype(ref, dtype), _as_dtype(sec, dtype)
    if dtype in FLOAT_DTYPES:
        m = _mask(rng, (h, w), mask_kind, fraction)
        sec = sec.copy()
        sec[m] = np.inf if inf else np.nan
        if inf and mask_kind != "none":
            ref = ref.copy()
            ref[_mask(rng, (h, w), "random", fraction / 2)] = -np.inf
    try:
        res = correlate(ref, sec, window=window, step=step, search=search, subpixel=subpixel,
                        prefilter=prefilter)
    except SlideWatchError as exc:   # allowed: a clear, user-facing refusal
        assert str(exc)
        return
    n_r, n_c = len(res.rows), len(res.cols)
    for name in ("dx", "dy", "ncc", "snr", "status"):
        assert getattr(res, name).shape == (n_r, n_c), name
    for name in ("dx", "dy", "ncc", "snr"):
        assert not np.isinf(getattr(res, name)).any(), name
    status = res.status
    assert set(np.unique(status).tolist()) <= set(STATUS_MEANINGS)
    ok = status == STATUS_VALID
    assert np.isfinite(res.dx[ok]).all() and np.isfinite(res.dy[ok]).all()
    assert np.isfinite(res.ncc[ok]).all()
    assert np.isnan(res.dx[~ok]).all() and np.isnan(res.dy[~ok]).all()
    assert (np.abs(res.dx[ok]) <= search + 1).all() and (np.abs(res.dy[ok]) <= search + 1).all()
    assert (res.ncc[ok] <= 1.0 + 1e-5).all() and (res.ncc[ok] >= -1.0 - 1e-5).all()
    if flat or (dtype in FLOAT_DTYPES and mask_kind == "all"):
        assert not ok.any()
    # never garbage: a valid window found the true shift
    if ok.any():
        err = np.hypot(res.dx[ok] - sx, res.dy[ok] - sy)
        assert np.median(err) < 0.5, (np.median(err), sx, sy)


# ----------------------------------------------------------------------------- inversion

@FUZZ
@given(n_dates=st.integers(2, 7), ny=st.integers(1, 4), nx=st.integers(1, 4),
       dtype=st.sampled_from(["float16", "float32", "float64"]),
       pair_fraction=st.floats(0.2, 1.0), nan_fraction=st.floats(0.0, 0.7),
       inf=st.booleans(), bad_status=st.floats(0.0, 0.5), with_ncc=st.booleans(),
       robust=st.sampled_from(["tukey", "huber", "none"]),
       lam=st.sampled_from([0.0, 1.0, 30.0, 1000.0]), min_obs=st.integers(1, 4),
       seed=st.integers(0, 2 ** 16))
def test_fuzz_inversion(n_dates, ny, nx, dtype, pair_fraction, nan_fraction, inf, bad_status,
                        with_ncc, robust, lam, min_obs, seed):
    from slidewatch.core.series.inversion import FLAG_TOO_FEW, invert_network
    rng = np.random.default_rng(seed)
    days = np.sort(rng.choice(np.arange(0, 400, 5), size=n_dates, replace=False))
    dates = [str(np.datetime64("2020-01-01") + int(d)) for d in days]
    all_pairs = [(i, j) for i in range(n_dates) for j in range(i + 1, n_dates)]
    keep = [p for p in all_pairs if rng.random() < pair_fraction] or [all_pairs[0]]
    t = days / 365.25
    ve_true = rng.uniform(-3, 3, size=(ny, nx))
    vn_true = rng.uniform(-3, 3, size=(ny, nx))
    dt = np.array([t[j] - t[i] for i, j in keep])[:, None, None]
    east = (ve_true[None] * dt).astype(dtype)
    north = (vn_true[None] * dt).astype(dtype)
    clean = np.ones((ny, nx), bool)
    bad = rng.random(east.shape) < nan_fraction
    east[bad] = np.inf if inf else np.nan
    north[rng.random(east.shape) < nan_fraction / 2] = np.nan
    clean &= ~bad.any(0)
    status = np.where(rng.random(east.shape) < bad_status, rng.integers(1, 8, east.shape), 0)
    clean &= (status == 0).all(0)
    ncc = None
    if with_ncc:
        ncc = rng.uniform(0.3, 1.0, east.shape).astype(dtype)
        ncc[rng.random(east.shape) < nan_fraction / 3] = np.nan
        clean &= np.isfinite(ncc).all(0)
    clean &= np.isfinite(north).all(0)
    try:
        res = invert_network(east, north, [dates[i] for i, _ in keep],
                             [dates[j] for _, j in keep], ncc=ncc, status=status,
                             robust=robust, lam=lam, min_obs=min_obs)
    except SlideWatchError as exc:
        assert str(exc)
        return
    used = sorted({i for p in keep for i in p})   # dates in no pair are not in the output
    assert res.dates == [dates[i] for i in used]
    assert res.cum_east.shape == (len(used), ny, nx) and res.ve.shape == (ny, nx)
    for name in ("cum_east", "cum_north", "ve", "vn", "v", "v_sigma", "rmse"):
        a = getattr(res, name)
        assert not np.isinf(a).any(), name
    assert (res.n_obs >= 0).all() and (res.n_obs <= len(keep)).all()
    too_few = (res.flags & FLAG_TOO_FEW) != 0
    assert np.isnan(res.cum_east[:, too_few]).all() and (res.n_obs[too_few] == 0).all()
    solved = np.isfinite(res.ve)
    # a pixel without a value says why (a flag), a pixel with a value starts at 0
    assert (res.flags[~solved] != 0).all()
    assert np.allclose(res.cum_east[0][solved], 0.0, atol=1e-6)
    assert (res.v[solved] >= 0).all()
    # never garbage: clean pixels with enough pairs recover the true linear velocity
    # (noise-free linear motion is not penalised by the regularisation)
    if dtype != "float16" and len(keep) >= min_obs:
        ok = clean & solved
        tol = 0.05 * np.abs(ve_true[ok]) + 0.05
        assert (np.abs(res.ve[ok] - ve_true[ok]) <= tol).all(), (res.ve[ok], ve_true[ok])
