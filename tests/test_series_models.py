"""Series models, re-referencing and area averages (core/series/series_models.py), on synthetic
series with known parameters."""

import datetime as dt
import os

import numpy as np
import pytest

from series_fixtures import (NOISE_M, SLIDE_BOX, STABLE_BOX, box_polygon, make_offset_stack,
                             pixel_centre)
from slidewatch.core.series import series_models as sm
from slidewatch.core.errors import InputError, ParameterError


def _dates(n=60, step=12, start=dt.date(2019, 1, 3)):
    return [(start + dt.timedelta(days=step * k)).isoformat() for k in range(n)]


def _years(dates):
    d = sm.to_days(dates)
    return (d - d[0]) / 365.25


def _year_fraction(dates):
    out = []
    for s in dates:
        d = dt.date.fromisoformat(s)
        y0 = dt.date(d.year, 1, 1)
        out.append((d - y0).days / float((dt.date(d.year + 1, 1, 1) - y0).days))
    return np.array(out)


def test_linear_recovers_velocity_with_calibrated_sigma():
    dates = _dates()
    t = _years(dates)
    rng = np.random.default_rng(1)
    z = []
    for _ in range(300):
        y = 0.3 + 1.7 * t + rng.normal(0, 0.05, t.size)
        fit = sm.fit_model(dates, y, "linear")
        v, s = fit.value("velocity")
        z.append((v - 1.7) / s)
    z = np.abs(np.array(z))
    # sigma is right: ~68 % within 1 sigma, ~95 % within 2 sigma
    assert 0.62 <= np.mean(z <= 1) <= 0.74
    assert 0.92 <= np.mean(z <= 2) <= 0.98
    assert fit.residuals.shape == (t.size, 1) and fit.rmse[0] == pytest.approx(0.05, rel=0.25)


def test_seasonal_amplitude_and_peak():
    dates = _dates(90)
    t, f = _years(dates), _year_fraction(dates)
    rng = np.random.default_rng(2)
    peak = 0.55  # maximum in mid-July
    y = 2.0 * t + 0.04 * np.cos(2 * np.pi * (f - peak)) + rng.normal(0, 0.005, t.size)
    fit = sm.fit_model(dates, y, "seasonal")
    amp, s_amp = fit.value("amplitude")
    assert abs(amp - 0.04) <= 3 * s_amp and s_amp < 0.002
    doy, s_doy = fit.value("peak_doy")
    assert abs(doy - peak * 365.25) <= max(3 * s_doy, 3.0)
    assert fit.value("velocity")[0] == pytest.approx(2.0, abs=0.01)
    linear = sm.fit_model(dates, y, "linear")
    assert fit.bic < linear.bic - 10 and fit.rmse[0] < linear.rmse[0] / 3
    title, lines = sm.fit_summary(fit)
    assert title == "linear + annual" and any("annual amplitude 0.04" in s for s in lines)


@pytest.mark.parametrize("k_break", [18, 30, 44])
def test_piecewise_finds_the_onset(k_break):
    dates = _dates()
    t = _years(dates)
    rng = np.random.default_rng(k_break)
    tb = t[k_break] + 5 / 365.25  # 5 days after an acquisition
    e = 0.6 * t + 4.0 * np.maximum(t - tb, 0)
    y = np.column_stack([0.8 * e, -0.6 * e]) + rng.normal(0, 0.02, (t.size, 2))
    fit = sm.fit_model(dates, y, "piecewise", components=("east", "north"))
    onset = sm.to_days([fit.onset])[0] - sm.to_days(dates)[0]
    assert abs(onset - tb * 365.25) <= 12  # within one acquisition
    lo, hi = sm.to_days(list(fit.onset_interval)) - sm.to_days(dates)[0]
    assert lo - 12 <= tb * 365.25 <= hi + 12 and fit.onset_sigma_days < 20
    v1 = sm.vector_velocity(*fit.value("velocity_before", "east"),
                            *fit.value("velocity_before", "north"))
    v2 = sm.vector_velocity(*fit.value("velocity_after", "east"),
                            *fit.value("velocity_after", "north"))
    assert abs(v1[0] - 0.6) <= 4 * v1[1] + 0.01 and abs(v2[0] - 4.6) <= 4 * v2[1] + 0.05
    assert v2[2] == pytest.approx(np.degrees(np.arctan2(0.8, -0.6)) % 360, abs=2)
    assert sm.fit_model(dates, y, "linear", components=("east", "north")).bic > fit.bic + 10


def test_missing_values_weights_and_errors():
    dates = _dates(30)
    t = _years(dates)
    y = 1.0 * t
    y[[3, 10, 11]] = np.nan
    fit = sm.fit_model(dates, y, "linear")
    assert fit.n == 27 and np.isnan(fit.residuals[3, 0]) and np.isfinite(fit.fitted[3, 0])
    assert fit.value("velocity")[0] == pytest.approx(1.0, abs=1e-9)
    # per-date sigma with 0 at the first date (a cumulative series): no division by zero
    sigma = sm.pixel_sigma(len(dates), 0.02)
    fit_w = sm.fit_model(dates, y + np.random.default_rng(0).normal(0, 0.02, t.size),
                         "linear", sigma=sigma)
    assert np.isfinite(fit_w.value("velocity")[1])
    with pytest.raises(InputError, match="at least"):
        sm.fit_model(dates[:4], y[:4], "piecewise")
    with pytest.raises(ParameterError):
        sm.fit_model(dates, y, "cubic")
    np.testing.assert_allclose(fit.curve(dates[:5])[:, 0], t[:5], atol=1e-9)


def test_rereference_propagates_sigma():
    dates = ["2020-01-01", "2020-01-13", "2020-01-25"]
    e, n, s = sm.rereference(dates, [0, 1.0, 2.0], [0, -1.0, 0.5], [0, 0.03, 0.04],
                             dates[::-1], [0.5, 0.2, 0.0], [0.1, 0.1, 0.0], [0.0, 0.04, 0.0])
    np.testing.assert_allclose(e, [0, 0.8, 1.5])
    np.testing.assert_allclose(n, [0, -1.1, 0.4])
    np.testing.assert_allclose(s, [0, 0.05, 0.04])
    # a date the reference lacks: NaN, not a silent zero
    e, _n, _s = sm.rereference(dates, [0, 1, 2], [0, 1, 2], 0.0, dates[:2], [0, 0], [0, 0], 0)
    assert np.isnan(e[2])


def test_area_mean_averages_components_not_speeds(tmp_path):
    """On ground that does not move, the mean of the pixels' speeds is ~1.25 sigma while
    the speed of the mean vector goes to zero: read_area_series reports the latter."""
    from rasterio.transform import from_origin

    from slidewatch.core.raster_io import write_bands

    rng = np.random.default_rng(4)
    h, w, sig = 30, 30, 0.2
    ve, vn = rng.normal(0, sig, (h, w)), rng.normal(0, sig, (h, w))
    tr = from_origin(0, 300, 10, 10)
    folder = tmp_path / "ts"
    folder.mkdir()
    vel = [ve, vn, np.hypot(ve, vn), np.full((h, w), sig), np.full((h, w), 9.0),
           np.full((h, w), 0.01)]
    write_bands(str(folder / "velocity.tif"), vel, tr, "EPSG:32633",
                descriptions=["ve_m_per_yr", "vn_m_per_yr", "v_m_per_yr", "v_sigma_m_per_yr",
                              "n_obs", "rmse_m"])
    zero = np.zeros((2, h, w))
    for name in ("ts_east_m.tif", "ts_north_m.tif"):
        write_bands(str(folder / name), zero, tr, "EPSG:32633",
                    descriptions=["2020-01-01", "2020-02-01"])
    poly = {"type": "Polygon", "coordinates": [[(1, 1), (299, 1), (299, 299), (1, 299),
                                                (1, 1)]]}
    s = sm.read_area_series(str(folder / "ts_east_m.tif"), str(folder / "ts_north_m.tif"),
                            poly, str(folder / "velocity.tif"))
    assert s["n_pixels"] == h * w
    biased = s["velocity"]["mean_of_speeds_m_per_yr"]
    assert biased == pytest.approx(sig * np.sqrt(np.pi / 2), rel=0.08)
    assert s["velocity"]["v_m_per_yr"] < biased / 5
    assert s["velocity"]["v_m_per_yr"] == pytest.approx(np.hypot(ve.mean(), vn.mean()),
                                                         rel=1e-5)


def _pixel(stack, r, c):
    return stack["east"][:, r, c], stack["north"][:, r, c]


def test_rereferencing_on_a_stable_area_brings_stable_curves_to_zero(tmp_path):
    """Issue 17 target: re-referencing on a stable area moves the stable curves to within
    their sigma of zero (synthetic stack with a common offset per date)."""
    folder = str(tmp_path)
    stack = make_offset_stack(folder)
    ts = os.path.join(folder, "timeseries")
    ref = sm.read_area_series(os.path.join(ts, "ts_east_m.tif"),
                              os.path.join(ts, "ts_north_m.tif"), box_polygon(STABLE_BOX),
                              os.path.join(ts, "velocity.tif"), "stable area")
    r0, r1, c0, c1 = STABLE_BOX
    assert ref["n_pixels"] == (r1 - r0) * (c1 - c0)
    # the reference's sigma: standard error of the area mean (noise / sqrt(n))
    assert np.nanmedian(ref["sigma"][1:]) == pytest.approx(NOISE_M / np.sqrt(ref["n_pixels"]),
                                                           rel=0.3)
    before, after, z_after = [], [], []
    stable = [(r, c) for r in range(0, 40, 3) for c in range(20, 50, 3)]
    for r, c in stable:
        e, n = _pixel(stack, r, c)
        sig = sm.pixel_sigma(len(e), NOISE_M)
        e2, n2, s2 = sm.rereference(stack["dates"], e, n, sig, ref["dates"], ref["east"],
                                    ref["north"], ref["sigma"])
        before += list(np.abs(np.concatenate([e[1:], n[1:]])) / NOISE_M)
        z = np.abs(np.concatenate([e2[1:], n2[1:]])) / np.concatenate([s2[1:], s2[1:]])
        z_after += list(z)
        assert e2[0] == n2[0] == 0.0
    before, z_after = np.array(before), np.array(z_after)
    assert np.mean(before <= 1) < 0.1  # the common offset puts them far from zero
    assert np.mean(z_after <= 1) >= 0.62 and np.mean(z_after <= 3) >= 0.995
    # a second stable area's mean curve, re-referenced, within its sigma too
    other = sm.read_area_series(os.path.join(ts, "ts_east_m.tif"),
                                os.path.join(ts, "ts_north_m.tif"),
                                box_polygon((0, 12, 30, 50)))
    e2, n2, s2 = sm.rereference(other["dates"], other["east"], other["north"],
                                other["sigma"], ref["dates"], ref["east"], ref["north"],
                                ref["sigma"])
    z = np.abs(np.concatenate([e2[1:], n2[1:]])) / np.concatenate([s2[1:], s2[1:]])
    assert np.mean(z <= 1) >= 0.55 and np.all(z <= 3.5)
    # the slide keeps its motion: its fitted velocity after re-referencing is the truth
    rs, cs = (SLIDE_BOX[0] + SLIDE_BOX[1]) // 2, (SLIDE_BOX[2] + SLIDE_BOX[3]) // 2
    e, n = _pixel(stack, rs, cs)
    e2, n2, _s = sm.rereference(stack["dates"], e, n, 0.0, ref["dates"], ref["east"],
                                ref["north"], ref["sigma"])
    fit = sm.fit_model(stack["dates"], np.column_stack([e2, n2]), "linear",
                       components=("east", "north"))
    assert fit.value("velocity", "east")[0] == pytest.approx(3.0, abs=0.05)
    assert fit.value("velocity", "north")[0] == pytest.approx(-2.0, abs=0.05)
    raw = sm.fit_model(stack["dates"], np.column_stack([e, n]), "linear",
                       components=("east", "north"))
    assert raw.rmse.max() > 5 * fit.rmse.max()  # the offsets were the residuals


def test_pixel_centre_helper_is_consistent():
    x, y = pixel_centre(0, 0)
    assert (x, y) == (600005.0, 5199995.0)
