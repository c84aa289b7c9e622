"""Tests of core.acceleration: significant velocity increase and its onset date."""

import datetime as dt

import numpy as np

from slidewatch.core.acceleration import detect_acceleration


def _dates(n, step=24):
    d0 = dt.date(2021, 3, 1)
    return [(d0 + dt.timedelta(days=step * i)).isoformat() for i in range(n)]


def _t(dates):
    d0 = dt.date.fromisoformat(dates[0])
    return np.array([(dt.date.fromisoformat(d) - d0).days for d in dates]) / 365.25


def test_acceleration_flagged_with_onset_within_one_acquisition():
    dates = _dates(18)
    t = _t(dates)
    onset = 10
    rng = np.random.default_rng(3)
    y = 2.0 * t + np.where(t > t[onset], 10.0 * (t - t[onset]), 0.0) + rng.normal(0, 0.05, t.size)
    r = detect_acceleration(dates, y)
    assert r["accel_flag"]
    assert abs(r["onset_index"] - onset) <= 1
    assert r["v_after_m_per_yr"] > 3 * r["v_before_m_per_yr"]
    assert abs(r["v_after_m_per_yr"] - 12.0) < 1.5
    assert dates[0] <= r["onset_date"] <= dates[-1]


def test_steady_motion_and_noise_not_flagged():
    dates = _dates(18)
    t = _t(dates)
    rng = np.random.default_rng(4)
    flagged = 0
    for k in range(20):
        y = 5.0 * t + rng.normal(0, 0.3, t.size)
        flagged += detect_acceleration(dates, y)["accel_flag"]
    assert flagged == 0
    r = detect_acceleration(dates, 5.0 * t + rng.normal(0, 0.3, t.size))
    assert abs(r["v_linear_m_per_yr"] - 5.0) < 0.6


def test_deceleration_is_not_an_acceleration():
    dates = _dates(18)
    t = _t(dates)
    y = 10.0 * np.minimum(t, t[9]) + np.random.default_rng(5).normal(0, 0.05, t.size)
    assert not detect_acceleration(dates, y)["accel_flag"]


def test_short_or_gappy_series_handled():
    dates = _dates(5)
    r = detect_acceleration(dates, [0.0, np.nan, 1.0, np.nan, 2.0])
    assert not r["accel_flag"] and r["n_dates"] == 3
    r = detect_acceleration(dates[:2], [0.0, 1.0])
    assert not r["accel_flag"] and r["onset_date"] is None
    dates = _dates(16)
    t = _t(dates)
    y = 1.0 * t + np.where(t > t[8], 20 * (t - t[8]), 0.0)
    y[[2, 5, 12]] = np.nan
    r = detect_acceleration(dates, y)
    assert r["accel_flag"] and abs(r["onset_index"] - 8) <= 1


def test_per_date_sigma_downweights_noisy_dates():
    dates = _dates(18)
    t = _t(dates)
    rng = np.random.default_rng(6)
    y = 1.0 * t + np.where(t > t[11], 8.0 * (t - t[11]), 0.0) + rng.normal(0, 0.03, t.size)
    y[[4, 5, 6]] += 1.5  # three consecutive cloud-contaminated dates (despike cannot help)
    sigma = np.full(t.size, 0.03)
    sigma[[4, 5, 6]] = 3.0
    r = detect_acceleration(dates, y, sigma=sigma, max_rejections=0)
    assert r["accel_flag"] and abs(r["onset_index"] - 11) <= 1
    assert abs(r["v_before_m_per_yr"] - 1.0) < 0.5
