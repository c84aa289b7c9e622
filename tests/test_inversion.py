"""Per-pixel network inversion (core/series/inversion.py, core/series/inversion_kernels.py)."""

import numpy as np
import pytest

from slidewatch.core.series import inversion as inv
from slidewatch.core.errors import InputError, ParameterError


def _dates(n, seed=0):
    rng = np.random.default_rng(seed)
    steps = np.r_[0, rng.integers(5, 25, n - 1)]
    return np.datetime64("2021-01-01") + np.cumsum(steps).astype("timedelta64[D]")


def _network(n_dates, n_pairs, seed=0, max_span=5):
    rng = np.random.default_rng(seed)
    pairs = {(k, k + 1) for k in range(n_dates - 1)}
    assert n_pairs <= sum(n_dates - s for s in range(1, max_span + 1))
    while len(pairs) < n_pairs:
        i = int(rng.integers(0, n_dates - 1))
        j = min(n_dates - 1, i + int(rng.integers(2, max_span + 1)))
        pairs.add((i, j))
    pairs = sorted(pairs)
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def _truth(dates, n_pix, seed=0):
    """Landslide-like: steady motion then an acceleration, per pixel random amplitudes."""
    rng = np.random.default_rng(seed)
    t = inv.years_since_first(dates)
    v0 = rng.uniform(-3, 3, (2, n_pix))
    acc = rng.uniform(0, 8, (2, n_pix))
    t0 = 0.5 * t[-1]
    return v0[:, None] * t[None, :, None] + acc[:, None] * np.clip(t - t0, 0, None)[None, :, None] ** 2


def _observe(truth, pi, pj):
    return truth[0][pj] - truth[0][pi], truth[1][pj] - truth[1][pi]


def test_exact_recovery_noise_free_unregularised():
    d = _dates(12)
    pi, pj = _network(12, 30)
    tr = _truth(d, 50)
    e, n = _observe(tr, pi, pj)
    r = inv.invert_network(e, n, d[pi], d[pj], lam=0.0, robust="none", weighting="none")
    np.testing.assert_allclose(r.cum_east, tr[0], atol=1e-4)
    np.testing.assert_allclose(r.cum_north, tr[1], atol=1e-4)
    assert np.all(r.cum_east[0] == 0)
    assert np.all(r.n_obs == 30)
    assert np.nanmax(r.rmse) < 1e-4
    assert r.dates[0] == str(d[0]) and len(r.dates) == 12


def test_exact_recovery_steady_motion_with_default_regularisation_and_robust():
    # a steady velocity is not penalised by the first-order regularisation: exact with lam>0
    d = _dates(15, seed=3)
    pi, pj = _network(15, 40, seed=3)
    t = inv.years_since_first(d)
    ve, vn = 1.7, -0.4
    e = ve * (t[pj] - t[pi])[:, None] * np.ones((1, 4))
    n = vn * (t[pj] - t[pi])[:, None] * np.ones((1, 4))
    r = inv.invert_network(e, n, d[pi], d[pj], lam=10.0)
    np.testing.assert_allclose(r.cum_east, ve * t[:, None] * np.ones((1, 4)), atol=1e-4)
    np.testing.assert_allclose(r.ve, ve, atol=1e-4)
    np.testing.assert_allclose(r.vn, vn, atol=1e-4)
    np.testing.assert_allclose(r.v, np.hypot(ve, vn), atol=1e-4)
    assert np.all(r.v_sigma < 1e-3)
    assert np.all(r.flags & inv.FLAG_REJECTED == 0)


def test_outlier_rejection_beats_plain_least_squares():
    d = _dates(20, seed=1)
    pi, pj = _network(20, 60, seed=1)
    tr = _truth(d, 300, seed=1)
    e, n = _observe(tr, pi, pj)
    rng = np.random.default_rng(5)
    noise = 0.05
    e = e + noise * rng.standard_normal(e.shape)
    n = n + noise * rng.standard_normal(n.shape)
    bad = rng.random(e.shape) < 0.1
    e = np.where(bad, e + rng.choice([-1, 1], e.shape) * rng.uniform(1, 4, e.shape), e)
    n = np.where(bad, n + rng.choice([-1, 1], e.shape) * rng.uniform(1, 4, e.shape), n)
    ls = inv.invert_network(e, n, d[pi], d[pj], lam=0.0, robust="none", weighting="none")
    rob = inv.invert_network(e, n, d[pi], d[pj], lam=1.0, robust="tukey", weighting="none")
    err_ls = np.sqrt(np.mean((ls.cum_east - tr[0]) ** 2))
    err_rob = np.sqrt(np.mean((rob.cum_east - tr[0]) ** 2))
    assert err_rob < 0.5 * err_ls
    assert err_rob < 3 * noise
    # most outlier pairs are no longer counted
    assert np.mean(rob.n_obs) < 60 - 0.7 * bad.sum(axis=0).mean()
    assert np.mean(rob.flags & inv.FLAG_REJECTED > 0) > 0.9


def test_single_gross_outlier_is_rejected_exactly():
    d = _dates(10, seed=2)
    pi, pj = _network(10, 30, seed=2)
    tr = _truth(d, 1, seed=2)
    e, n = _observe(tr, pi, pj)
    e = e.copy()
    e[7, 0] += 50.0
    r = inv.invert_network(e, n, d[pi], d[pj], lam=0.0, robust="tukey", weighting="none")
    np.testing.assert_allclose(r.cum_east[:, 0], tr[0][:, 0], atol=1e-3)
    assert r.n_obs[0] == 29
    assert r.flags[0] & inv.FLAG_REJECTED


def test_disconnected_network_is_bridged_and_flagged():
    # two components: dates 0-4 and 5-9, no pair across the break; steady motion
    d = np.datetime64("2022-01-01") + (np.arange(10) * 12).astype("timedelta64[D]")
    pairs = [(i, i + 1) for i in range(4)] + [(i, i + 2) for i in range(3)] + \
            [(i, i + 1) for i in range(5, 9)] + [(i, i + 2) for i in range(5, 8)]
    pi = np.array([p[0] for p in pairs])
    pj = np.array([p[1] for p in pairs])
    t = inv.years_since_first(d)
    e = 2.0 * (t[pj] - t[pi])[:, None]
    n = np.zeros_like(e)
    r = inv.invert_network(e, n, d[pi], d[pj], lam=1.0)
    assert r.flags[0] & inv.FLAG_DISCONNECTED
    assert not r.flags[0] & inv.FLAG_GAP
    assert np.all(np.isfinite(r.cum_east[:, 0]))
    # the regularisation continues the (constant) velocity across the break
    np.testing.assert_allclose(r.cum_east[:, 0], 2.0 * t, atol=1e-3)
    # with the regularisation off the problem is still solvable (tiny built-in term)
    r0 = inv.invert_network(e, n, d[pi], d[pj], lam=0.0)
    assert np.all(np.isfinite(r0.cum_east)) and r0.flags[0] & inv.FLAG_DISCONNECTED


def test_missing_dates_are_bridged_by_regularisation():
    d = np.datetime64("2022-01-01") + np.array([0, 10, 20, 35, 50, 60]).astype("timedelta64[D]")
    # date index 3 is not observed by any pair; an extra output date is requested too
    pairs = [(0, 1), (1, 2), (0, 2), (2, 4), (4, 5), (2, 5), (1, 4)]
    pi = np.array([p[0] for p in pairs])
    pj = np.array([p[1] for p in pairs])
    t = inv.years_since_first(d)
    e = 3.0 * (t[pj] - t[pi])[:, None]
    extra = np.datetime64("2022-03-20")
    r = inv.invert_network(e, -e, d[pi], d[pj], dates=list(d) + [extra], lam=1.0)
    assert len(r.dates) == 7 and "2022-03-20" in r.dates
    assert r.flags[0] & inv.FLAG_GAP
    tt = inv.years_since_first(inv.to_datetime64(r.dates))
    np.testing.assert_allclose(r.cum_east[:, 0], 3.0 * tt, atol=1e-4)
    np.testing.assert_allclose(r.cum_north[:, 0], -3.0 * tt, atol=1e-4)


def test_nan_pixels_status_and_too_few_observations():
    d = _dates(8, seed=4)
    pi, pj = _network(8, 16, seed=4)
    tr = _truth(d, 4, seed=4)
    e, n = _observe(tr, pi, pj)
    e = e.copy()
    status = np.zeros(e.shape, np.uint8)
    e[:, 1] = np.nan                  # pixel 1: all NaN
    status[:-2, 2] = 3                # pixel 2: only two valid pairs left
    status[::4, 3] = 2                # pixel 3: some pairs masked by status
    e[0, 3] = 1e6                     # ... including a crazy value with bad status
    r = inv.invert_network(e, n, d[pi], d[pj], status=status, lam=0.0, robust="none",
                           weighting="none", min_obs=3)
    assert np.all(np.isnan(r.cum_east[:, 1])) and np.isnan(r.ve[1]) and r.n_obs[1] == 0
    assert r.flags[1] & inv.FLAG_TOO_FEW and r.flags[2] & inv.FLAG_TOO_FEW
    assert np.isnan(r.rmse[2]) and np.isnan(r.v[2])
    np.testing.assert_allclose(r.cum_east[:, 0], tr[0][:, 0], atol=1e-4)
    assert r.n_obs[3] == 16 - len(range(0, 16, 4))
    assert np.all(np.isfinite(r.cum_east[:, 3]))
    assert abs(r.cum_east[-1, 3] - tr[0][-1, 3]) < 1e-2


def test_ncc_weights_favour_good_pairs():
    d = _dates(10, seed=6)
    pi, pj = _network(10, 30, seed=6)
    tr = _truth(d, 400, seed=6)
    e, n = _observe(tr, pi, pj)
    rng = np.random.default_rng(1)
    ncc = rng.uniform(0.3, 0.95, e.shape)
    sigma = 0.05 * np.sqrt((1 - ncc ** 2) / ncc ** 2)
    e = e + sigma * rng.standard_normal(e.shape)
    n = n + sigma * rng.standard_normal(e.shape)
    kw = dict(lam=0.0, robust="none")
    r_w = inv.invert_network(e, n, d[pi], d[pj], ncc=ncc, weighting="ncc", **kw)
    r_u = inv.invert_network(e, n, d[pi], d[pj], ncc=ncc, weighting="none", **kw)
    err_w = np.sqrt(np.mean((r_w.cum_east - tr[0]) ** 2))
    err_u = np.sqrt(np.mean((r_u.cum_east - tr[0]) ** 2))
    assert err_w < 0.85 * err_u
    w = inv.prior_weights(np.zeros(4), np.zeros(4), ncc=np.array([0.9, 0.5, np.nan, 0.9]),
                          status=np.array([0, 0, 0, 1]))
    assert w[0] > w[1] > 0 and w[2] == 0 and w[3] == 0


def test_velocity_sigma_grows_with_noise_and_matches_scatter():
    d = _dates(25, seed=7)
    pi, pj = _network(25, 75, seed=7)
    t = inv.years_since_first(d)
    base = 1.0 * (t[pj] - t[pi])[:, None] * np.ones((1, 500))
    rng = np.random.default_rng(2)
    sig = []
    for noise in (0.02, 0.2):
        e = base + noise * rng.standard_normal(base.shape)
        r = inv.invert_network(e, e, d[pi], d[pj], lam=1.0, robust="none", weighting="none")
        sig.append(np.median(r.v_sigma))
        # the reported sigma of ve is within a factor 2 of the actual scatter of ve
        ratio = np.median(r.ve_sigma) / np.std(r.ve)
        assert 0.5 < ratio < 2.0
    assert sig[1] > 5 * sig[0]


def test_auto_lambda_by_gcv_is_in_grid_and_reasonable():
    d = _dates(20, seed=8)
    pi, pj = _network(20, 60, seed=8)
    tr = _truth(d, 200, seed=8)
    e, n = _observe(tr, pi, pj)
    rng = np.random.default_rng(3)
    e = e + 0.1 * rng.standard_normal(e.shape)
    n = n + 0.1 * rng.standard_normal(n.shape)
    r = inv.invert_network(e, n, d[pi], d[pj], lam="auto", lam_sample=100)
    assert r.lam in inv.LAMBDA_GRID
    assert len(r.info["lambda_gcv"]) == len(inv.LAMBDA_GRID)
    err = np.sqrt(np.mean((r.cum_east - tr[0]) ** 2))
    r_ls = inv.invert_network(e, n, d[pi], d[pj], lam=0.0, robust="none")
    assert err < np.sqrt(np.mean((r_ls.cum_east - tr[0]) ** 2))


def test_second_order_regularisation_and_step_velocities():
    d = _dates(12, seed=9)
    pi, pj = _network(12, 30, seed=9)
    t = inv.years_since_first(d)
    e = 0.5 * (t[pj] - t[pi])[:, None]
    r = inv.invert_network(e, e, d[pi], d[pj], lam=0.0, lam2=5.0)
    np.testing.assert_allclose(r.cum_east[:, 0], 0.5 * t, atol=1e-4)
    sv_e, sv_n = r.step_velocities()
    assert sv_e.shape == (11, 1)
    np.testing.assert_allclose(sv_e, 0.5, atol=1e-3)


def test_parameter_and_input_errors():
    d = _dates(4)
    e = np.zeros((2, 3))
    with pytest.raises(ParameterError, match="robust"):
        inv.invert_network(e, e, d[:2], d[1:3], robust="bogus")
    with pytest.raises(ParameterError, match="lam"):
        inv.invert_network(e, e, d[:2], d[1:3], lam=-1)
    with pytest.raises(ParameterError, match="lam"):
        inv.invert_network(e, e, d[:2], d[1:3], lam="gcv")
    with pytest.raises(InputError, match="same reference and secondary"):
        inv.invert_network(e, e, d[:2], d[:2])
    with pytest.raises(InputError, match="same shape"):
        inv.invert_network(e, np.zeros((2, 4)), d[:2], d[1:3])


def test_gcv_band_trace_matches_dense_inverse():
    from slidewatch.core.series import inversion_kernels as K
    rng = np.random.default_rng(21)
    m, bw, qbw = 15, 5, 2
    band = np.abs(np.subtract.outer(np.arange(m), np.arange(m)))
    A = rng.standard_normal((m, m))
    N = np.where(band <= bw, A @ A.T, 0.0) + 4 * m * np.eye(m)
    Q = rng.standard_normal((m, m))
    Q = np.where(band <= qbw, Q + Q.T, 0.0)
    L = np.zeros((m, m))
    assert K._cholesky(N, L, m, bw)
    tr = K._band_inverse_trace(L, Q, np.zeros((m, m)), m, bw, qbw)
    assert tr == pytest.approx(np.trace(np.linalg.solve(N, Q)), rel=1e-10, abs=1e-12)


def test_default_lambda_follows_the_temporal_sampling():
    assert inv.DEFAULT_LAM is None
    d = _dates(20, seed=8)
    tau = (d[-1] - d[0]).astype(float) / 19
    assert inv.default_lambda(d) == pytest.approx((inv.LAM_TIME_SCALE_DAYS / tau) ** 2)
    # TICOI's convention: halving the interval quadruples lam
    regular = np.datetime64("2021-01-01") + (np.arange(10) * 12).astype("timedelta64[D]")
    dense = np.datetime64("2021-01-01") + (np.arange(19) * 6).astype("timedelta64[D]")
    assert inv.default_lambda(dense) == pytest.approx(4 * inv.default_lambda(regular))
    pi, pj = _network(20, 60, seed=8)
    tr = _truth(d, 60, seed=8)
    e, n = _observe(tr, pi, pj)
    rng = np.random.default_rng(4)
    e = e + 0.1 * rng.standard_normal(e.shape)
    r = inv.invert_network(e, n, d[pi], d[pj])
    assert r.lam == pytest.approx(inv.default_lambda(d)) and r.info["lambda_rule"] == "sampling"
    fixed = inv.invert_network(e, n, d[pi], d[pj], lam=r.lam)
    np.testing.assert_array_equal(r.cum_east, fixed.cum_east)
    assert fixed.info["lambda_rule"] == "given"
    # GCV: one seeded choice for the call, used for every pixel
    a = inv.invert_network(e, n, d[pi], d[pj], lam="auto", lam_sample=30)
    assert a.info["lambda_rule"] == "gcv" and a.lam in inv.LAMBDA_GRID
    assert inv.invert_network(e, n, d[pi], d[pj], lam="auto", lam_sample=30).lam == a.lam


def test_resolve_lambda_and_regularisation_matrix_reject_bad_values():
    d = _dates(5)
    assert inv.resolve_lambda(7, None, None, None, None, None, d)[0] == 7.0
    assert inv.resolve_lambda(None, None, None, None, None, None, d)[0] == inv.default_lambda(d)
    for bad in ("gcv", -1.0, float("nan"), [1.0]):
        with pytest.raises(ParameterError, match="lam"):
            inv.resolve_lambda(bad, None, None, None, None, None, d)
    with pytest.raises(ParameterError, match="resolve_lambda"):
        inv.regularisation_matrix(d, "auto")
    # auto without any usable pixel falls back to the default
    e = np.full((4, 3), np.nan, np.float32)
    lam, info = inv.resolve_lambda("auto", e, e, np.zeros_like(e), np.array([0, 1, 2, 3]),
                                   np.array([1, 2, 3, 4]), d)
    assert lam == inv.default_lambda(d) and info["lambda_rule"] == "gcv"


def test_network_smaller_than_min_obs_needs_every_pair_instead_of_giving_nothing():
    # a single pair (2 images): the series is the pair's displacement, the velocity its rate
    e = np.array([[[3.0, np.nan], [-1.5, 0.2]]], np.float32)
    n = np.array([[[1.0, 2.0], [0.5, np.nan]]], np.float32)
    res = inv.invert_network(e, n, ["2016-07-18"], ["2016-08-03"], min_obs=3)
    assert res.dates == ["2016-07-18", "2016-08-03"]
    np.testing.assert_allclose(res.cum_east[1, 0, 0], 3.0, atol=1e-4)
    np.testing.assert_allclose(res.cum_north[1, 1, 0], 0.5, atol=1e-4)
    np.testing.assert_allclose(res.ve[0, 0], 3.0 / (16 / 365.25), rtol=1e-4)
    # a pixel missing one component is not usable
    assert np.isnan(res.ve[0, 1]) and np.isnan(res.ve[1, 1])
    # two pairs: each pixel needs both of them
    e2 = np.array([[1.0, 1.0], [2.0, np.nan]], np.float32)
    res2 = inv.invert_network(e2, e2, ["2020-01-01", "2020-01-11"],
                              ["2020-01-11", "2020-01-21"], min_obs=3)
    assert np.isfinite(res2.ve[0]) and np.isnan(res2.ve[1])
    assert inv.effective_min_obs(3, 1) == 1 and inv.effective_min_obs(3, 40) == 3
