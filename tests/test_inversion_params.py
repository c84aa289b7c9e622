"""InversionParams: the settings object of core/series/inversion.py (issue 16)."""

import dataclasses

import numpy as np
import pytest

from slidewatch.core.series import inversion as inv
from slidewatch.core.errors import ParameterError

#: the defaults of invert_network / invert_arrays before they took an InversionParams
OLD_DEFAULTS = dict(lam=inv.DEFAULT_LAM, lam2=inv.DEFAULT_LAM2, robust="tukey",
                    weighting="ncc", min_obs=3, min_ncc=None, min_snr=None, max_iter=12,
                    n_start=5, tol=1e-3, sigma_floor=0.01, lam_sample=inv.DEFAULT_LAM_SAMPLE,
                    c_huber=1.345, c_tukey=4.685)


def _case(seed=0, n_dates=10, n_pix=12):
    rng = np.random.default_rng(seed)
    d = np.datetime64("2021-01-01") + np.cumsum(
        np.r_[0, rng.integers(5, 25, n_dates - 1)]).astype("timedelta64[D]")
    pairs = [(i, j) for i in range(n_dates) for j in range(i + 1, min(n_dates, i + 4))]
    pi = np.array([p[0] for p in pairs])
    pj = np.array([p[1] for p in pairs])
    t = inv.years_since_first(d)
    v = rng.normal(0, 2, n_pix)
    e = (np.outer(t[pj] - t[pi], v) + rng.normal(0, 0.05, (len(pi), n_pix))).astype(np.float32)
    e[rng.random(e.shape) < 0.05] = np.nan
    ncc = rng.uniform(0.3, 0.95, e.shape).astype(np.float32)
    return d, pi, pj, e, -0.5 * e, ncc


def _same(a, b):
    for name in ("cum_east", "cum_north", "ve", "vn", "v_sigma", "n_obs", "rmse", "flags"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.lam == b.lam and a.lam2 == b.lam2


def test_defaults_are_the_old_defaults():
    p = inv.InversionParams()
    assert dataclasses.asdict(p) == OLD_DEFAULTS
    assert inv.InversionParams.names() == list(OLD_DEFAULTS)
    assert p.validate() is p


@pytest.mark.parametrize("field, value, match", [
    ("robust", "bogus", "robust"), ("weighting", "snr", "weighting"),
    ("min_obs", 0, "min_obs"), ("max_iter", 0, "max_iter"), ("n_start", -1, "n_start"),
    ("lam", -1.0, "lam"), ("lam", "gcv", "lam"), ("lam", float("nan"), "lam"),
    ("lam2", -0.5, "lam2"), ("lam2", "auto", "lam2"), ("min_ncc", "0.5", "min_ncc"),
    ("min_snr", float("inf"), "min_snr"), ("tol", 0.0, "tol"),
    ("sigma_floor", -0.01, "sigma_floor"), ("lam_sample", 0, "lam_sample"),
    ("c_huber", 0.0, "c_huber"), ("c_tukey", -4.685, "c_tukey"),
])
def test_validate_rejects_bad_values(field, value, match):
    p = inv.InversionParams(**{field: value})
    with pytest.raises(ParameterError, match=match):
        p.validate()
    with pytest.raises(ParameterError, match=match):
        inv.inversion_params(**{field: value})


def test_validate_accepts_the_documented_values():
    for lam in (None, 0, 5.0, "auto", " AUTO ", np.float32(3)):
        inv.InversionParams(lam=lam).validate()
    inv.InversionParams(min_ncc=0.2, min_snr=3, robust="huber", weighting="none").validate()


def test_inversion_params_overrides_single_fields():
    base = inv.InversionParams(lam=10.0, robust="huber")
    p = inv.inversion_params(base, min_obs=4, robust="none")
    assert (p.lam, p.robust, p.min_obs) == (10.0, "none", 4)
    assert base.robust == "huber"           # frozen: the original is unchanged
    assert inv.inversion_params() == inv.InversionParams()
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.lam = 1.0


def test_unknown_keyword_and_positional_misuse_are_refused():
    d, pi, pj, e, n, ncc = _case()
    with pytest.raises(ParameterError, match="lamda"):
        inv.invert_network(e, n, d[pi], d[pj], lamda=5)
    with pytest.raises(ParameterError, match="Unknown inversion parameter.*bogus_knob"):
        inv.invert_arrays(e, n, np.ones_like(e), pi, pj, d, 5.0, bogus_knob=1)
    # the old 9th / 8th positional slots (lam, lam2) are now params
    with pytest.raises(ParameterError, match="InversionParams"):
        inv.invert_network(e, n, d[pi], d[pj], None, None, None, None, 5.0)
    with pytest.raises(ParameterError, match="InversionParams"):
        inv.invert_arrays(e, n, np.ones_like(e), pi, pj, d, 5.0, 0.0)


def test_params_object_and_keywords_give_identical_results():
    d, pi, pj, e, n, ncc = _case(1)
    kw = dict(lam=7.0, lam2=1.0, robust="huber", min_obs=4, max_iter=6, tol=1e-2)
    by_kw = inv.invert_network(e, n, d[pi], d[pj], ncc=ncc, **kw)
    by_obj = inv.invert_network(e, n, d[pi], d[pj], ncc=ncc, params=inv.InversionParams(**kw))
    mixed = inv.invert_network(e, n, d[pi], d[pj], ncc=ncc,
                               params=inv.InversionParams(lam=1.0, robust="tukey"),
                               **dict(kw, lam=7.0))
    _same(by_kw, by_obj)
    _same(by_kw, mixed)
    # invert_arrays: the resolved lam positionally, settings from params or keywords
    wp = inv.prior_weights(e, n, ncc)
    a = inv.invert_arrays(e, n, wp, pi, pj, d, 7.0, params=inv.InversionParams(**kw))
    b = inv.invert_arrays(e, n, wp, pi, pj, d, 7.0, **{k: v for k, v in kw.items() if k != "lam"})
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    # lam=None falls back to params.lam (None = the default rule)
    c = inv.invert_arrays(e, n, wp, pi, pj, d, params=inv.InversionParams(**kw))
    for x, y in zip(a, c):
        np.testing.assert_array_equal(x, y)


def test_solver_constants_reach_the_kernel():
    d, pi, pj, e, n, ncc = _case(2)
    e[::5, ::3] += 2.0                       # outliers: Huber's threshold matters
    ref = inv.invert_network(e, n, d[pi], d[pj], robust="huber", lam=1.0)
    tight = inv.invert_network(e, n, d[pi], d[pj], robust="huber", lam=1.0, c_huber=0.5)
    assert not np.array_equal(ref.cum_east, tight.cum_east, equal_nan=True)
    with pytest.raises(ParameterError, match="resolve"):
        inv.invert_arrays(e, n, np.ones_like(e), pi, pj, d, lam="auto")
