"""Detection of a large moving body (issue 14): a glacier or a whole valley flank covering
a large share of the scene must be detected, and the stable margins must not, without a
stable-area mask. The robust whole-scene bias fit used to follow the majority and remove
the body's motion (0 detections from a 40 % share on)."""
import numpy as np
import pytest
from affine import Affine
from scipy import ndimage

from slidewatch.core.detect import detection as D


def _stack(share, v=5.0, seed=0, T=12, H=160, W=160):
    """Cumulative east/north series (m) of an elliptic body covering ``share`` of the
    scene (speed v m/yr at its centre, tapering to its edge), with a random offset and
    ramp per date (co-registration, sigma 0.5 m) and spatially correlated noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    a = W * 0.45
    b = share * H * W / (np.pi * a)
    r2 = ((xx - W / 2) / a) ** 2 + ((yy - H / 2) / b) ** 2
    body = r2 <= 1
    prof = np.sqrt(np.clip(1 - r2, 0, 1))
    t = np.arange(T) * 16 / 365.25
    xn, yn = (xx - W / 2) / W, (yy - H / 2) / H
    E = np.zeros((T, H, W))
    N = np.zeros((T, H, W))
    for k in range(1, T):
        o = rng.normal(0, 0.5, 6)
        E[k] = (0.8 * v * t[k] * prof + o[0] + o[1] * xn + o[2] * yn
                + 2.0 * ndimage.gaussian_filter(rng.normal(0, 1, (H, W)), 1.5))
        N[k] = (-0.6 * v * t[k] * prof + o[3] + o[4] * xn + o[5] * yn
                + 2.0 * ndimage.gaussian_filter(rng.normal(0, 1, (H, W)), 1.5))
    dates = [str(np.datetime64("2020-01-01") + np.timedelta64(16 * k, "D")) for k in range(T)]
    return E, N, dates, Affine(10, 0, 0, 0, -10, 0), body


@pytest.mark.parametrize("share,seed,v", [(0.2, 0, 5.0), (0.3, 1, 5.0), (0.4, 0, 5.0),
                                          (0.5, 1, 15.0)])
def test_large_body_detected_margins_not(share, seed, v):
    E, N, dates, tr, body = _stack(share, v=v, seed=seed)
    r = D.detect(E, N, dates, tr)
    lab = r.labels > 0
    assert lab[body].mean() >= 0.8, lab[body].mean()
    assert lab[~body].mean() <= 0.05, lab[~body].mean()
    rep = r.bias_report
    # the report says how much was removed beside the signal, and how much was stable
    assert 0.04 * v < rep["signal_rms_m"]["east"] < 0.4 * v   # 0.8 v over 0.5 yr, tapered
    # the body's slow, tapered rim may count as stable
    assert 1 - share - 0.25 <= rep["stable_share"] <= 1 - share + 0.1


def test_whole_scene_fit_alone_loses_the_body():
    """The failure this guards against: without the slower-half first guess, the same
    40 % body is not detected (the robust fit follows it)."""
    E, N, dates, tr, body = _stack(0.4, seed=0)
    saved = D.slow_ground
    try:
        D.slow_ground = lambda *a, **k: None
        r = D.detect(E, N, dates, tr)
    finally:
        D.slow_ground = saved
    assert (r.labels > 0)[body].mean() < 0.5


def test_slow_ground_is_the_slower_half():
    E, N, dates, tr, body = _stack(0.3, seed=2)
    t = D.dates_to_years(dates)
    some = np.isfinite(E).any(0)
    slow = D.slow_ground(E, N, t, some)
    assert abs(slow.mean() - 0.5) < 0.01
    assert (slow & body).sum() < 0.1 * body.sum()   # only its tapered, slow rim
