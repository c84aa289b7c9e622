"""Models fitted to a displacement time series, re-referencing, and area averages.

Pure numpy (plus rasterio for :func:`read_area_series`); used by the time-series
inspector dock and the exports, callable from scripts.

Models (``t`` in years of 365.25 days since the first date; every component, e.g. east
and north, is fitted with the same model, jointly for the break date):

- ``linear``: ``d(t) = a + v t`` -> ``velocity`` (m/yr), ``offset`` (m);
- ``seasonal``: ``d(t) = a + v t + s sin(2 pi f) + c cos(2 pi f)`` with ``f`` the fraction
  of the calendar year of each date -> ``velocity``, ``amplitude = hypot(s, c)`` (m, half
  the peak-to-peak annual swing) and ``peak_doy`` (day of year of the seasonal maximum);
- ``piecewise``: two continuous linear segments with a break (onset) at ``tb``:
  ``d(t) = a + v1 t + (v2 - v1) max(t - tb, 0)`` -> ``velocity_before``, ``velocity_after``
  and ``onset`` (a date). ``tb`` is found by grid search (every day between the
  ``min_segment``-th date and the ``min_segment``-th last, at most ``max_grid``
  candidates), each candidate solved by least squares, the smallest residual sum of
  squares (summed over the components) wins. Its uncertainty is the range of ``tb``
  within ``Delta chi^2 <= 1`` of the best (residual variance scaled), i.e. about +-1 sigma.

Least squares are weighted by ``1 / sigma^2`` when per-date ``sigma`` is given (floored
at a tenth of its median, because the first date of a cumulative series has sigma 0 by
definition), unweighted otherwise. Parameter sigmas are the least-squares covariance
scaled by the reduced chi-square (``s^2 (A^T W A)^-1``, as ``curve_fit`` without
``absolute_sigma``), so they are right for white noise of unknown level.

Vectors. A 2-D series has east and north components. Its velocity magnitude is
``hypot(ve, vn)`` of the fitted components, with the propagated sigma. Averages over an
area (a detection, a stable area) are taken of the **components**, never of the speeds:
the magnitude of a noisy vector is biased up (on ground that does not move, each pixel's
speed is about ``sigma * sqrt(pi/2)``, and so is their mean, while the speed of the mean
vector goes to zero as pixels are added).

Re-referencing (:func:`rereference`): a reference series (a stable pixel or the mean of a
stable area) is subtracted date by date from each curve; sigmas add in quadrature,
``sigma' = sqrt(sigma^2 + sigma_ref^2)``.
"""

import datetime as _dt
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError, ParameterError
from ..products import (BAND_V, BAND_V_SIGMA, BAND_VE, BAND_VN, DAYS_PER_YEAR,
                        VELOCITY_BANDS)

MODELS = ("linear", "seasonal", "piecewise")
MODEL_LABELS = {"linear": "linear", "seasonal": "linear + annual",
                "piecewise": "piecewise linear (onset)"}


# ------------------------------------------------------------------------ dates
def to_days(dates):
    """Days since 1970-01-01 (float array) of ISO strings / dates / datetime64."""
    out = []
    for d in dates:
        if isinstance(d, (np.datetime64,)):
            out.append(float(np.datetime64(d, "D").astype("int64")))
        elif isinstance(d, _dt.date):
            out.append(float((d - _dt.date(1970, 1, 1)).days))
        else:
            try:
                out.append(float((_dt.date.fromisoformat(str(d)[:10]) -
                                  _dt.date(1970, 1, 1)).days))
            except ValueError:
                raise InputError("Unreadable date %r (expected YYYY-MM-DD)." % (d,)) from None
    return np.asarray(out, np.float64)


def iso_of_days(days):
    return (_dt.date(1970, 1, 1) + _dt.timedelta(days=int(round(float(days))))).isoformat()


def _year_fraction(days):
    """Fraction of the calendar year of each date (0 on 1 January)."""
    out = np.empty(len(days))
    for i, d in enumerate(days):
        day = _dt.date(1970, 1, 1) + _dt.timedelta(days=int(round(d)))
        start = _dt.date(day.year, 1, 1)
        length = (_dt.date(day.year + 1, 1, 1) - start).days
        out[i] = (day - start).days / float(length)
    return out


# ------------------------------------------------------------------------- fits
@dataclass
class Fit:
    """A model fitted to one or several components of a series.

    ``names``: parameter names; ``coef`` (n_params, n_comp) and ``sigma`` (same) their
    values and sigmas; ``fitted``/``residuals`` (n_dates, n_comp), NaN at dates that were
    not used; ``rmse`` (n_comp,); ``onset`` (ISO date, piecewise only) with
    ``onset_sigma_days`` and ``onset_interval`` (ISO dates); ``bic`` of the fit over all
    components (break date counted as a parameter). ``components``: their names.
    """
    model: str
    dates: list
    components: tuple
    names: tuple
    coef: np.ndarray
    sigma: np.ndarray
    cov: np.ndarray
    fitted: np.ndarray
    residuals: np.ndarray
    rmse: np.ndarray
    n: int
    bic: float
    onset: str = None
    onset_sigma_days: float = float("nan")
    onset_interval: tuple = (None, None)
    extra: dict = field(default_factory=dict)

    def value(self, name, component=0):
        """(value, sigma) of a parameter (also ``velocity_after``, ``amplitude``,
        ``peak_doy`` derived ones) for a component (index or name)."""
        k = self.components.index(component) if isinstance(component, str) else component
        if name in self.names:
            i = self.names.index(name)
            return float(self.coef[i, k]), float(self.sigma[i, k])
        if name in self.extra:
            v, s = self.extra[name]
            return float(v[k]), float(s[k])
        raise KeyError(name)

    def curve(self, dates):
        """The fitted model at other dates (ISO strings): (n, n_comp)."""
        days = to_days(dates)
        A = _design(self.model, days, self.extra.get("_t0_days"), self.extra.get("_tb_days"))
        return A @ self.coef


def _design(model, days, t0_days, tb_days=None):
    t = (days - t0_days) / DAYS_PER_YEAR
    cols = [np.ones_like(t), t]
    if model == "seasonal":
        f = _year_fraction(days)
        cols += [np.sin(2 * np.pi * f), np.cos(2 * np.pi * f)]
    elif model == "piecewise":
        cols.append(np.maximum(t - (tb_days - t0_days) / DAYS_PER_YEAR, 0.0))
    elif model != "linear":
        raise ParameterError("model must be one of %s (got %r)." % (", ".join(MODELS), model))
    return np.column_stack(cols)


_NAMES = {"linear": ("offset", "velocity"),
          "seasonal": ("offset", "velocity", "sin", "cos"),
          "piecewise": ("offset", "velocity_before", "velocity_change")}


def _weights(sigma, n):
    if sigma is None:
        return np.ones(n)
    s = np.broadcast_to(np.asarray(sigma, np.float64), (n,)).copy()
    ok = np.isfinite(s) & (s > 0)
    if not ok.any():
        return np.ones(n)
    floor = 0.1 * float(np.median(s[ok]))
    s = np.where(np.isfinite(s), np.maximum(s, floor), np.nan)
    return 1.0 / s ** 2


def _solve(A, Y, w):
    """Weighted least squares of every column of Y; returns coef, rss (per column), XtWX^-1."""
    sw = np.sqrt(w)[:, None]
    Aw, Yw = A * sw, Y * sw
    coef, *_ = np.linalg.lstsq(Aw, Yw, rcond=None)
    r = Yw - Aw @ coef
    rss = np.sum(r * r, axis=0)
    try:
        inv = np.linalg.inv(Aw.T @ Aw)
    except np.linalg.LinAlgError:
        inv = np.linalg.pinv(Aw.T @ Aw)
    return coef, rss, inv


def fit_model(dates, values, model="linear", sigma=None, components=None, min_segment=3,
              max_grid=600):
    """Fit ``model`` (one of :data:`MODELS`) to a series.

    ``dates``: ISO strings (n); ``values``: (n,) or (n, n_comp) array (NaN = missing;
    a date missing in any component is left out of all); ``sigma``: optional per-date
    sigma (n,) or scalar. Returns a :class:`Fit`. Raises InputError when too few dates
    remain (2 + parameters; piecewise needs ``2 * min_segment``).
    """
    if model not in MODELS:
        raise ParameterError("model must be one of %s (got %r)." % (", ".join(MODELS), model))
    Y = np.asarray(values, np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    n_all, k = Y.shape
    if components is None:
        components = tuple("c%d" % i for i in range(k)) if k > 1 else ("value",)
    days_all = to_days(dates)
    if len(days_all) != n_all:
        raise InputError("%d dates for %d values." % (len(days_all), n_all))
    w_all = _weights(sigma, n_all)
    ok = np.all(np.isfinite(Y), axis=1) & np.isfinite(days_all) & np.isfinite(w_all)
    days, Yk, w = days_all[ok], Y[ok], w_all[ok]
    n = int(ok.sum())
    p = len(_NAMES[model])
    need = max(p + 2, 2 * int(min_segment) if model == "piecewise" else 0)
    if n < need:
        raise InputError("The %s model needs at least %d dates with a value (this series has "
                         "%d)." % (MODEL_LABELS[model], need, n))
    order = np.argsort(days)
    days, Yk, w = days[order], Yk[order], w[order]
    t0 = float(days_all[np.isfinite(days_all)].min())
    tb = None
    onset_sigma, interval = float("nan"), (None, None)
    if model == "piecewise":
        lo, hi = days[int(min_segment) - 1], days[n - int(min_segment)]
        if hi <= lo:
            raise InputError("The dates are too few or too close to search a break date.")
        n_grid = int(min(max_grid, hi - lo + 1))
        grid = np.unique(np.concatenate([np.linspace(lo, hi, max(n_grid, 2)),
                                         days[(days >= lo) & (days <= hi)]]))
        rss_grid = np.empty(grid.size)
        for g, tb_g in enumerate(grid):
            _c, rss, _i = _solve(_design(model, days, t0, tb_g), Yk, w)
            rss_grid[g] = rss.sum()
        best = int(np.argmin(rss_grid))
        tb = float(grid[best])
        s2 = rss_grid[best] / max(n * k - (p + 1) * k, 1)
        inside = grid[(rss_grid - rss_grid[best]) / max(s2, 1e-300) <= 1.0]
        interval = (iso_of_days(inside.min()), iso_of_days(inside.max()))
        step = float(np.median(np.diff(grid))) if grid.size > 1 else 1.0
        onset_sigma = max((inside.max() - inside.min()) / 2.0, step / 2.0)
    A = _design(model, days, t0, tb)
    coef, rss, inv = _solve(A, Yk, w)
    dof = max(n - p - (1 if model == "piecewise" else 0), 1)
    s2 = rss / dof
    cov = inv[:, :, None] * s2[None, None, :]
    sig = np.sqrt(np.maximum(np.stack([np.diag(cov[:, :, c]) for c in range(k)], axis=1), 0))
    A_all = _design(model, np.where(np.isfinite(days_all), days_all, t0), t0, tb)
    fitted = A_all @ coef
    fitted[~np.isfinite(days_all)] = np.nan
    resid = np.where(ok[:, None], Y - fitted, np.nan)
    rmse = np.sqrt(np.nanmean(resid[ok] ** 2, axis=0))
    n_par = (p + (1 if model == "piecewise" else 0)) * k
    total = float(np.sum((resid[ok] ** 2) * w_all[ok][:, None]))
    bic = n * k * np.log(max(total, 1e-300) / (n * k)) + n_par * np.log(n * k)
    extra = {"_t0_days": t0, "_tb_days": tb}
    if model == "seasonal":
        s, c = coef[2], coef[3]
        amp = np.hypot(s, c)
        var = (s ** 2 * cov[2, 2] + c ** 2 * cov[3, 3] + 2 * s * c * cov[2, 3]) / \
            np.maximum(amp ** 2, 1e-300)
        # s sin(2 pi f) + c cos(2 pi f) = amp cos(2 pi f - phi): peak at f = phi / 2 pi
        phi = np.mod(np.arctan2(s, c), 2 * np.pi)
        sphi = np.sqrt(np.maximum(c ** 2 * cov[2, 2] + s ** 2 * cov[3, 3] -
                                  2 * s * c * cov[2, 3], 0)) / np.maximum(amp ** 2, 1e-300)
        extra["amplitude"] = (amp, np.sqrt(np.maximum(var, 0)))
        extra["peak_doy"] = (phi / (2 * np.pi) * DAYS_PER_YEAR, sphi / (2 * np.pi) * DAYS_PER_YEAR)
    if model == "piecewise":
        v2 = coef[1] + coef[2]
        s_v2 = np.sqrt(np.maximum(cov[1, 1] + cov[2, 2] + 2 * cov[1, 2], 0))
        extra["velocity_after"] = (v2, s_v2)
        extra["velocity"] = (coef[1], sig[1])  # the "velocity" of a piecewise fit: before
    return Fit(model, list(dates), tuple(components), _NAMES[model], coef, sig, cov, fitted,
               resid, rmse, n, float(bic), iso_of_days(tb) if tb is not None else None,
               float(onset_sigma), interval, extra)


def vector_velocity(ve, s_ve, vn, s_vn):
    """Magnitude (m/yr), its sigma and azimuth (degrees clockwise from north) of the
    velocity vector (ve, vn) with independent sigmas."""
    v = float(np.hypot(ve, vn))
    if v > 0:
        s = float(np.sqrt((ve * s_ve) ** 2 + (vn * s_vn) ** 2) / v)
    else:
        s = float(np.hypot(s_ve, s_vn))
    az = float(np.degrees(np.arctan2(ve, vn)) % 360.0)
    return v, s, az


def fit_summary(fit):
    """One line per parameter, for the dock and the reports (east/north fits also give
    the vector magnitude)."""
    comps = list(fit.components)
    lines = []
    title = MODEL_LABELS[fit.model]

    def vel(name):
        if "east" in comps and "north" in comps:
            ve, se = fit.value(name, "east")
            vn, sn = fit.value(name, "north")
            v, s, az = vector_velocity(ve, se, vn, sn)
            return ("%.3g ± %.2g m/yr (E %.3g ± %.2g, N %.3g ± %.2g; towards %.0f°)"
                    % (v, s, ve, se, vn, sn, az))
        return ", ".join("%s%.3g ± %.2g m/yr" % ((c + " ") if len(comps) > 1 else "",
                                                 *fit.value(name, c)) for c in comps)

    if fit.model == "piecewise":
        lines.append("onset %s ± %.0f days (%s to %s)" % (fit.onset, fit.onset_sigma_days,
                                                         *fit.onset_interval))
        lines.append("velocity before " + vel("velocity_before"))
        lines.append("velocity after " + vel("velocity_after"))
    else:
        lines.append("velocity " + vel("velocity"))
    if fit.model == "seasonal":
        lines.append("annual amplitude " + ", ".join(
            "%s%.3g ± %.2g m" % ((c + " ") if len(comps) > 1 else "", *fit.value("amplitude", c))
            for c in comps))
    lines.append("RMSE " + ", ".join("%s%.2g m" % ((c + " ") if len(comps) > 1 else "", r)
                                     for c, r in zip(comps, fit.rmse))
                 + ", %d dates, BIC %.1f" % (fit.n, fit.bic))
    return title, lines


# --------------------------------------------------------------- re-referencing
def rereference(dates, east, north, sigma, ref_dates, ref_east, ref_north, ref_sigma):
    """Subtract a reference series date by date: returns (east, north, sigma) with
    ``sigma = sqrt(sigma^2 + ref_sigma^2)``. Dates are matched by value; a date the
    reference lacks becomes NaN."""
    index = {str(d)[:10]: i for i, d in enumerate(ref_dates)}
    n = len(dates)
    re_e = np.full(n, np.nan)
    re_n = np.full(n, np.nan)
    re_s = np.full(n, np.nan)
    ref_sigma = np.broadcast_to(np.asarray(ref_sigma if ref_sigma is not None else 0.0,
                                           np.float64), (len(ref_dates),))
    for i, d in enumerate(dates):
        j = index.get(str(d)[:10])
        if j is not None:
            re_e[i], re_n[i], re_s[i] = ref_east[j], ref_north[j], ref_sigma[j]
    sigma = np.broadcast_to(np.asarray(sigma if sigma is not None else 0.0, np.float64), (n,))
    return (np.asarray(east, np.float64) - re_e, np.asarray(north, np.float64) - re_n,
            np.sqrt(sigma ** 2 + re_s ** 2))


def pixel_sigma(n_dates, rmse_m):
    """Per-date sigma of one pixel's cumulative series: the inversion's residual RMSE
    (``rmse_m``) at every date but the first (0 by definition)."""
    s = np.full(n_dates, float(rmse_m) if rmse_m is not None else np.nan)
    if n_dates:
        s[0] = 0.0
    return s


# ------------------------------------------------------------------ area series
def area_statistics(values):
    """Per-band mean, standard deviation and count of finite values of ``values``
    (n_bands, n_pixels)."""
    v = np.asarray(values, np.float64)
    fin = np.isfinite(v)
    n = fin.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.nansum(v, axis=1) / np.maximum(n, 1), np.nan)
        dev = np.where(fin, v - mean[:, None], 0.0)
        std = np.where(n > 1, np.sqrt(np.sum(dev * dev, axis=1) / np.maximum(n - 1, 1)),
                       np.nan)
    return mean, std, n


def mean_vector_sigma(mean_ve, mean_vn, mean_pixel_sigma):
    """Sigma (m/yr) of the speed of an area's mean velocity vector ``(mean_ve, mean_vn)``.

    ``velocity.tif`` keeps one sigma per pixel, ``v_sigma_m_per_yr``, which the inversion
    propagates from the east and north sigmas (:func:`.inversion.velocity_magnitude`);
    with equal component sigmas it *is* the component sigma, so it is taken as the sigma
    of each component (as the exports do). The sigma of a mean component lies between
    ``sqrt(sum sigma_i^2) / n`` (independent pixel errors) and the mean of the
    ``sigma_i`` (errors fully correlated). The pixels of an area share correlation
    windows (a window spans several grid steps) and every pair's co-registration and
    stable-ground correction, so their errors are far from independent: the mean,
    ``mean_pixel_sigma``, is used, an upper bound that does not shrink as ``1/sqrt(n)``.
    The speed's sigma propagated to first order from the two component sigmas,
    ``sqrt((ve s_e)^2 + (vn s_n)^2) / |v|`` (the RMS of ``s_e``, ``s_n`` at ``|v| = 0``),
    is, for equal component sigmas, that sigma in every direction: the result is
    ``mean_pixel_sigma`` (NaN when the mean vector is unknown)."""
    s = float(mean_pixel_sigma)
    if not (np.isfinite(s) and np.isfinite(mean_ve) and np.isfinite(mean_vn)):
        return float("nan")
    return s


def read_area_series(ts_east, ts_north, geometry, velocity=None, label="area"):
    """Mean series of the pixels inside a polygon (GeoJSON-like mapping in the rasters'
    CRS): east and north averaged first, magnitude of the mean vector after.

    Returns a dict like the inspector's pixel series: ``dates, east, north, magnitude,
    sigma`` (per date: the larger of the east and north standard errors of the mean,
    ``std / sqrt(n)``), ``n_pixels``, ``east_std``, ``north_std``, ``velocity`` (means of
    ``ve_m_per_yr``, ``vn_m_per_yr``, ``rmse_m``, ``n_obs``; ``v_m_per_yr = hypot(mean
    ve, mean vn)``, not the mean of the speeds, which is kept as
    ``mean_of_speeds_m_per_yr``; ``v_sigma_m_per_yr`` from :func:`mean_vector_sigma`),
    ``label``.
    Reads only the polygon's bounding window. Raises InputError when the polygon is
    outside the rasters or covers no pixel.
    """
    import rasterio
    from rasterio.features import geometry_mask
    from rasterio.windows import Window, from_bounds

    xs, ys = _coordinates(geometry)
    if not xs:
        raise InputError("The polygon has no coordinates.")
    bounds = (min(xs), min(ys), max(xs), max(ys))
    out = {}
    inside = None
    for key, path in (("east", ts_east), ("north", ts_north), ("velocity", velocity)):
        if not path:
            continue
        with rasterio.open(path) as src:
            win = from_bounds(*bounds, transform=src.transform).round_offsets(
                op="floor").round_lengths(op="ceil")
            full = Window(0, 0, src.width, src.height)
            try:
                win = win.intersection(full)
            except Exception:  # rasterio raises WindowError when they do not overlap
                raise InputError("The polygon is outside the raster '%s'." % path) from None
            if win.width <= 0 or win.height <= 0:
                raise InputError("The polygon is outside the raster '%s'." % path)
            data = src.read(window=win).astype(np.float64)
            if src.nodata is not None and not np.isnan(src.nodata):
                data[data == src.nodata] = np.nan
            if inside is None:
                tr = src.window_transform(win)
                inside = geometry_mask([geometry], out_shape=data.shape[1:], transform=tr,
                                       invert=True, all_touched=False)
                if not inside.any():  # smaller than a pixel: the touched pixels
                    inside = geometry_mask([geometry], out_shape=data.shape[1:],
                                           transform=tr, invert=True, all_touched=True)
                if not inside.any():
                    raise InputError("The polygon covers no pixel of '%s'." % path)
            out[key] = area_statistics(data[:, inside])
            out[key + "_names"] = list(src.descriptions)
    dates = [str(d)[:10] for d in out["east_names"]]
    (me, se, ne), (mn, sn, nn) = out["east"], out["north"]
    with np.errstate(invalid="ignore", divide="ignore"):
        sem = np.fmax(se / np.sqrt(np.maximum(ne, 1)), sn / np.sqrt(np.maximum(nn, 1)))
    sem = np.where(np.isfinite(sem), sem, np.nan)
    if len(sem):
        sem[0] = 0.0 if np.isfinite(me[0]) else np.nan
    velocity_out = {name: np.nan for name in VELOCITY_BANDS}
    if "velocity" in out:
        means = dict(zip(out["velocity_names"], out["velocity"][0]))
        for name in velocity_out:
            if name in means:
                velocity_out[name] = float(means[name])
        if BAND_VE in means and BAND_VN in means:
            velocity_out[BAND_V] = float(np.hypot(means[BAND_VE], means[BAND_VN]))
            velocity_out["mean_of_speeds_m_per_yr"] = float(means.get(BAND_V, np.nan))
            if BAND_V_SIGMA in means:
                velocity_out[BAND_V_SIGMA] = mean_vector_sigma(
                    means[BAND_VE], means[BAND_VN], means[BAND_V_SIGMA])
    return dict(x=(bounds[0] + bounds[2]) / 2.0, y=(bounds[1] + bounds[3]) / 2.0, row=-1,
                col=-1, dates=dates, east=me, north=mn, magnitude=np.hypot(me, mn),
                sigma=sem, east_std=se, north_std=sn, n_pixels=int(inside.sum()),
                velocity=velocity_out, pairs=[], label=label, kind="area")


def _coordinates(geojson):
    xs, ys = [], []

    def walk(obj):
        if isinstance(obj, (list, tuple)) and obj and isinstance(obj[0], (int, float)):
            xs.append(float(obj[0]))
            ys.append(float(obj[1]))
        elif isinstance(obj, (list, tuple)):
            for item in obj:
                walk(item)

    walk(geojson.get("coordinates", []) if isinstance(geojson, dict) else [])
    return xs, ys
