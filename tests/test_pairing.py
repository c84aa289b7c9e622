"""Pair candidates, previews, quality model and selection strategies (core.pairing)."""

import datetime as dt
import json
import os

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from scipy.ndimage import gaussian_filter

from slidewatch.core.stack.catalog import build_catalog
from slidewatch.core.errors import InputError, ParameterError
from slidewatch.core.network.pairing import (PAIRS_COLUMNS, candidate_pairs, connected_components,
                                             network_summary, read_pairs_csv, select_pairs,
                                             write_network_summary, write_pairs_csv)

SHAPE = (80, 80)
FAST = dict(preview_factor=1, preview_search=3)     # tiny images: no down-sampling


def _ground(seed=0):
    rng = np.random.default_rng(seed)
    a = gaussian_filter(rng.normal(size=SHAPE), 1.5) + 0.5 * gaussian_filter(
        rng.normal(size=SHAPE), 4.0)
    return (a - a.min()) / (a.max() - a.min())


def _make_stack(folder, dates, clouded=(), seed=0, tags=None):
    """Plain GeoTIFFs named img_YYYYMMDD.tif; ``clouded`` dates are fully covered by a
    bright cloud texture unrelated to the ground. No masks, no cloud tags."""
    os.makedirs(folder, exist_ok=True)
    ground = _ground(seed)
    rng = np.random.default_rng(seed + 1)
    for k, d in enumerate(dates):
        img = 1000 + 3000 * ground + rng.normal(0, 15, SHAPE)
        if d in clouded:
            cloud = gaussian_filter(rng.normal(size=SHAPE), 3.0)
            img = 7000 + 800 * cloud / cloud.std() + rng.normal(0, 15, SHAPE)
        with rasterio.open(os.path.join(folder, "img_%s.tif" % d.replace("-", "")), "w",
                           driver="GTiff", width=SHAPE[1], height=SHAPE[0], count=1,
                           dtype="uint16", crs="EPSG:32632",
                           transform=from_origin(300000, 5000000, 10, 10)) as dst:
            dst.write(np.clip(img, 1, 65535).astype(np.uint16), 1)
            if tags:
                dst.update_tags(**tags(d))
    return build_catalog(folder, use_cloud_metadata=False, estimate_clouds=False)


def _dates(n, start="2019-01-01", every=5):
    d0 = dt.date.fromisoformat(start)
    return [(d0 + dt.timedelta(days=every * k)).isoformat() for k in range(n)]


def _laplacian_trace(n, edges):
    L = np.zeros((n, n))
    for i, j in edges:
        L[i, i] += 1
        L[j, j] += 1
        L[i, j] -= 1
        L[j, i] -= 1
    return float(np.trace(np.linalg.inv(L + np.ones((n, n)) / n)))


def test_candidates_baselines_and_seasonal_windows(tmp_path):
    dates = ["2019-01-01", "2019-01-11", "2019-06-01", "2020-01-05", "2020-02-15"]
    cat = _make_stack(str(tmp_path / "s"), dates)
    pairs = candidate_pairs(cat, min_baseline_days=5, max_baseline_days=200)
    by = {(p.reference_date, p.secondary_date): p for p in pairs}
    assert by[("2019-01-01", "2019-01-11")].in_range
    p = by[("2019-01-01", "2020-01-05")]
    assert not p.in_range and p.reason == "rejected: baseline 369 d > max 200 d"
    seas = candidate_pairs(cat, 5, 200, seasonal_window_days=15)
    by2 = {(p.reference_date, p.secondary_date): p for p in seas}
    assert by2[("2019-01-01", "2020-01-05")].in_range          # anniversary pair (369 d)
    assert not by2[("2019-01-11", "2020-02-15")].in_range       # 400 d: 35 d off the year
    with pytest.raises(ParameterError):
        candidate_pairs(cat, 10, 5)


def test_budget_respected_by_every_strategy(tmp_path):
    cat = _make_stack(str(tmp_path / "s"), _dates(16))
    for strategy in ("optimal", "sequential", "seasonal", "random"):
        for kw, limit in ((dict(budget_pairs_per_date=1.5), 24), (dict(budget_pairs=10,
                                                                       budget_pairs_per_date=None), 10)):
            sel = select_pairs(cat, strategy, previews=False, max_baseline_days=40, **kw)
            assert len(sel.selected) <= limit, (strategy, kw)
            assert len(sel.selected) == limit, (strategy, kw)   # enough candidates to fill it
            assert all(p.in_range for p in sel.selected)
    allp = select_pairs(cat, "all", previews=False, max_baseline_days=40)
    assert len(allp.selected) == sum(p.in_range for p in allp.pairs)
    # CPU-time budget: seconds / cost per pair
    cpu = select_pairs(cat, "optimal", previews=False, budget_pairs_per_date=None,
                       budget_cpu_s=21.0, pair_cost_s=2.0, max_baseline_days=40)
    assert len(cpu.selected) == 10
    # without a cost per pair, it is measured on a crop of one full-resolution pair
    probe = select_pairs(cat, "optimal", previews=False, budget_pairs_per_date=None,
                         budget_cpu_s=0.05, max_baseline_days=40)
    cost = probe.timings["pair_cost_estimate_s"]
    assert np.isfinite(cost) and cost > 0
    assert len(probe.selected) == min(int(0.05 // cost), 24 * 10)
    with pytest.raises(ParameterError, match="strategy"):
        select_pairs(cat, "best", previews=False)


def test_optimal_design_beats_sequential_on_its_criterion(tmp_path):
    n = 20
    cat = _make_stack(str(tmp_path / "s"), _dates(n))
    opt = select_pairs(cat, "optimal", previews=False, budget_pairs_per_date=2,
                       max_baseline_days=60, criterion="A")
    seq = select_pairs(cat, "sequential", previews=False, budget_pairs_per_date=2,
                       max_baseline_days=60)
    assert len(opt.selected) == len(seq.selected) == 40
    t_opt = _laplacian_trace(n, opt.selected_index_pairs())
    t_seq = _laplacian_trace(n, seq.selected_index_pairs())
    assert t_opt < 0.8 * t_seq          # mean variance of the series clearly lower
    assert all(p.reason.startswith("selected: ") for p in opt.selected)
    assert any("A-optimal gain" in p.reason for p in opt.selected)
    assert any(p.reason.startswith("rejected: budget reached") for p in opt.pairs)
    d = select_pairs(cat, "optimal", previews=False, budget_pairs_per_date=2,
                     max_baseline_days=60, criterion="D")
    assert any("D-optimal gain" in p.reason for p in d.selected)


def test_fully_clouded_date_excluded_without_any_mask(tmp_path):
    dates = _dates(12)
    cloudy = dates[5]
    cat = _make_stack(str(tmp_path / "s"), dates, clouded={cloudy})
    assert all(not np.isfinite(r.cloud_fraction) for r in cat)     # nothing known about clouds
    sel = select_pairs(cat, "optimal", budget_pairs_per_date=2, max_baseline_days=30, **FAST)
    assert sel.excluded_dates == [cloudy]
    assert not [p for p in sel.selected if cloudy in (p.reference_date, p.secondary_date)]
    rej = [p for p in sel.pairs if p.in_range and cloudy in (p.reference_date, p.secondary_date)]
    assert rej and all(p.reason.startswith("rejected: predicted quality") for p in rej)
    assert any("poor in its previews" in p.reason for p in rej)
    # clean pairs are predicted good, including pairs never previewed
    clean = [p for p in sel.pairs if p.in_range and p not in rej]
    assert min(p.predicted_quality for p in clean) > 3 * max(p.predicted_quality for p in rej)
    assert any(p.preview is None for p in clean)
    summ = network_summary(sel)
    assert summ["n_components"] == 1 and summ["isolated_dates"] == [cloudy]
    assert any(cloudy in line and "excluded" in line for line in sel.problems + sel.notes)
    # every other date has at least min_pairs_per_date pairs
    per = {row["date"]: row["n_pairs"] for row in summ["dates"]}
    assert all(v >= 2 for d, v in per.items() if d != cloudy)


def test_clouded_dates_never_fill_the_budget(tmp_path):
    """Issue 14: 40 % of the dates fully clouded, no masks, no metadata, a generous budget.
    The budget is a ceiling: no pair of a clouded date is selected to fill it, every clear
    date is used, and the log names the excluded dates with their clear factor."""
    dates = _dates(20)
    cloudy = set(dates[k] for k in (2, 3, 6, 9, 10, 11, 15, 18))
    cat = _make_stack(str(tmp_path / "s"), dates, clouded=cloudy)
    sel = select_pairs(cat, "optimal", budget_pairs_per_date=3, max_baseline_days=40, **FAST)
    touch = [p for p in sel.selected if {p.reference_date, p.secondary_date} & cloudy]
    assert len(touch) <= 0.05 * len(sel.selected), [p.key for p in touch]
    used = {d for p in sel.selected for d in (p.reference_date, p.secondary_date)}
    assert used >= set(dates) - cloudy
    assert sorted(sel.excluded_dates) == sorted(cloudy)
    for d in cloudy:
        assert any(d in line and "clear factor" in line for line in sel.notes), d
    assert not any("clear factor" in line for line in sel.problems)
    rej = [p for p in sel.pairs if p.in_range and {p.reference_date, p.secondary_date} & cloudy]
    assert all(p.reason.startswith("rejected: ") for p in rej)
    assert len(sel.selected) < 3 * len(dates)        # a ceiling, not a quota
    # min_clear_factor=0 turns the rule off; a bad value is refused
    off = select_pairs(cat, "optimal", budget_pairs_per_date=3, max_baseline_days=40,
                       min_clear_factor=0, **FAST)
    assert not any("unusable" in p.reason for p in off.pairs)
    with pytest.raises(ParameterError, match="min_clear_factor"):
        select_pairs(cat, "optimal", previews=False, min_clear_factor=1.5)


def test_max_velocity_extends_the_reach_of_long_pairs(tmp_path):
    """A fast expected motion rejects long pairs at a fixed search; with the correlation's
    fast-motion setting their reach grows with the baseline and they stay usable."""
    cat = _make_stack(str(tmp_path / "s"), _dates(8, every=10))
    kw = dict(previews=False, max_baseline_days=70, expected_velocity_m_per_yr=3650.0)
    fixed = select_pairs(cat, "optimal", **kw)           # 10 m/day = 1 px/day at 10 m
    too_far = [p for p in fixed.pairs if p.reason.startswith("rejected: expected motion")]
    assert too_far and all(p.baseline_days > 8 for p in too_far)
    fast = select_pairs(cat, "optimal", max_velocity_m_per_day=15.0, **kw)
    assert not any(p.reason.startswith("rejected: expected motion") for p in fast.pairs)
    assert fast.selected


def test_connectivity_with_a_month_of_clouds(tmp_path):
    dates = _dates(22)
    month = dates[8:15]                         # 7 consecutive dates = 30 days under clouds
    cat = _make_stack(str(tmp_path / "s"), dates, clouded=set(month))
    sel = select_pairs(cat, "optimal", budget_pairs_per_date=1.2, min_pairs_per_date=2,
                       max_baseline_days=45, **FAST)
    assert len(sel.selected) <= round(1.2 * 22)
    assert sorted(sel.excluded_dates) == month
    clear = [k for k, d in enumerate(dates) if d not in month]
    comps = connected_components(len(dates), sel.selected_index_pairs())
    big = max(comps, key=len)
    assert set(clear) <= set(big), "clear dates must form one network across the cloudy month"
    bridges = [p for p in sel.selected if p.reference_date < month[0] and
               p.secondary_date > month[-1]]
    assert bridges, "a pair must bridge the cloudy month"
    assert any(p.reason.startswith("selected: bridge") for p in sel.selected)
    # the classic sequential network with the same budget is broken by the cloudy month:
    # its pairs over the gap go through clouded dates
    seq = select_pairs(cat, "sequential", budget_pairs_per_date=1.2, max_baseline_days=45,
                       previews=False)
    seq_bad = [p for p in seq.selected if p.reference_date in month or p.secondary_date in month]
    assert seq_bad


def test_determinism_with_seed(tmp_path):
    cat = _make_stack(str(tmp_path / "s"), _dates(14), clouded={_dates(14)[4]})
    a = select_pairs(cat, "optimal", budget_pairs_per_date=2, max_baseline_days=40, seed=3,
                     preview_sample=10, **FAST)
    b = select_pairs(cat, "optimal", budget_pairs_per_date=2, max_baseline_days=40, seed=3,
                     preview_sample=10, **FAST)
    assert [(p.key, p.selected, p.reason) for p in a.pairs] == \
        [(p.key, p.selected, p.reason) for p in b.pairs]
    assert [p.key for p in a.pairs if p.preview] == [p.key for p in b.pairs if p.preview]
    r0 = select_pairs(cat, "random", previews=False, seed=0, max_baseline_days=40)
    r0b = select_pairs(cat, "random", previews=False, seed=0, max_baseline_days=40)
    r1 = select_pairs(cat, "random", previews=False, seed=1, max_baseline_days=40)
    assert r0.selected_index_pairs() == r0b.selected_index_pairs()
    assert r0.selected_index_pairs() != r1.selected_index_pairs()


def test_pairs_csv_roundtrip_reasons_and_strict_reading(tmp_path):
    cat = _make_stack(str(tmp_path / "s"), _dates(10), clouded={_dates(10)[3]})
    sel = select_pairs(cat, "optimal", budget_pairs_per_date=2, max_baseline_days=20, **FAST)
    path = tmp_path / "out" / "pairs.csv"
    write_pairs_csv(sel, str(path))
    lines = path.read_text().splitlines()
    assert tuple(lines[0].split(",")[:8]) == PAIRS_COLUMNS
    back = read_pairs_csv(str(path))
    assert not back.problems
    assert [p.key for p in back.selected] == [p.key for p in sel.selected]
    assert all(p.reason.split(":")[0] in ("selected", "rejected") for p in back.pairs)
    assert any(p.reason.startswith("rejected: baseline") for p in back.pairs)
    assert back.pairs[0].reference_path == sel.pairs[0].reference_path
    # damaged rows (strict contract of core/network/pairs_file.py, the same for every reader):
    # an InputError listing every bad row with its line number, nothing skipped silently
    lines.insert(3, "2019-13-01,2019-01-06,a,b,5,0.5,1,x")
    lines.insert(5, "2019-01-06,2019-01-01,a,b,5,0.5,1,x")
    lines.insert(7, "2019-01-01,2019-01-06,a,b,5,0.5,maybe,x")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as info:
        read_pairs_csv(str(path))
    msg = str(info.value)
    assert str(path) in msg and "3 bad row(s)" in msg
    assert "line 4: reference_date '2019-13-01' is not a date" in msg
    assert "line 6: secondary_date '2019-01-01' is not after" in msg
    assert "line 8: selected must be 1 or 0 (or true/false), not 'maybe'" in msg
    # summary files
    summ = network_summary(sel)
    write_network_summary(summ, str(tmp_path / "out" / "network.json"),
                          str(tmp_path / "out" / "network_dates.csv"))
    js = json.loads((tmp_path / "out" / "network.json").read_text())
    assert js["n_selected"] == len(sel.selected) and len(js["dates"]) == 10
    assert (tmp_path / "out" / "network_dates.csv").read_text().startswith("date,n_pairs")
    assert network_summary(back, dates=sel.dates)["n_selected"] == len(sel.selected)


def test_history_of_full_results_trains_the_model(tmp_path):
    from slidewatch.core.raster_io import write_bands
    dates = _dates(8)
    cat = _make_stack(str(tmp_path / "s"), dates)
    out = tmp_path / "run"
    rng = np.random.default_rng(0)
    good = rng.normal(0, 0.5, (9, 9)).astype(np.float32)
    for k, (a, b) in enumerate([(0, 1), (1, 2), (2, 3)]):
        east = good if k < 2 else rng.uniform(-80, 80, (9, 9)).astype(np.float32)
        ncc = np.full((9, 9), 0.9 if k < 2 else 0.2, np.float32)
        write_bands(str(out / "pairs" / ("pair_%s_%s.tif" % (
            dates[a].replace("-", ""), dates[b].replace("-", "")))),
            [east, east * 0, ncc, ncc * 5, np.zeros((9, 9), np.float32)],
            from_origin(300000, 5000000, 80, 80), "EPSG:32632",
            ["east_m", "north_m", "ncc", "snr", "status"], tags={"SLIDEWATCH_PARAMS":
                                                                  json.dumps({"step": 8})})
    sel = select_pairs(cat, "optimal", budget_pairs_per_date=2, max_baseline_days=20,
                       history_folder=str(out), **FAST)
    rows = (out / "quality_training.csv").read_text().splitlines()
    assert rows[0].startswith("reference_date,secondary_date,source,quality")
    full = [r for r in rows[1:] if ",full," in r]
    assert len(full) == 3
    q = {r.split(",")[1]: float(r.split(",")[3]) for r in full}
    assert q[dates[1]] > 0.8 and q[dates[3]] < 0.2
    n_prev = sum(1 for r in rows[1:] if ",preview," in r)
    assert n_prev == sum(1 for p in sel.pairs if p.preview is not None)
    assert sel.model is not None and sel.model.n_train == len(rows) - 1


def test_processing_algorithms_catalog_and_select_pairs(tmp_path):
    from qgis.core import QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback

    from slidewatch.processing_provider.alg_catalog import CatalogAlgorithm
    from slidewatch.processing_provider.alg_pairing import SelectPairsAlgorithm

    dates = _dates(10)
    _make_stack(str(tmp_path / "imgs"), dates, clouded={dates[4]})
    (tmp_path / "imgs" / "notes.tif").write_bytes(b"not a raster")     # undatable junk
    cat_alg = CatalogAlgorithm()
    cat_alg.initAlgorithm()
    assert cat_alg.name() == "catalog"
    for alg in (cat_alg, SelectPairsAlgorithm()):
        alg.initAlgorithm()
        for p in alg.parameterDefinitions():
            if p.name() != "OUTPUT_FOLDER":
                assert p.description().split(" (")[0] in alg.HELP, (alg.name(), p.name())
    out = str(tmp_path / "out")
    res = cat_alg.processAlgorithm({"INPUT": str(tmp_path / "imgs"), "BAND": "",
                                    "DUPLICATES": 0, "USE_CLOUD_METADATA": True,
                                    "COMMON_GRID": 0, "OUTPUT_FOLDER": out},
                                   QgsProcessingContext(), QgsProcessingFeedback())
    assert res["N_IMAGES"] == 10 and res["N_PROBLEMS"] == 1
    assert os.path.exists(res["CATALOG"])
    alg = SelectPairsAlgorithm()
    alg.initAlgorithm()
    assert alg.name() == "select_pairs"
    params = {"CATALOG": res["CATALOG"], "STRATEGY": 0, "PAIRS_PER_DATE": 2.0, "MAX_PAIRS": 0,
              "CPU_BUDGET_S": 0.0, "MIN_PAIRS_PER_DATE": 2, "MIN_BASELINE_DAYS": 1,
              "MAX_BASELINE_DAYS": 20, "SEASONAL_WINDOW_DAYS": 0, "PREVIEWS": True,
              "PREVIEW_SAMPLE": 0, "EXPECTED_VELOCITY": 0.0, "WINDOW": 32, "STEP": 8,
              "SEARCH": 8, "CRITERION": 1, "SEED": 0, "OUTPUT_FOLDER": out}
    r = alg.processAlgorithm(params, QgsProcessingContext(), QgsProcessingFeedback())
    assert 0 < r["N_SELECTED"] <= 20
    table = read_pairs_csv(r["PAIRS"])
    assert not any(dates[4] in (p.reference_date, p.secondary_date) for p in table.selected)
    summ = json.loads(open(r["SUMMARY"]).read())
    assert summ["excluded_dates"] == [dates[4]] and summ["n_components"] == 1
    assert os.path.exists(os.path.join(out, "network_dates.csv"))
    assert os.path.exists(os.path.join(out, "quality_training.csv"))
    params["MIN_BASELINE_DAYS"], params["MAX_BASELINE_DAYS"] = 300, 400
    with pytest.raises(QgsProcessingException, match="baseline"):
        alg.processAlgorithm(params, QgsProcessingContext(), QgsProcessingFeedback())


def test_previews_match_correlate_per_pair_and_restore_threads(tmp_path):
    """The preview driver reads/filters each date once and calls the kernel on prepared
    images, single-threaded: the fields must equal correlate() on every pair, and the
    caller's numba thread count must be restored."""
    import numba
    from slidewatch.core.stack.catalog import load_image
    from slidewatch.core.matching.correlation import correlate
    from slidewatch.core.network.pairing import _block_mean, _run_previews, preview_pairs
    from slidewatch.core.progress import as_progress
    from slidewatch.core.network.quality_model import field_quality
    dates = _dates(6)
    cat = _make_stack(str(tmp_path / "s"), dates, clouded={dates[2]})
    pairs = candidate_pairs(cat, 1, 30)
    idx = preview_pairs(pairs, len(dates), 8, np.random.default_rng(0))
    before = numba.get_num_threads()
    res, n_win, _ = _run_previews(cat, pairs, idx, 2, 16, 8, 3, 0.5, as_progress(None))
    assert numba.get_num_threads() == before
    assert sorted(res) == sorted(idx) and n_win > 0
    imgs = {d: _block_mean(load_image(r), 2) for d, r in enumerate(cat.records)}
    m = 16 // 2 + 3 + 1
    grid = np.arange(m, 40 - m + 1, 8)
    for pk in idx:
        p = pairs[pk]
        r = correlate(imgs[p.i], imgs[p.j], window=16, step=8, search=3, rows=grid,
                      cols=grid, subpixel="parabola")
        q = field_quality(r.dx, r.dy, r.ncc, r.status, ncc_min=0.5)
        assert res[pk]["quality"] == q["quality"]
        assert res[pk]["good_fraction"] == q["good_fraction"]
        assert res[pk]["coherence"] == q["coherence"]
    clouded = [pk for pk in idx if 2 in (pairs[pk].i, pairs[pk].j)]
    clear = [pk for pk in idx if 2 not in (pairs[pk].i, pairs[pk].j)]
    assert clouded and clear
    assert max(res[pk]["quality"] for pk in clouded) < min(res[pk]["quality"] for pk in clear)


def test_coherence_and_block_fractions_match_their_definitions():
    """Vectorised 3x3 NaN-median coherence and block fractions against the plain
    definitions (np.nanmedian of the good neighbours; np.array_split blocks)."""
    import warnings
    from slidewatch.core.network.pairing import _block_fractions
    from slidewatch.core.network.quality_model import _coherent
    rng = np.random.default_rng(5)
    for t in range(200):
        H, W = (int(v) for v in rng.integers(1, 12, 2))
        dx = np.round(rng.normal(0, 1, (H, W)) * 2) / 2          # ties and even counts
        dy = rng.normal(0, 0.7, (H, W))
        dx[rng.random((H, W)) < 0.1] = np.nan
        good = (rng.random((H, W)) < 0.7) & np.isfinite(dx)
        px = np.pad(np.where(good, dx, np.nan), 1, constant_values=np.nan)
        py = np.pad(np.where(good, dy, np.nan), 1, constant_values=np.nan)
        nb = [(r, c) for r in (-1, 0, 1) for c in (-1, 0, 1) if (r, c) != (0, 0)]
        sx = np.stack([px[1 + r:1 + r + H, 1 + c:1 + c + W] for r, c in nb])
        sy = np.stack([py[1 + r:1 + r + H, 1 + c:1 + c + W] for r, c in nb])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mx, my = np.nanmedian(sx, axis=0), np.nanmedian(sy, axis=0)
        with np.errstate(invalid="ignore"):
            want = good & (np.isfinite(sx).sum(axis=0) >= 1) & (
                np.hypot(dx - mx, dy - my) <= 1.0)
        assert np.array_equal(_coherent(dx, dy, good, 1.0), want), t
        mask = rng.random((H, W)) < 0.5
        for blocks in (1, 3, 4):
            ref = [float(mask[np.ix_(rs, cs)].mean()) if len(rs) and len(cs) else 0.0
                   for rs in np.array_split(np.arange(H), blocks)
                   for cs in np.array_split(np.arange(W), blocks)]
            assert np.array_equal(_block_fractions(mask, blocks), np.array(ref)), (t, blocks)
