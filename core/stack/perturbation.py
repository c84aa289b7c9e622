"""Perturbed share of each date of a stack, from the images alone (no mask, no metadata).

Used by the catalog (``cloud_source = estimated-temporal``) when at least 3 images share
a grid. Works on thumbnails (at most 256 px on a side, see ``catalog.THUMB``) and
compares each date with the same pixel over the whole stack, so that a pixel's own
brightness and texture (ice, forest, water, fields) set its reference:

* **bright**: value above the pixel's temporal median + ``k_bright`` × its temporal MAD
  (× 1.4826, floored at 2 % of the stack's dynamic range). Clouds and fresh snow are
  brighter than the ground they hide; a pixel's seasonal variability is absorbed by its
  MAD.
* **textureless**: the local contrast of the date's high-pass image (standard deviation
  over a few thumbnail pixels, measured relative to the date's own median brightness so
  that a uniformly darker or brighter acquisition does not count) is below
  ``texture_ratio`` × the pixel's temporal median of that contrast. Overcast, fog, haze,
  smooth cloud decks, saturation and blank (constant) areas lose the ground's texture
  whether they are bright or not: a uniformly grey fully clouded date, which the brightness
  test misses (its grey is not brighter than bright ice), loses almost all of it. Pixels
  without texture on most dates (calm water, flat snowfields) have no reference and are
  never counted as textureless.

A pixel is perturbed when it is bright or textureless; a date's perturbed fraction is
the share of its valid pixels that are perturbed. Both tests need the majority of the
stack to be clear at a pixel (temporal medians): with more than half of the dates
clouded at one place the reference itself is clouded there, and the estimate falls back
towards 0 (it under-estimates, it does not raise false alarms). Measured on real stacks
in docs/benchmarks.md ("Perturbation from the images alone").
"""

import warnings

import numpy as np
from scipy import ndimage

#: temporal MADs above the median for a pixel to be "bright"
K_BRIGHT = 3.0
#: share of the pixel's usual texture below which it is "textureless"
TEXTURE_RATIO = 0.35
#: a pixel has a texture reference when its temporal median contrast is at least this
#: share of the scene's median contrast
TEXTURE_FLOOR = 0.5


def _nan_filter(a, func, size):
    ok = np.isfinite(a)
    f = np.where(ok, a, 0.0)
    n = func(ok.astype(np.float64), size)
    m = func(f, size) / np.maximum(n, 1e-9)
    return m, n


def local_contrast(img, size=5):
    """Local standard deviation of a high-passed thumbnail (NaN outside valid pixels),
    divided by the thumbnail's median brightness."""
    a = np.asarray(img, dtype=np.float64)
    ok = np.isfinite(a)
    if not ok.any():
        return np.full(a.shape, np.nan)
    level = float(np.nanmedian(a))
    scale = abs(level) if abs(level) > 1e-9 else 1.0
    gauss = lambda x, s: ndimage.gaussian_filter(x, 1.5, mode="nearest")  # noqa: E731
    low, _ = _nan_filter(a, gauss, None)
    hp = np.where(ok, a - low, np.nan)
    unif = lambda x, s: ndimage.uniform_filter(x, s, mode="nearest")  # noqa: E731
    m1, n = _nan_filter(hp, unif, size)
    m2, _ = _nan_filter(hp * hp, unif, size)
    s = np.sqrt(np.maximum(m2 - m1 * m1, 0.0)) / scale
    s[(n < 0.5) | ~ok] = np.nan
    return s


def temporal_perturbation(thumbs, k_bright=K_BRIGHT, texture_ratio=TEXTURE_RATIO):
    """Per-date perturbed fraction of a same-grid stack of thumbnails.

    Returns a list of dicts, one per thumbnail: ``perturbed`` (fraction of its valid
    pixels that are bright or textureless), ``bright`` and ``textureless`` (each test
    alone), NaN when the thumbnail has no valid pixel.
    """
    stack = np.stack([np.asarray(t, dtype=np.float64) for t in thumbs])
    contrast = np.stack([local_contrast(t) for t in stack])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(stack, axis=0)
        mad = np.nanmedian(np.abs(stack - med), axis=0) * 1.4826
        lo, hi = np.nanpercentile(stack, [1, 99])
        floor = 0.02 * max(hi - lo, 1e-9)
        mad = np.where(np.isfinite(mad), np.maximum(mad, floor), floor)
        cmed = np.nanmedian(contrast, axis=0)
        c_typ = np.nanmedian(cmed) if np.isfinite(cmed).any() else np.nan
    has_ref = np.isfinite(cmed) & (cmed >= TEXTURE_FLOOR * c_typ) & (cmed > 0)
    out = []
    for k in range(stack.shape[0]):
        a = stack[k]
        valid = np.isfinite(a) & np.isfinite(med)
        n = int(valid.sum())
        if n == 0:
            out.append({"perturbed": float("nan"), "bright": float("nan"),
                        "textureless": float("nan")})
            continue
        with np.errstate(invalid="ignore"):
            bright = valid & (a > med + k_bright * mad)
            flat = valid & has_ref & ~(contrast[k] >= texture_ratio * cmed)
        out.append({"perturbed": float((bright | flat).sum()) / n,
                    "bright": float(bright.sum()) / n,
                    "textureless": float(flat.sum()) / n})
    return out
