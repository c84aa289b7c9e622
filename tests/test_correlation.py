"""Tests of the correlation core (core/correlation.py, correlation_kernels.py, prefilters.py)."""

import os

import numpy as np
import pytest
from scipy import ndimage

from slidewatch.core.matching import correlation as C
from slidewatch.core.matching.correlation import correlate
from slidewatch.core.errors import InputError, ParameterError
from slidewatch.core.matching.prefilters import apply_prefilter, halo

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "shared", "data", "s2_pair_no_motion")
REF = os.path.join(DATA, "ref_S2A_20160608T153121_T33UUU_sub.jp2")


def fourier_shift(img, dy, dx):
    """Exact band-limited shift: content moves by (+dy, +dx)."""
    f = np.fft.fft2(img)
    ky = np.fft.fftfreq(img.shape[0])[:, None]
    kx = np.fft.fftfreq(img.shape[1])[None, :]
    return np.real(np.fft.ifft2(f * np.exp(-2j * np.pi * (ky * dy + kx * dx))))


def smooth_texture(shape, seed=0, sigma=1.2):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.normal(size=shape), sigma) * 300 + 1000


def shifted_pair(base, dy, dx, noise=0.0, margin=32, seed=1):
    sh = fourier_shift(base, dy, dx)
    sl = (slice(margin, -margin), slice(margin, -margin))
    ref, sec = base[sl].copy(), sh[sl].copy()
    if noise:
        rng = np.random.default_rng(seed)
        sd = ref.std()
        ref += rng.normal(0, noise * sd, ref.shape)
        sec += rng.normal(0, noise * sd, sec.shape)
    return ref, sec


def valid_fraction(res):
    """Fraction of valid estimates among windows lying inside the image."""
    inside = res.status != C.STATUS_OUTSIDE
    return np.mean(res.status[inside] == C.STATUS_VALID)


@pytest.fixture(scope="module")
def real_texture():
    if not os.path.exists(REF):
        pytest.skip("real Sentinel-2 test data not available")
    import rasterio
    with rasterio.open(REF) as src:
        a = src.read(1, window=rasterio.windows.Window(1000, 1000, 224, 224))
    a = a.astype(np.float64)
    assert (a > 0).all()
    return a


@pytest.mark.parametrize("dy,dx", [(0.3, -1.27), (-2.5, 0.75), (0.0, 0.0), (1.0, -3.0)])
def test_known_shift_synthetic(dy, dx):
    ref, sec = shifted_pair(smooth_texture((192, 192)), dy, dx, noise=0.01)
    res = correlate(ref, sec, window=32, step=16, search=6)
    ok = res.status == C.STATUS_VALID
    assert valid_fraction(res) > 0.9
    assert np.abs(res.dx[ok] - dx).max() < 0.05
    assert np.abs(res.dy[ok] - dy).max() < 0.05
    assert abs(np.mean(res.dx[ok] - dx)) < 0.01 and abs(np.mean(res.dy[ok] - dy)) < 0.01


def test_known_shift_real_texture(real_texture):
    dy, dx = -0.43, 1.21
    ref, sec = shifted_pair(real_texture, dy, dx, noise=0.01)
    res = correlate(ref, sec, window=32, step=12, search=5)
    ok = res.status == 0
    assert valid_fraction(res) > 0.9
    err = np.hypot(res.dx[ok] - dx, res.dy[ok] - dy)
    assert np.sqrt(np.mean(err ** 2)) < 0.03
    assert err.max() < 0.05


def test_parabola_and_integer_modes(real_texture):
    ref, sec = shifted_pair(real_texture, 0.25, -0.4)
    it = correlate(ref, sec, 32, 16, 4)
    pa = correlate(ref, sec, 32, 16, 4, subpixel="parabola")
    no = correlate(ref, sec, 32, 16, 4, subpixel="none")
    ok = (it.status == 0) & (pa.status == 0) & (no.status == 0)
    assert set(np.unique(no.dx[ok])) <= {0.0, -1.0}
    rmse = lambda r: np.sqrt(np.mean((r.dx[ok] + 0.4) ** 2 + (r.dy[ok] - 0.25) ** 2))
    assert rmse(it) < 0.03 < rmse(pa) < rmse(no)


def test_identical_inputs_exact_zero():
    img = smooth_texture((128, 128), seed=3)
    res = correlate(img, img.copy(), 24, 8, 4)
    ok = res.status == 0
    assert ok.sum() > 50
    assert np.all(res.dx[ok] == 0.0) and np.all(res.dy[ok] == 0.0)
    assert np.allclose(res.ncc[ok], 1.0)


def test_constant_windows_are_flat_not_zero():
    img = np.full((96, 96), 7.0)
    res = correlate(img, img, 16, 8, 4)
    inside = res.status != C.STATUS_OUTSIDE
    assert inside.any()
    assert np.all(res.status[inside] == C.STATUS_FLAT)
    assert np.all(np.isnan(res.dx)) and np.all(np.isnan(res.dy))


def test_flat_secondary_region():
    ref = smooth_texture((96, 96), seed=4)
    sec = ref.copy()
    sec[:, 48:] = 5.0
    # raw intensities: with the default high-pass the edge spreads into the flat part
    res = correlate(ref, sec, 16, 8, 3, prefilter="none")
    cols = res.cols
    right = cols - 8 - 3 >= 48
    st = res.status[:, right]
    assert np.all(st[st != C.STATUS_OUTSIDE] == C.STATUS_FLAT)


def test_nodata_windows_get_status():
    ref = smooth_texture((128, 128), seed=5)
    sec = fourier_shift(ref, 0.2, 0.3)
    ref[:64, :] = np.nan
    res = correlate(ref, sec, 16, 8, 3)
    top = res.rows + 8 <= 60
    st = res.status[top]
    assert np.all(np.isin(st, [C.STATUS_NODATA, C.STATUS_OUTSIDE]))
    assert np.all(np.isnan(res.dx[top]))
    bottom = res.rows - 8 - 4 > 64
    inner = res.status[bottom] == 0
    assert inner.mean() > 0.5
    assert np.abs(res.dx[bottom][inner] - 0.3).max() < 0.05


def test_few_invalid_pixels_masked_path_accurate():
    base = smooth_texture((160, 160), seed=6)
    ref, sec = shifted_pair(base, -0.35, 0.6, margin=16)
    # small contiguous gaps (masked cloud pixels): windows touching them use the masked path
    for r, c in [(20, 30), (70, 90), (100, 40), (60, 20)]:
        ref[r:r + 3, c:c + 4] = np.nan
        sec[r + 10:r + 12, c + 5:c + 8] = np.nan
    res = correlate(ref, sec, 32, 16, 4)
    ok = res.status == 0
    assert valid_fraction(res) > 0.7
    assert np.abs(res.dx[ok] - 0.6).max() < 0.05
    assert np.abs(res.dy[ok] + 0.35).max() < 0.05


def test_peak_on_border_when_shift_exceeds_search():
    ref, sec = shifted_pair(smooth_texture((160, 160), seed=7), 0.0, 6.0)
    res = correlate(ref, sec, 32, 16, 3, prefilter="none")
    inside = res.status != C.STATUS_OUTSIDE
    assert np.all(res.status[inside] != C.STATUS_VALID)
    assert np.mean(res.status[inside] == C.STATUS_PEAK_ON_BORDER) > 0.8


def test_low_ncc_on_unrelated_images():
    a = smooth_texture((128, 128), seed=8)
    b = smooth_texture((128, 128), seed=9)
    res = correlate(a, b, 32, 16, 4, min_ncc=0.5)
    inside = res.status != C.STATUS_OUTSIDE
    assert np.all(res.status[inside] != C.STATUS_VALID)
    assert np.all(np.isnan(res.dx[inside]))


def test_tiny_image_all_outside():
    a = smooth_texture((20, 20))
    res = correlate(a, a, 32, 8, 4)
    assert res.status.size > 0
    assert np.all(res.status == C.STATUS_OUTSIDE)
    assert np.all(np.isnan(res.dx)) and np.all(np.isnan(res.ncc))


def test_rectangular_and_odd_windows():
    ref, sec = shifted_pair(smooth_texture((160, 200), seed=10), 0.4, -0.7)
    for win in [(17, 41), 25]:
        res = correlate(ref, sec, window=win, step=13, search=3)
        ok = res.status == 0
        assert valid_fraction(res) > 0.5
        assert np.abs(res.dx[ok] + 0.7).max() < 0.06
        assert np.abs(res.dy[ok] - 0.4).max() < 0.06
        assert res.dx.shape == (len(res.rows), len(res.cols))


def test_edge_centres_and_explicit_centres():
    ref, sec = shifted_pair(smooth_texture((144, 144), seed=11), 0.5, 0.5, margin=8)
    assert ref.shape == (128, 128)
    res = correlate(ref, sec, 16, rows=[0, 8, 9, 60, 119, 127], cols=[0, 8, 60, 120])
    assert res.status.shape == (6, 4)
    assert res.status[0, 0] == C.STATUS_OUTSIDE and res.status[-1, -1] == C.STATUS_OUTSIDE
    # centre 8 with window 16: template fully inside, search area partly outside
    assert res.status[1, 1] in (C.STATUS_VALID, C.STATUS_PEAK_ON_BORDER)
    assert res.status[3, 2] == C.STATUS_VALID
    assert abs(res.dx[3, 2] - 0.5) < 0.05


def test_contrast_change_and_prefilters(real_texture):
    ref, sec = shifted_pair(real_texture, 0.3, 0.45, noise=0.01)
    sec = 0.8 * sec + 200.0
    for pf in ["none", "gaussian_hp", "wallis", "orientation"]:
        # raw intensities have broad NCC peaks: at search 4 the "second peak" 3-4 px away
        # is nearly as high, so the default min_snr (1.2) would reject most windows
        extra = dict(min_snr=1.0) if pf == "none" else {}
        res = correlate(ref, sec, 32, 16, 4, prefilter=pf, **extra)
        ok = res.status == 0
        assert valid_fraction(res) > 0.8, pf
        tol = 0.1 if pf == "orientation" else 0.05
        assert np.median(np.abs(res.dx[ok] - 0.45)) < tol, pf
        assert np.median(np.abs(res.dy[ok] - 0.3)) < tol, pf


def test_prefilters_are_local_and_nan_aware():
    img = smooth_texture((80, 80), seed=12)
    img[10:14, 10:14] = np.nan
    for pf in ["gaussian_hp", "wallis", "orientation"]:
        full = apply_prefilter(img, pf)
        r = halo(pf)
        part = apply_prefilter(img[30 - r:60 + r, :], pf)
        assert np.array_equal(full[:, 30:60], part[:, r:r + 30], equal_nan=True), pf
        assert np.isnan(full[0, 11, 11])
    assert apply_prefilter(img, "orientation").shape == (2, 80, 80)


def test_parameter_errors():
    a = smooth_texture((64, 64))
    with pytest.raises(ParameterError):
        correlate(a, a, window=2)
    with pytest.raises(ParameterError):
        correlate(a, a, step=0)
    with pytest.raises(ParameterError):
        correlate(a, a, search=0)
    with pytest.raises(ParameterError):
        correlate(a, a, subpixel="magic")
    with pytest.raises(ParameterError):
        correlate(a, a, prefilter="sobelish")
    with pytest.raises(ParameterError):
        correlate(a, a, bogus_option=1)
    with pytest.raises(InputError):
        correlate(a, a[:10])
    with pytest.raises(InputError):
        correlate(np.zeros((0, 5)), np.zeros((0, 5)))


def test_status_meanings_complete():
    codes = {getattr(C, n) for n in dir(C) if n.startswith("STATUS_") and
             isinstance(getattr(C, n), int)}
    assert codes == set(C.STATUS_MEANINGS)
    assert C.STATUS_VALID == 0
    assert all(isinstance(v, str) and v for v in C.STATUS_MEANINGS.values())


def test_no_pixel_locking_sweep():
    base = smooth_texture((160, 160), seed=13)
    fr = []
    truths = np.linspace(0.0, 1.0, 11)[:-1] + 0.05
    for t in truths:
        ref, sec = shifted_pair(base, 0.0, t, margin=16)
        res = correlate(ref, sec, 32, 32, 2)
        ok = res.status == 0
        fr.append(np.mean(res.dx[ok]) - t)
    assert np.max(np.abs(fr)) < 0.01


def test_default_prefilter_is_gaussian_hp_sigma1_and_accurate():
    assert C.DEFAULTS["prefilter"] == "gaussian_hp"
    ref, sec = shifted_pair(smooth_texture((160, 160), seed=11), 0.37, -0.61, noise=0.01)
    res = correlate(ref, sec, 32, 16, 4)
    assert res.params["prefilter_options"] == {"sigma": 1.0}
    ok = res.status == C.STATUS_VALID
    assert ok.sum() >= 4
    assert np.sqrt(np.mean((res.dx[ok] + 0.61) ** 2)) < 0.03
    assert np.sqrt(np.mean((res.dy[ok] - 0.37) ** 2)) < 0.03


def test_predicted_sigma_follows_the_noise():
    """``sigma``: predicted error of each refined estimate, near the actual error and
    growing with the noise; ``max_sigma`` turns windows above it into STATUS_IMPRECISE."""
    base = smooth_texture((224, 224), seed=21)
    out = {}
    for noise in (0.01, 0.05, 0.2):
        ref, sec = shifted_pair(base, 0.31, -0.67, noise=noise, seed=3)
        res = correlate(ref, sec, window=32, step=8, search=4)
        ok = res.status == C.STATUS_VALID
        assert np.isfinite(res.sigma[ok]).all() and np.isnan(res.sigma[~ok]).all()
        err = np.hypot(res.dx[ok] - -0.67, res.dy[ok] - 0.31) / np.sqrt(2)
        rms_pred = np.sqrt(np.mean(res.sigma[ok] ** 2))
        rms_err = np.sqrt(np.mean(err ** 2))
        out[noise] = (rms_pred, rms_err, res)
        assert 0.4 < rms_pred / rms_err < 2.5, (noise, rms_pred, rms_err)
    assert out[0.01][0] < out[0.05][0] < out[0.2][0]
    assert not np.any(out[0.2][2].status == C.STATUS_IMPRECISE)   # off by default
    ref, sec = shifted_pair(base, 0.31, -0.67, noise=0.2, seed=3)
    lim = float(np.median(out[0.2][2].sigma[out[0.2][2].status == 0]))
    strict = correlate(ref, sec, window=32, step=8, search=4, max_sigma=lim,
                       fallback_sigma=0)
    imp = strict.status == C.STATUS_IMPRECISE
    assert 0.2 < imp.sum() / (out[0.2][2].status == 0).sum() < 0.8
    assert np.isnan(strict.dx[imp]).all() and (strict.sigma[imp] > lim).all()
    assert (strict.sigma[strict.status == 0] <= lim).all()
    with pytest.raises(ParameterError):
        correlate(ref, sec, max_sigma=-1)


def test_second_pass_only_on_its_windows_same_results():
    """The second pass runs on the windows that need it (not on the rectangle of rows x
    columns holding them) with its prefilter computed around them only: the same
    estimates as correlating every window of that rectangle with the whole block filtered
    (windows alone, so a window's result does not depend on its neighbours' needs)."""
    base = smooth_texture((324, 324), seed=4)
    ref, sec = shifted_pair(base, 0.4, -1.3, noise=0.01, seed=2)
    sec = sec.copy()
    rng = np.random.default_rng(0)
    sec[40:90, 150:200] = rng.normal(1000, 300, (50, 50))        # decorrelated patch
    sec[150:170, 30:60] = ref[150:170, 30:60].mean()             # a flat one
    # the wide-window pass off: this compares the second pass alone
    p = C.normalize_params(32, 8, 6, min_ncc=0.6, wide_sigma=0.0)
    rows = np.arange(24, 236, 8)
    cols = np.arange(24, 236, 8)
    m = C.read_margin(p)
    R, S = C.pad_image(ref.astype(np.float32), m), C.pad_image(sec.astype(np.float32), m)
    got = C.correlate_raw(R, S, rows, cols, ref.shape, 0, p, with_sigma=True)
    first = C._correlate(C.prepare(R, p), C.prepare(S, p), rows, cols, ref.shape, 0, p)
    redo = first[4] == C.STATUS_LOW_NCC
    assert 0 < redo.sum() < 0.2 * redo.size
    rsel = np.flatnonzero(redo.any(axis=1))
    csel = np.flatnonzero(redo[rsel].any(axis=0))
    # every window of the rectangle, alone (the second pass computes windows alone)
    full = C._correlate(C.prepare(R, p, True), C.prepare(S, p, True), rows[rsel], cols[csel],
                        ref.shape, 0, p, fallback=True,
                        todo=np.ones((rsel.size, csel.size), bool))
    take = redo[np.ix_(rsel, csel)] & (full[4] == C.STATUS_VALID)
    assert take.any()
    for a, f, b in zip(first, full, got):
        exp = a.copy()
        sub = exp[np.ix_(rsel, csel)]
        sub[take] = f[take]
        exp[np.ix_(rsel, csel)] = sub
        assert np.array_equal(exp, b, equal_nan=True)
    # the windows' regions filtered alone equal the whole block's filter there
    todo = redo[np.ix_(rsel, csel)]
    around = C._prepare_around(R, p, rows[rsel], cols[csel], todo, 0)
    whole = C.prepare(R, p, True)
    fin = np.isfinite(around)
    assert fin.any() and np.array_equal(around[fin], whole[fin])


# ------------------------------------------------------------ coherence of low-ratio peaks
def _grid(n=8, value=2.0):
    dx = np.full((n, n), value)
    dy = np.full((n, n), -1.0)
    snr = np.full((n, n), 2.0)
    status = np.zeros((n, n), np.int8)
    return dx, dy, snr, status


def test_coherence_filter_keeps_agreeing_and_drops_isolated_low_ratio_peaks():
    p = C.normalize_params()
    assert p["min_snr_coherent"] < p["min_snr"]
    dx, dy, snr, status = _grid()
    snr[2, 2], dx[2, 2] = 1.1, 5.0          # ambiguous and 3 px off its neighbours
    snr[5, 5], dx[5, 5] = 1.1, 2.3          # ambiguous but agrees
    # ambiguous windows that agree only with each other are not judged by each other (they
    # may share one false peak): the confident windows around them disagree, dropped
    status[0:4, 4:8] = C.STATUS_LOW_NCC
    dx[0:4, 4:8] = np.nan
    status[0, 7], snr[0, 7], dx[0, 7] = 0, 1.1, 5.0
    status[1, 7], snr[1, 7], dx[1, 7] = 0, 1.1, 5.0
    status[0, 6], snr[0, 6], dx[0, 6] = 0, 1.1, 5.0
    kept = C.coherence_filter(dx, dy, snr, status, p)
    assert kept == 1
    assert status[5, 5] == 0 and dx[5, 5] == 2.3
    assert status[2, 2] == C.STATUS_LOW_SNR and np.isnan(dx[2, 2]) and np.isnan(dy[2, 2])
    assert np.all(status[[0, 1, 0], [7, 7, 6]] == C.STATUS_LOW_SNR)
    # all ambiguous: nobody is confident, nothing is kept
    dx, dy, snr, status = _grid()
    snr[:] = 1.1
    assert C.coherence_filter(dx, dy, snr, status, p) == 0
    assert np.all(status == C.STATUS_LOW_SNR)
    # switched off: nothing changes
    dx, dy, snr, status = _grid()
    snr[2, 2], dx[2, 2] = 1.1, 5.0
    off = C.normalize_params(min_snr_coherent=1.2)
    assert C.coherence_filter(dx, dy, snr, status, off) == 0 and status[2, 2] == 0
    with pytest.raises(ParameterError):
        C.normalize_params(min_snr_coherent=1.5)


def test_coherence_filter_by_blocks_equals_whole_grid():
    rng = np.random.default_rng(3)
    n = 12
    dx = rng.normal(1.0, 0.3, (n, n))
    dy = rng.normal(0.0, 0.3, (n, n))
    dx[rng.random((n, n)) < 0.15] += 4.0
    snr = rng.uniform(1.0, 1.5, (n, n))
    snr[rng.random((n, n)) < 0.5] = 2.0
    status = np.where(rng.random((n, n)) < 0.1, C.STATUS_LOW_NCC, 0).astype(np.int8)
    dx[status != 0] = np.nan
    p = C.normalize_params()
    whole = [a.copy() for a in (dx, dy, status)]
    C.coherence_filter(whole[0], whole[1], snr, whole[2], p)
    raw = (dx, dy, snr, status)
    R = C.COHERENCE_RADIUS
    for size in (1, 3, 5):
        for b0 in range(0, n, size):
            b1 = min(n, b0 + size)
            above = None if b0 == 0 else tuple(a[max(0, b0 - R):b0].copy() for a in raw)
            below = None if b1 == n else tuple(a[b1:b1 + R].copy() for a in raw)
            blk = [a[b0:b1].copy() for a in (dx, dy, status)]
            C.coherence_filter(blk[0], blk[1], snr[b0:b1], blk[2], p, above=above,
                               below=below)
            for w, b in zip(whole, blk):
                assert np.array_equal(w[b0:b1], b, equal_nan=True)
    assert (whole[2] == C.STATUS_LOW_SNR).sum() > 0
