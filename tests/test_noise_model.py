"""Tests of core.noise_model: spatial correlation of the noise and what it means for the
number of independent observations of a detection (the single-pair null case)."""

import numpy as np
import pytest
from scipy import ndimage

from slidewatch.core.detect.detection import detect
from slidewatch.core.detect.noise_model import correlation_area

from .test_detection import SLIDE, TR, _dates, make_series


def test_correlation_area_of_white_and_smoothed_noise():
    rng = np.random.default_rng(0)
    assert correlation_area(rng.normal(size=(200, 200))) < 1.5
    g = ndimage.gaussian_filter(rng.normal(size=(200, 200)), 3.0)
    # Gaussian-filtered white noise: sum of the autocorrelation = 4 pi s^2 (~113 px)
    a = correlation_area(g)
    assert 0.75 * 4 * np.pi * 9 < a < 1.25 * 4 * np.pi * 9, a
    # only the stable pixels are used: a large planted offset outside them is ignored
    g2 = g.copy()
    g2[50:150, 50:150] += 10 * g.std()
    stable = np.ones(g.shape, bool)
    stable[40:160, 40:160] = False
    a2 = correlation_area(g2, stable)
    assert 0.6 * a < a2 < 1.4 * a, (a, a2)
    assert correlation_area(np.full((5, 5), np.nan)) == 1.0


def _pair_with_correlated_noise(seed, blob=None, cell=3.0):
    """A single pair (2 dates) whose error is spatially correlated like overlapping
    correlation windows (Gaussian, ``cell`` px), optionally with a coherent blob."""
    rng = np.random.default_rng(seed)
    h = w = 120
    e = np.zeros((2, h, w))
    n = np.zeros((2, h, w))
    for arr in (e, n):
        f = ndimage.gaussian_filter(rng.normal(size=(h, w)), cell)
        arr[1] = f / f.std() * 0.5
    mask = np.zeros((h, w), bool)
    if blob:
        rr, cc = np.mgrid[0:h, 0:w]
        r0, c0, rad, amp = blob
        mask = (rr - r0) ** 2 + (cc - c0) ** 2 <= rad ** 2
        e[1][mask] += amp
        n[1][mask] -= amp
    return e, n, _dates(2, step=10), mask


def test_single_pair_artefact_of_one_correlation_cell_is_not_evidence():
    # a coherent offset the size of about one noise-correlation cell (what a mismatch
    # cluster or a local co-registration artefact looks like in one pair): many sigmas,
    # spatially coherent, but one independent observation
    e, n, dates, mask = _pair_with_correlated_noise(1, blob=(60, 60, 5, 4.0))
    res = detect(e, n, dates, TR, require_temporal_evidence=False, min_area_m2=0)
    assert res.noise.correlation_area_px > 20
    assert res.features == []
    reasons = [c["reason"] for c in res.candidates_rejected]
    assert any("independent observation" in r for r in reasons), reasons
    hit = [c for c in res.candidates_rejected if c["independent_obs"] < 3]
    assert hit and max(c["significance_max"] for c in hit) > 5


def test_single_pair_large_coherent_motion_counts_many_observations():
    e, n, dates, mask = _pair_with_correlated_noise(2, blob=(60, 60, 25, 4.0))
    res = detect(e, n, dates, TR, require_temporal_evidence=False)
    assert len(res.features) == 1
    f = res.features[0]
    assert f["independent_obs"] >= 3
    assert f["spatial_coherence"] > 0.9
    # the default: a single pair's object this large (> 10 independent observations) and
    # this significant (mean > 8 x noise) is a detection, flagged as from a single pair
    res2 = detect(e, n, dates, TR)
    assert len(res2.features) == 1
    assert res2.features[0]["score_explanation"].startswith("Single pair")
    # require_temporal_evidence=True: candidates only
    res3 = detect(e, n, dates, TR, require_temporal_evidence=True)
    assert res3.features == []
    assert any("temporal evidence" in c["reason"] for c in res3.candidates_rejected)


@pytest.mark.parametrize("blob, why", [((60, 60, 12, 4.0), "independent observation(s)"),
                                       ((60, 60, 25, 1.5), "mean significance")])
def test_single_pair_object_below_the_single_pair_bar_stays_a_candidate(blob, why):
    # a coherent offset of ~4 independent observations (the size of the largest artefact
    # of the real no-motion pair), or a large one of only ~5 x noise: candidates, with
    # the single-pair reason; both pass when the single-pair bar is off
    e, n, dates, mask = _pair_with_correlated_noise(2, blob=blob)
    res = detect(e, n, dates, TR)
    assert res.features == []
    single = [c for c in res.candidates_rejected if c["reason"].startswith("single pair")]
    assert single and why in single[0]["reason"]
    off = detect(e, n, dates, TR, single_pair_min_independent_obs=0.0,
                 single_pair_min_significance=0.0)
    assert len(off.features) == 1


def test_time_series_objects_count_intervals_as_observations():
    e, n, dates, mask = make_series(seed=3, slide=SLIDE)
    res = detect(e, n, dates, TR)
    assert len(res.features) == 1
    f = res.features[0]
    # white noise: each pixel is its own cell; 11 intervals
    assert f["independent_obs"] >= 11 * 0.5 * mask.sum()
