"""Image textures and sub-pixel image shifting for synthetic test data.

* :func:`sentinel2_texture` — a crop of the real Sentinel-2 L1C sample shipped in
  ``/work/shared/data/s2_pair_no_motion`` (the ``ref_`` image, valid area only), mirrored
  when the requested shape is larger than the valid area; fractal (1/f) texture when the
  file is missing or unreadable.
* :func:`fractal_texture` — isotropic random field with a power-law spectrum.
* :func:`shift_image` — sub-pixel accurate shift of an image (quintic spline or FFT
  phase ramp), to make pairs with a known displacement.

Convention (SPEC): a feature at (row, col) of the input is at (row + dy, col + dx) of the
output, i.e. ``out(p) = in(p - d)``.
"""

import glob
import os

import numpy as np

from ..numba_setup import PLUGIN_DIR

#: Folders searched for the real Sentinel-2 sample (first hit wins). The environment
#: variable SLIDEWATCH_S2_SAMPLE may point to a file or a folder.
S2_SAMPLE_FOLDERS = (
    "/work/shared/data/s2_pair_no_motion",
    os.path.join(PLUGIN_DIR, "resources", "sample_data"),
)

_S2_CACHE = {}


def find_s2_sample():
    """Path of the real Sentinel-2 sample image used for texture, or None."""
    env = os.environ.get("SLIDEWATCH_S2_SAMPLE")
    candidates = []
    if env:
        if os.path.isfile(env):
            return env
        candidates.append(env)
    candidates.extend(S2_SAMPLE_FOLDERS)
    for folder in candidates:
        hits = sorted(glob.glob(os.path.join(folder, "ref_*.jp2"))
                      + glob.glob(os.path.join(folder, "ref_*.tif")))
        if hits:
            return hits[0]
    return None


def _read_s2_sample(path):
    """Read the sample once per process; returns (uint16 array, bool valid mask) or None.

    The shipped JPEG 2000 files need OpenJPEG's non-strict mode (``STRICT=NO``): in the
    default strict mode GDAL 3.6 / OpenJPEG 2.5 refuse them ("Marker is not compliant
    with its position").
    """
    if path in _S2_CACHE:
        return _S2_CACHE[path]
    result = None
    try:
        import rasterio
        with rasterio.Env(CPL_LOG_ERRORS="OFF"):
            opts = {"STRICT": "NO"} if path.lower().endswith(".jp2") else {}
            with rasterio.open(path, **opts) as src:
                arr = src.read(1)
        valid = arr > 0
        if valid.mean() > 0.05:
            ii = np.zeros((arr.shape[0] + 1, arr.shape[1] + 1), dtype=np.int32)
            np.cumsum(valid, axis=0, dtype=np.int32, out=ii[1:, 1:])
            np.cumsum(ii[1:, 1:], axis=1, out=ii[1:, 1:])
            result = (arr, valid, ii)
    except Exception:  # missing driver, corrupt file: fall back to fractal texture
        result = None
    _S2_CACHE[path] = result
    return result


def fractal_texture(shape, seed=0, beta=2.0, rng=None):
    """Zero-mean, unit-std isotropic random field with power spectrum ~ 1/f**beta.

    beta = 2 looks like natural imagery (the amplitude spectrum of optical images falls
    roughly as 1/f); beta = 3..4 gives smooth clouds / terrain.
    """
    from scipy.fft import irfft2, next_fast_len, rfft2

    oh, ow = int(shape[0]), int(shape[1])
    h, w = next_fast_len(oh, real=True), next_fast_len(ow, real=True)
    rng = np.random.default_rng(seed) if rng is None else rng
    white = rng.standard_normal((h, w), dtype=np.float32)
    fy = np.fft.fftfreq(h).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(w).astype(np.float32)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    amp = f ** np.float32(-beta / 2.0)
    amp[0, 0] = 0.0
    field = irfft2(rfft2(white) * amp, s=(h, w))[:oh, :ow]
    field = field - field.mean(dtype=np.float64)
    std = float(field.std())
    return np.ascontiguousarray(field / np.float32(std if std > 0 else 1.0),
                                dtype=np.float32)


def _fractal_dn(shape, seed):
    """Fractal texture scaled like Sentinel-2 L1C NIR digital numbers (~700..1600)."""
    rng = np.random.default_rng([seed, 7])
    t = 0.75 * fractal_texture(shape, rng=rng, beta=2.2) \
        + 0.25 * fractal_texture(shape, rng=rng, beta=1.2)
    t = t / max(float(t.std()), 1e-6)
    return np.clip(1000.0 + 200.0 * t, 150.0, 6000.0).astype(np.float32)


def _largest_fitting_crop(valid, ii, h, w):
    """(crop_h, crop_w, list of top-left positions) for a fully valid crop <= (h, w);
    ``ii`` is the integral image of ``valid`` (shape + 1)."""
    H, W = valid.shape
    ch, cw = min(h, H), min(w, W)
    while ch >= 16 and cw >= 16:
        s = ii[ch:, cw:] - ii[:-ch, cw:] - ii[ch:, :-cw] + ii[:-ch, :-cw]
        rows, cols = np.nonzero(s == ch * cw)
        if rows.size:
            return ch, cw, rows, cols
        # shrink the side that is relatively larger than the sample
        if ch / H >= cw / W:
            ch = int(ch * 0.9)
        else:
            cw = int(cw * 0.9)
    return 0, 0, np.array([], int), np.array([], int)


def _mirror_tile(patch, h, w):
    """Tile ``patch`` by mirroring (no discontinuities) up to shape (h, w)."""
    ph, pw = patch.shape
    reps_r = -(-h // ph)
    reps_c = -(-w // pw)
    rows = [patch if i % 2 == 0 else patch[::-1] for i in range(reps_r)]
    col = np.concatenate(rows, axis=0)
    cols = [col if j % 2 == 0 else col[:, ::-1] for j in range(reps_c)]
    return np.concatenate(cols, axis=1)[:h, :w]


def sentinel2_texture(shape, seed=0, path=None, fallback=True):
    """A float32 texture patch (digital numbers) cut from the real Sentinel-2 sample.

    The crop position (inside the valid, non-zero area) and a random flip are chosen
    from ``seed``. Shapes larger than the valid area are filled by mirror tiling of the
    largest valid crop. When the sample is missing or unreadable, returns fractal texture
    with S2-like statistics (or raises FileNotFoundError when ``fallback`` is False).
    """
    h, w = int(shape[0]), int(shape[1])
    path = path or find_s2_sample()
    sample = _read_s2_sample(path) if path else None
    if sample is None:
        if not fallback:
            raise FileNotFoundError("Sentinel-2 texture sample not found or unreadable "
                                    "(looked for ref_*.jp2 in %s)" % ", ".join(S2_SAMPLE_FOLDERS))
        return _fractal_dn((h, w), seed)
    arr, valid, ii = sample
    rng = np.random.default_rng([seed, 11])
    ch, cw, rows, cols = _largest_fitting_crop(valid, ii, h, w)
    if ch == 0:
        return _fractal_dn((h, w), seed)
    k = int(rng.integers(rows.size))
    r0, c0 = int(rows[k]), int(cols[k])
    patch = arr[r0:r0 + ch, c0:c0 + cw].astype(np.float32)
    if rng.random() < 0.5:
        patch = patch[::-1]
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    if (ch, cw) != (h, w):
        patch = _mirror_tile(patch, h, w)
    return np.ascontiguousarray(patch, dtype=np.float32)


def shift_image(image, dx, dy, method="spline", order=5, mode="mirror"):
    """Shift ``image`` so that a feature at (row, col) moves to (row + dy, col + dx).

    Parameters
    ----------
    image : 2-D array
    dx, dy : float, or 2-D arrays of the image shape (a displacement field)
        For a field the output is ``out(p) = in(p - d(p))`` (the field is sampled at the
        output position; exact for uniform shifts, first-order for varying fields).
    method : "spline" (default; B-spline of ``order`` 3 or 5 with exact prefilter, border
        handled by ``mode``) or "fft" (band-limited phase ramp, exact for periodic,
        band-limited images; uniform shifts only; wraps around at borders).

    Returns float32 (float64 input stays float64).
    """
    from scipy import ndimage

    img = np.asarray(image)
    out_dtype = np.float64 if img.dtype == np.float64 else np.float32
    img = img.astype(np.float64, copy=False)
    if method == "fft":
        if np.ndim(dx) or np.ndim(dy):
            raise ValueError("shift_image(method='fft') needs scalar dx, dy")
        h, w = img.shape
        fy = np.fft.fftfreq(h)[:, None]
        fx = np.fft.fftfreq(w)[None, :]
        ramp = np.exp(-2j * np.pi * (fx * float(dx) + fy * float(dy)))
        # keep the Nyquist bins real so that the output stays real
        if h % 2 == 0:
            ramp[h // 2, :] = ramp[h // 2, :].real
        if w % 2 == 0:
            ramp[:, w // 2] = ramp[:, w // 2].real
        return np.fft.ifft2(np.fft.fft2(img) * ramp).real.astype(out_dtype)
    if method != "spline":
        raise ValueError("shift_image: method must be 'spline' or 'fft'")
    if np.ndim(dx) == 0 and np.ndim(dy) == 0:
        out = ndimage.shift(img, (float(dy), float(dx)), order=order, mode=mode,
                            prefilter=True)
        return out.astype(out_dtype)
    h, w = img.shape
    rr, cc = np.mgrid[0:h, 0:w].astype(np.float64)
    coords = np.array([rr - np.broadcast_to(dy, (h, w)), cc - np.broadcast_to(dx, (h, w))])
    out = ndimage.map_coordinates(img, coords, order=order, mode=mode, prefilter=True)
    return out.astype(out_dtype)
