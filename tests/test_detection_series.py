"""Tests of core.detection.object_series: the per-date displacement series of a detected
object, its robustness to cloud-contaminated pixels and its per-date noise (issue 6)."""

import datetime as dt

import numpy as np
import pytest
from scipy import ndimage

from slidewatch.core.detect.acceleration import detect_acceleration
from slidewatch.core.detect.detection import dates_to_years, fit_velocity, object_series

ALL = (slice(None), slice(None))


def _dates(n, step=30):
    d0 = dt.date(2020, 1, 1)
    return [(d0 + dt.timedelta(days=step * i)).isoformat() for i in range(n)]


def _scene(n=14, shape=(60, 60), radius=9, noise=0.1, seed=0, displacement=None):
    """East-moving disc with a tapered speed (1 at the centre, 0.4 at the edge).

    displacement(t) gives the centre's displacement (m) at times t (years)."""
    rng = np.random.default_rng(seed)
    dates = _dates(n)
    t = dates_to_years(dates)
    h, w = shape
    rr, cc = np.mgrid[0:h, 0:w]
    r = np.hypot(rr - h // 2, cc - w // 2)
    obj = r <= radius
    taper = np.where(obj, 1.0 - 0.6 * r / radius, 0.0)
    d = displacement(t) if displacement is not None else 5.0 * t
    east = d[:, None, None] * taper[None] + rng.normal(0, noise, (n, h, w))
    north = rng.normal(0, noise, (n, h, w))
    east[0] = north[0] = 0.0
    return east, north, dates, t, obj, taper


def _cloud(east, north, k, obj, seed=1, nan_fraction=0.6, std=3.0):
    """Date k: a cloud over the object and most of the scene around it (60 % of its
    pixels fail, the others are smooth mismatches of ``std`` metres), as clouds/shadows
    do to image correlation. Its size makes the date's noise on stable ground large, so
    the per-pixel outlier test of fit_velocity lets most mismatches through."""
    rng = np.random.default_rng(seed)
    h, w = obj.shape
    rows = np.flatnonzero(obj.any(1))
    cloud = np.zeros(obj.shape, bool)
    cloud[:, : int(0.7 * w)] = True
    cloud[max(rows.min() - 3, 0): rows.max() + 4, :] = True
    nanm = cloud & (rng.uniform(size=(h, w)) < nan_fraction)
    for arr in (east, north):
        o = ndimage.gaussian_filter(rng.normal(0, 1, (h, w)), 3.0)
        o *= std / o.std()
        arr[k][cloud] += o[cloud]
        arr[k][nanm] = np.nan


def test_clear_series_follows_the_core_motion_and_is_linear():
    east, north, dates, t, obj, taper = _scene()
    fit = fit_velocity(east, north, t)
    ser = object_series(east, north, fit, t, ALL, obj, core_fraction=0.5)
    core = ser["pixels"]
    assert 0.4 * obj.sum() <= core.sum() <= 0.6 * obj.sum()
    # the faster half of the disc: its mean taper is well above the disc's
    assert taper[core].mean() > taper[obj].mean() + 0.05
    expected = 5.0 * t * taper[core].mean()
    assert np.nanmax(np.abs(ser["series"] - expected)) < 0.1
    ue, un = ser["direction"]
    assert ue > 0.99 and abs(un) < 0.1
    # no cloud: no date is singled out
    assert np.all(ser["spread"] < 1.8)


def test_cloudy_date_gets_a_large_sigma_instead_of_counting_as_clear():
    """A cloud that leaves most pixels valid (30 % fail, the rest are mismatches): the
    date stays in the series, but its scatter makes its sigma large."""
    east, north, dates, t, obj, _ = _scene(seed=2)
    _cloud(east, north, 7, obj, nan_fraction=0.3)
    fit = fit_velocity(east, north, t)
    ser = object_series(east, north, fit, t, ALL, obj)
    clear = np.delete(np.arange(len(t)), [0, 7])
    assert ser["valid_fraction"][7] >= 0.5
    assert np.isfinite(ser["series"][7])
    # the surviving pixels all carry mismatches: the date's scatter flags it
    assert ser["spread"][7] > 3.0
    assert ser["sigma"][7] > 5.0 * np.median(ser["sigma"][clear])
    # the clear dates keep comparable weights
    assert np.max(ser["sigma"][clear]) < 2.0 * np.min(ser["sigma"][clear])


def test_date_with_most_pixels_failed_is_dropped_not_down_weighted():
    """60 % of the object's pixels fail on date 7: no majority left to trust, the date
    is NaN in the series (its sigma is still reported); the other dates are kept."""
    east, north, dates, t, obj, _ = _scene(seed=2)
    _cloud(east, north, 7, obj, nan_fraction=0.6)
    fit = fit_velocity(east, north, t)
    ser = object_series(east, north, fit, t, ALL, obj)
    assert ser["valid_fraction"][7] < 0.5
    assert np.isnan(ser["series"][7])
    assert np.isfinite(ser["sigma"][7]) and ser["spread"][7] > 3.0
    others = np.delete(np.arange(len(t)), 7)
    assert np.all(np.isfinite(ser["series"][others]))
    assert np.all(ser["valid_fraction"][others] > 0.9)
    # the threshold is a parameter: at 0.3 the same date is kept
    low = object_series(east, north, fit, t, ALL, obj, min_valid_fraction=0.3)
    assert np.isfinite(low["series"][7])


def test_valid_fraction_parameter_is_checked():
    from slidewatch.core.detect.detection import DetectionParams
    from slidewatch.core.errors import ParameterError
    DetectionParams(accel_min_valid_fraction=0.5).validate()
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ParameterError, match="accel_min_valid_fraction"):
            DetectionParams(accel_min_valid_fraction=bad).validate()


def test_minority_of_mismatched_pixels_is_rejected_not_averaged():
    east, north, dates, t, obj, taper = _scene(seed=3)
    rng = np.random.default_rng(4)
    bad = obj & (rng.uniform(size=obj.shape) < 0.25)
    east[9][bad] += 3.0
    fit = fit_velocity(east, north, t)
    ser = object_series(east, north, fit, t, ALL, obj)
    expected = 5.0 * t[9] * taper[ser["pixels"]].mean()
    # a plain mean would be off by ~0.75 m; the biweight of the residuals rejects them
    assert abs(ser["series"][9] - expected) < 0.1


def test_onset_with_a_cloudy_date_after_the_onset():
    """Acceleration 2 -> 12 m/yr at t[6]; the date just after it is under a cloud. With the
    cloudy date weighted by its scatter, the onset stays within one acquisition."""
    n = 16
    dates = _dates(n)
    t = dates_to_years(dates)
    t_on = t[6] + 5 / 365.25

    def disp(tt):
        return 2.0 * tt + 10.0 * np.maximum(tt - t_on, 0.0)
    east, north, dates, t, obj, _ = _scene(n=n, displacement=disp, noise=0.15, seed=5)
    _cloud(east, north, 7, obj, seed=6, std=3.0)
    fit = fit_velocity(east, north, t)
    ser = object_series(east, north, fit, t, ALL, obj)
    acc = detect_acceleration(dates, ser["series"], sigma=ser["sigma"])
    assert acc["accel_flag"]
    assert abs(acc["onset_index"] - 6) <= 1
    assert acc["v_after_m_per_yr"] > 3.0 * acc["v_before_m_per_yr"]
