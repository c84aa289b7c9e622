"""Removal of systematic apparent motion before detection, with a report.

Optical displacement time series carry apparent motion that is not ground motion:

- a residual co-registration ramp per date (offset + planar tilt across the scene);
- topography-correlated terms (orthorectification errors with a DEM that is wrong or
  coarse, parallax): apparent shifts proportional to elevation and to the terrain
  gradient (slope x sin/cos aspect).

For every date and each component (east, north) a linear model of these terms is fitted
robustly (iteratively re-weighted least squares with Tukey's biweight) on stable ground
only -- a user mask, or the whole scene minus pixels flagged as moving -- and the fitted
field is subtracted everywhere. Landslides move downslope, so they correlate with the
terrain gradient: keeping them out of the fit (mask + robust weights) is what prevents
the correction from eating the signal. The report says, per date and component, which
coefficients were fitted and how large the removed field was (RMS), so an analyst can
see what was taken away.
"""

import numpy as np

from ..errors import InputError
from ..progress import as_progress

#: term names in the order of the design matrix columns
TERMS_RAMP = ("offset", "ramp_east", "ramp_north")
TERMS_TOPO = ("elevation", "grad_east", "grad_north")


def terrain_derivatives(dem, transform):
    """Slope, downslope azimuth and gradient of a north-up DEM.

    Returns
    -------
    dict with 2-D arrays ``slope_deg``, ``downslope_azimuth_deg`` (direction water
    flows, degrees clockwise from north), ``grad_east`` (dz/dE) and ``grad_north``
    (dz/dN), all NaN where the DEM is NaN.
    """
    dem = np.asarray(dem, dtype=np.float64)
    xres = abs(transform.a)
    yres = abs(transform.e)
    # rows go south on a north-up raster: dz/dN = -dz/drow / yres
    drow, dcol = np.gradient(dem)
    gx = dcol / xres
    gy = -drow / yres
    slope = np.degrees(np.arctan(np.hypot(gx, gy)))
    az = np.degrees(np.arctan2(-gx, -gy)) % 360.0
    return {"slope_deg": slope, "downslope_azimuth_deg": az, "grad_east": gx, "grad_north": gy}


def _design(shape, transform, dem=None, use_topo=True):
    h, w = shape
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    # normalised coordinates in [-1, 1] for conditioning
    xn = (cols - (w - 1) / 2.0) / max((w - 1) / 2.0, 1.0)
    yn = -(rows - (h - 1) / 2.0) / max((h - 1) / 2.0, 1.0)
    cols_list = [np.ones(shape), xn, yn]
    names = list(TERMS_RAMP)
    scales = [1.0, max((w - 1) / 2.0, 1.0) * abs(transform.a),
              max((h - 1) / 2.0, 1.0) * abs(transform.e)]
    if dem is not None and use_topo:
        t = terrain_derivatives(dem, transform)
        z = np.asarray(dem, dtype=np.float64)
        zm = np.nanmean(z)
        zs = np.nanstd(z) or 1.0
        gs_e = np.nanstd(t["grad_east"]) or 1.0
        gs_n = np.nanstd(t["grad_north"]) or 1.0
        cols_list += [(z - zm) / zs, t["grad_east"] / gs_e, t["grad_north"] / gs_n]
        names += list(TERMS_TOPO)
        scales += [zs, gs_e, gs_n]
    return np.stack(cols_list, axis=-1), names, np.array(scales)


def _irls(A, b, iterations=8, c=4.685):
    """Robust least squares with Tukey's biweight; returns coefficients and weights."""
    w = np.ones(b.size)
    coef = np.zeros(A.shape[1])
    for _ in range(iterations):
        sw = np.sqrt(w)
        coef, *_ = np.linalg.lstsq(A * sw[:, None], b * sw, rcond=None)
        r = b - A @ coef
        s = 1.4826 * np.median(np.abs(r - np.median(r)))
        if not np.isfinite(s) or s <= 0:
            break
        u = r / (c * s)
        w = np.where(np.abs(u) < 1, (1 - u ** 2) ** 2, 0.0)
        if w.sum() < A.shape[1] * 3:
            break
    return coef, w


def remove_bias(east, north, transform, dem=None, stable=None, use_topography=True,
                max_samples=60000, min_samples=50, seed=0, progress=None):
    """Fit and remove ramp and topography-correlated apparent motion, per date.

    Parameters
    ----------
    east, north : 3-D arrays (date, row, col) of cumulative displacement in metres
        (NaN = no data). The first date is usually identically zero.
    transform : affine transform of the grid (north-up).
    dem : 2-D elevation on the same grid or None (then only offset + ramp are fitted).
    stable : 2-D bool array of pixels usable as stable ground, or None (all pixels;
        the robust fit then down-weights moving pixels by itself).
    use_topography : fit elevation/gradient terms when a DEM is given.
    max_samples : stable pixels used per fit (random subsample, fixed seed).

    Returns
    -------
    east_corrected, north_corrected, report
        ``report`` is a dict: ``terms`` (names), ``per_date`` (list of dicts with
        ``index``, and per component the ``coefficients`` in physical units -- metres of
        apparent displacement per metre east/north for the ramp, per metre of elevation,
        per unit of gradient -- ``rms_removed_m`` and ``n_samples``), and a summary
        ``rms_removed_m`` per component over all dates.
    """
    progress = as_progress(progress)
    east = np.asarray(east, dtype=np.float64)
    north = np.asarray(north, dtype=np.float64)
    if east.shape != north.shape or east.ndim != 3:
        raise InputError("East and north time series must be 3-D arrays (date, row, col) of "
                         "the same shape; got %s and %s." % (east.shape, north.shape))
    nt, h, w = east.shape
    if dem is not None:
        dem = np.asarray(dem, dtype=np.float64)
        if dem.shape != (h, w):
            raise InputError("The DEM grid (%s) differs from the time-series grid (%s); "
                             "resample it first (detect_from_folder does)." % (dem.shape, (h, w)))
    A, names, scales = _design((h, w), transform, dem, use_topography)
    base_ok = np.all(np.isfinite(A), axis=-1)
    st = base_ok if stable is None else (base_ok & np.asarray(stable, bool))
    rng = np.random.default_rng(seed)
    out_e = east.copy()
    out_n = north.copy()
    per_date = []
    sums = {"east": 0.0, "north": 0.0}
    counts = {"east": 0, "north": 0}
    for t in range(nt):
        progress.check()
        entry = {"index": t}
        for comp, src, dst in (("east", east, out_e), ("north", north, out_n)):
            f = src[t]
            ok = st & np.isfinite(f)
            idx = np.flatnonzero(ok)
            if idx.size < max(min_samples, 3 * len(names)) or np.nanmax(np.abs(f[ok])) == 0:
                entry[comp] = {"coefficients": {n: 0.0 for n in names}, "rms_removed_m": 0.0,
                               "n_samples": int(idx.size), "fitted": False}
                continue
            if idx.size > max_samples:
                idx = rng.choice(idx, max_samples, replace=False)
            Af = A.reshape(-1, A.shape[-1])[idx]
            coef, _ = _irls(Af, f.ravel()[idx])
            model = A @ coef
            valid = np.isfinite(f)
            dst[t] = np.where(valid, f - model, np.nan)
            rms = float(np.sqrt(np.mean(model[valid] ** 2))) if valid.any() else 0.0
            entry[comp] = {"coefficients": {n: float(c / s) for n, c, s in zip(names, coef, scales)},
                           "rms_removed_m": rms, "n_samples": int(idx.size), "fitted": True}
            sums[comp] += rms ** 2
            counts[comp] += 1
        per_date.append(entry)
        progress.update((t + 1) / nt, "Bias removal: date %d/%d" % (t + 1, nt))
    report = {"terms": names,
              "units": {"offset": "m", "ramp_east": "m per m east", "ramp_north": "m per m north",
                        "elevation": "m per m of elevation", "grad_east": "m per unit dz/dE",
                        "grad_north": "m per unit dz/dN"},
              "stable_source": "mask" if stable is not None else "whole scene (robust)",
              "per_date": per_date,
              "rms_removed_m": {c: (float(np.sqrt(sums[c] / counts[c])) if counts[c] else 0.0)
                                for c in sums}}
    return out_e, out_n, report


def summarize_report(report, dates=None):
    """A few human-readable lines describing what :func:`remove_bias` removed."""
    lines = ["Bias removal (%s): terms %s" % (report["stable_source"], ", ".join(report["terms"]))]
    for e in report["per_date"]:
        label = dates[e["index"]] if dates is not None else "date %d" % e["index"]
        parts = []
        for comp in ("east", "north"):
            d = e[comp]
            if not d.get("fitted"):
                continue
            c = d["coefficients"]
            txt = "%s rms %.3f m" % (comp, d["rms_removed_m"])
            if "elevation" in c:
                txt += " (elev %.3f m/km)" % (c["elevation"] * 1000.0)
            parts.append(txt)
        if parts:
            lines.append("  %s: %s" % (label, "; ".join(parts)))
    return lines
