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

from .errors import ParameterError
from .products import DAYS_PER_YEAR
from .progress import as_progress
from .texture import fractal_texture, sentinel2_texture, shift_image  # noqa: F401

__all__ = ["generate_stack", "SyntheticStack", "shift_image", "sentinel2_texture",
           "fractal_texture", "DEFAULT_LANDSLIDES", "image_file_name"]

CRS_EPSG = 32632
#: Upper-left corner of the synthetic grid (UTM 32N, Western Alps).
ORIGIN_EN = (340000.0, 5110000.0)
TILE = "T32TLR"
YEAR_DAYS = DAYS_PER_YEAR
_TOL_PX = 1e-6
_BLOCK_ROWS = 256

#: Default landslides ("default"). Keys: see :func:`generate_stack`.
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

    def pair_truth_m(self, i, j):
        """(east_m, north_m) float32 of the ground motion between dates i and j."""
        ei, ni = self.ground_displacement_m(i)
        ej, nj = self.ground_displacement_m(j)
        return ej - ei, nj - ni

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
    from .raster_io import atomic_output
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
# Main entry point
# --------------------------------------------------------------------------------------

def generate_stack(out_folder, n_dates=40, shape=(512, 512), seed=0, pixel_size=10.0,
                   start_date="2019-01-01", mean_interval_days=10, landslides="default",
                   cloudy_date_fraction=0.3, fully_clouded_dates=1, noise_level=0.01,
                   illumination_change=True, coreg_sigma_px=0.15, nodata_border=True,
                   texture="sentinel2", ramp=None, elevation_bias=None, noisy_area=False,
                   write=True, keep_images=None, progress=None):
    """Generate a synthetic image stack with ground truth; see the module docstring.

    Parameters
    ----------
    out_folder : folder receiving the images, ``dem.tif``, ``truth.npz``, ``truth.json``
        (may be None when ``write`` is False).
    n_dates : number of acquisitions (>= 2).
    shape : (rows, cols) of every image.
    seed : everything is deterministic from it.
    pixel_size : metres (north-up grid, EPSG:32632).
    start_date, mean_interval_days : first date (ISO) and mean revisit; intervals are
        multiples of 5 days (Sentinel-2 revisit), gamma-distributed.
    landslides : "default" (a steady ~5 m/yr slide and one accelerating from 3 to 30 m/yr
        at 55 % of the period), None / [] for none, or a list of dicts with optional keys
        ``velocity_m_per_yr`` (before any acceleration), ``velocity_after_m_per_yr``,
        ``accel_onset_date`` (ISO) or ``accel_onset_fraction`` (of the time span),
        ``accel_ramp_days`` (velocity rises linearly over this many days, default 30),
        ``length_m``, ``width_m`` (ellipse axes along/across motion; shrunk to fit small
        images), ``centre_px`` ((row, col), default: random on a steep slope),
        ``direction_deg`` (azimuth of motion, default: downslope on the DEM), ``name``.
        Velocities are peak values (core of the slide); the speed tapers smoothly
        (cosine) to 0 at the ellipse border.
    cloudy_date_fraction : fraction of dates (never date 0) with partial clouds
        (5-60 % cover) and their shadows.
    fully_clouded_dates : number of dates (never date 0) ~98-100 % covered.
    noise_level : sensor noise std relative to the mean signal.
    illumination_change : seasonal gain/offset/gamma and sun-dependent terrain shading;
        False gives identical radiometry on every date.
    coreg_sigma_px : std of the per-date co-registration offset (px); date 0 has none.
    nodata_border : zero (nodata) swath edges / strips on some dates (never date 0).
    texture : "sentinel2" (real S2 texture, fractal fallback) or "fractal".
    ramp : None or amplitude (px): per-date planar misregistration whose coefficients
        (px across the full image width/height, for dx and dy) are N(0, ramp); date 0 none.
    elevation_bias : None or px per km: dates of relative orbit R065 (about half, never
        date 0) get an apparent shift of ``elevation_bias`` px per km of elevation above
        the scene mean, along the across-track direction (~east, 12 deg tilt).
    noisy_area : add a vegetated patch whose texture changes randomly between dates.
    write : write files (False: only return the object; images are then kept).
    keep_images : keep the uint16 images in memory (default: True when not writing or
        when the stack is small, <= 16 M pixels).
    progress : optional :class:`~.progress.Progress`.

    Returns
    -------
    SyntheticStack
    """
    import affine

    progress = as_progress(progress)
    n_dates = int(n_dates)
    h, w = (int(shape[0]), int(shape[1]))
    if n_dates < 2:
        raise ParameterError("n_dates must be at least 2 (got %r)." % n_dates)
    if h < 32 or w < 32:
        raise ParameterError("shape must be at least 32 x 32 pixels (got %r)." % (shape,))
    if pixel_size <= 0:
        raise ParameterError("pixel_size must be positive (got %r)." % pixel_size)
    if texture not in ("sentinel2", "fractal"):
        raise ParameterError("texture must be 'sentinel2' or 'fractal' (got %r)." % texture)
    if not 0 <= cloudy_date_fraction <= 1:
        raise ParameterError("cloudy_date_fraction must be within 0..1.")
    if write:
        if not out_folder:
            raise ParameterError("out_folder is required when write=True.")
        from .raster_io import ensure_writable_folder
        ensure_writable_folder(out_folder)
        out_folder = os.path.abspath(out_folder)
    if keep_images is None:
        keep_images = (not write) or n_dates * h * w <= 16_000_000
    # write=False, keep_images=False: truth only (clouds, masks, fields), no rendering
    render = bool(write or keep_images)

    rng = np.random.default_rng(seed)
    rng_dates, rng_dem, rng_slides, rng_geo, rng_rad, rng_cloud, rng_nod, rng_noise, \
        rng_veg = [np.random.default_rng([seed, k]) for k in range(1, 10)]
    del rng

    # ---- dates, orbits, sun
    dates = _make_dates(n_dates, start_date, float(mean_interval_days), rng_dates)
    days = np.array([(_dt.date.fromisoformat(d) - _dt.date.fromisoformat(dates[0])).days
                     for d in dates], float)
    span = max(days[-1], 1.0)
    orbit_b = rng_dates.random(n_dates) < 0.5
    orbit_b[0] = False
    spacecraft = ["S2A" if (_dt.date.fromisoformat(d) < _dt.date(2017, 7, 1)
                            or rng_dates.random() < 0.5) else "S2B" for d in dates]
    times = ["1030%02d" % rng_dates.integers(10, 60) if not b else
             "1025%02d" % rng_dates.integers(10, 60) for b in orbit_b]
    sun = [_sun_position(d) for d in dates]
    if not illumination_change:
        sun = [sun[0]] * n_dates
    names = [image_file_name(d, sc, "R065" if b else "R108", tm)
             for d, sc, b, tm in zip(dates, spacecraft, orbit_b, times)]
    paths = [os.path.join(out_folder, nm) if out_folder else nm for nm in names]

    # ---- DEM and landslides (reference grid)
    dem = _make_dem((h, w), pixel_size, rng_dem)
    dem_mean = float(dem.mean())
    if landslides == "default":
        specs = list(DEFAULT_LANDSLIDES)
    elif landslides is None:
        specs = []
    else:
        specs = list(landslides)
    slides, weights, dirs = _place_landslides(specs, dem, pixel_size, rng_slides, span,
                                              dates)
    K = len(slides)
    slide_weights = (np.stack(weights) if K else np.zeros((0, h, w), np.float32))
    slide_dirs = np.array(dirs, float).reshape(K, 2)
    amplitudes = np.zeros((n_dates, K), float)
    labels = np.zeros((h, w), np.int32)
    for k, s in enumerate(slides):
        amplitudes[:, k] = _cum_displacement(
            days, s["velocity_before_m_per_yr"],
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

    # ---- geometry errors
    coreg = rng_geo.normal(0.0, float(coreg_sigma_px), (n_dates, 2))
    coreg[0] = 0.0
    ramp_c = np.zeros((n_dates, 4))
    if ramp:
        ramp_c = rng_geo.normal(0.0, float(ramp), (n_dates, 4))
        ramp_c[0] = 0.0
    elev_c = np.zeros((n_dates, 2))
    if elevation_bias:
        th = math.radians(12.0)
        elev_c[orbit_b] = float(elevation_bias) * np.array([math.cos(th), math.sin(th)])

    # ---- noisy vegetated patch (ground-attached)
    noisy = np.zeros((h, w), bool)
    veg_soft = None
    if noisy_area:
        blob = fractal_texture((h, w), rng=rng_veg, beta=3.5)
        cy, cx = rng_veg.uniform(0.25, 0.75) * h, rng_veg.uniform(0.25, 0.75) * w
        for _ in range(50):  # keep it away from the landslides
            if not K or np.all(labels[max(0, int(cy - h * 0.12)):int(cy + h * 0.12),
                                      max(0, int(cx - w * 0.12)):int(cx + w * 0.12)] == 0):
                break
            cy, cx = rng_veg.uniform(0.15, 0.85) * h, rng_veg.uniform(0.15, 0.85) * w
        yy, xx = np.mgrid[0:h, 0:w]
        rad = np.hypot((yy - cy) / (0.13 * h), (xx - cx) / (0.13 * w))
        field = 1.0 - rad + 0.25 * blob
        veg_soft = np.clip(field / 0.15, 0.0, 1.0).astype(np.float32)
        noisy = veg_soft > 0

    stack = SyntheticStack(
        folder=out_folder, dates=dates, paths=paths,
        transform=affine.Affine(pixel_size, 0.0, ORIGIN_EN[0], 0.0, -pixel_size, ORIGIN_EN[1]),
        crs="EPSG:%d" % CRS_EPSG, shape=(h, w), pixel_size=float(pixel_size), dem=dem,
        landslide_labels=labels, landslides=slides,
        cloud_masks=np.zeros((n_dates, h, w), bool),
        valid_masks=np.ones((n_dates, h, w), bool),
        coreg_offsets_px=coreg, fully_clouded=[], noisy_mask=noisy, ramp_coeffs_px=ramp_c,
        elevation_coeffs_px_per_km=elev_c, slide_weights=slide_weights,
        slide_dirs=slide_dirs, amplitudes_m=amplitudes,
        params=dict(seed=seed, n_dates=n_dates, shape=[h, w], pixel_size=pixel_size,
                    start_date=str(start_date), mean_interval_days=mean_interval_days,
                    cloudy_date_fraction=cloudy_date_fraction,
                    fully_clouded_dates=fully_clouded_dates, noise_level=noise_level,
                    illumination_change=bool(illumination_change),
                    coreg_sigma_px=coreg_sigma_px, nodata_border=bool(nodata_border),
                    texture=texture, ramp=ramp, elevation_bias=elevation_bias,
                    noisy_area=bool(noisy_area), dem_mean=dem_mean),
        images=[] if keep_images else None)

    # ---- ground texture with a margin (rendering samples slightly outside the grid)
    max_app = 2.0
    for t in range(n_dates):
        max_app = max(max_app, float(np.abs(amplitudes[t]).max(initial=0.0)) / pixel_size
                      + np.abs(coreg[t]).sum() + np.abs(ramp_c[t]).sum()
                      + (abs(float(elevation_bias or 0)) * float(np.ptp(dem)) / 1000.0))
    m = int(math.ceil(max_app)) + 8
    H, W = h + 2 * m, w + 2 * m
    tex_mean, veg_pad = 1000.0, None
    stack.params["texture_source"] = ("sentinel2" if texture == "sentinel2" and
                                      (not render or _s2_available()) else "fractal")
    if render:
        if texture == "sentinel2":
            tex = sentinel2_texture((H, W), seed)
        else:
            from .texture import _fractal_dn
            tex = _fractal_dn((H, W), seed)
        tex_mean = float(tex.mean())
        dem_pad = ndimage.gaussian_filter(np.pad(dem, m, mode="reflect").astype(np.float64), 1.5)
        gy, gx = np.gradient(dem_pad, pixel_size)
        slope = np.arctan(np.hypot(gx, gy)).astype(np.float32)
        aspect = np.arctan2(-gx, gy).astype(np.float32)  # azimuth of downslope (from north)
        del gx, gy, dem_pad
        veg_pad = np.pad(veg_soft, m, mode="reflect") if veg_soft is not None else None

    # ---- date schedule for clouds / nodata
    cand = list(range(1, n_dates))
    order = list(rng_cloud.permutation(cand))
    n_full = min(int(fully_clouded_dates), len(order))
    full = sorted(int(i) for i in order[:n_full])
    n_cloudy = min(int(round(cloudy_date_fraction * n_dates)), len(order) - n_full)
    cloudy = set(int(i) for i in order[n_full:n_full + n_cloudy])
    stack.fully_clouded = full
    stack.params["cloudy_dates"] = sorted(cloudy)

    # radiometry per date
    doy = np.array([_dt.date.fromisoformat(d).timetuple().tm_yday for d in dates], float)
    if illumination_change:
        gain = 1.0 + 0.15 * np.sin(2 * np.pi * (doy - 100) / YEAR_DAYS) \
            + rng_rad.normal(0, 0.05, n_dates)
        offset = rng_rad.normal(0, 40.0, n_dates)
        gamma = np.clip(1.0 + rng_rad.normal(0, 0.04, n_dates), 0.9, 1.1)
    else:
        gain, offset, gamma = np.ones(n_dates), np.zeros(n_dates), np.ones(n_dates)
    stack.params["radiometry"] = dict(gain=[round(g, 5) for g in gain],
                                      offset=[round(o, 3) for o in offset],
                                      gamma=[round(g, 5) for g in gamma])
    noise_std = float(noise_level) * tex_mean

    per_date_info = []
    # continuous scene: see _render_ground
    if render:
        tex_coef = ndimage.spline_filter(tex, order=3, output=np.float32, mode="mirror")
        del tex
    shade = None
    prog = progress.sub(0.0, 0.92)
    for t in range(n_dates):
        progress.check()
        az, el = sun[t]
        img = None
        if render:
            if shade is None or illumination_change:
                shade = _shading(slope, aspect, az, el)
            veg = None
            if veg_pad is not None:
                vt = tex_mean * (1.15 + 0.18 * fractal_texture((H, W), rng=rng_veg, beta=1.8))
                veg = (veg_pad, ndimage.spline_filter(vt, order=3, output=np.float32,
                                                      mode="mirror"),
                       np.float32(rng_veg.uniform(0.6, 0.95)))
                del vt
            img = _render_ground(stack, t, m, tex_coef, shade, veg)
            del veg
            # radiometry
            img = np.maximum(img, np.float32(1.0))
            img = np.float32(offset[t]) + np.float32(gain[t] * tex_mean) \
                * (img / np.float32(tex_mean)) ** np.float32(gamma[t])
        # clouds and shadows
        cmask = np.zeros((h, w), bool)
        cover = 0.0
        if t in cloudy or t in full:
            cover = rng_cloud.uniform(0.985, 1.0) if t in full else rng_cloud.uniform(0.05, 0.6)
            height = rng_cloud.uniform(800.0, 2500.0)
            dist = min(height / math.tan(math.radians(max(el, 10.0))) / pixel_size,
                       0.3 * min(h, w))
            saz = math.radians(az + 180.0)
            shift = (-math.cos(saz) * dist, math.sin(saz) * dist)  # rows, cols
            alpha, shadow, bright = _cloud_layers((h, w), cover, rng_cloud, shift)
            if render:
                img = img * (1.0 - 0.6 * shadow)
                img = img * (1.0 - alpha) + alpha * bright
            cmask = (alpha > 0) | (shadow > 0)
        # sensor noise, quantisation, nodata
        if render:
            if noise_std > 0:
                img += rng_noise.standard_normal((h, w), dtype=np.float32) \
                    * np.float32(noise_std)
            img = np.clip(np.rint(img), 1, 65535).astype(np.uint16)
        nod = _nodata_mask((h, w), rng_nod, t) if nodata_border else np.zeros((h, w), bool)
        if render:
            img[nod] = 0
        stack.cloud_masks[t] = cmask
        stack.valid_masks[t] = ~nod
        cloud_frac = float(cmask[~nod].mean()) if (~nod).any() else 1.0
        per_date_info.append(dict(date=dates[t], file=names[t], orbit="R065" if orbit_b[t]
                                  else "R108", sun_azimuth=round(az, 3),
                                  sun_elevation=round(el, 3), cloud_fraction=round(cloud_frac, 4),
                                  valid_fraction=round(float((~nod).mean()), 4),
                                  coreg_dx_px=round(float(coreg[t, 0]), 5),
                                  coreg_dy_px=round(float(coreg[t, 1]), 5)))
        if write:
            from .raster_io import write_bands
            write_bands(paths[t], [img], stack.transform, stack.crs, descriptions=["B08"],
                        tags=dict(ACQUISITION_DATE=dates[t], SPACECRAFT=spacecraft[t],
                                  RELATIVE_ORBIT=per_date_info[-1]["orbit"],
                                  SUN_AZIMUTH="%.3f" % az, SUN_ELEVATION="%.3f" % el,
                                  CLOUD_FRACTION="%.4f" % cloud_frac,
                                  VALID_FRACTION="%.4f" % per_date_info[-1]["valid_fraction"],
                                  SYNTHETIC="1", SYNTHETIC_SEED=str(seed)),
                        dtype="uint16", nodata=0)
        if keep_images:
            stack.images.append(img)
        prog.update((t + 1) / n_dates, "Synthetic image %d/%d" % (t + 1, n_dates))
    stack.params["per_date"] = per_date_info

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
    from .raster_io import write_bands, write_text_atomic
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
                    "slidewatch.core.synthetic.SyntheticStack.load(folder). "
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
