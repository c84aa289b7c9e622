"""Window footprints (issue 18, core/detect/footprint.py): the pair rasters' footprint band, its
mean per pixel beside the series, and the detector counting an object's independent
observations with the footprint of its own pixels."""
import os

import numpy as np
import pytest
import rasterio
from affine import Affine

from slidewatch.core.detect import footprint as fp
from slidewatch.core import products as prod
from slidewatch.core.series import timeseries_io as tio
from slidewatch.core.detect.detection import detect, detect_from_folder
from slidewatch.core.errors import InputError
from tests.test_detection import SLIDE, TR as TS_TR, make_series, write_folder

PX = 10.0
TR = Affine(PX, 0, 500000.0, 0, -PX, 5100000.0)
CRS = "EPSG:32632"
H, W = 12, 16


def _pairs(folder, footprints):
    """Pair rasters (zero motion) with the given footprint bands (None = no band)."""
    os.makedirs(folder, exist_ok=True)
    dates = ["2021-01-01", "2021-01-11", "2021-01-21", "2021-01-31"]
    z = np.zeros((H, W), np.float32)
    for k, f in enumerate(footprints):
        status = np.zeros((H, W), np.uint8)
        if f is not None:
            status[~np.isfinite(f)] = 3
        name = prod.pair_file_name(dates[k], dates[k + 1])
        tio.write_pair_raster(os.path.join(folder, name), z, z, z + 0.9, z + 5, status, TR,
                              CRS, dates[k], dates[k + 1], footprint=f)


def test_series_folder_gets_the_mean_footprint_of_the_valid_pairs(tmp_path):
    a = np.ones((H, W), np.float32)
    a[:, :4] = 4.0                       # widened on the left
    b = np.ones((H, W), np.float32)
    b[:6] = np.nan                       # invalid on the top half
    b[6:, :4] = 4.0
    _pairs(str(tmp_path / "pairs"), [a, b, None])   # the third pair was imported: no band
    tio.invert_pair_rasters(str(tmp_path / "pairs"), str(tmp_path), lam=1.0)
    path = tmp_path / "timeseries" / prod.FOOTPRINT_TIF
    with rasterio.open(path) as src:
        m = src.read(1)
        assert src.descriptions == (prod.BAND_FOOTPRINT,) and src.transform == TR
    assert np.allclose(m[:, 4:], 1.0)
    assert np.allclose(m[:, :4], 4.0)          # both valid pairs widened there
    back = fp.read_footprint(str(tmp_path / "timeseries"), (H, W))
    assert np.array_equal(back, m.astype(np.float64))
    assert fp.read_footprint(str(tmp_path / "timeseries"), (H, W + 1)) is None


def test_no_footprint_file_from_pairs_without_the_band(tmp_path):
    _pairs(str(tmp_path / "pairs"), [None, None])
    ts = tmp_path / "timeseries"
    ts.mkdir()
    (ts / prod.FOOTPRINT_TIF).write_bytes(b"stale")    # an older run's file is removed
    tio.invert_pair_rasters(str(tmp_path / "pairs"), str(tmp_path), lam=1.0)
    assert not (ts / prod.FOOTPRINT_TIF).exists()
    assert fp.read_footprint(str(ts), (H, W)) is None


def test_cells_per_pixel_splits_the_measured_area_by_footprint():
    f = np.ones((4, 4))
    f[:2] = 4.0
    stable = np.ones((4, 4), bool)       # mean footprint of the stable ground 2.5
    cells = fp.cells_per_pixel(f, stable, 50.0, f.shape)
    base = 50.0 / 2.5
    assert np.allclose(cells[2:], 1 / base) and np.allclose(cells[:2], 1 / (4 * base))
    assert np.allclose(fp.cells_per_pixel(None, stable, 50.0, f.shape), 1 / 50.0)
    # NaN footprints count as nominal windows
    f[0, 0] = np.nan
    assert fp.cells_per_pixel(f, stable, 50.0, f.shape)[0, 0] > cells[0, 1]


def _obs(res):
    assert len(res.features) == 1, [r["reason"] for r in res.candidates_rejected]
    return res.features[0]["independent_obs"]


def _correlated_series():
    """A planted slide in noise correlated over ~5 x 5 pixels (as overlapping windows)."""
    from scipy import ndimage
    e, n, dates, mask = make_series(seed=2, slide=dict(SLIDE, radius_px=14), noise=1.0)
    e, n = (ndimage.uniform_filter(a, size=(1, 5, 5)) for a in (e, n))
    return e, n, dates, mask


def test_an_object_counts_by_its_own_footprint():
    e, n, dates, mask = _correlated_series()
    plain = _obs(detect(e, n, dates, TS_TR))
    ones = _obs(detect(e, n, dates, TS_TR, footprint=np.ones(mask.shape)))
    assert ones == pytest.approx(plain, rel=1e-9)
    # the stable ground was widened, the slide not: the scene-wide area over-counts the
    # cells of stable ground, so the slide's own pixels count for more
    f = np.where(mask, 1.0, 4.0)
    assert _obs(detect(e, n, dates, TS_TR, footprint=f)) > 2.5 * plain
    # the slide widened, the stable ground not: fewer independent observations
    g = np.where(mask, 4.0, 1.0)
    assert _obs(detect(e, n, dates, TS_TR, footprint=g)) < 0.5 * plain
    with pytest.raises(InputError, match="footprint"):
        detect(e, n, dates, TS_TR, footprint=np.ones((3, 3)))


def test_detect_folder_reads_the_footprint_beside_the_series(tmp_path):
    e, n, dates, mask = _correlated_series()
    ts = write_folder(str(tmp_path), e, n, dates)
    plain = _obs(detect_from_folder(ts))
    from slidewatch.core.raster_io import write_bands
    write_bands(os.path.join(ts, prod.FOOTPRINT_TIF), [np.where(mask, 4.0, 1.0)], TS_TR, CRS,
                descriptions=[prod.BAND_FOOTPRINT])
    assert _obs(detect_from_folder(ts)) < 0.5 * plain
