"""One driver per heavy step (issue 16): the single-step Processing algorithms "Correlate
pairs" and "Invert" run the pipeline's drivers (core/correlation_driver.py,
core/series/inversion_driver.py): they resume, report progress, honour cancel between pairs and
run on Dask like the pipeline."""

import glob
import os

import numpy as np
import pytest
import rasterio
from affine import Affine

from slidewatch.core import products as prod

from .test_correlation import fourier_shift, smooth_texture

CRS = "EPSG:32633"
T = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5200000.0)
DATES = ("2020-01-01", "2020-01-11", "2020-01-21", "2020-01-31")
CORR = {"WINDOW": 16, "STEP": 8, "SEARCH": 4}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """Four dates of one texture drifting 0.4 px east per date; a pairs.csv of 4 selected
    pairs and one deselected."""
    d = tmp_path_factory.mktemp("step_drivers")
    base = smooth_texture((216, 112), seed=5)   # 200 x 96 px: 25 x 12 windows
    for k, date in enumerate(DATES):
        arr = fourier_shift(base, 0.0, 0.4 * k)[8:-8, 8:-8]
        with rasterio.open(str(d / ("img_%s.tif" % date.replace("-", ""))), "w",
                           driver="GTiff", height=arr.shape[0], width=arr.shape[1], count=1,
                           dtype="float32", crs=CRS, transform=T, nodata=np.nan) as dst:
            dst.write(arr.astype(np.float32), 1)
    rows = [(0, 1, 1), (1, 2, 1), (2, 3, 1), (0, 2, 1), (1, 3, 0)]
    lines = [",".join(prod.PAIRS_COLUMNS)] + [
        "%s,%s,img_%s.tif,img_%s.tif,%d,0.5,%d,test" % (
            DATES[i], DATES[j], DATES[i].replace("-", ""), DATES[j].replace("-", ""),
            10 * (j - i), sel) for i, j, sel in rows]
    with open(str(d / "pairs.csv"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return d


def _recording_feedback():
    from qgis.core import QgsProcessingFeedback

    class Recording(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.lines = []

        def pushInfo(self, info):  # noqa: N802
            self.lines.append(info)
            super().pushInfo(info)

    return Recording()


def _alg(name):
    if name == "correlate_pairs":
        from slidewatch.processing_provider.alg_correlate_pairs import CorrelatePairsAlgorithm
        alg = CorrelatePairsAlgorithm()
    else:
        from slidewatch.processing_provider.alg_invert import InvertTimeseriesAlgorithm
        alg = InvertTimeseriesAlgorithm()
    alg.initAlgorithm()
    return alg


def _correlate(stack, out, feedback=None, **extra):
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback
    params = dict(CORR, PAIRS=str(stack / "pairs.csv"), OUTPUT_FOLDER=str(out), **extra)
    return _alg("correlate_pairs").processAlgorithm(
        params, QgsProcessingContext(), feedback or QgsProcessingFeedback())


def _pixels(path):
    with rasterio.open(path) as src:
        return src.read()


def _pair_files(out):
    return sorted(glob.glob(os.path.join(str(out), prod.PAIRS_FOLDER, prod.PAIR_GLOB)))


def test_correlate_pairs_algorithm_resumes(stack, tmp_path):
    from qgis.core import QgsProcessingFeedback

    out = tmp_path / "out"
    fb = QgsProcessingFeedback()
    res = _correlate(stack, out, fb)
    assert (res["N_COMPUTED"], res["N_SKIPPED"]) == (4, 0)
    assert fb.progress() == pytest.approx(100.0)
    files = _pair_files(out)
    assert [os.path.basename(f) for f in files] == sorted(
        prod.pair_file_name(DATES[i], DATES[j]) for i, j in ((0, 1), (1, 2), (2, 3), (0, 2)))
    first = {f: _pixels(f) for f in files}
    # an interrupted run: one pair raster missing; the others must not be recomputed
    os.remove(files[1])
    kept = {f: os.stat(f).st_mtime_ns for f in files if f != files[1]}
    res = _correlate(stack, out)
    assert (res["N_COMPUTED"], res["N_SKIPPED"]) == (1, 3)
    assert {f: os.stat(f).st_mtime_ns for f in kept} == kept
    for f in files:
        np.testing.assert_array_equal(_pixels(f), first[f], err_msg=f)
    # everything up to date: nothing computed; other parameters: everything recomputed
    res = _correlate(stack, out)
    assert (res["N_COMPUTED"], res["N_SKIPPED"]) == (0, 4)
    res = _correlate(stack, out, SEARCH=5)
    assert (res["N_COMPUTED"], res["N_SKIPPED"]) == (4, 0)


def test_correlate_pairs_algorithm_cancels_between_pairs(stack, tmp_path):
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    class CancelAfterFirstPair(QgsProcessingFeedback):
        def setProgress(self, value):  # noqa: N802
            super().setProgress(value)
            if value > 0:              # the driver reports the first finished pair
                self.cancel()

    out = tmp_path / "out"
    with pytest.raises(QgsProcessingException, match="cancelled"):
        _correlate(stack, out, CancelAfterFirstPair(), MAX_WORKERS=1)
    done = _pair_files(out)
    # one pair finished (the next one may have finished too: it had started), the rest
    # was never started; no partial file
    assert 1 <= len(done) <= 2
    assert all(os.path.basename(f).startswith(prod.PAIR_PREFIX) for f in done)
    res = _correlate(stack, out)
    assert (res["N_COMPUTED"], res["N_SKIPPED"]) == (4 - len(done), len(done))


def test_invert_algorithm_resumes_with_the_pipeline_driver(stack, tmp_path):
    """A cancelled Invert keeps its finished row bands; the next run reuses them and
    writes what an uninterrupted run writes."""
    from qgis.core import (QgsProcessingContext, QgsProcessingException,
                           QgsProcessingFeedback)

    out = tmp_path / "out"
    _correlate(stack, out)

    class CancelAfterFirstBand(QgsProcessingFeedback):
        def setProgress(self, value):  # noqa: N802
            super().setProgress(value)
            if value > 0:
                self.cancel()

    alg = _alg("invert_timeseries")
    params = {"INPUT": str(out), "PAIRS_CSV": str(stack / "pairs.csv"), "LAMBDA": 2.0,
              "BLOCK_SIZE": 16, "MAX_WORKERS": 1, "OUTPUT_FOLDER": str(tmp_path / "inv")}
    with pytest.raises(QgsProcessingException, match="cancelled"):
        alg.processAlgorithm(params, QgsProcessingContext(), CancelAfterFirstBand())
    ts = tmp_path / "inv" / prod.TIMESERIES_FOLDER
    assert [f for f in os.listdir(ts) if not f.startswith(".")] == []
    assert glob.glob(str(ts / ".parts" / "*" / "*.npy"))
    fb = _recording_feedback()
    res = alg.processAlgorithm(params, QgsProcessingContext(), fb)
    assert any("reused from an interrupted run" in line for line in fb.lines), fb.lines
    assert not os.path.exists(ts / ".parts")
    ref = alg.processAlgorithm(dict(params, OUTPUT_FOLDER=str(tmp_path / "ref")),
                               QgsProcessingContext(), QgsProcessingFeedback())
    for key in ("TS_EAST", "TS_NORTH", "VELOCITY", "NETWORK_FLAGS"):
        np.testing.assert_array_equal(_pixels(res[key]), _pixels(ref[key]), err_msg=key)
    with rasterio.open(res["TS_EAST"]) as src:   # every date of the pairs.csv
        assert list(src.descriptions) == list(DATES)


def test_single_step_algorithms_on_dask_equal_threads(stack, tmp_path):
    pytest.importorskip("distributed")
    from qgis.core import QgsProcessingContext

    outs = {}
    for name, scheduler in (("threads", ""), ("dask", "local:1")):
        out = tmp_path / name
        res = _correlate(stack, out, DASK_SCHEDULER=scheduler)
        assert res["N_COMPUTED"] == 4
        fb = _recording_feedback()
        outs[name] = _alg("invert_timeseries").processAlgorithm(
            {"INPUT": str(out), "LAMBDA": 2.0, "BLOCK_SIZE": 32, "DASK_SCHEDULER": scheduler,
             "OUTPUT_FOLDER": str(out)}, QgsProcessingContext(), fb)
        assert any(("dask" if scheduler else "local threads") in line.lower()
                   for line in fb.lines), fb.lines
    for a, b in zip(_pair_files(tmp_path / "threads"), _pair_files(tmp_path / "dask")):
        np.testing.assert_array_equal(_pixels(a), _pixels(b), err_msg=a)
    for key in ("TS_EAST", "VELOCITY", "NETWORK_FLAGS"):
        np.testing.assert_array_equal(_pixels(outs["threads"][key]),
                                      _pixels(outs["dask"][key]), err_msg=key)
