"""Benchmark of the detection (issue 6): synthetic scenes with truth + the real null pair.

Scenes are built at the time-series level (to keep the bench fast): the landslide
geometry, DEM, cloud masks, vegetated patch, co-registration ramp and elevation-bias
coefficients come from ``core.synthetic.generate_stack`` (images not used); the
cumulative displacement series the inversion would deliver is the truth plus realistic
error fields:

- white noise (per date, per component) ``--noise`` m and spatially correlated noise
  of the same std (Gaussian-filtered, correlation length ~4 pixels);
- clouds/shadows from the generator's cloud masks: 60 % of the clouded pixels NaN,
  40 % replaced by smooth outliers (std 3 m); the fully clouded date is ~all NaN;
- the generator's per-date planar co-registration ramp and elevation-proportional
  apparent shift (converted from pixels to metres);
- the vegetated patch: extra noise of 1.5 m per date (correlated over ~1.5 pixels).

SlideWatch (``detect_from_folder`` on written ``timeseries/`` files with the DEM) is
compared with a baseline: 95th-percentile threshold of the raw velocity magnitude (as in
``velocity.tif``), with the same clean-up and minimum area. Object-level scores: a truth
object is found if one polygon covers >= 50 % of it; a detection is correct if >= 50 % of
it lies on a truth object or it is the polygon that found one.

Real null test: the real Sentinel-2 pair of ../shared/data (no motion) is brought to a
common grid, correlated with ``core.correlation.correlate`` (window 32, step 8) and the
pair treated as a 2-date series (0, pair displacement); it must give no detection.

Usage::

    .venv/bin/python bench/bench_detection.py [--scenes 12] [--out bench/out/detection]
"""

import argparse
import datetime as _dt
import json
import os
import sys
import time

import numpy as np
from scipy import ndimage


#: detection parameters changed from their defaults (``--param NAME=VALUE``)
PARAM_OVERRIDES = {}


def build_scene(seed, n_slides, out_folder, shape=(300, 300), pixel_size=20.0, n_dates=16,
                noise=0.25, traps=True, parts=None):
    """Write the scene's timeseries/ and dem.tif; returns (stack, raw speed).

    ``parts``: optional dict filled with the error components added to the truth, each
    (T, H, W) for east and north (keys ``noise``, ``bias``, ``veg``, ``cloud``; clouded
    NaN pixels in ``nan``), for the diagnosis of the object series (``--series-errors``).
    The random draws are the same with or without it.
    """
    from slidewatch.core.raster_io import write_bands
    from slidewatch.core.synth.synthetic import generate_stack

    rng = np.random.default_rng(1000 + seed)
    specs = []
    for k in range(n_slides):
        area = float(np.exp(rng.uniform(np.log(0.06e6), np.log(1.0e6))))  # label area target
        aspect = rng.uniform(1.2, 2.0)
        # labelled area ~ 0.82 x ellipse area (pixels >= 5 % of peak speed)
        ell = area / 0.82
        width = np.sqrt(ell * 4 / np.pi / aspect)
        spec = dict(velocity_m_per_yr=float(np.exp(rng.uniform(np.log(2.0), np.log(50.0)))),
                    length_m=float(width * aspect), width_m=float(width))
        if rng.uniform() < 0.35:
            # accelerating: the drawn velocity (2-50 m/yr) is the final one, reached from a
            # velocity 3-5 times lower at an onset between 35 % and 65 % of the period
            spec["velocity_after_m_per_yr"] = spec["velocity_m_per_yr"]
            spec["velocity_m_per_yr"] /= rng.uniform(3.0, 5.0)
            spec["accel_onset_fraction"] = float(rng.uniform(0.35, 0.65))
        specs.append(spec)
    st = generate_stack(None, n_dates=n_dates, shape=shape, seed=seed, pixel_size=pixel_size,
                        write=False, texture="fractal", mean_interval_days=45,
                        landslides=specs, ramp=0.15 if traps else None,
                        elevation_bias=0.12 if traps else None, noisy_area=traps,
                        illumination_change=False, keep_images=False, cloudy_date_fraction=0.3,
                        fully_clouded_dates=1)
    T = st.n_dates
    H, W = shape
    east = st.east_m.astype(np.float64).copy()
    north = st.north_m.astype(np.float64).copy()
    rows, cols = np.mgrid[0:H, 0:W].astype(np.float64)
    if parts is not None:
        for key in ("noise", "bias", "veg", "cloud"):
            parts[key] = {c: np.zeros((T, H, W)) for c in ("e", "n")}
        parts["nan"] = np.zeros((T, H, W), bool)
    zrel_km = (st.dem.astype(np.float64) - float(np.mean(st.dem))) / 1000.0
    for t in range(1, T):
        for comp, arr, sign in (("e", east, 1.0), ("n", north, -1.0)):
            wn = rng.normal(0, noise, (H, W))
            cn = ndimage.gaussian_filter(rng.normal(0, 1, (H, W)), 4.0)
            cn *= noise / cn.std()
            arr[t] += wn + cn
            if parts is not None:
                parts["noise"][comp][t] = wn + cn
            if traps:
                rc = st.ramp_coeffs_px[t]
                if comp == "e":
                    ramp_px = rc[0] * (cols / W - 0.5) + rc[1] * (rows / H - 0.5)
                    elev_px = st.elevation_coeffs_px_per_km[t, 0] * zrel_km
                else:
                    ramp_px = rc[2] * (cols / W - 0.5) + rc[3] * (rows / H - 0.5)
                    elev_px = st.elevation_coeffs_px_per_km[t, 1] * zrel_km
                arr[t] += sign * (ramp_px + elev_px) * pixel_size
                veg = ndimage.gaussian_filter(rng.normal(0, 1, (H, W)), 1.5)
                veg *= 1.5 / veg.std()
                arr[t][st.noisy_mask] += veg[st.noisy_mask]
                if parts is not None:
                    parts["bias"][comp][t] = sign * (ramp_px + elev_px) * pixel_size
                    parts["veg"][comp][t][st.noisy_mask] = veg[st.noisy_mask]
        cm = st.cloud_masks[t]
        if cm.any():
            r = rng.uniform(size=(H, W))
            nanm = cm & (r < 0.6)
            outl = cm & ~nanm
            for comp, arr in (("e", east), ("n", north)):
                o = ndimage.gaussian_filter(rng.normal(0, 1, (H, W)), 3.0)
                o *= 3.0 / o.std()
                arr[t][outl] += o[outl]
                arr[t][nanm] = np.nan
                if parts is not None:
                    parts["cloud"][comp][t][outl] = o[outl]
                    parts["nan"][t] |= nanm
    dates = list(st.dates)
    tyr = np.array([(_dt.date.fromisoformat(d) - _dt.date.fromisoformat(dates[0])).days
                    for d in dates]) / 365.25
    # raw velocity as an inversion would report it (per-pixel LSQ, NaN-aware)
    def lsq(Y):
        ok = np.isfinite(Y)
        n = ok.sum(0)
        tt = np.where(ok, tyr[:, None, None], 0.0)
        yy = np.where(ok, Y, 0.0)
        st_ = tt.sum(0); sy = yy.sum(0); stt = (tt * tt).sum(0); sty = (tt * yy).sum(0)
        with np.errstate(all="ignore"):
            v = (n * sty - st_ * sy) / (n * stt - st_ * st_)
        v[n < 3] = np.nan
        return v
    ve, vn = lsq(east), lsq(north)
    ts = os.path.join(out_folder, "timeseries")
    os.makedirs(ts, exist_ok=True)
    write_bands(os.path.join(ts, "ts_east_m.tif"), east, st.transform, st.crs, descriptions=dates)
    write_bands(os.path.join(ts, "ts_north_m.tif"), north, st.transform, st.crs, descriptions=dates)
    n_obs = np.isfinite(east).sum(0).astype(np.float32)
    write_bands(os.path.join(ts, "velocity.tif"),
                [ve, vn, np.hypot(ve, vn), np.full((H, W), np.nan), n_obs, np.full((H, W), np.nan)],
                st.transform, st.crs,
                descriptions=["ve_m_per_yr", "vn_m_per_yr", "v_m_per_yr", "v_sigma_m_per_yr",
                              "n_obs", "rmse_m"])
    write_bands(os.path.join(out_folder, "dem.tif"), [st.dem], st.transform, st.crs,
                descriptions=["elevation_m"])
    return st, np.hypot(ve, vn)


def score_objects(det_labels, truth_labels, n_truth):
    """(found truth ids, n_det, n_correct_det)."""
    found = set()
    matched_det = set()
    n_det = int(det_labels.max())
    for k in range(1, n_truth + 1):
        tm = truth_labels == k
        area = tm.sum()
        if area == 0:
            continue
        d = det_labels[tm]
        d = d[d > 0]
        if d.size == 0:
            continue
        ids, cnt = np.unique(d, return_counts=True)
        j = np.argmax(cnt)
        if cnt[j] >= 0.5 * area:
            found.add(k)
            matched_det.add(int(ids[j]))
    correct = 0
    for j in range(1, n_det + 1):
        dm = det_labels == j
        if j in matched_det or (truth_labels[dm] > 0).mean() >= 0.5:
            correct += 1
    return found, n_det, correct


def matching_label(stack, result, k):
    """Label of the detection covering most of truth slide ``k`` (1-based), or None."""
    d = result.labels[stack.landslide_labels == k]
    d = d[d > 0]
    return int(np.bincount(d).argmax()) if d.size else None


def onset_index(dates, onset_date):
    od = _dt.date.fromisoformat(onset_date)
    idx = [i for i, d in enumerate(dates) if _dt.date.fromisoformat(d) <= od]
    return idx[-1] if idx else 0


def run_synthetic(n_scenes, out_root, noise, only=None):
    from slidewatch.core.detect.detection import detect_from_folder, percentile_baseline

    rows = []
    tot = dict(sw_found=0, sw_det=0, sw_ok=0, bl_found=0, bl_det=0, bl_ok=0, truth=0,
               null_sw=0, null_bl=0, n_null=0)
    accel = []
    false_accel = 0
    for s in range(n_scenes):
        if only is not None and s not in only:
            continue
        n_slides = 0 if s < 2 else int(np.random.default_rng(s).integers(1, 5))
        folder = os.path.join(out_root, "scene_%02d" % s)
        t0 = time.time()
        st, vraw = build_scene(s, n_slides, folder, noise=noise)
        t1 = time.time()
        res = detect_from_folder(os.path.join(folder, "timeseries"),
                                 dem_path=os.path.join(folder, "dem.tif"),
                                 out_gpkg=os.path.join(folder, "detections.gpkg"),
                                 preserve_validations=False, **PARAM_OVERRIDES)
        t2 = time.time()
        nt = len(st.landslides)
        found, nd, ok = score_objects(res.labels, st.landslide_labels, nt)
        px_area = abs(st.transform.a * st.transform.e)
        bl, nb, thr = percentile_baseline(vraw, st.transform, 95.0,
                                          res.params.min_area_m2, res.params.morph_px)
        bfound, _, bok = score_objects(bl, st.landslide_labels, nt)
        tot["truth"] += nt
        tot["sw_found"] += len(found); tot["sw_det"] += nd; tot["sw_ok"] += ok
        tot["bl_found"] += len(bfound); tot["bl_det"] += nb; tot["bl_ok"] += bok
        if nt == 0:
            tot["n_null"] += 1; tot["null_sw"] += nd; tot["null_bl"] += nb
        # acceleration
        for k, ls in enumerate(st.landslides, start=1):
            j = matching_label(st, res, k)
            if j is None:
                continue
            f = res.features[j - 1]
            if ls.get("accel_onset_date"):
                ti = onset_index(st.dates, ls["accel_onset_date"])
                di = onset_index(st.dates, f["accel_onset_date"]) if f["accel_flag"] else None
                err = ((_dt.date.fromisoformat(f["accel_onset_date"])
                        - _dt.date.fromisoformat(ls["accel_onset_date"])).days
                       if f["accel_flag"] else None)
                hi_ = (onset_index(st.dates, f["accel_onset_hinge_date"])
                       if f["accel_flag"] and f.get("accel_onset_hinge_date") else None)
                accel.append(dict(scene=s, slide=k, truth_idx=ti, det_idx=di, error_days=err,
                                  truth_date=ls["accel_onset_date"],
                                  det_date=f["accel_onset_date"] if f["accel_flag"] else None,
                                  earliest=f.get("accel_onset_earliest"),
                                  latest=f.get("accel_onset_latest"),
                                  ramp_days=f.get("accel_ramp_days"),
                                  hinge_date=f.get("accel_onset_hinge_date"),
                                  hinge_ok=(hi_ is not None and abs(hi_ - ti) <= 1),
                                  covered=(f["accel_flag"] and f.get("accel_onset_earliest") is not None
                                           and f["accel_onset_earliest"] <= ls["accel_onset_date"]
                                           <= f["accel_onset_latest"]),
                                  ok=(di is not None and abs(di - ti) <= 1)))
            elif f["accel_flag"]:
                false_accel += 1
        slides_txt = ", ".join("%.2fkm2@%.1f%s" % ((st.landslide_labels == k).sum() * px_area / 1e6,
                                                  ls["velocity_m_per_yr"],
                                                  "->%.1f" % ls["velocity_after_m_per_yr"]
                                                  if ls.get("accel_onset_date") else "")
                               for k, ls in enumerate(st.landslides, start=1))
        rows.append(dict(scene=s, n_truth=nt, sw_found=len(found), sw_det=nd, sw_ok=ok,
                         bl_found=len(bfound), bl_det=nb, bl_ok=bok, slides=slides_txt,
                         t_build=t1 - t0, t_detect=t2 - t1,
                         rejected=len(res.candidates_rejected or [])))
        print("scene %2d truth %d | SW found %d det %d correct %d | P95 found %d det %d correct %d"
              " | detect %.1fs | %s" % (s, nt, len(found), nd, ok, len(bfound), nb, bok,
                                        t2 - t1, slides_txt), flush=True)
    return rows, tot, accel, false_accel


def series_errors(scene, out_root, noise, mc=0):
    """Error of each accelerating slide's object series against the truth, by source.

    Rebuilds one scene with its error components kept apart, runs the detection while
    keeping its bias-corrected series (E, N) and per-pixel fit, and for every detected
    accelerating slide evaluates, on the pixels and direction the product uses, the
    per-date error of the product series (vs the same estimator applied to the truth)
    and the mean of each error component over those pixels: white + correlated noise,
    residual ramp/elevation bias after the bias removal, vegetated patch, cloud outliers
    that survived the per-pixel rejection. Also the noise-only floor of a few estimators
    over the whole object. With ``mc`` > 0, a Monte-Carlo estimate of the chance that
    the onset lands within one acquisition of the truth at this slide's noise floor:
    the truth series (same pixels) plus ``mc`` draws of white-in-time Gaussian noise
    with the slide's measured noise-only RMS, with every date and with the dates under
    clouds removed. Prints a table, returns a list of dicts.
    """
    from slidewatch.core.detect import detection as det

    n_slides = 0 if scene < 2 else int(np.random.default_rng(scene).integers(1, 5))
    folder = os.path.join(out_root, "scene_%02d" % scene)
    parts = {}
    st, _ = build_scene(scene, n_slides, folder, noise=noise, parts=parts)
    keep = {}
    orig_rb, orig_fv = det.remove_bias, det.fit_velocity

    def rb(*a, **k):
        out = orig_rb(*a, **k)
        keep["E"], keep["N"] = out[0], out[1]
        return out

    def fv(*a, **k):
        out = orig_fv(*a, **k)
        keep["fit"] = out
        return out
    det.remove_bias, det.fit_velocity = rb, fv
    try:
        res = det.detect_from_folder(os.path.join(folder, "timeseries"),
                                     dem_path=os.path.join(folder, "dem.tif"),
                                     out_gpkg=os.path.join(folder, "detections.gpkg"),
                                     preserve_validations=False, **PARAM_OVERRIDES)
    finally:
        det.remove_bias, det.fit_velocity = orig_rb, orig_fv
    E, N, fit = keep["E"], keep["N"], keep["fit"]
    east_raw, north_raw, _, _, _ = det.read_timeseries(os.path.join(folder, "timeseries"))
    removed_e, removed_n = east_raw - E, north_raw - N    # the fitted bias model
    out = []

    def rms(x):
        x = np.asarray(x, float)[1:]
        x = x[np.isfinite(x)]
        return float(np.sqrt(np.mean(x * x))) if x.size else float("nan")
    for k, ls in enumerate(st.landslides, start=1):
        if not ls.get("accel_onset_date"):
            continue
        j = matching_label(st, res, k)
        if j is None:
            continue
        f = res.features[j - 1]
        obj = res.labels == j
        sl = (slice(None), slice(None))
        ser = det.object_series(E, N, fit, det.dates_to_years(res.dates), sl, obj,
                                res.params.accel_core_fraction,
                                res.params.accel_min_valid_fraction)
        ue, un = ser["direction"]
        pix = ser["pixels"]
        used = fit["valid"][:, pix]                      # (T, P) dates used per pixel

        def proj(pe, pn, mask=pix):
            return pe[:, mask] * ue + pn[:, mask] * un
        truth = proj(st.east_m, st.north_m)
        with warnings_off():
            truth_med = np.nanmedian(np.where(used, truth, np.nan), axis=1)
            err = ser["series"] - truth_med

            def comp_mean(key):
                v = proj(parts[key]["e"], parts[key]["n"])
                return np.nanmean(np.where(used, v, np.nan), axis=1)
            resid_bias = proj(parts["bias"]["e"] - removed_e, parts["bias"]["n"] - removed_n)
            c_bias = np.nanmean(np.where(used, resid_bias, np.nan), axis=1)
            c_noise = comp_mean("noise")
            c_veg = comp_mean("veg")
            c_cloud = comp_mean("cloud")
            # floors over the whole object (all pixels, no clouds, no bias)
            nz_all = proj(parts["noise"]["e"], parts["noise"]["n"], obj)
            spd = np.hypot(fit["ve"][obj], fit["vn"][obj])
            wsp = np.where(np.isfinite(spd), spd, 0.0)
            floor_mean_all = nz_all.mean(1)
            floor_wmean_all = (nz_all * wsp).sum(1) / wsp.sum()
            floor_med_core = np.median(proj(parts["noise"]["e"], parts["noise"]["n"]), axis=1)
            cl_frac = np.array([(parts["nan"][t][obj] | (parts["cloud"]["e"][t][obj] != 0)).mean()
                                for t in range(E.shape[0])])
        # onset from the product series and from two oracles on the same pixels: truth +
        # the white/correlated noise only (no clouds, no bias), with every date, and
        # with the dates on which clouds cover > 50 % of the pixels removed (perfect
        # cloud rejection: the best any handling of clouds can do)
        from slidewatch.core.detect.acceleration import detect_acceleration
        p_ = res.params
        kw = dict(min_delta_bic=p_.accel_min_delta_bic, min_t=p_.accel_min_t,
                  min_ratio=p_.accel_min_ratio, max_ramp_days=p_.accel_max_ramp_days)
        oracle = truth_med_all = np.median(truth, axis=1) + np.mean(
            proj(parts["noise"]["e"], parts["noise"]["n"]), axis=1)
        cloudy = np.array([(parts["nan"][t][pix] | (parts["cloud"]["e"][t][pix] != 0)).mean() > 0.5
                           for t in range(E.shape[0])])
        ti = onset_index(res.dates, ls["accel_onset_date"])
        onsets = {}
        for name, y, sg in (("product", ser["series"], ser["sigma"]),
                            ("oracle_noise_only", oracle, None),
                            ("oracle_clouds_removed", np.where(cloudy, np.nan, truth_med_all), None)):
            a_ = detect_acceleration(res.dates, y, sigma=sg, **kw)
            od = a_["onset_date"] if a_["accel_flag"] else None
            onsets[name] = (od, od is not None and abs(onset_index(res.dates, od) - ti) <= 1)
        mc_hits = {}
        if mc > 0:
            floor = rms(np.where(cloudy, np.nan, oracle - np.median(truth, axis=1)))
            rng_mc = np.random.default_rng(100 * scene + k)
            base = np.median(truth, axis=1)
            for name, drop in (("all_dates", np.zeros_like(cloudy)), ("clouds_removed", cloudy)):
                hits = 0
                for _ in range(mc):
                    y = base + rng_mc.normal(0, floor, base.size)
                    y[0] = base[0]
                    y[drop] = np.nan
                    a_ = detect_acceleration(res.dates, y, **kw)
                    hits += bool(a_["accel_flag"]) and abs(
                        onset_index(res.dates, a_["onset_date"]) - ti) <= 1
                mc_hits[name] = hits / mc
        # scale-free errors: the onset depends on the shape of the series only, so each
        # series is compared with the best multiple of the truth (same pixels), fitted on
        # the clear dates; "round 2" = the previous estimator (median of the same pixels)
        tref = np.median(truth, axis=1)
        with warnings_off():
            old_series = np.where(np.isfinite(np.where(used, 1.0, np.nan)).mean(1) >= 0.3,
                                  np.nanmedian(np.where(used, proj(E, N), np.nan), axis=1),
                                  np.nan)

        def shape_err(y):
            okc = ~cloudy & np.isfinite(y)
            al = float((y[okc] * tref[okc]).sum() / max((tref[okc] ** 2).sum(), 1e-12))
            return y - al * tref
        e_new, e_old = shape_err(ser["series"]), shape_err(old_series)
        e_flo = shape_err(oracle)
        shape = {name: {"clear": rms(np.where(cloudy, np.nan, e)), "cloudy": rms(
            np.where(cloudy, e, np.nan)) if cloudy[1:].any() else None}
            for name, e in (("product", e_new), ("round2_median", e_old), ("noise_floor", e_flo))}
        row = dict(scene=scene, slide=k, n_obj_px=int(obj.sum()), n_core_px=int(pix.sum()),
                   mc_p_within_1=mc_hits, shape_rms=shape,
                   truth_series=[round(float(x), 4) for x in tref], dates=list(res.dates),
                   truth_onset_index=int(ti),
                   rms_floor=rms(np.where(cloudy, np.nan, e_flo)),
                   onsets={a_: list(b_) for a_, b_ in onsets.items()},
                   cloudy_dates=[int(x) for x in np.flatnonzero(cloudy)],
                   v_before=round(ls["velocity_m_per_yr"], 2),
                   v_after=round(ls["velocity_after_m_per_yr"], 2),
                   truth_onset=ls["accel_onset_date"], det_onset=f["accel_onset_date"],
                   rms_err=rms(err), rms_err_clear=rms(np.where(cloudy, np.nan, err)),
                   rms_floor_clear=rms(np.where(cloudy, np.nan, oracle - np.median(truth, axis=1))),
                   rms_noise=rms(c_noise), rms_bias_resid=rms(c_bias),
                   rms_veg=rms(c_veg), rms_cloud=rms(c_cloud),
                   floor_median_core=rms(floor_med_core), floor_mean_object=rms(floor_mean_all),
                   floor_speed_weighted_object=rms(floor_wmean_all),
                   per_date_err=[None if not np.isfinite(x) else round(float(x), 2) for x in err],
                   per_date_cloud=[round(float(x), 2) for x in np.nan_to_num(c_cloud)],
                   per_date_bias=[round(float(x), 2) for x in np.nan_to_num(c_bias)],
                   cloud_fraction=[round(float(x), 2) for x in cl_frac],
                   series_sigma=[round(float(x), 2) for x in ser["sigma"]],
                   series=[None if not np.isfinite(x) else round(float(x), 4)
                           for x in ser["series"]])
        out.append(row)
        print("scene %d slide %d (%d px, core %d; %.1f -> %.1f m/yr; onset truth %s det %s): "
              "RMS per-date error %.2f m | mean over used px: noise %.2f, residual bias %.2f, "
              "veg %.2f, cloud %.2f | noise-only floors: median core %.2f, mean object %.2f, "
              "speed-weighted object %.2f"
              % (scene, k, row["n_obj_px"], row["n_core_px"], row["v_before"], row["v_after"],
                 row["truth_onset"], row["det_onset"], row["rms_err"], row["rms_noise"],
                 row["rms_bias_resid"], row["rms_veg"], row["rms_cloud"],
                 row["floor_median_core"], row["floor_mean_object"],
                 row["floor_speed_weighted_object"]), flush=True)
        print("   dates clouded over > 50 %% of the pixels: %s; RMS error on the other dates %.2f m "
              "(noise-only floor on them %.2f m)" % (row["cloudy_dates"], row["rms_err_clear"],
                                                      row["rms_floor_clear"]))
        print("   scale-free RMS error, clear / cloudy dates: " + "; ".join(
            "%s %.2f / %s" % (a_, b_["clear"], "-" if b_["cloudy"] is None else "%.2f" % b_["cloudy"])
            for a_, b_ in shape.items()))
        print("   onset (date, within +-1 acq.): " + "; ".join(
            "%s %s %s" % (a_, b_[0], "ok" if b_[1] else "MISS") for a_, b_ in onsets.items()))
        if mc_hits:
            print("   Monte Carlo (%d draws at the noise floor): P(onset within +-1 acq.) "
                  "all dates %.2f, cloudy dates removed %.2f"
                  % (mc, mc_hits["all_dates"], mc_hits["clouds_removed"]))
        print("   per-date error  ", row["per_date_err"])
        print("   cloud component ", row["per_date_cloud"])
        print("   cloud fraction  ", row["cloud_fraction"])
        print("   bias residual   ", row["per_date_bias"])
        print("   series sigma    ", row["series_sigma"])
        print("   spread factor   ", [round(float(x), 1) for x in ser["spread"]])
    return out


class warnings_off:
    def __enter__(self):
        import warnings
        self._c = warnings.catch_warnings()
        self._c.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)
        self._e = np.errstate(all="ignore")
        self._e.__enter__()

    def __exit__(self, *exc):
        self._e.__exit__(*exc)
        return self._c.__exit__(*exc)


def run_real_null(out_root):
    """Correlate the real no-motion pair and run the detection on it."""
    import rasterio
    from rasterio.warp import Resampling, reproject

    from slidewatch.core.matching.correlation import correlate
    from slidewatch.core.detect.detection import detect
    from slidewatch.core.raster_io import write_bands

    here = os.path.dirname(os.path.abspath(__file__))
    data = os.path.join(here, "..", "..", "shared", "data", "s2_pair_no_motion")
    if not os.path.isdir(data):
        data = "/work/shared/data/s2_pair_no_motion"
    ref_p = [f for f in os.listdir(data) if f.startswith("ref_")][0]
    tgt_p = [f for f in os.listdir(data) if f.startswith("tgt_")][0]
    with rasterio.open(os.path.join(data, ref_p)) as r:
        ref = r.read(1).astype(np.float32)
        tr, crs = r.transform, r.crs
    ref[ref == 0] = np.nan
    tgt = np.full(ref.shape, np.nan, np.float32)
    with rasterio.open(os.path.join(data, tgt_p)) as s:
        src = s.read(1).astype(np.float32)
        src[src == 0] = np.nan
        reproject(src, tgt, src_transform=s.transform, src_crs=s.crs, dst_transform=tr,
                  dst_crs=crs, resampling=Resampling.bilinear, src_nodata=np.nan,
                  dst_nodata=np.nan)
    t0 = time.time()
    step = 8
    # reference = the earlier image (2016-05-29 is tgt_), secondary = 2016-06-08
    res = correlate(tgt, ref, window=32, step=step, search=8)
    tcor = time.time() - t0
    dx, dy = np.asarray(res.dx, np.float64), np.asarray(res.dy, np.float64)
    bad = np.asarray(res.status) != 0
    dx[bad] = np.nan
    dy[bad] = np.nan
    xres, yres = tr.a, abs(tr.e)
    east, north = dx * xres, -dy * yres
    import affine
    c0, r0 = float(res.cols[0]), float(res.rows[0])
    gtr = tr * affine.Affine.translation(c0 - step / 2.0, r0 - step / 2.0) * affine.Affine.scale(step)
    dates = ["2016-05-29", "2016-06-08"]
    e3 = np.stack([np.zeros_like(east), east])
    n3 = np.stack([np.zeros_like(north), north])
    folder = os.path.join(out_root, "real_null", "timeseries")
    os.makedirs(folder, exist_ok=True)
    write_bands(os.path.join(folder, "ts_east_m.tif"), e3, gtr, crs, descriptions=dates)
    write_bands(os.path.join(folder, "ts_north_m.tif"), n3, gtr, crs, descriptions=dates)
    stv, stc = np.unique(np.asarray(res.status), return_counts=True)
    out = dict(grid=list(east.shape), valid_fraction=float(np.isfinite(east).mean()),
               status_counts={int(a): int(b) for a, b in zip(stv, stc)},
               pair_east_median_m=float(np.nanmedian(east)), pair_north_median_m=float(np.nanmedian(north)),
               pair_east_nmad_m=float(1.4826 * np.nanmedian(np.abs(east - np.nanmedian(east)))),
               t_correlate_s=tcor)
    # the windows' footprints (the wide-window pass), as the pipeline gives them
    foot = np.where(bad, np.nan, np.asarray(res.footprint, np.float64))
    out["widened_share"] = float(np.nanmean(foot > 1))
    res2 = detect(e3, n3, dates, gtr, crs=crs, footprint=foot)
    out["n_detections"] = len(res2.features)
    out["n_candidates_rejected"] = len(res2.candidates_rejected or [])
    out["candidates_rejected"] = res2.candidates_rejected
    out["noise"] = res2.noise.as_dict()
    # the same without the single-pair bar, to report what significance alone gives
    res3 = detect(e3, n3, dates, gtr, crs=crs, single_pair_min_independent_obs=0.0,
                  single_pair_min_significance=0.0, footprint=foot)
    out["n_detections_without_temporal_rule"] = len(res3.features)
    out["without_rule"] = [dict(area_m2=f["area_m2"], v_mean_m_per_yr=round(f["v_mean_m_per_yr"], 1),
                                significance_mean=round(f["significance_mean"], 1),
                                independent_obs=round(f["independent_obs"], 2),
                                spatial_coherence=round(f["spatial_coherence"], 3),
                                score=round(f["score"], 3)) for f in res3.features]
    cands = res3.candidates_rejected or []
    out["without_rule_rejected_by_reason"] = {
        "too few independent observations": sum("independent" in c["reason"] for c in cands),
        "score below minimum": sum(c["reason"].startswith("score") for c in cands)}
    passing_score = [c for c in cands if c["score"] >= res3.params.min_score]
    out["without_rule_max_independent_obs_of_candidates_passing_score"] = (
        max(c["independent_obs"] for c in passing_score) if passing_score else None)
    out["without_rule_max_score_of_candidates_with_enough_obs"] = max(
        [c["score"] for c in cands if c["independent_obs"] >= res3.params.min_independent_obs],
        default=None)
    from slidewatch.core.detect.detections_store import write_detections
    write_detections(os.path.join(out_root, "real_null", "detections.gpkg"), res2.features,
                     crs.to_wkt(), preserve=False)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", type=int, default=12)
    ap.add_argument("--noise", type=float, default=0.25)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "out", "detection"))
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--only", default=None,
                    help="comma-separated scene numbers to run (e.g. 2,7); implies --skip-real")
    ap.add_argument("--series-errors", action="store_true",
                    help="diagnosis only: per-date error of the accelerating slides' object "
                         "series by source (scenes of --only, else all)")
    ap.add_argument("--mc", type=int, default=0,
                    help="with --series-errors: Monte-Carlo draws of the onset at each "
                         "slide's noise floor (e.g. 200)")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="a DetectionParams field changed from its default for the synthetic "
                         "scenes (repeatable), e.g. accel_min_valid_fraction=0.3 to compare "
                         "a rule with its previous setting in the same conditions")
    a = ap.parse_args(argv)
    import dataclasses
    from slidewatch.core.detect.detection import DetectionParams
    names = {f.name for f in dataclasses.fields(DetectionParams)}
    for item in a.param:
        name, _, value = item.partition("=")
        if name not in names:
            ap.error("--param: unknown detection parameter %r" % name)
        default = getattr(DetectionParams(), name)
        PARAM_OVERRIDES[name] = (value.lower() in ("1", "true", "yes") if isinstance(default, bool)
                                 else type(default)(value))
    os.makedirs(a.out, exist_ok=True)
    only = None
    if a.only:
        only = {int(x) for x in a.only.split(",") if x.strip()}
        a.skip_real = True
    if a.series_errors:
        rows = []
        for s in sorted(only if only is not None else range(a.scenes)):
            rows += series_errors(s, a.out, a.noise, a.mc)
        with open(os.path.join(a.out, "series_errors.json"), "w") as fh:
            json.dump(rows, fh, indent=1)
        return 0
    t0 = time.time()
    rows, tot, accel, false_accel = run_synthetic(a.scenes, a.out, a.noise, only)

    def pr(found, det, ok):
        return (ok / det if det else 1.0), (found / tot["truth"] if tot["truth"] else 1.0)
    sp, sr = pr(tot["sw_found"], tot["sw_det"], tot["sw_ok"])
    bp, br = pr(tot["bl_found"], tot["bl_det"], tot["bl_ok"])
    print()
    print("| method | truth objects | detections | correct | found | precision | recall | "
          "detections on %d no-slide scenes |" % tot["n_null"])
    print("|---|---|---|---|---|---|---|---|")
    print("| SlideWatch | %d | %d | %d | %d | %.3f | %.3f | %d |"
          % (tot["truth"], tot["sw_det"], tot["sw_ok"], tot["sw_found"], sp, sr, tot["null_sw"]))
    print("| P95 baseline | %d | %d | %d | %d | %.3f | %.3f | %d |"
          % (tot["truth"], tot["bl_det"], tot["bl_ok"], tot["bl_found"], bp, br, tot["null_bl"]))
    n_acc_ok = sum(a_["ok"] for a_ in accel)
    print("\nacceleration: %d accelerating slides detected, onset within +-1 acquisition: %d; "
          "flagged: %d; false accel flags on steady slides: %d"
          % (len(accel), n_acc_ok, sum(a_["det_idx"] is not None for a_ in accel), false_accel))
    print("onset interval (delta chi2 <= 4) contains the truth: %d/%d; two-segment hinge date "
          "within +-1 acquisition: %d/%d"
          % (sum(bool(a_["covered"]) for a_ in accel), len(accel),
             sum(bool(a_["hinge_ok"]) for a_ in accel), len(accel)))
    for a_ in accel:
        print("  scene %d slide %d truth idx %s (%s) detected idx %s (%s, %s days; ramp %s d; "
              "interval %s..%s; hinge %s)"
              % (a_["scene"], a_["slide"], a_["truth_idx"], a_["truth_date"], a_["det_idx"],
                 a_["det_date"], a_["error_days"], a_["ramp_days"], a_["earliest"],
                 a_["latest"], a_["hinge_date"]))
    summary = dict(rows=rows, totals=tot, accel=accel, false_accel=false_accel,
                   precision=sp, recall=sr, baseline_precision=bp, baseline_recall=br,
                   param_overrides=PARAM_OVERRIDES)
    if not a.skip_real:
        real = run_real_null(a.out)
        short = {k: v for k, v in real.items() if k != "candidates_rejected"}
        reasons = {}
        for c in real.get("candidates_rejected", []):
            key = ("score below minimum" if c["reason"].startswith("score") else
                   "too few independent observations" if "independent" in c["reason"] else
                   "no temporal evidence")
            reasons[key] = reasons.get(key, 0) + 1
        short["rejected_by_reason"] = reasons
        print("\nreal null pair:", json.dumps(short))
        summary["real_null"] = real
    summary["elapsed_s"] = time.time() - t0
    print("\nelapsed %.1f s" % summary["elapsed_s"])
    with open(os.path.join(a.out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
