"""Realistic synthetic Sentinel-2-like image stacks with exact ground truth.

Every accuracy figure of SlideWatch is measured on stacks made here. The generator
renders, date by date, a single-band (B08-like, UInt16, 0 = nodata) GeoTIFF stack:

* **scene**: real Sentinel-2 L1C texture (:func:`~.texture.sentinel2_texture`, fractal
  fallback with ``texture="fractal"`` or when the sample is missing), modulated by a
  topographic shading of a synthetic mountain DEM (``dem.tif``);
* **ground motion**: landslides (default two: one steady ~5 m/yr, one accelerating from
  3 to 30 m/yr at a known onset date) moving downslope as rigid-direction flows with a
  smooth (cosine-tapered elliptical) velocity profile; stable ground elsewhere;
* **image geometry errors** (apparent displacement, not ground motion): a per-date
  co-registration offset (Gaussian, ``coreg_sigma_px``; date 0 has none), optional
  planar ramp (``ramp``) and elevation-dependent shift (``elevation_bias``);
* **radiometry**: illumination/contrast change (seasonal gain, offset, gamma, sun-dependent
  shading), optional decorrelating vegetated patch (``noisy_area``), clouds (bright,
  textured, soft-edged) with their shadows (offset away from the sun), sensor noise,
  nodata borders (oblique swath edges and zero strips), UInt16 quantisation.

Geometry of the rendering (exact, documented inversion)
-------------------------------------------------------
Pixel coordinates are (row, col) on the reference grid (the grid of every image).
The continuous scene ``S_t`` is attached to the ground as it was at date 0: the cubic
B-spline interpolant of the texture times the day's terrain shading (a C2 cubic B-spline
field) [blended with the day's own vegetation texture in the noisy patch].
For date t the *apparent displacement* (px) of the ground point x0 is

    A_t(x0) = U_t(x0) + c_t + R_t(x0) + E_t(x0)

(U: landslide motion, c: co-registration offset, R: ramp, E: elevation bias). The
point x0 appears in image t at p = x0 + A_t(x0), so image t is rendered as
``I_t(p) = S(x0)`` with ``x0`` solving ``x0 + A_t(x0) = p``. The solution is found by
fixed-point iteration ``x0 <- p - A_t(x0)`` (A_t evaluated with a cubic B-spline of its
values on the grid, ``mode="nearest"``) until the residual is below 1e-6 px (at most 30
iterations; contraction since |grad A| << 1). :meth:`SyntheticStack.pair_truth_px`
uses the very same interpolant and inversion, so the truth of a pair (i, j) at
reference pixel q is exactly ``d = A_j(x0) - A_i(x0)`` with ``x0 + A_i(x0) = q``: the
feature at q in image i is at q + d in image j (SPEC convention), to ~1e-6 px. (Checked
in tests/test_synthetic.py: warping image j back by d reproduces image i to the UInt16
quantisation level on a band-limited texture; the least-squares residual shift on a
landslide moving > 1 px is < 0.005 px, itself limited by quantisation.)

Files written in ``out_folder``
-------------------------------
* one image per date, named like a Sentinel-2 L1C product band file so that date parsing
  works: ``S2A_MSIL1C_20190101T103021_N0207_R108_T32TLR_B08.tif`` (spacecraft S2A/S2B,
  relative orbit R108 or R065); UInt16, nodata 0, EPSG:32632, north-up, ``pixel_size``;
  tags ``ACQUISITION_DATE``, ``SPACECRAFT``, ``RELATIVE_ORBIT``, ``SUN_AZIMUTH``,
  ``SUN_ELEVATION``, ``CLOUD_FRACTION``, ``VALID_FRACTION``, ``SYNTHETIC=1``;
* ``dem.tif``: float32 elevation (m) on the same grid;
* ``truth.npz``: all truth arrays (see :class:`SyntheticStack`; ``east_m``/``north_m``
  are stored in full, (n_dates, H, W) float32) plus ``meta_json``;
* ``truth.json``: human-readable summary (dates, files, landslides, offsets, parameters).

Usage::

    st = generate_stack("/tmp/stack", n_dates=40, shape=(512, 512), seed=0)
    dx, dy = st.pair_truth_px(0, 5)        # what a correlator should measure (px)
    st = SyntheticStack.load("/tmp/stack")  # later, from truth.npz
    p = SyntheticStackParams(n_dates=12, ramp=0.2).validate()   # or as an object
    st = generate_stack("/tmp/stack2", p, seed=4)                 # keywords override it

``generate_stack(None, write=False)`` keeps the images in memory (``st.images``);
``write=False, keep_images=False`` computes the truth only (no rendering, fast).
Memory stays bounded for large stacks: images are rendered and written date by date in
blocks of rows; ``east_m``/``north_m`` are built only when accessed (use
``ground_displacement_m(t)`` for one date).
"""

import dataclasses
import datetime as _dt
import io
import json
import math
import os
import zipfile

import numpy as np
from scipy import ndimage

from ..errors import ParameterError
from ..products import DAYS_PER_YEAR
from ..progress import as_progress
from .texture import fractal_texture, sentinel2_texture, shift_image  # noqa: F401

__all__ = ["generate_stack", "SyntheticStackParams", "SyntheticStack", "shift_image", "sentinel2_texture",
           "fractal_texture", "DEFAULT_LANDSLIDES", "image_file_name"]

CRS_EPSG = 32632
#: Upper-left corner of the synthetic grid (UTM 32N, Western Alps).
ORIGIN_EN = (340000.0, 5110000.0)
TILE = "T32TLR"
YEAR_DAYS = DAYS_PER_YEAR
_TOL_PX = 1e-6
_BLOCK_ROWS = 256

#: Default landslides ("default"). Keys: see :attr:`SyntheticStackParams.landslides`.
DEFAULT_LANDSLIDES = (
    dict(name="steady", velocity_m_per_yr=5.0, length_m=700.0, width_m=450.0),
    dict(name="accelerating", velocity_m_per_yr=3.0, velocity_after_m_per_yr=30.0,
         accel_onset_fraction=0.55, accel_ramp_days=30.0, length_m=900.0, width_m=500.0),
)


def image_file_name(date, spacecraft="S2A", orbit="R108", time="103021"):
    """File name of one synthetic image (Sentinel-2 L1C style, band B08)."""
    return "%s_MSIL1C_%sT%s_N0207_%s_%s_B08.tif" % (
        spacecraft, date.replace("-", ""), time, orbit, TILE)


# --------------------------------------------------------------------------------------
# Truth container
# --------------------------------------------------------------------------------------

@dataclasses.dataclass
class SyntheticStack:
    """A synthetic stack and its ground truth.

    Attributes (arrays on the reference grid, shape (H, W) = ``shape``)
    ----------------------------------------------------------------
    folder, dates (ISO str), paths (same order), transform (affine.Affine), crs (str),
    shape, pixel_size, dem (float32, m),
    landslide_labels (int32; 0 stable, k = landslide k, pixels whose speed is >= 5 % of
    the landslide's peak speed), landslides (list of dicts with keys ``id``, ``name``,
    ``centre`` [E, N] m, ``centre_px`` [row, col], ``length_m``, ``width_m``, ``area_m2``
    (labelled area), ``direction_deg`` (azimuth of motion, clockwise from north),
    ``velocity_m_per_yr`` = ``velocity_before_m_per_yr``, ``velocity_after_m_per_yr``
    (peak speeds; equal when steady), ``accel_onset_date`` (ISO or None),
    ``accel_onset_day``, ``accel_ramp_days``, ``mean_velocity_m_per_yr`` (mean over the
    labelled area and the whole period), ``peak_mean_velocity_m_per_yr``,
    ``final_peak_displacement_m``),
    cloud_masks (bool (n, H, W): cloud or shadow alters the pixel), valid_masks
    (bool (n, H, W): non-zero data), coreg_offsets_px (float (n, 2): (dx, dy) px, date 0
    is (0, 0)), fully_clouded (list of date indices), noisy_mask (bool (H, W) vegetated
    decorrelating patch, all False when disabled), ramp_coeffs_px (n, 4): per-date ramp
    (a, b, c, d) in px: dx += a*(col-(W-1)/2)/W + b*(row-(H-1)/2)/H, dy += c*(...)/W +
    d*(...)/H,
    elevation_coeffs_px_per_km (n, 2): (dx, dy) per km of elevation above the mean,
    slide_weights (float32 (K, H, W): speed profile of each landslide, peak 1),
    slide_dirs (K, 2): unit motion vector (east, north), amplitudes_m (n, K):
    cumulative peak displacement of landslide k at date t (m), images (list of uint16
    arrays or None when not kept).
    ``east_m`` / ``north_m`` (float32 (n, H, W), true cumulative ground displacement
    since date 0, metres) are computed on first access from the compact form.
    """

    folder: str
    dates: list
    paths: list
    transform: object
    crs: str
    shape: tuple
    pixel_size: float
    dem: np.ndarray
    landslide_labels: np.ndarray
    landslides: list
    cloud_masks: np.ndarray
    valid_masks: np.ndarray
    coreg_offsets_px: np.ndarray
    fully_clouded: list
    noisy_mask: np.ndarray
    ramp_coeffs_px: np.ndarray
    elevation_coeffs_px_per_km: np.ndarray
    slide_weights: np.ndarray
    slide_dirs: np.ndarray
    amplitudes_m: np.ndarray
    params: dict = dataclasses.field(default_factory=dict)
    images: list = None
    _east: np.ndarray = dataclasses.field(default=None, repr=False)
    _north: np.ndarray = dataclasses.field(default=None, repr=False)

    # ----- ground truth -------------------------------------------------------------
    @property
    def n_dates(self):
        return len(self.dates)

    def ground_displacement_m(self, t):
        """(east_m, north_m) float32 (H, W): true cumulative ground motion at date t."""
        h, w = self.shape
        east = np.zeros((h, w), np.float32)
        north = np.zeros((h, w), np.float32)
        for k in range(self.slide_weights.shape[0]):
            a = np.float32(self.amplitudes_m[t, k])
            if a == 0:
                continue
            east += (a * np.float32(self.slide_dirs[k, 0])) * self.slide_weights[k]
            north += (a * np.float32(self.slide_dirs[k, 1])) * self.slide_weights[k]
        return east, north

    def _full(self):
        if self._east is None:
            n = self.n_dates
            e = np.empty((n,) + tuple(self.shape), np.float32)
            nn = np.empty_like(e)
            for t in range(n):
                e[t], nn[t] = self.ground_displacement_m(t)
            self._east, self._north = e, nn
        return self._east, self._north

    @property
    def east_m(self):
        return self._full()[0]

    @property
    def north_m(self):
        return self._full()[1]

    @property
    def days(self):
        d0 = _dt.date.fromisoformat(self.dates[0])
        return np.array([(_dt.date.fromisoformat(d) - d0).days for d in self.dates], float)

    def apparent_displacement_px(self, t):
        """(dx, dy) float64 (H, W): where ground point x0 (date-0 grid) appears in image t,
        minus x0, in pixels: ground motion + co-registration + ramp + elevation bias."""
        h, w = self.shape
        ps = float(self.pixel_size)
        east, north = self.ground_displacement_m(t)
        dx = east.astype(np.float64) / ps
        dy = -north.astype(np.float64) / ps
        dx += self.coreg_offsets_px[t, 0]
        dy += self.coreg_offsets_px[t, 1]
        rc = self.ramp_coeffs_px[t]
        if np.any(rc != 0):
            yy = (np.arange(h, dtype=np.float64)[:, None] - (h - 1) / 2.0) / h
            xx = (np.arange(w, dtype=np.float64)[None, :] - (w - 1) / 2.0) / w
            dx += rc[0] * xx + rc[1] * yy
            dy += rc[2] * xx + rc[3] * yy
        ec = self.elevation_coeffs_px_per_km[t]
        if np.any(ec != 0):
            rel = (self.dem.astype(np.float64) - float(self.params.get("dem_mean", 0.0))) / 1000.0
            dx += ec[0] * rel
            dy += ec[1] * rel
        return dx, dy

    def _inverse(self, t):
        """x0 (rows, cols) float64 (H, W) with x0 + A_t(x0) = p for every grid pixel p."""
        ax, ay = self.apparent_displacement_px(t)
        return _invert_field(ax, ay)

    def pair_truth_px(self, i, j):
        """(dx, dy) float32 (H, W) that a perfect correlator measures for the pair
        (reference i, secondary j), on the grid of image i: the feature at (row, col) of
        image i is at (row + dy, col + dx) of image j. Includes co-registration offsets,
        ramp and elevation bias (everything that moves image content)."""
        x0r, x0c = self._inverse(i)
        ajx, ajy = self.apparent_displacement_px(j)
        h, w = self.shape
        rr, cc = np.mgrid[0:h, 0:w].astype(np.float64)
        # A_i(x0) = p - x0 exactly (to the inversion tolerance)
        aix, aiy = cc - x0c, rr - x0r
        if np.all(ajx == ajx.flat[0]) and np.all(ajy == ajy.flat[0]):
            bjx, bjy = ajx, ajy  # uniform: the spline of a constant is that constant
        else:
            bjx, bjy = _eval_field(_spline_coeffs(ajx, ajy), x0r, x0c)
        return (bjx - aix).astype(np.float32), (bjy - aiy).astype(np.float32)

    def clear_pair_mask(self, i, j, margin_px=0):
        """bool (H, W): pixels valid and free of cloud/shadow in both images i and j
        (eroded by ``margin_px`` pixels, e.g. half a correlation window)."""
        ok = (self.valid_masks[i] & self.valid_masks[j]
              & ~self.cloud_masks[i] & ~self.cloud_masks[j])
        if margin_px > 0:
            ok = ndimage.binary_erosion(ok, iterations=int(margin_px), border_value=0)
        return ok

    def pair_truth_ground_px(self, i, j):
        """(dx, dy) float32 (H, W) of the true ground motion between dates i and j on the
        ground grid (date-0 positions), in pixels; no co-registration/ramp/bias."""
        ps = float(self.pixel_size)
        ei, ni = self.ground_displacement_m(i)
        ej, nj = self.ground_displacement_m(j)
        return ((ej - ei) / ps).astype(np.float32), (-(nj - ni) / ps).astype(np.float32)

    def velocity_m_per_yr(self):
        """(ve, vn) float32 (H, W): mean ground velocity over the whole period (m/yr),
        i.e. (displacement at the last date) / (time span)."""
        span = max(self.days[-1], 1.0) / YEAR_DAYS
        e, n = self.ground_displacement_m(self.n_dates - 1)
        return e / np.float32(span), n / np.float32(span)

    def read_image(self, t):
        """Image t as uint16 (from memory if kept, otherwise from its file)."""
        if self.images is not None:
            return self.images[t]
        import rasterio
        with rasterio.open(self.paths[t]) as src:
            return src.read(1)

    # ----- persistence --------------------------------------------------------------
    def _meta(self):
        return dict(folder=self.folder, dates=list(self.dates),
                    paths=[os.path.basename(p) for p in self.paths],
                    transform=list(self.transform)[:6], crs=str(self.crs),
                    shape=list(self.shape), pixel_size=float(self.pixel_size),
                    landslides=self.landslides, fully_clouded=list(self.fully_clouded),
                    params=self.params)

    @classmethod
    def load(cls, folder):
        """Reload a stack written by :func:`generate_stack` (from ``truth.npz``)."""
        import affine
        path = os.path.join(folder, "truth.npz")
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta_json"]))
            arr = {k: z[k] for k in ("dem", "landslide_labels", "cloud_masks",
                                     "valid_masks", "coreg_offsets_px", "noisy_mask",
                                     "ramp_coeffs_px", "elevation_coeffs_px_per_km",
                                     "slide_weights", "slide_dirs", "amplitudes_m")}
        folder = os.path.abspath(folder)
        return cls(folder=folder, dates=meta["dates"],
                   paths=[os.path.join(folder, p) for p in meta["paths"]],
                   transform=affine.Affine(*meta["transform"]), crs=meta["crs"],
                   shape=tuple(meta["shape"]), pixel_size=meta["pixel_size"],
                   landslides=meta["landslides"], fully_clouded=meta["fully_clouded"],
                   params=meta["params"], **arr)


# --------------------------------------------------------------------------------------
# Field inversion helpers
# --------------------------------------------------------------------------------------

def _spline_coeffs(ax, ay):
    return (ndimage.spline_filter(ax, order=3, mode="nearest"),
            ndimage.spline_filter(ay, order=3, mode="nearest"))


def _eval_field(coeffs, rows, cols):
    c = np.array([rows, cols])
    return (ndimage.map_coordinates(coeffs[0], c, order=3, mode="nearest", prefilter=False),
            ndimage.map_coordinates(coeffs[1], c, order=3, mode="nearest", prefilter=False))


class _Inverse:
    """Solves x0 + A(x0) = p for grid pixels p, block of rows by block of rows.

    Fixed-point iteration ``x0 <- p - A(x0)`` with A evaluated by its cubic B-spline
    (``mode="nearest"``), run only where A varies within reach of p (elsewhere
    ``x0 = p - A(p)`` is exact), until the update is below ``tol`` px."""

    def __init__(self, ax, ay, tol=_TOL_PX, max_iter=30):
        self.ax, self.ay = ax, ay
        self.tol, self.max_iter = tol, max_iter
        self.uniform = bool(np.all(ax == ax.flat[0]) and np.all(ay == ay.flat[0]))
        self.need = None
        self.coeffs = None
        if self.uniform:
            return
        # iterate wherever A varies within reach of p (the bounding box of the varying
        # part, grown by the reach |A| + 3 px)
        varying = (ax != ax.flat[0]) | (ay != ay.flat[0])
        reach = int(math.ceil(float(np.max(np.abs(ax)) + np.max(np.abs(ay))))) + 3
        self.need = np.zeros(ax.shape, bool)
        if varying.mean() > 0.5:
            self.need[:] = True
        else:
            lab, _ = ndimage.label(varying)
            for sl in ndimage.find_objects(lab):
                self.need[max(0, sl[0].start - reach):sl[0].stop + reach,
                          max(0, sl[1].start - reach):sl[1].stop + reach] = True
        self.coeffs = _spline_coeffs(ax, ay)

    def block(self, r0, r1):
        w = self.ax.shape[1]
        rr = np.arange(r0, r1, dtype=np.float64)[:, None]
        cc = np.arange(w, dtype=np.float64)[None, :]
        x0r = rr - self.ay[r0:r1]
        x0c = cc - self.ax[r0:r1]
        if self.coeffs is None:
            return x0r, x0c
        todo = np.nonzero(self.need[r0:r1])
        if todo[0].size == 0:
            return x0r, x0c
        pr = todo[0].astype(np.float64) + r0
        pc = todo[1].astype(np.float64)
        qr, qc = x0r[todo], x0c[todo]
        active = np.arange(pr.size)
        for _ in range(self.max_iter):
            ex, ey = _eval_field(self.coeffs, qr[active], qc[active])
            nr = pr[active] - ey
            nc = pc[active] - ex
            change = np.abs(nr - qr[active]) + np.abs(nc - qc[active])
            qr[active], qc[active] = nr, nc
            active = active[change > self.tol * 0.1]
            if active.size == 0:
                break
        x0r[todo] = qr
        x0c[todo] = qc
        return x0r, x0c


def _invert_field(ax, ay, tol=_TOL_PX, max_iter=30):
    """(x0_rows, x0_cols) float64 (H, W) with x0 + A(x0) = p for every grid pixel p."""
    return _Inverse(ax, ay, tol, max_iter).block(0, ax.shape[0])


# --------------------------------------------------------------------------------------
# Scene components
# --------------------------------------------------------------------------------------

def _make_dates(n, start, mean_interval, rng):
    d0 = _dt.date.fromisoformat(str(start))
    step = 5 if mean_interval >= 5 else 1
    dates = [d0]
    for _ in range(n - 1):
        k = max(1, int(round(rng.gamma(4.0, mean_interval / step / 4.0))))
        dates.append(dates[-1] + _dt.timedelta(days=k * step))
    return [d.isoformat() for d in dates]


def _sun_position(date_iso, lat_deg=46.0, solar_hour=10.5):
    """Approximate sun (azimuth deg clockwise from north, elevation deg)."""
    doy = _dt.date.fromisoformat(date_iso).timetuple().tm_yday
    decl = math.radians(23.44) * math.sin(2 * math.pi * (doy - 81) / 365.0)
    lat = math.radians(lat_deg)
    ha = math.radians(15.0 * (solar_hour - 12.0))
    sin_el = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(ha)
    el = math.asin(sin_el)
    cos_az = (math.sin(decl) - math.sin(el) * math.sin(lat)) / (math.cos(el) * math.cos(lat))
    az = math.degrees(math.acos(max(-1.0, min(1.0, cos_az))))
    if ha > 0:
        az = 360.0 - az
    return az, math.degrees(el)


def _make_dem(shape, pixel_size, rng):
    """Synthetic mountain terrain (m), defined in physical units so that it looks the same
    for any image size: Gaussian random relief with spectrum (f0^2 + f^2)^(-beta/2)
    (beta = 5.5, roll-off wavelength 1/f0 = 4 km: ridges and valleys a few km apart),
    smoothed below ~80 m, scaled so that the median slope is ~24 degrees."""
    from scipy.fft import irfft2, next_fast_len, rfft2

    oh, ow = shape
    h, w = next_fast_len(oh + 64, real=True), next_fast_len(ow + 64, real=True)
    white = rng.standard_normal((h, w))
    fy = np.fft.fftfreq(h)[:, None] / pixel_size
    fx = np.fft.rfftfreq(w)[None, :] / pixel_size
    f2 = fx * fx + fy * fy
    f0, beta, cut = 1.0 / 4000.0, 5.5, 80.0
    amp = (f0 * f0 + f2) ** (-beta / 4.0) * np.exp(-f2 * cut * cut)
    amp[0, 0] = 0.0
    f = irfft2(rfft2(white) * amp, s=(h, w))[32:32 + oh, 32:32 + ow]
    gy, gx = np.gradient(f, pixel_size)
    scale = 0.45 / max(float(np.median(np.hypot(gx, gy))), 1e-12)
    dem = 1800.0 + scale * (f - f.mean())
    return dem.astype(np.float32)


def _cum_displacement(days, v1, v2, onset_day, ramp_days):
    """Cumulative displacement (m) since day 0 for velocity v1 before the onset, rising
    linearly to v2 over ``ramp_days`` after it (m/yr)."""
    days = np.asarray(days, float)

    def G(s):
        s = np.asarray(s, float)
        if ramp_days <= 0:
            return np.maximum(s, 0.0)
        return np.where(s <= 0, 0.0, np.where(s < ramp_days, s * s / (2 * ramp_days),
                                             s - ramp_days / 2.0))
    d = v1 * days
    if onset_day is not None and v2 is not None:
        d = d + (v2 - v1) * (G(days - onset_day) - G(0.0 - onset_day))
    return d / YEAR_DAYS


def _taper(r, r0=0.35):
    """1 inside r0, cosine taper to 0 at r = 1 (C1-smooth)."""
    x = np.clip((r - r0) / (1.0 - r0), 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * x))


def _downslope(dem, pixel_size, row, col, radius):
    """Unit downslope vector (east, north) averaged around (row, col)."""
    h, w = dem.shape
    r0, r1 = max(0, int(row - radius)), min(h, int(row + radius) + 1)
    c0, c1 = max(0, int(col - radius)), min(w, int(col + radius) + 1)
    sub = dem[r0:r1, c0:c1].astype(np.float64)
    gy, gx = np.gradient(sub, pixel_size)
    east, north = -gx.mean(), gy.mean()  # row axis points south
    n = math.hypot(east, north)
    if n == 0:
        return 0.0, -1.0, 0.0
    return east / n, north / n, n


def _place_landslides(specs, dem, pixel_size, rng, span_days, dates):
    h, w = dem.shape
    extent = min(h, w) * pixel_size
    placed = []
    out = []
    weights = []
    dirs = []
    gy, gx = np.gradient(dem.astype(np.float64), pixel_size)
    slope = ndimage.uniform_filter(np.hypot(gx, gy), size=max(3, min(h, w) // 16))
    for k, spec in enumerate(specs, start=1):
        spec = dict(spec)
        length = float(spec.get("length_m", 700.0))
        width = float(spec.get("width_m", 450.0))
        shrink = min(1.0, 0.38 * extent / max(length, width))
        length, width = length * shrink, width * shrink
        half = 0.5 * max(length, width) / pixel_size
        if "centre_px" in spec and spec["centre_px"] is not None:
            row, col = (float(v) for v in spec["centre_px"])
        else:
            best = None
            for _ in range(400):
                row = rng.uniform(half + 2, h - half - 2) if h > 2 * half + 4 else h / 2
                col = rng.uniform(half + 2, w - half - 2) if w > 2 * half + 4 else w / 2
                s = slope[int(row), int(col)]
                sep = min([math.hypot(row - r, col - c) - (half + hh)
                           for r, c, hh in placed] + [1e9])
                score = -abs(s - 0.55) + (0 if sep > 0 else -10 + 0.01 * sep)
                if best is None or score > best[0]:
                    best = (score, row, col)
            _, row, col = best
        placed.append((row, col, half))
        if spec.get("direction_deg") is not None:
            az = math.radians(float(spec["direction_deg"]))
            de, dn = math.sin(az), math.cos(az)
        else:
            de, dn, _ = _downslope(dem, pixel_size, row, col, max(3, half))
        az_deg = math.degrees(math.atan2(de, dn)) % 360.0
        # elliptical profile, long axis along the motion
        rad = 0.5 * max(length, width) / pixel_size + 2
        r0, r1 = max(0, int(row - rad)), min(h, int(math.ceil(row + rad)) + 1)
        c0, c1 = max(0, int(col - rad)), min(w, int(math.ceil(col + rad)) + 1)
        yy, xx = np.mgrid[r0:r1, c0:c1].astype(np.float64)
        e_m = (xx - col) * pixel_size
        n_m = -(yy - row) * pixel_size
        along = e_m * de + n_m * dn
        across = -e_m * dn + n_m * de
        r = np.sqrt((along / (0.5 * length)) ** 2 + (across / (0.5 * width)) ** 2)
        wgt = np.zeros((h, w), np.float32)
        if r1 > r0 and c1 > c0:
            wgt[r0:r1, c0:c1] = _taper(r)
        weights.append(wgt)
        dirs.append((de, dn))
        v1 = float(spec.get("velocity_m_per_yr", 5.0))
        v2 = spec.get("velocity_after_m_per_yr")
        onset_date = spec.get("accel_onset_date")
        onset_day = None
        if v2 is not None:
            v2 = float(v2)
            if onset_date is None:
                frac = float(spec.get("accel_onset_fraction", 0.55))
                onset_day = int(round(frac * span_days))
                onset_date = (_dt.date.fromisoformat(dates[0])
                              + _dt.timedelta(days=onset_day)).isoformat()
            else:
                onset_day = (_dt.date.fromisoformat(str(onset_date))
                             - _dt.date.fromisoformat(dates[0])).days
        ramp_days = float(spec.get("accel_ramp_days", 30.0)) if v2 is not None else 0.0
        out.append(dict(id=k, name=spec.get("name", "landslide_%d" % k),
                        centre_px=[round(row, 3), round(col, 3)],
                        length_m=round(length, 1), width_m=round(width, 1),
                        direction_deg=round(az_deg, 3),
                        velocity_m_per_yr=v1, velocity_before_m_per_yr=v1,
                        velocity_after_m_per_yr=(v2 if v2 is not None else v1),
                        accel_onset_date=onset_date if v2 is not None else None,
                        accel_onset_day=onset_day, accel_ramp_days=ramp_days))
    return out, weights, dirs


def _cloud_layers(shape, cover, rng, shadow_shift):
    """(alpha, shadow, brightness DN) for one date. alpha in [0, 1] with exact zeros
    outside clouds; shadow is the cloud alpha displaced by ``shadow_shift`` (rows, cols)."""
    h, w = shape
    sr, sc = int(round(shadow_shift[0])), int(round(shadow_shift[1]))
    ch, cw = h + abs(sr), w + abs(sc)
    base = fractal_texture((ch, cw), rng=rng, beta=3.6).astype(np.float32)
    base += 0.12 * fractal_texture((ch, cw), rng=rng, beta=2.2)
    edge = 0.35 * float(base.std())
    q = float(np.quantile(base, 1.0 - cover)) if cover < 1 else float(base.min()) - edge
    x = np.clip((base - q) / edge, 0.0, 1.0)
    alpha_c = (x * x * (3.0 - 2.0 * x)).astype(np.float32)  # smoothstep
    orr, occ = max(sr, 0), max(sc, 0)
    alpha = alpha_c[orr:orr + h, occ:occ + w]
    shadow = alpha_c[orr - sr:orr - sr + h, occ - sc:occ - sc + w]
    tex = fractal_texture((h, w), rng=rng, beta=2.6)
    bright = (rng.uniform(4200, 6500) + 700.0 * tex).astype(np.float32)
    return np.ascontiguousarray(alpha), np.ascontiguousarray(shadow), bright


def _nodata_mask(shape, rng, t):
    """Boolean mask of nodata pixels for date t (swath edge and/or zero strip)."""
    h, w = shape
    mask = np.zeros((h, w), bool)
    if t == 0:
        return mask
    if rng.random() < 0.2:  # oblique swath edge, ~10 degrees from north
        frac = rng.uniform(0.05, 0.35)
        tilt = math.tan(math.radians(rng.uniform(6, 14)))
        yy, xx = np.mgrid[0:h, 0:w]
        if rng.random() < 0.5:
            mask |= xx < frac * w + tilt * (yy - h / 2)
        else:
            mask |= xx > (1 - frac) * w + tilt * (yy - h / 2)
    if rng.random() < 0.1:  # granule / line-loss strip
        k = int(rng.integers(2, max(3, h // 10)))
        if rng.random() < 0.5:
            mask[:k] = True
        else:
            mask[-k:] = True
    return mask


# --------------------------------------------------------------------------------------
# npz streaming writer
# --------------------------------------------------------------------------------------

def _write_npz(path, arrays, stacked):
    """Write ``arrays`` (name -> ndarray) and ``stacked`` (name -> (shape, dtype, iterable
    of slices)) into a compressed .npz, streaming the stacked ones slice by slice."""
    from ..raster_io import atomic_output
    with atomic_output(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED,
                             compresslevel=1, allowZip64=True) as zf:
            for name, a in arrays.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asarray(a), allow_pickle=False)
                zf.writestr(name + ".npy", buf.getvalue())
            for name, (shape, dtype, slices) in stacked.items():
                with zf.open(name + ".npy", "w", force_zip64=True) as fh:
                    np.lib.format.write_array_header_2_0(
                        fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                             "fortran_order": False, "shape": tuple(shape)})
                    for s in slices:
                        fh.write(np.ascontiguousarray(s, dtype=dtype).tobytes())


# --------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------

@dataclasses.dataclass
class SyntheticStackParams:
    """What a synthetic stack looks like (:func:`generate_stack`); units and bounds below.

    Everything is deterministic from ``seed``. ``validate()`` checks the bounds and
    returns the object; the values are used (and recorded in ``SyntheticStack.params``)
    as given.
    """

    #: number of acquisitions (>= 2)
    n_dates: int = 40
    #: (rows, cols) of every image, pixels (each >= 32)
    shape: tuple = (512, 512)
    #: seed of every random draw (integer >= 0)
    seed: int = 0
    #: metres (> 0); north-up grid in EPSG:32632
    pixel_size: float = 10.0
    #: first date (ISO ``YYYY-MM-DD``)
    start_date: str = "2019-01-01"
    #: mean revisit, days (>= 0); intervals are gamma-distributed multiples of 5 days
    #: (Sentinel-2 revisit; of 1 day below a 5-day mean, at least one step)
    mean_interval_days: float = 10
    #: "default" (a steady ~5 m/yr slide and one accelerating from 3 to 30 m/yr at 55 %
    #: of the period), None / [] for none, or a list of dicts with optional keys
    #: ``velocity_m_per_yr`` (before any acceleration), ``velocity_after_m_per_yr``,
    #: ``accel_onset_date`` (ISO) or ``accel_onset_fraction`` (of the time span),
    #: ``accel_ramp_days`` (velocity rises linearly over this many days, default 30),
    #: ``length_m``, ``width_m`` (ellipse axes along/across motion; shrunk to fit small
    #: images), ``centre_px`` ((row, col), default: random on a steep slope),
    #: ``direction_deg`` (azimuth of motion, default: downslope on the DEM), ``name``.
    #: Velocities are peak values (core of the slide); the speed tapers smoothly
    #: (cosine) to 0 at the ellipse border.
    landslides: object = "default"
    #: fraction (0..1) of dates (never date 0) with partial clouds (5-60 % cover) and
    #: their shadows
    cloudy_date_fraction: float = 0.3
    #: number (>= 0) of dates (never date 0) ~98-100 % covered by clouds
    fully_clouded_dates: int = 1
    #: sensor noise std relative to the mean signal (>= 0)
    noise_level: float = 0.01
    #: seasonal gain/offset/gamma and sun-dependent terrain shading; False gives
    #: identical radiometry on every date
    illumination_change: bool = True
    #: std (px, >= 0) of the per-date co-registration offset; date 0 has none
    coreg_sigma_px: float = 0.15
    #: zero (nodata) swath edges / strips on some dates (never date 0)
    nodata_border: bool = True
    #: "sentinel2" (real S2 texture, fractal fallback) or "fractal"
    texture: str = "sentinel2"
    #: None or amplitude (px, >= 0): per-date planar misregistration whose coefficients
    #: (px across the full image width/height, for dx and dy) are N(0, ramp); date 0 none
    ramp: float = None
    #: None or px per km of elevation (any sign): dates of relative orbit R065 (about
    #: half, never date 0) get an apparent shift of ``elevation_bias`` px per km above
    #: the scene mean, along the across-track direction (~east, 12 deg tilt)
    elevation_bias: float = None
    #: add a vegetated patch whose texture changes randomly between dates
    noisy_area: bool = False

    #: (lowest, highest) allowed value of the numeric fields (None = unbounded; for
    #: ``shape`` per side), checked by :meth:`validate`; the Processing dialog uses the
    #: same. A bound in :data:`EXCLUSIVE` is not itself allowed.
    BOUNDS = {"n_dates": (2, None), "shape": (32, None), "seed": (0, None),
              "pixel_size": (0.0, None), "mean_interval_days": (0.0, None),
              "cloudy_date_fraction": (0.0, 1.0), "fully_clouded_dates": (0, None),
              "noise_level": (0.0, None), "coreg_sigma_px": (0.0, None), "ramp": (0.0, None)}
    EXCLUSIVE = {("pixel_size", "lo")}

    def validate(self):
        b = self.BOUNDS
        n_dates = int(self.n_dates)
        if n_dates < b["n_dates"][0]:
            raise ParameterError("n_dates must be at least 2 (got %r)." % n_dates)
        try:
            h, w = (int(self.shape[0]), int(self.shape[1]))
        except (TypeError, ValueError, IndexError):
            raise ParameterError("shape must be (rows, cols) (got %r)." % (self.shape,))
        if len(self.shape) != 2 or h < b["shape"][0] or w < b["shape"][0]:
            raise ParameterError("shape must be at least 32 x 32 pixels (got %r)."
                                 % (self.shape,))
        if self.pixel_size <= b["pixel_size"][0]:
            raise ParameterError("pixel_size must be positive (got %r)." % self.pixel_size)
        if self.texture not in ("sentinel2", "fractal"):
            raise ParameterError("texture must be 'sentinel2' or 'fractal' (got %r)."
                                 % self.texture)
        lo, hi = b["cloudy_date_fraction"]
        if not lo <= self.cloudy_date_fraction <= hi:
            raise ParameterError("cloudy_date_fraction must be within 0..1.")
        try:
            _dt.date.fromisoformat(str(self.start_date))
        except ValueError:
            raise ParameterError("start_date must be an ISO date YYYY-MM-DD (got %r)."
                                 % (self.start_date,))
        if not self.mean_interval_days >= b["mean_interval_days"][0]:
            raise ParameterError("mean_interval_days must be >= 0 (got %r)."
                                 % self.mean_interval_days)
        if int(self.fully_clouded_dates) < b["fully_clouded_dates"][0]:
            raise ParameterError("fully_clouded_dates must be >= 0 (got %r)."
                                 % self.fully_clouded_dates)
        for name in ("noise_level", "coreg_sigma_px", "ramp"):
            v = getattr(self, name)
            if v is not None and not v >= b[name][0]:
                raise ParameterError("%s must be >= 0 (got %r)." % (name, v))
        if isinstance(self.seed, (int, np.integer)) and self.seed < b["seed"][0]:
            raise ParameterError("seed must be >= 0 (got %r)." % self.seed)
        return self

    def record(self, dem_mean):
        """The ``SyntheticStack.params`` entries of these parameters (truth.json)."""
        return dict(seed=self.seed, n_dates=int(self.n_dates),
                    shape=[int(self.shape[0]), int(self.shape[1])],
                    pixel_size=self.pixel_size, start_date=str(self.start_date),
                    mean_interval_days=self.mean_interval_days,
                    cloudy_date_fraction=self.cloudy_date_fraction,
                    fully_clouded_dates=self.fully_clouded_dates,
                    noise_level=self.noise_level,
                    illumination_change=bool(self.illumination_change),
                    coreg_sigma_px=self.coreg_sigma_px, nodata_border=bool(self.nodata_border),
                    texture=self.texture, ramp=self.ramp, elevation_bias=self.elevation_bias,
                    noisy_area=bool(self.noisy_area), dem_mean=dem_mean)


def _resolve_params(params, overrides):
    """SyntheticStackParams from ``params`` (object, dict or None) and keyword overrides."""
    if params is None:
        params = SyntheticStackParams()
    elif isinstance(params, dict):
        params = SyntheticStackParams(**params)
    elif not isinstance(params, SyntheticStackParams):
        raise ParameterError("params must be a SyntheticStackParams (got %s)."
                             % type(params).__name__)
    if overrides:
        names = {f.name for f in dataclasses.fields(SyntheticStackParams)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError("generate_stack() got unexpected keyword argument(s) %s; "
                            "parameters are %s" % (", ".join(unknown), ", ".join(sorted(names))))
        params = dataclasses.replace(params, **overrides)
    return params.validate()


# --------------------------------------------------------------------------------------
# Generation phases (in the order generate_stack runs them)
# --------------------------------------------------------------------------------------

#: names of the independent random streams, seeded [seed, 1] ... [seed, 9]: each phase
#: draws only from its own, so phases cannot disturb one another
_STREAMS = ("dates", "dem", "slides", "geo", "rad", "cloud", "nod", "noise", "veg")


def _random_streams(seed):
    return {name: np.random.default_rng([seed, k]) for k, name in enumerate(_STREAMS, 1)}


@dataclasses.dataclass
class _Acquisitions:
    """Dates and per-date acquisition geometry."""
    dates: list
    days: np.ndarray
    span: float              # days from first to last date (>= 1)
    orbit_b: np.ndarray      # bool: relative orbit R065 (else R108)
    spacecraft: list
    sun: list                # (azimuth, elevation) deg
    names: list
    paths: list


def _acquisitions(p, out_folder, rng):
    """Dates, orbits, spacecraft, times, sun angles and file names (stream ``dates``)."""
    n_dates = int(p.n_dates)
    dates = _make_dates(n_dates, p.start_date, float(p.mean_interval_days), rng)
    days = np.array([(_dt.date.fromisoformat(d) - _dt.date.fromisoformat(dates[0])).days
                     for d in dates], float)
    span = max(days[-1], 1.0)
    orbit_b = rng.random(n_dates) < 0.5
    orbit_b[0] = False
    spacecraft = ["S2A" if (_dt.date.fromisoformat(d) < _dt.date(2017, 7, 1)
                            or rng.random() < 0.5) else "S2B" for d in dates]
    times = ["1030%02d" % rng.integers(10, 60) if not b else
             "1025%02d" % rng.integers(10, 60) for b in orbit_b]
    sun = [_sun_position(d) for d in dates]
    if not p.illumination_change:
        sun = [sun[0]] * n_dates
    names = [image_file_name(d, sc, "R065" if b else "R108", tm)
             for d, sc, b, tm in zip(dates, spacecraft, orbit_b, times)]
    paths = [os.path.join(out_folder, nm) if out_folder else nm for nm in names]
    return _Acquisitions(dates, days, span, orbit_b, spacecraft, sun, names, paths)


@dataclasses.dataclass
class _Landslides:
    """Landslide model on the reference grid."""
    slides: list             # dicts, see SyntheticStack.landslides
    weights: np.ndarray      # float32 (K, H, W)
    dirs: np.ndarray         # (K, 2)
    amplitudes: np.ndarray   # (n_dates, K) m
    labels: np.ndarray       # int32 (H, W)


def _landslide_model(p, dem, acq, rng):
    """Place the landslides on the DEM, their displacement per date and their labelled
    areas and summary velocities (stream ``slides``)."""
    h, w = int(p.shape[0]), int(p.shape[1])
    pixel_size, span = p.pixel_size, acq.span
    if p.landslides == "default":
        specs = list(DEFAULT_LANDSLIDES)
    elif p.landslides is None:
        specs = []
    else:
        specs = list(p.landslides)
    slides, weights, dirs = _place_landslides(specs, dem, pixel_size, rng, span, acq.dates)
    K = len(slides)
    slide_weights = (np.stack(weights) if K else np.zeros((0, h, w), np.float32))
    slide_dirs = np.array(dirs, float).reshape(K, 2)
    amplitudes = np.zeros((int(p.n_dates), K), float)
    labels = np.zeros((h, w), np.int32)
    for k, s in enumerate(slides):
        amplitudes[:, k] = _cum_displacement(
            acq.days, s["velocity_before_m_per_yr"],
            s["velocity_after_m_per_yr"] if s["accel_onset_date"] else None,
            s["accel_onset_day"], s["accel_ramp_days"])
        sel = slide_weights[k] >= 0.05
        labels[sel & (labels == 0)] = k + 1
    for k, s in enumerate(slides):
        sel = labels == k + 1
        s["area_m2"] = float(sel.sum() * pixel_size ** 2)
        mean_w = float(slide_weights[k][sel].mean()) if sel.any() else 0.0
        s["mean_velocity_m_per_yr"] = round(amplitudes[-1, k] / span * YEAR_DAYS * mean_w, 4)
        s["peak_mean_velocity_m_per_yr"] = round(amplitudes[-1, k] / span * YEAR_DAYS, 4)
        s["final_peak_displacement_m"] = round(float(amplitudes[-1, k]), 4)
        e = ORIGIN_EN[0] + (s["centre_px"][1] + 0.5) * pixel_size
        n = ORIGIN_EN[1] - (s["centre_px"][0] + 0.5) * pixel_size
        s["centre"] = [round(e, 2), round(n, 2)]
    return _Landslides(slides, slide_weights, slide_dirs, amplitudes, labels)


def _geometry_errors(p, orbit_b, rng):
    """(co-registration (n, 2), ramp (n, 4), elevation (n, 2)) px (stream ``geo``)."""
    n_dates = int(p.n_dates)
    coreg = rng.normal(0.0, float(p.coreg_sigma_px), (n_dates, 2))
    coreg[0] = 0.0
    ramp_c = np.zeros((n_dates, 4))
    if p.ramp:
        ramp_c = rng.normal(0.0, float(p.ramp), (n_dates, 4))
        ramp_c[0] = 0.0
    elev_c = np.zeros((n_dates, 2))
    if p.elevation_bias:
        th = math.radians(12.0)
        elev_c[orbit_b] = float(p.elevation_bias) * np.array([math.cos(th), math.sin(th)])
    return coreg, ramp_c, elev_c


def _noisy_patch(p, labels, n_slides, rng):
    """(bool mask, soft float32 weight or None) of the vegetated patch, ground-attached
    and kept away from the landslides (stream ``veg``)."""
    h, w = int(p.shape[0]), int(p.shape[1])
    noisy = np.zeros((h, w), bool)
    veg_soft = None
    if p.noisy_area:
        blob = fractal_texture((h, w), rng=rng, beta=3.5)
        cy, cx = rng.uniform(0.25, 0.75) * h, rng.uniform(0.25, 0.75) * w
        for _ in range(50):  # keep it away from the landslides
            if not n_slides or np.all(labels[max(0, int(cy - h * 0.12)):int(cy + h * 0.12),
                                             max(0, int(cx - w * 0.12)):int(cx + w * 0.12)] == 0):
                break
            cy, cx = rng.uniform(0.15, 0.85) * h, rng.uniform(0.15, 0.85) * w
        yy, xx = np.mgrid[0:h, 0:w]
        rad = np.hypot((yy - cy) / (0.13 * h), (xx - cx) / (0.13 * w))
        field = 1.0 - rad + 0.25 * blob
        veg_soft = np.clip(field / 0.15, 0.0, 1.0).astype(np.float32)
        noisy = veg_soft > 0
    return noisy, veg_soft


def _new_stack(p, out_folder, acq, dem, ls, geometry, noisy, keep_images):
    """The SyntheticStack of the truth computed so far (clouds and masks filled later)."""
    import affine
    h, w = int(p.shape[0]), int(p.shape[1])
    n_dates = int(p.n_dates)
    coreg, ramp_c, elev_c = geometry
    return SyntheticStack(
        folder=out_folder, dates=acq.dates, paths=acq.paths,
        transform=affine.Affine(p.pixel_size, 0.0, ORIGIN_EN[0], 0.0, -p.pixel_size,
                                ORIGIN_EN[1]),
        crs="EPSG:%d" % CRS_EPSG, shape=(h, w), pixel_size=float(p.pixel_size), dem=dem,
        landslide_labels=ls.labels, landslides=ls.slides,
        cloud_masks=np.zeros((n_dates, h, w), bool),
        valid_masks=np.ones((n_dates, h, w), bool),
        coreg_offsets_px=coreg, fully_clouded=[], noisy_mask=noisy, ramp_coeffs_px=ramp_c,
        elevation_coeffs_px_per_km=elev_c, slide_weights=ls.weights,
        slide_dirs=ls.dirs, amplitudes_m=ls.amplitudes,
        params=p.record(float(dem.mean())),
        images=[] if keep_images else None)


@dataclasses.dataclass
class _Scene:
    """Ground texture and terrain on the grid padded by ``margin`` pixels (rendering
    samples slightly outside the grid); arrays are None when nothing is rendered."""
    margin: int
    padded_shape: tuple
    tex_mean: float = 1000.0
    tex_coef: np.ndarray = None   # cubic B-spline coefficients of the texture
    slope: np.ndarray = None
    aspect: np.ndarray = None     # azimuth of downslope (from north)
    veg_pad: np.ndarray = None    # soft weight of the vegetated patch


def _ground_scene(p, stack, veg_soft, render):
    """Margin from the largest apparent displacement, then (when rendering) the texture
    (from ``seed``, no stream), its spline coefficients, terrain slope and aspect."""
    h, w = stack.shape
    dem = stack.dem
    max_app = 2.0
    for t in range(stack.n_dates):
        max_app = max(max_app, float(np.abs(stack.amplitudes_m[t]).max(initial=0.0))
                      / p.pixel_size + np.abs(stack.coreg_offsets_px[t]).sum()
                      + np.abs(stack.ramp_coeffs_px[t]).sum()
                      + (abs(float(p.elevation_bias or 0)) * float(np.ptp(dem)) / 1000.0))
    m = int(math.ceil(max_app)) + 8
    H, W = h + 2 * m, w + 2 * m
    scene = _Scene(margin=m, padded_shape=(H, W))
    stack.params["texture_source"] = ("sentinel2" if p.texture == "sentinel2" and
                                      (not render or _s2_available()) else "fractal")
    if not render:
        return scene
    if p.texture == "sentinel2":
        tex = sentinel2_texture((H, W), p.seed)
    else:
        from .texture import _fractal_dn
        tex = _fractal_dn((H, W), p.seed)
    scene.tex_mean = float(tex.mean())
    dem_pad = ndimage.gaussian_filter(np.pad(dem, m, mode="reflect").astype(np.float64), 1.5)
    gy, gx = np.gradient(dem_pad, p.pixel_size)
    scene.slope = np.arctan(np.hypot(gx, gy)).astype(np.float32)
    scene.aspect = np.arctan2(-gx, gy).astype(np.float32)
    del gx, gy, dem_pad
    scene.veg_pad = np.pad(veg_soft, m, mode="reflect") if veg_soft is not None else None
    # continuous scene: see _render_ground
    scene.tex_coef = ndimage.spline_filter(tex, order=3, output=np.float32, mode="mirror")
    return scene


def _cloud_schedule(p, stack, rng):
    """(fully clouded date indices, set of partly cloudy ones), never date 0 (stream
    ``cloud``); recorded in the stack."""
    n_dates = stack.n_dates
    order = list(rng.permutation(list(range(1, n_dates))))
    n_full = min(int(p.fully_clouded_dates), len(order))
    full = sorted(int(i) for i in order[:n_full])
    n_cloudy = min(int(round(p.cloudy_date_fraction * n_dates)), len(order) - n_full)
    cloudy = set(int(i) for i in order[n_full:n_full + n_cloudy])
    stack.fully_clouded = full
    stack.params["cloudy_dates"] = sorted(cloudy)
    return full, cloudy


def _radiometry_per_date(p, stack, rng):
    """(gain, offset, gamma) per date (stream ``rad``); recorded in the stack."""
    n_dates = stack.n_dates
    doy = np.array([_dt.date.fromisoformat(d).timetuple().tm_yday for d in stack.dates], float)
    if p.illumination_change:
        gain = 1.0 + 0.15 * np.sin(2 * np.pi * (doy - 100) / YEAR_DAYS) \
            + rng.normal(0, 0.05, n_dates)
        offset = rng.normal(0, 40.0, n_dates)
        gamma = np.clip(1.0 + rng.normal(0, 0.04, n_dates), 0.9, 1.1)
    else:
        gain, offset, gamma = np.ones(n_dates), np.zeros(n_dates), np.ones(n_dates)
    stack.params["radiometry"] = dict(gain=[round(g, 5) for g in gain],
                                      offset=[round(o, 3) for o in offset],
                                      gamma=[round(g, 5) for g in gamma])
    return gain, offset, gamma


def _ground_image(stack, t, scene, shade, radio, rng_veg):
    """Radiance of date t before clouds: the ground (with the day's vegetation texture,
    stream ``veg``) and the day's gain / offset / gamma (float32)."""
    gain, offset, gamma = radio
    veg = None
    if scene.veg_pad is not None:
        vt = scene.tex_mean * (1.15 + 0.18 * fractal_texture(scene.padded_shape, rng=rng_veg,
                                                             beta=1.8))
        veg = (scene.veg_pad, ndimage.spline_filter(vt, order=3, output=np.float32,
                                                    mode="mirror"),
               np.float32(rng_veg.uniform(0.6, 0.95)))
        del vt
    img = _render_ground(stack, t, scene.margin, scene.tex_coef, shade, veg)
    del veg
    tex_mean = scene.tex_mean
    img = np.maximum(img, np.float32(1.0))
    return np.float32(offset[t]) + np.float32(gain[t] * tex_mean) \
        * (img / np.float32(tex_mean)) ** np.float32(gamma[t])


def _date_clouds(p, stack, t, sun_t, full, rng):
    """(alpha, shadow, brightness) of the clouds of date t, or None (stream ``cloud``)."""
    h, w = stack.shape
    az, el = sun_t
    cover = rng.uniform(0.985, 1.0) if t in full else rng.uniform(0.05, 0.6)
    height = rng.uniform(800.0, 2500.0)
    dist = min(height / math.tan(math.radians(max(el, 10.0))) / p.pixel_size,
               0.3 * min(h, w))
    saz = math.radians(az + 180.0)
    shift = (-math.cos(saz) * dist, math.sin(saz) * dist)  # rows, cols
    return _cloud_layers((h, w), cover, rng, shift)


def _date_record(acq, t, cloud_frac, nod, coreg):
    """The ``per_date`` entry of date t (truth.json)."""
    az, el = acq.sun[t]
    return dict(date=acq.dates[t], file=acq.names[t], orbit="R065" if acq.orbit_b[t]
                else "R108", sun_azimuth=round(az, 3),
                sun_elevation=round(el, 3), cloud_fraction=round(cloud_frac, 4),
                valid_fraction=round(float((~nod).mean()), 4),
                coreg_dx_px=round(float(coreg[t, 0]), 5),
                coreg_dy_px=round(float(coreg[t, 1]), 5))


def _write_image(stack, t, img, acq, info, cloud_frac, seed):
    """Image t as a UInt16 GeoTIFF with its acquisition tags."""
    from ..raster_io import write_bands
    az, el = acq.sun[t]
    write_bands(stack.paths[t], [img], stack.transform, stack.crs, descriptions=["B08"],
                tags=dict(ACQUISITION_DATE=acq.dates[t], SPACECRAFT=acq.spacecraft[t],
                          RELATIVE_ORBIT=info["orbit"],
                          SUN_AZIMUTH="%.3f" % az, SUN_ELEVATION="%.3f" % el,
                          CLOUD_FRACTION="%.4f" % cloud_frac,
                          VALID_FRACTION="%.4f" % info["valid_fraction"],
                          SYNTHETIC="1", SYNTHETIC_SEED=str(seed)),
                dtype="uint16", nodata=0)


def _render_dates(p, stack, acq, scene, schedule, radio, streams, write, keep_images, render,
                  progress):
    """Date by date: ground, radiometry, clouds and shadows (stream ``cloud``), sensor
    noise (``noise``), nodata (``nod``), UInt16 quantisation; fills the cloud / valid
    masks and ``params["per_date"]``, writes and/or keeps each image."""
    full, cloudy = schedule
    h, w = stack.shape
    noise_std = float(p.noise_level) * scene.tex_mean
    per_date_info = []
    shade = None
    prog = progress.sub(0.0, 0.92)
    for t in range(stack.n_dates):
        progress.check()
        az, el = acq.sun[t]
        img = None
        if render:
            if shade is None or p.illumination_change:
                shade = _shading(scene.slope, scene.aspect, az, el)
            img = _ground_image(stack, t, scene, shade, radio, streams["veg"])
        cmask = np.zeros((h, w), bool)
        if t in cloudy or t in full:
            alpha, shadow, bright = _date_clouds(p, stack, t, acq.sun[t], full, streams["cloud"])
            if render:
                img = img * (1.0 - 0.6 * shadow)
                img = img * (1.0 - alpha) + alpha * bright
            cmask = (alpha > 0) | (shadow > 0)
        if render:
            if noise_std > 0:
                img += streams["noise"].standard_normal((h, w), dtype=np.float32) \
                    * np.float32(noise_std)
            img = np.clip(np.rint(img), 1, 65535).astype(np.uint16)
        nod = (_nodata_mask((h, w), streams["nod"], t) if p.nodata_border
               else np.zeros((h, w), bool))
        if render:
            img[nod] = 0
        stack.cloud_masks[t] = cmask
        stack.valid_masks[t] = ~nod
        cloud_frac = float(cmask[~nod].mean()) if (~nod).any() else 1.0
        per_date_info.append(_date_record(acq, t, cloud_frac, nod, stack.coreg_offsets_px))
        if write:
            _write_image(stack, t, img, acq, per_date_info[-1], cloud_frac, p.seed)
        if keep_images:
            stack.images.append(img)
        prog.update((t + 1) / stack.n_dates, "Synthetic image %d/%d" % (t + 1, stack.n_dates))
    stack.params["per_date"] = per_date_info


# --------------------------------------------------------------------------------------
# Main entry point
# --------------------------------------------------------------------------------------

def generate_stack(out_folder, params=None, *, write=True, keep_images=None, progress=None,
                   **overrides):
    """Generate a synthetic image stack with ground truth; see the module docstring.

    Parameters
    ----------
    out_folder : folder receiving the images, ``dem.tif``, ``truth.npz``, ``truth.json``
        (may be None when ``write`` is False).
    params : :class:`SyntheticStackParams` (or a dict of its fields; default: its
        defaults): what the stack looks like, with units and bounds.
    **overrides : any field of :class:`SyntheticStackParams` (``n_dates``, ``shape``,
        ``seed``, ``pixel_size``, ``start_date``, ``mean_interval_days``, ``landslides``,
        ``cloudy_date_fraction``, ``fully_clouded_dates``, ``noise_level``,
        ``illumination_change``, ``coreg_sigma_px``, ``nodata_border``, ``texture``,
        ``ramp``, ``elevation_bias``, ``noisy_area``), replacing the value of ``params``:
        ``generate_stack(folder, n_dates=8, seed=3)`` works as it always did.
    write : write files (False: only return the object; images are then kept).
    keep_images : keep the uint16 images in memory (default: True when not writing or
        when the stack is small, <= 16 M pixels).
    progress : optional :class:`~.progress.Progress`.

    Returns
    -------
    SyntheticStack

    The phases, in order: :func:`_acquisitions` (dates, orbits, sun), :func:`_make_dem`,
    :func:`_landslide_model`, :func:`_geometry_errors`, :func:`_noisy_patch`,
    :func:`_new_stack`, :func:`_ground_scene` (texture, terrain), :func:`_cloud_schedule`,
    :func:`_radiometry_per_date`, :func:`_render_dates`, :func:`_write_truth`. Each draws
    from its own random stream (``_STREAMS``), so a phase never changes another's draws.
    """
    p = _resolve_params(params, overrides)
    progress = as_progress(progress)
    n_dates = int(p.n_dates)
    h, w = (int(p.shape[0]), int(p.shape[1]))
    if write:
        if not out_folder:
            raise ParameterError("out_folder is required when write=True.")
        from ..raster_io import ensure_writable_folder
        ensure_writable_folder(out_folder)
        out_folder = os.path.abspath(out_folder)
    if keep_images is None:
        keep_images = (not write) or n_dates * h * w <= 16_000_000
    # write=False, keep_images=False: truth only (clouds, masks, fields), no rendering
    render = bool(write or keep_images)

    streams = _random_streams(p.seed)
    acq = _acquisitions(p, out_folder, streams["dates"])
    dem = _make_dem((h, w), p.pixel_size, streams["dem"])
    ls = _landslide_model(p, dem, acq, streams["slides"])
    geometry = _geometry_errors(p, acq.orbit_b, streams["geo"])
    noisy, veg_soft = _noisy_patch(p, ls.labels, len(ls.slides), streams["veg"])
    stack = _new_stack(p, out_folder, acq, dem, ls, geometry, noisy, keep_images)
    scene = _ground_scene(p, stack, veg_soft, render)
    schedule = _cloud_schedule(p, stack, streams["cloud"])
    radio = _radiometry_per_date(p, stack, streams["rad"])
    _render_dates(p, stack, acq, scene, schedule, radio, streams, write, keep_images, render,
                  progress)
    if write:
        _write_truth(stack, out_folder)
    progress.update(1.0, "Synthetic stack written")
    return stack


def _shading(slope, aspect, az, el):
    """Gentle topographic shading factor (float32) for sun azimuth/elevation (deg); the
    real L1C texture already carries its own shading, so the amplitude is modest."""
    zen = math.radians(90.0 - el)
    cos_i = (np.float32(math.cos(zen)) * np.cos(slope) + np.float32(math.sin(zen))
             * np.sin(slope) * np.cos(np.float32(math.radians(az)) - aspect))
    return np.clip(1.0 + 0.25 * (cos_i - math.cos(zen)) / max(math.cos(zen), 0.5),
                   0.5, 1.4).astype(np.float32)


def _render_ground(stack, t, m, tex_coef, shade, veg):
    """Noise-free ground radiance of date t on the image grid (float32): the continuous
    scene sampled at x0, where x0 + A_t(x0) = p for every pixel p (block by block).

    The continuous scene is the cubic spline of the texture (prefiltered once) times the
    day's shading (grid values used as cubic B-spline coefficients: C2-smooth); in the
    vegetated patch it is blended, with a smooth weight, with the day's own vegetation
    texture (cubic spline). All arrays are on the ground grid padded by ``m`` pixels."""
    h, w = stack.shape
    ax, ay = stack.apparent_displacement_px(t)
    inv = _Inverse(ax, ay)
    img = np.empty((h, w), np.float32)
    for r0 in range(0, h, _BLOCK_ROWS):
        r1 = min(h, r0 + _BLOCK_ROWS)
        x0r, x0c = inv.block(r0, r1)
        coords = np.array([x0r + m, x0c + m])
        del x0r, x0c
        val = ndimage.map_coordinates(tex_coef, coords, order=3, mode="mirror",
                                      prefilter=False, output=np.float32)
        if veg is not None:
            veg_pad, veg_coef, veg_w = veg
            wv = ndimage.map_coordinates(veg_pad, coords, order=3, mode="mirror",
                                         prefilter=False, output=np.float32) * veg_w
            vv = ndimage.map_coordinates(veg_coef, coords, order=3, mode="mirror",
                                         prefilter=False, output=np.float32)
            val = val * (1 - wv) + wv * vv
        val *= ndimage.map_coordinates(shade, coords, order=3, mode="mirror",
                                       prefilter=False, output=np.float32)
        img[r0:r1] = val
    return img


def _s2_available():
    from .texture import _read_s2_sample, find_s2_sample
    p = find_s2_sample()
    return bool(p) and _read_s2_sample(p) is not None


def _write_truth(stack, folder):
    from ..raster_io import write_bands, write_text_atomic
    write_bands(os.path.join(folder, "dem.tif"), [stack.dem], stack.transform, stack.crs,
                descriptions=["elevation_m"], tags=dict(SYNTHETIC="1"))
    meta = stack._meta()
    n = stack.n_dates
    shp = (n,) + tuple(stack.shape)
    arrays = dict(meta_json=np.array(json.dumps(meta, default=_json_default)), dem=stack.dem,
                  landslide_labels=stack.landslide_labels, cloud_masks=stack.cloud_masks,
                  valid_masks=stack.valid_masks, coreg_offsets_px=stack.coreg_offsets_px,
                  noisy_mask=stack.noisy_mask, ramp_coeffs_px=stack.ramp_coeffs_px,
                  elevation_coeffs_px_per_km=stack.elevation_coeffs_px_per_km,
                  slide_weights=stack.slide_weights, slide_dirs=stack.slide_dirs,
                  amplitudes_m=stack.amplitudes_m,
                  dates=np.array(stack.dates), days=stack.days)
    stacked = dict(
        east_m=(shp, np.float32, (stack.ground_displacement_m(t)[0] for t in range(n))),
        north_m=(shp, np.float32, (stack.ground_displacement_m(t)[1] for t in range(n))))
    _write_npz(os.path.join(folder, "truth.npz"), arrays, stacked)
    summary = dict(
        description="SlideWatch synthetic stack with ground truth. Displacements: a feature "
                    "at (row, col) of the reference image is at (row + dy, col + dx) of the "
                    "secondary; east_m = dx * pixel_size, north_m = -dy * pixel_size. "
                    "truth.npz holds east_m/north_m (n_dates, H, W) float32 cumulative "
                    "ground displacement since the first date (m), cloud_masks, "
                    "valid_masks, landslide_labels, coreg_offsets_px (dx, dy per date), "
                    "dem and the compact model; reload with "
                    "slidewatch.core.synth.synthetic.SyntheticStack.load(folder). "
                    "landslide_peak_displacement_m: cumulative displacement of the core "
                    "of each landslide (id -> one value per date, metres, along "
                    "direction_deg); the speed tapers smoothly to 0 at the border.",
        landslide_peak_displacement_m={
            str(ls["id"]): [round(float(v), 5) for v in stack.amplitudes_m[:, k]]
            for k, ls in enumerate(stack.landslides)},
        coreg_offsets_px=[[round(float(v), 6) for v in row]
                          for row in stack.coreg_offsets_px],
        **meta)
    write_text_atomic(os.path.join(folder, "truth.json"),
                      json.dumps(summary, indent=1, default=_json_default))


def _json_default(obj):
    """JSON for numpy scalars / arrays found in user-given parameters."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (_dt.date, _dt.datetime)):
        return obj.isoformat()
    return str(obj)
