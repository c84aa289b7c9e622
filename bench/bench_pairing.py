"""Benchmark of the pairing strategies (issue 4): time-series RMSE per strategy.

Synthetic stack (core.synthetic.generate_stack) with truth: N dates, >= 30 % partly or
fully clouded, one landslide with an acceleration phase. The catalog is built WITHOUT
cloud metadata or masks (clouds are only known from the images / previews).
Every in-range pair (baseline <= MAX_BASELINE) is correlated once at full resolution
(core.correlation.correlate, window 32, step 8, search 8) and timed; each strategy uses
its subset, inverted with core.inversion.invert_network (default robust settings) on the
window-centre grid. Per date, the median of the estimate over stable ground is removed
(co-registration offsets are apparent motion, not landslide motion; same treatment for
every strategy). RMSE = sqrt(mean over landslide pixels, dates, east+north of
(estimate - truth)^2); truth = SyntheticStack.east_m / north_m at the window centres.

    cd /work/main && export PYTHONPATH=$PWD/.build/plugins \
        NUMBA_CACHE_DIR=$PWD/.cache/numba QT_QPA_PLATFORM=offscreen
    .venv/bin/python bench/bench_pairing.py [--dates 40] [--size 256] [--seed 0]
        [--no-illumination] [--lam auto|<number>] [--reuse]

The full-resolution correlations (and their measured times) are cached in
bench/out/pairing/fields_<args>.npz; ``--reuse`` reads them back (the reported
correlation times are those measured when the cache was written), so that the
selection and the inversion can be iterated on quickly.
"""

import argparse
import os
import shutil
import sys
import time

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dates", type=int, default=40)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--step", type=int, default=8)
    ap.add_argument("--max-baseline", type=int, default=365)
    ap.add_argument("--per-date", type=float, default=3.0)
    ap.add_argument("--cloudy", type=float, default=0.35)
    ap.add_argument("--no-illumination", action="store_true",
                    help="identical radiometry on every date (no seasonal gain/shading change): "
                         "isolates the effect of the pairing from the illumination bias")
    ap.add_argument("--lam", default=None,
                    help="regularisation of the inversion (a number or 'auto'); default: "
                         "the inversion's own default (core.inversion.DEFAULT_LAM)")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse the stack and the cached full-resolution correlations of a "
                         "previous run with the same arguments (to iterate on the selection)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "out", "pairing"))
    args = ap.parse_args(argv)

    from slidewatch.core.synth.synthetic import generate_stack
    from slidewatch.core.stack.catalog import build_catalog, load_image
    from slidewatch.core.matching.correlation import correlate
    from slidewatch.core.series.inversion import invert_network
    from slidewatch.core.network.pairing import select_pairs, network_summary
    from slidewatch.core.series.inversion import DEFAULT_LAM
    lam = DEFAULT_LAM if args.lam is None else (
        args.lam if args.lam == "auto" else float(args.lam))
    print("inversion: core.inversion.invert_network, lam=%r%s" % (
        lam, " (its default)" if args.lam is None else ""))

    tag = "%d_%d_%d_%d_%d_%.2f%s" % (
        args.dates, args.size, args.seed, args.step, args.max_baseline, args.cloudy,
        "_noillum" if args.no_illumination else "")
    # one stack folder per set of generator arguments: --reuse with other arguments must
    # not mix the images of two stacks in one folder
    folder = os.path.join(args.out, "stack_" + tag)
    cache_path = os.path.join(args.out, "fields_%s.npz" % tag)
    if os.path.isdir(folder) and not args.reuse:
        shutil.rmtree(folder)
    slide = [dict(name="accelerating", velocity_m_per_yr=3.0, velocity_after_m_per_yr=30.0,
                  accel_onset_fraction=0.55, accel_ramp_days=30.0, length_m=900.0,
                  width_m=500.0)]
    t0 = time.perf_counter()
    stack = generate_stack(folder, n_dates=args.dates, shape=(args.size, args.size),
                           seed=args.seed, cloudy_date_fraction=args.cloudy,
                           fully_clouded_dates=1, landslides=slide,
                           illumination_change=not args.no_illumination)
    n = len(stack.dates)
    cloudy = sorted(set(stack.params.get("cloudy_dates", [])) | set(stack.fully_clouded))
    print("stack: %d dates %s..%s, %dx%d px, %d partly/fully clouded (%.0f %%), fully "
          "clouded %s; generated in %.1f s" % (
              n, stack.dates[0], stack.dates[-1], args.size, args.size, len(cloudy),
              100.0 * len(cloudy) / n, [stack.dates[k] for k in stack.fully_clouded],
              time.perf_counter() - t0))

    cat = build_catalog(folder, use_cloud_metadata=False)
    assert len(cat) == n, cat.report()
    images = [load_image(r) for r in cat.records]
    window, step, search = 32, args.step, 8
    # warm-up (numba JIT / cache load) so that timings are steady-state
    correlate(images[0][:96, :96], images[1][:96, :96], window=window, step=step, search=search)
    correlate(images[0][:64, :64], images[1][:64, :64], window=16, step=8, search=5,
              subpixel="parabola")

    sels = {}
    t0 = time.perf_counter()
    sels["optimal"] = select_pairs(cat, "optimal", budget_pairs_per_date=args.per_date,
                                   max_baseline_days=args.max_baseline, previews=True,
                                   seed=args.seed, window=window, step=step, search=search)
    t_opt = time.perf_counter() - t0
    sels["sequential"] = select_pairs(cat, "sequential", budget_pairs_per_date=args.per_date,
                                      max_baseline_days=args.max_baseline, previews=False)
    sels["all"] = select_pairs(cat, "all", max_baseline_days=args.max_baseline, previews=False)
    for s in range(5):
        sels["random_%d" % s] = select_pairs(cat, "random", budget_pairs_per_date=args.per_date,
                                             max_baseline_days=args.max_baseline,
                                             previews=False, seed=s)
    sels["seasonal"] = select_pairs(cat, "seasonal", budget_pairs_per_date=args.per_date,
                                    max_baseline_days=args.max_baseline, previews=True,
                                    seed=args.seed, seasonal_window_days=30)
    opt = sels["optimal"]
    print(opt.report())

    # ---- correlate every pair needed once
    needed = sorted({(p.i, p.j) for s in sels.values() for p in s.selected})
    H, W = images[0].shape
    fields, ptime = {}, {}
    cached = {}
    if args.reuse and os.path.exists(cache_path):
        z = np.load(cache_path)
        for key in z.files:
            if key.startswith("dx_"):
                ij = tuple(int(v) for v in key[3:].split("_"))
                cached[ij] = key[3:]
        print("reusing %d cached correlations from %s" % (len(cached), cache_path))

    class _F:
        pass
    t0 = time.perf_counter()
    for k, (i, j) in enumerate(needed):
        if (i, j) in cached:
            f = _F()
            tag = cached[(i, j)]
            f.dx, f.dy, f.ncc, f.snr, f.status = (z["%s_%s" % (b, tag)] for b in
                                                  ("dx", "dy", "ncc", "snr", "status"))
            f.rows, f.cols = z["rows"], z["cols"]
            fields[(i, j)] = f
            ptime[(i, j)] = float(z["t_%s" % tag])
            continue
        t1 = time.perf_counter()
        r = correlate(images[i], images[j], window=window, step=step, search=search)
        ptime[(i, j)] = time.perf_counter() - t1
        fields[(i, j)] = r
        if (k + 1) % 100 == 0:
            print("  correlated %d/%d pairs (%.0f s)" % (k + 1, len(needed),
                                                        time.perf_counter() - t0))
            sys.stdout.flush()
    rows, cols = fields[needed[0]].rows, fields[needed[0]].cols
    if not cached or any(q not in cached for q in needed):
        save = {"rows": rows, "cols": cols}
        for (i, j), f in fields.items():
            for b in ("dx", "dy", "ncc", "snr", "status"):
                save["%s_%d_%d" % (b, i, j)] = getattr(f, b)
            save["t_%d_%d" % (i, j)] = np.array(ptime[(i, j)])
        os.makedirs(args.out, exist_ok=True)
        np.savez(cache_path, **save)
    px = stack.pixel_size
    # truth at the window centres: point values, and averaged over the correlation window
    # (the resolution every strategy measures at; the pairing cannot change it)
    from scipy.ndimage import uniform_filter
    te = stack.east_m[:, rows][:, :, cols]
    tn = stack.north_m[:, rows][:, :, cols]
    tew = np.stack([uniform_filter(a, window, mode="nearest") for a in stack.east_m])[:, rows][:, :, cols]
    tnw = np.stack([uniform_filter(a, window, mode="nearest") for a in stack.north_m])[:, rows][:, :, cols]
    lab = stack.landslide_labels[np.ix_(rows, cols)]
    slide_mask = lab > 0
    stable = lab == 0

    def evaluate(sel):
        prs = [(p.i, p.j) for p in sel.selected]
        if not prs:
            return float("nan"), 0.0, float("nan")
        e = np.stack([fields[q].dx * px for q in prs])
        nn = np.stack([-fields[q].dy * px for q in prs])
        res = invert_network(e, nn, [stack.dates[i] for i, _ in prs],
                             [stack.dates[j] for _, j in prs],
                             ncc=np.stack([fields[q].ncc for q in prs]),
                             snr=np.stack([fields[q].snr for q in prs]),
                             status=np.stack([fields[q].status for q in prs]),
                             dates=list(stack.dates), lam=lam)
        ce, cn = res.cum_east.copy(), res.cum_north.copy()
        for t in range(n):
            ce[t] -= np.nanmedian(ce[t][stable])
            cn[t] -= np.nanmedian(cn[t][stable])
        err = np.concatenate([(ce - te)[:, slide_mask].ravel(), (cn - tn)[:, slide_mask].ravel()])
        errw = np.concatenate([(ce - tew)[:, slide_mask].ravel(),
                               (cn - tnw)[:, slide_mask].ravel()])
        cover = float(np.isfinite(err).mean())
        return float(np.sqrt(np.nanmean(errw ** 2))), cover, float(np.sqrt(np.nanmean(err ** 2)))

    results = {}
    for name, sel in sels.items():
        rmse, cover, rmse_pt = evaluate(sel)
        ct = sum(ptime[(p.i, p.j)] for p in sel.selected)
        summ = network_summary(sel)
        results[name] = dict(rmse=rmse, rmse_pt=rmse_pt, cover=cover, n=len(sel.selected), corr_s=ct,
                             comps=summ["n_components"], isolated=len(summ["isolated_dates"]))
    rnd = [results["random_%d" % s]["rmse"] for s in range(5)]
    rnd_n = [results["random_%d" % s]["n"] for s in range(5)]
    rnd_t = [results["random_%d" % s]["corr_s"] for s in range(5)]

    print()
    print("| strategy | pairs | RMSE (m) vs window-averaged truth | RMSE (m) vs point truth | "
          "coverage | components | dates without pair | correlation time (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in ("optimal", "seasonal", "sequential", "all"):
        r = results[name]
        print("| %s | %d | %.3f | %.3f | %.3f | %d | %d | %.1f |" % (
            name, r["n"], r["rmse"], r["rmse_pt"], r["cover"], r["comps"], r["isolated"],
            r["corr_s"]))
    print("| random (mean of 5 seeds) | %.0f | %.3f (%s) | %.3f | | | | %.1f |" % (
        np.mean(rnd_n), np.mean(rnd), ", ".join("%.3f" % v for v in rnd),
        np.mean([results["random_%d" % s]["rmse_pt"] for s in range(5)]), np.mean(rnd_t)))
    o = results["optimal"]
    prev = opt.timings.get("previews_s", 0.0) + opt.timings.get("model_s", 0.0)
    print()
    print("optimal vs sequential: %.1f %% lower RMSE (target >= 25 %%)" % (
        100 * (1 - o["rmse"] / results["sequential"]["rmse"])))
    print("optimal vs random (mean of 5): %.1f %% lower RMSE (target >= 25 %%)" % (
        100 * (1 - o["rmse"] / np.mean(rnd))))
    print("optimal vs random (median of 5, for information): %.1f %% lower RMSE" % (
        100 * (1 - o["rmse"] / np.median(rnd))))
    print("optimal vs all: RMSE ratio %.3f (target <= 1.10) with %d/%d = %.1f %% of the pairs "
          "(target <= 25 %%); correlation time %.1f s vs %.1f s" % (
              o["rmse"] / results["all"]["rmse"], o["n"], results["all"]["n"],
              100.0 * o["n"] / results["all"]["n"], o["corr_s"], results["all"]["corr_s"]))
    print("previews + model: %.2f s (%d previews; selection %.2f s; whole select_pairs call "
          "%.2f s) = %.1f %% of correlating the selected pairs (%.1f s) (target <= 10 %%)" % (
              prev, sum(1 for p in opt.pairs if p.preview is not None),
              opt.timings.get("selection_s", 0.0), t_opt, 100 * prev / o["corr_s"], o["corr_s"]))
    print("predicted per-pair cost %.2f s, measured mean %.2f s" % (
        opt.timings.get("pair_cost_estimate_s", float("nan")),
        np.mean(list(ptime.values()))))
    full = stack.fully_clouded
    print("fully clouded date(s) %s excluded by optimal: %s" % (
        [stack.dates[k] for k in full], opt.excluded_dates))
    return results


if __name__ == "__main__":
    main()
