"""A synthetic time-series folder with a common offset per date (co-registration error).

Ground does not move except a slide; every date has a large east/north offset common to
the whole scene (``offset_m`` per date, as an uncorrected co-registration error) and
independent per-pixel noise ``NOISE_M``; ``velocity.tif`` has ``rmse_m = NOISE_M`` (the
per-date uncertainty of a pixel). Re-referencing on a stable area must bring the stable
pixels back to zero within their sigma.
"""

import datetime as dt
import os

import numpy as np

CRS = "EPSG:32633"
X0, Y0, PIX = 600000.0, 5200000.0, 10.0
SHAPE = (40, 50)
NOISE_M = 0.02
N_DATES = 20
#: (row0, row1, col0, col1) of the stable reference area and of the moving slide
STABLE_BOX = (28, 40, 0, 16)
SLIDE_BOX = (5, 15, 5, 15)
SLIDE_V = (3.0, -2.0)  # m/yr east, north


def dates():
    d0 = dt.date(2021, 1, 5)
    return [(d0 + dt.timedelta(days=12 * k)).isoformat() for k in range(N_DATES)]


def pixel_centre(row, col):
    return X0 + (col + 0.5) * PIX, Y0 - (row + 0.5) * PIX


def box_polygon(box):
    """GeoJSON polygon on the outer edges of the pixels of ``box`` (inset 1 m)."""
    r0, r1, c0, c1 = box
    x0, x1 = X0 + c0 * PIX + 1, X0 + c1 * PIX - 1
    y0, y1 = Y0 - r1 * PIX + 1, Y0 - r0 * PIX - 1
    return {"type": "Polygon",
            "coordinates": [[(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]]}


def make_offset_stack(folder, seed=5, offset_sigma_m=0.3):
    from rasterio.transform import from_origin

    from slidewatch.core.raster_io import write_bands

    rng = np.random.default_rng(seed)
    ds = dates()
    t = np.array([(dt.date.fromisoformat(d) - dt.date.fromisoformat(ds[0])).days / 365.25
                  for d in ds])
    h, w = SHAPE
    off_e = rng.normal(0, offset_sigma_m, N_DATES)
    off_n = rng.normal(0, offset_sigma_m, N_DATES)
    off_e[0] = off_n[0] = 0.0
    east = rng.normal(0, NOISE_M, (N_DATES, h, w)) + off_e[:, None, None]
    north = rng.normal(0, NOISE_M, (N_DATES, h, w)) + off_n[:, None, None]
    r0, r1, c0, c1 = SLIDE_BOX
    east[:, r0:r1, c0:c1] += SLIDE_V[0] * t[:, None, None]
    north[:, r0:r1, c0:c1] += SLIDE_V[1] * t[:, None, None]
    east[0] = north[0] = 0.0  # cumulative since the first date
    ts = os.path.join(folder, "timeseries")
    os.makedirs(ts, exist_ok=True)
    tr = from_origin(X0, Y0, PIX, PIX)
    write_bands(os.path.join(ts, "ts_east_m.tif"), east.astype(np.float32), tr, CRS,
                descriptions=ds)
    write_bands(os.path.join(ts, "ts_north_m.tif"), north.astype(np.float32), tr, CRS,
                descriptions=ds)
    A = np.vstack([t, np.ones_like(t)]).T
    ve = np.linalg.lstsq(A, east.reshape(N_DATES, -1), rcond=None)[0][0].reshape(h, w)
    vn = np.linalg.lstsq(A, north.reshape(N_DATES, -1), rcond=None)[0][0].reshape(h, w)
    vel = np.stack([ve, vn, np.hypot(ve, vn), np.full((h, w), 0.05),
                    np.full((h, w), 2 * N_DATES - 3.0), np.full((h, w), NOISE_M)])
    write_bands(os.path.join(ts, "velocity.tif"), vel.astype(np.float32), tr, CRS,
                descriptions=["ve_m_per_yr", "vn_m_per_yr", "v_m_per_yr", "v_sigma_m_per_yr",
                              "n_obs", "rmse_m"])
    return dict(dates=ds, east=east, north=north, offset_east=off_e, offset_north=off_n,
                t=t)
