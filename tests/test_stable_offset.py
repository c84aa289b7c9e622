"""Pair-level stable-ground offset without a mask (core/stable_offset.py, issue 14)."""
import numpy as np

from slidewatch.core.matching.stable_offset import stable_offset


def _field(moving_share, offset=(0.4, -0.3), vmax=4.0, noise=0.1, n=20000, seed=0):
    rng = np.random.default_rng(seed)
    k = int(moving_share * n)
    # a glacier: speeds spread from 0 at its margins to vmax, one direction
    s = vmax * np.sqrt(rng.random(k))
    dx = np.concatenate([rng.normal(0, noise, n - k), s * 0.8]) + offset[0]
    dy = np.concatenate([rng.normal(0, noise, n - k), -s * 0.6]) + offset[1]
    return dx, dy


def test_offset_found_whatever_the_moving_share():
    for share in (0.0, 0.3, 0.6, 0.8):
        dx, dy = _field(share)
        r = stable_offset(dx, dy)
        assert r is not None, share
        assert abs(r["dx"] - 0.4) < 0.03 and abs(r["dy"] + 0.3) < 0.03, (share, r)
        # the plain median is dragged by the body from a large share on
    dx, dy = _field(0.6)
    assert abs(np.median(dx) - 0.4) > 0.5


def test_no_stable_ground_no_offset():
    rng = np.random.default_rng(1)
    s = 1.0 + 4.0 * rng.random(20000)           # everything moves, 1-5 px
    assert stable_offset(0.8 * s, -0.6 * s) is None


def test_nearest_zero_cluster_wins():
    rng = np.random.default_rng(2)
    n = 10000
    # stable ground (30 %) and a uniformly moving block (70 %), both tight
    dx = np.concatenate([rng.normal(0.1, 0.08, 3 * n // 10), rng.normal(3.0, 0.08, 7 * n // 10)])
    dy = np.concatenate([rng.normal(0.0, 0.08, 3 * n // 10), rng.normal(1.0, 0.08, 7 * n // 10)])
    r = stable_offset(dx, dy)
    assert abs(r["dx"] - 0.1) < 0.02 and abs(r["share"] - 0.3) < 0.05
