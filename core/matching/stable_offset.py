"""Co-registration offset of one pair from its own windows, robust to large moving areas.

Without a stable-area mask, the median displacement of all valid windows is the
co-registration offset only when most of the scene is still. On a glacier filling half the
scene or more, that median is the glacier's motion, and subtracting it removed half of the
measured speed (issue 14: GIV Perito Moreno, 0.95 m/day where OpenCV measures 2.0-2.4).

Stable ground does not move: its windows form a *tight* cluster of displacement vectors
(the common offset plus correlation noise), whereas a moving body spreads from zero at its
margins to its peak speed. :func:`stable_offset` looks for such clusters in the 2-D
distribution of (dx, dy), keeps those holding at least ``min_share`` of the windows with a
robust radius of at most ``max_spread_px``, and takes the one nearest zero displacement
(co-registration errors are small next to the motions that make large clusters). When no
cluster qualifies there is no identifiable stable ground in the pair: no offset is removed
(the caller logs it), which is the right answer when the moving body fills the scene.
"""

import numpy as np
from scipy import ndimage

#: histogram bin (px) of the displacement distribution
BIN_PX = 0.1
#: a cluster must hold at least this share of the valid windows
MIN_SHARE = 0.1
#: and be this tight: robust radius (1.4826 x median distance to its centre, px).
#: Measured: 0.15 px on the Yahtse rock (Landsat 8), 0.38 px for the glacier of a 2-day
#: GIV pair (a uniformly moving tongue: one pair cannot tell it from an offset)
MAX_SPREAD_PX = 0.3


def _cluster(dx, dy, cx, cy, n_iter=4):
    """Refine a cluster centre by medians within a radius that follows its spread."""
    radius = 1.0
    sel = np.zeros(dx.size, bool)
    spread = np.inf
    for _ in range(n_iter):
        dist = np.hypot(dx - cx, dy - cy)
        sel = dist <= radius
        if sel.sum() < 3:
            return cx, cy, sel, np.inf
        cx, cy = float(np.median(dx[sel])), float(np.median(dy[sel]))
        spread = 1.4826 * float(np.median(np.hypot(dx[sel] - cx, dy[sel] - cy)))
        radius = max(3.0 * spread, 0.3)
    sel = np.hypot(dx - cx, dy - cy) <= radius
    return cx, cy, sel, spread


def stable_offset(dx, dy, min_share=MIN_SHARE, max_spread_px=MAX_SPREAD_PX, n_peaks=6):
    """Offset (dx, dy) of the stable ground of a pair, or None when none is identifiable.

    Returns a dict ``dx``, ``dy`` (px), ``share`` (fraction of windows in the cluster),
    ``spread_px``, ``n`` (windows in it), or None.
    """
    dx = np.asarray(dx, np.float64).ravel()
    dy = np.asarray(dy, np.float64).ravel()
    ok = np.isfinite(dx) & np.isfinite(dy)
    dx, dy = dx[ok], dy[ok]
    if dx.size < 20:
        return None
    lo = np.percentile(np.concatenate([dx, dy]), 0.5) - 1.0
    hi = np.percentile(np.concatenate([dx, dy]), 99.5) + 1.0
    nb = int(min(max((hi - lo) / BIN_PX, 8), 800))
    hist, xe, ye = np.histogram2d(dx, dy, bins=nb, range=[[lo, hi], [lo, hi]])
    hs = ndimage.gaussian_filter(hist, 1.5)
    peaks = (hs == ndimage.maximum_filter(hs, size=5)) & (hs > 0)
    idx = np.argwhere(peaks)
    order = np.argsort(hs[peaks])[::-1][:n_peaks]
    best = None
    for i, j in idx[order]:
        cx = 0.5 * (xe[i] + xe[i + 1])
        cy = 0.5 * (ye[j] + ye[j + 1])
        cx, cy, sel, spread = _cluster(dx, dy, cx, cy)
        share = float(sel.mean())
        if share < min_share or not spread <= max_spread_px:
            continue
        cand = {"dx": cx, "dy": cy, "share": share, "spread_px": spread, "n": int(sel.sum())}
        if best is None or np.hypot(cx, cy) < np.hypot(best["dx"], best["dy"]):
            best = cand
    return best
