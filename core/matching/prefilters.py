"""Pre-filters applied to both images before correlation.

Every filter is NaN-aware (normalised convolution: invalid pixels neither contribute nor
get a value) and *local* with a finite support radius given by :func:`halo`, so that a
block read with that much extra halo gives exactly the same filtered pixels as the whole
image (the raster driver relies on this). Filters return float32 stacks of shape
``(channels, rows, cols)``.

==============  =====================================================================
name            what
==============  =====================================================================
``none``        the image itself (1 channel)
``gaussian_hp`` Gaussian high-pass: ``x - G_sigma * x`` (1 channel). Removes slow
                illumination/haze gradients (option ``sigma``, pixels, default 1: best
                of 1 / 3 on the real Sentinel-2 null pair, see docs/benchmarks.md).
``wallis``      Wallis filter: ``(x - local mean) / (local std + eps)`` over a square
                ``size`` (default 15) window (1 channel). Equalises local contrast,
                the usual pre-processing of GIV / feature tracking.
``orientation`` orientation image (Fitch et al. 2002, as in COSI-Corr/autoRIFT users):
                unit gradient direction ``(cos t, sin t)`` from Sobel gradients, 2
                channels, 0 where the gradient vanishes. Insensitive to illumination
                and contrast changes.
==============  =====================================================================
"""

import numpy as np
from scipy import ndimage

from ..errors import ParameterError

PREFILTERS = ("none", "gaussian_hp", "wallis", "orientation")

_DEFAULTS = {"gaussian_hp": {"sigma": 1.0}, "wallis": {"size": 15}, "orientation": {}}


def _options(name, options):
    opts = dict(_DEFAULTS.get(name, {}))
    for k, v in (options or {}).items():
        if k not in opts:
            raise ParameterError("Unknown option '%s' for prefilter '%s' (known: %s)."
                                 % (k, name, ", ".join(opts) or "none"))
        opts[k] = v
    if name == "gaussian_hp" and not float(opts["sigma"]) > 0:
        raise ParameterError("Prefilter 'gaussian_hp': sigma must be > 0 pixels.")
    if name == "wallis" and not int(opts["size"]) >= 3:
        raise ParameterError("Prefilter 'wallis': size must be >= 3 pixels.")
    return opts


def check_prefilter(name, options=None):
    """Raise ParameterError for an unknown filter or bad options; return the options."""
    if name not in PREFILTERS:
        raise ParameterError("Unknown prefilter '%s'. Choose one of: %s."
                             % (name, ", ".join(PREFILTERS)))
    return _options(name, options)


def halo(name, options=None):
    """Support radius (pixels) of the filter: pixels farther away do not influence it."""
    opts = check_prefilter(name, options)
    if name == "gaussian_hp":
        return int(4.0 * float(opts["sigma"]) + 0.5)
    if name == "wallis":
        return int(opts["size"]) // 2
    if name == "orientation":
        return 1
    return 0


def _nan_box(x, valid, size):
    xf = np.where(valid, x, 0.0).astype(np.float64)
    num = ndimage.uniform_filter(xf, size, mode="constant", cval=0.0)
    den = ndimage.uniform_filter(valid.astype(np.float64), size, mode="constant", cval=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den, den


def apply_prefilter(image, name="none", options=None):
    """Filter a 2-D image (NaN = invalid) into a float32 stack (channels, rows, cols)."""
    opts = check_prefilter(name, options)
    if name == "none":
        # float32 directly (same values as through float64): one copy and one finiteness
        # pass instead of ~6 full-size float64 temporaries (measured 1.2 -> ~0.15 ms for
        # 400 x 400, i.e. ~1 us per estimate of a 384 x 384 correlate() at step 8)
        out = np.array(image, dtype=np.float32)[None]
        bad = ~np.isfinite(out)
        if bad.any():
            out[bad] = np.nan
        return out
    if name == "gaussian_hp":
        # numba, separable, float64 inside: the same values as the scipy normalised
        # convolution (tests/test_prefilters.py), ~7x faster
        from .prefilter_kernels import gaussian_highpass
        return gaussian_highpass(image, float(opts["sigma"]))[None]
    x = np.asarray(image, dtype=np.float64)
    valid = np.isfinite(x)
    if name == "wallis":
        size = int(opts["size"])
        m, frac = _nan_box(x, valid, size)
        m2, _ = _nan_box(x * x, valid, size)
        with np.errstate(invalid="ignore", divide="ignore"):
            sd = np.sqrt(np.maximum(m2 - m * m, 0.0))
            eps = 1e-6 * np.abs(m) + 1e-12  # local, so blocks equal the whole image
            out = ((x - m) / (sd + eps))[None]
    else:  # orientation
        xf = np.where(valid, x, 0.0)
        gx = ndimage.sobel(xf, axis=1, mode="constant", cval=0.0)
        gy = ndimage.sobel(xf, axis=0, mode="constant", cval=0.0)
        # a pixel whose 3x3 neighbourhood holds an invalid pixel has no gradient
        bad = ndimage.minimum_filter(valid.astype(np.uint8), size=3, mode="constant",
                                     cval=0) == 0
        mag = np.hypot(gx, gy)
        with np.errstate(invalid="ignore", divide="ignore"):
            c = np.where(mag > 0.0, gx / mag, 0.0)
            s = np.where(mag > 0.0, gy / mag, 0.0)
        out = np.stack([c, s])
        out[:, bad] = np.nan
        return out.astype(np.float32)
    out[:, ~valid] = np.nan
    return out.astype(np.float32)
