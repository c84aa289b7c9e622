"""Per-pixel quality layers of an inversion: how well each pixel's time series is observed.

From an inversion output folder (``timeseries/`` and the pair rasters it inverted), writes
into ``timeseries/`` one single-band GeoTIFF per layer, each with a QGIS style of the same
name (``.qml``, loaded by QGIS as the layer's default style):

================================  ======================  =========  ===============================
file                              band description        type       content
================================  ======================  =========  ===============================
``quality_n_valid_pairs.tif``     ``n_valid_pairs``       uint16     pairs of the inversion with a
                                                                     valid measurement at the pixel
``quality_ncc_share.tif``         ``ncc_share``           float32    share (0-1) of the inversion's
                                                                     pairs valid with NCC >= the
                                                                     threshold (tag NCC_THRESHOLD)
``quality_first_date.tif``        ``first_valid_date``    int32      first date with a measurement,
                                                                     as YYYYMMDD (0 = none)
``quality_last_date.tif``         ``last_valid_date``     int32      last date with a measurement,
                                                                     YYYYMMDD (0 = none)
``quality_longest_gap.tif``       ``longest_gap_days``    float32    longest interval (days) between
                                                                     two consecutive measured dates
================================  ======================  =========  ===============================

Definitions (the inversion's own, :func:`.inversion.prior_weights`): a pair's measurement
at a pixel is *valid* when east and north are finite, ``status`` is 0 and it passes the
inversion's ``min_ncc`` / ``min_snr`` (read from the SLIDEWATCH_PARAMS tag of the
time-series files). A date is *measured* at a pixel when it is the reference or secondary
date of a valid pair there; between two consecutive measured dates the inverted series is
interpolated by the regularisation (``network_flags`` bit 1 says that this happens at some
date, ``longest_gap_days`` says for how long). Float layers are NaN where no pair covers
the pixel (``ncc_share``) or no pair is valid (``longest_gap_days``).

The pairs are those the inversion used: the ``pairs`` list of the SLIDEWATCH_PARAMS tag,
else the selected rows of ``pairs.csv``, else every ``pairs/pair_*.tif``.

Memory is bounded: the rasters are processed in blocks of rows (sized so that one block
holds at most ``memory_mb``: the per-date coverage of the block plus one pair's bands), one
pair at a time, whatever the number of pairs and dates. All files are written atomically.
"""

import json
import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError, ParameterError
from ..products import (BAND_EAST, BAND_NCC, BAND_NORTH, BAND_SNR, BAND_STATUS, PAIR_BANDS,
                        PAIRS_CSV, PAIRS_FOLDER, TAG_PARAMS, TIMESERIES_FOLDER, TS_EAST_TIF,
                        VELOCITY_TIF)
from ..progress import as_progress
from ..raster_io import GTIFF_FLOAT_OPTIONS, atomic_output, write_text_atomic

#: (key, file name, band description, dtype, nodata) of the quality layers
LAYERS = (
    ("n_valid_pairs", "quality_n_valid_pairs.tif", "n_valid_pairs", "uint16", None),
    ("ncc_share", "quality_ncc_share.tif", "ncc_share", "float32", np.nan),
    ("first_valid_date", "quality_first_date.tif", "first_valid_date", "int32", 0),
    ("last_valid_date", "quality_last_date.tif", "last_valid_date", "int32", 0),
    ("longest_gap_days", "quality_longest_gap.tif", "longest_gap_days", "float32", np.nan),
)
LAYER_KEYS = tuple(k for k, *_ in LAYERS)
#: default NCC threshold of ``ncc_share`` (the pairing's quality model uses the same)
DEFAULT_NCC_THRESHOLD = 0.5
DEFAULT_MEMORY_MB = 256


def _inv():
    """:mod:`.inversion`, imported when used: this module's constants (read by
    :class:`.pipeline.PipelineParams`) stay importable without numba."""
    from . import inversion
    return inversion
TS_FOLDER = TIMESERIES_FOLDER
_PAIR_BANDS = PAIR_BANDS
_TS_EAST = TIMESERIES_FOLDER + "/" + TS_EAST_TIF


@dataclass
class QualityOutputs:
    """Paths of the written layers (``paths[key]``, ``styles[key]``) and a summary."""
    folder: str
    paths: dict
    styles: dict
    n_pairs: int
    dates: list
    ncc_threshold: float
    summary: dict = field(default_factory=dict)


def quality_paths(ts_folder):
    """``{key: path}`` of the quality layers of a ``timeseries/`` folder."""
    return {k: os.path.join(ts_folder, name) for k, name, *_ in LAYERS}


# ------------------------------------------------------------------------- inputs
def _folders(folder):
    """(root, timeseries folder) from an output folder or its timeseries/ folder."""
    if folder is None or str(folder) == "":
        raise InputError("No folder given: choose the SlideWatch output folder (the one that "
                         "holds timeseries/ and pairs/).")
    folder = os.path.abspath(str(folder))
    if os.path.isfile(os.path.join(folder, TS_FOLDER, TS_EAST_TIF)):
        return folder, os.path.join(folder, TS_FOLDER)
    if os.path.isfile(os.path.join(folder, TS_EAST_TIF)):
        return os.path.dirname(folder), folder
    raise InputError("'%s' has no %s. Choose the output folder of the inversion (it holds "
                     "%s/ and %s/)." % (folder, _TS_EAST, TIMESERIES_FOLDER, PAIRS_FOLDER))


def _ts_metadata(ts_folder):
    """(dates ISO, params dict, grid) of the time-series files."""
    import rasterio

    path = os.path.join(ts_folder, TS_EAST_TIF)
    with rasterio.open(path) as src:
        tags = src.tags()
        descriptions = list(src.descriptions)
        grid = dict(height=src.height, width=src.width, transform=src.transform, crs=src.crs)
    dates = []
    for i, d in enumerate(descriptions, start=1):
        try:
            dates.append(_inv().iso(np.datetime64(str(d)[:10], "D")))
        except (TypeError, ValueError):
            raise InputError("Band %d of '%s' is described as %r, not an ISO date. Is it a "
                             "SlideWatch time-series raster?" % (i, path, d)) from None
    params = {}
    for src_path in (path, os.path.join(ts_folder, VELOCITY_TIF)):
        if params or not os.path.exists(src_path):
            continue
        with rasterio.open(src_path) as src:
            text = src.tags().get(TAG_PARAMS)
        if text:
            try:
                params = json.loads(text)
            except ValueError:
                params = {}
    if not params and tags.get(TAG_PARAMS):
        params = json.loads(tags[TAG_PARAMS])
    return dates, params, grid


def used_pairs(root, params):
    """The pair rasters the inversion used (list of :class:`.timeseries_io.PairRaster`)
    and a sentence saying where the list came from."""
    from .timeseries_io import find_pair_rasters, pair_rasters_from_paths

    pair_dir = os.path.join(root, PAIRS_FOLDER)
    names = params.get("pairs") if isinstance(params, dict) else None
    if names:
        paths = [os.path.join(pair_dir, os.path.basename(str(n))) for n in names]
        missing = [p for p in paths if not os.path.exists(p)]
        if missing:
            raise InputError("%d of the %d pair rasters the inversion used are missing from "
                             "'%s' (first: %s). Restore them, or re-run the inversion."
                             % (len(missing), len(paths), pair_dir,
                                os.path.basename(missing[0])))
        return pair_rasters_from_paths(paths), "the inversion's list (%s tag)" % TAG_PARAMS
    csv_path = os.path.join(root, PAIRS_CSV)
    if os.path.exists(csv_path):
        return find_pair_rasters(root, csv_path), "the selected pairs of " + PAIRS_CSV
    return find_pair_rasters(root), "every pair raster of %s/" % PAIRS_FOLDER


def _band_indices(src):
    names = {d: i for i, d in enumerate(src.descriptions, start=1) if d}
    if BAND_EAST not in names or BAND_NORTH not in names:
        raise InputError("'%s' has no bands described %s / %s: not a SlideWatch pair "
                         "raster." % (src.name, BAND_EAST, BAND_NORTH))
    return [names.get(b) for b in _PAIR_BANDS]


def block_rows_for(width, n_dates, memory_mb=DEFAULT_MEMORY_MB):
    """Rows per block so that a block holds at most ``memory_mb`` (coverage per date,
    one pair's five bands, the accumulators); a multiple of 256 when that large."""
    # bytes per pixel: coverage (1 per date), one pair's bands and the validity test
    # (~45), accumulators (~20), conversions when writing (~40); rounded up
    per_row = width * (n_dates + 128)
    rows = int(max(1, (float(memory_mb) * 2 ** 20) // max(per_row, 1)))
    if rows >= 256:
        rows = min(rows // 256 * 256, 2048)
    return rows


# ----------------------------------------------------------------------- compute
def block_quality(reads, pair_index, day_numbers, n_pairs, ncc_threshold, weighting="ncc",
                  min_ncc=None, min_snr=None):
    """Quality layers of one block.

    ``reads``: iterable of ``(k, east, north, ncc, snr, status)`` (2-D arrays of the block,
    ``ncc``/``snr`` may be None) for the pairs ``k``; ``pair_index[k] = (i, j)`` indices of
    the pair's dates in ``day_numbers`` (days since 1970, sorted). Returns ``{key: array}``
    for :data:`LAYER_KEYS` (dates as day numbers, NaN where none; converted to YYYYMMDD by
    the writer).
    """
    covered = measured = count = ncc_ok = None
    for k, east, north, ncc, snr, status in reads:
        if covered is None:
            shape = east.shape
            covered = np.zeros(shape, bool)
            measured = np.zeros((len(day_numbers),) + shape, bool)
            count = np.zeros(shape, np.uint16)
            ncc_ok = np.zeros(shape, np.uint16)
        if status is not None:
            status = np.where(np.isfinite(status), status, 1)
        use_w = weighting if ncc is not None else "none"
        valid = _inv().prior_weights(east, north, ncc, snr, status, use_w, min_ncc, min_snr) > 0
        covered |= np.isfinite(east)
        if ncc is not None:
            covered |= np.isfinite(ncc)
            with np.errstate(invalid="ignore"):
                ncc_ok += valid & (ncc >= ncc_threshold)
        count += valid
        i, j = pair_index[k]
        measured[i] |= valid
        measured[j] |= valid
        del valid, east, north, ncc, snr, status
    if covered is None:
        raise InputError("No pair raster to compute quality layers from.")
    # day numbers (~2e4) are exact in float32; "last" is also the previous measured date
    first = np.full(covered.shape, np.nan, np.float32)
    last = np.full(covered.shape, np.nan, np.float32)
    gap = np.full(covered.shape, np.nan, np.float32)
    for d, m in zip(np.asarray(day_numbers, np.float32), measured):
        if not m.any():
            continue
        np.copyto(first, d, where=m & np.isnan(first))
        np.fmax(gap, d - last, out=gap, where=m)
        np.copyto(last, d, where=m)
    del measured
    # a pair has two dates, so a measured pixel always has a gap; keep 0 for safety
    gap[np.isfinite(first) & np.isnan(gap)] = 0.0
    share = np.full(covered.shape, np.nan, np.float32)
    np.divide(ncc_ok, float(max(n_pairs, 1)), out=share, where=covered)
    return dict(n_valid_pairs=count, ncc_share=share, first_valid_date=first,
                last_valid_date=last, longest_gap_days=gap)


def days_to_yyyymmdd(days):
    """Day numbers since 1970 (float, NaN = none) -> int32 YYYYMMDD (0 = none)."""
    days = np.asarray(days, np.float64)
    ok = np.isfinite(days)
    out = np.zeros(days.shape, np.int32)
    if ok.any():
        d64 = days[ok].astype("int64").astype("datetime64[D]")
        y = d64.astype("datetime64[Y]").astype(int) + 1970
        m = d64.astype("datetime64[M]").astype(int) % 12 + 1
        dd = (d64 - d64.astype("datetime64[M]")).astype(int) + 1
        out[ok] = (y * 10000 + m * 100 + dd).astype(np.int32)
    return out


def yyyymmdd_to_iso(value):
    """20200105 -> '2020-01-05' (None for 0 / nodata)."""
    value = int(value)
    if value <= 0:
        return None
    return "%04d-%02d-%02d" % (value // 10000, value // 100 % 100, value % 100)


def _profile(grid, dtype, nodata):
    prof = dict(GTIFF_FLOAT_OPTIONS, height=grid["height"], width=grid["width"], count=1,
                dtype=dtype, crs=grid["crs"], transform=grid["transform"])
    if nodata is not None:
        prof["nodata"] = nodata
    if grid["height"] < 256 or grid["width"] < 256:
        prof.update(tiled=False)
        prof.pop("blockxsize")
        prof.pop("blockysize")
    if not np.issubdtype(np.dtype(dtype), np.floating):
        prof["predictor"] = 2
    return prof


def compute_quality_layers(folder, ncc_threshold=DEFAULT_NCC_THRESHOLD,
                           memory_mb=DEFAULT_MEMORY_MB, block_rows=None, progress=None):
    """Compute and write the quality layers of an inversion (see the module docstring).

    ``folder``: the output folder (holding ``timeseries/`` and ``pairs/``) or its
    ``timeseries/`` folder. ``ncc_threshold``: NCC a valid measurement needs to count in
    ``ncc_share``. ``memory_mb`` bounds one block (``block_rows`` overrides it).
    Returns :class:`QualityOutputs`.
    """
    import rasterio
    from rasterio.windows import Window

    progress = as_progress(progress)
    try:
        ncc_threshold = float(ncc_threshold)
    except (TypeError, ValueError):
        raise ParameterError("ncc_threshold must be a number in [-1, 1] (got %r)."
                             % (ncc_threshold,)) from None
    if not -1.0 <= ncc_threshold <= 1.0:
        raise ParameterError("ncc_threshold must be in [-1, 1] (got %g)." % ncc_threshold)
    root, ts_folder = _folders(folder)
    dates, params, grid = _ts_metadata(ts_folder)
    pairs, origin = used_pairs(root, params)
    if not pairs:
        raise InputError("No pair raster found for the inversion in '%s'. The quality "
                         "layers need the pair rasters the inversion used (pairs/)." % root)
    weighting = params.get("weighting", "ncc") if params else "ncc"
    min_ncc = params.get("min_ncc") if params else None
    min_snr = params.get("min_snr") if params else None
    all_dates = sorted(set(np.datetime64(d, "D") for d in dates)
                       | {p.reference_date for p in pairs} | {p.secondary_date for p in pairs})
    day_numbers = [int(d.astype("int64")) for d in all_dates]
    pos = {d: i for i, d in enumerate(all_dates)}
    pair_index = [(pos[p.reference_date], pos[p.secondary_date]) for p in pairs]
    h, w = grid["height"], grid["width"]
    rows = int(block_rows) if block_rows else block_rows_for(w, len(all_dates), memory_mb)
    if rows < 1:
        raise ParameterError("block_rows must be >= 1 (got %r)." % block_rows)
    progress.info("Quality layers from %d pairs (%s) over %d dates, NCC threshold %g, "
                  "blocks of %d rows." % (len(pairs), origin, len(all_dates), ncc_threshold,
                                          rows))
    paths = quality_paths(ts_folder)
    specs = {k: (desc, dtype, nodata) for k, _n, desc, dtype, nodata in LAYERS}
    tags = dict(NCC_THRESHOLD=ncc_threshold, N_PAIRS=len(pairs),
                DATES=",".join(_inv().iso(d) for d in all_dates),
                **{TAG_PARAMS: json.dumps(dict(
                    ncc_threshold=ncc_threshold, weighting=weighting, min_ncc=min_ncc,
                    min_snr=min_snr, pairs=[os.path.basename(p.path) for p in pairs],
                    pairs_from=origin))})
    units = dict(n_valid_pairs="count", ncc_share="fraction", first_valid_date="YYYYMMDD",
                 last_valid_date="YYYYMMDD", longest_gap_days="days")
    stats = dict(n_max=0, gap_max=0.0, n_sum=0, n_px=0, share_sum=0.0, share_px=0)
    _check_grids(pairs, grid, ts_folder)
    with rasterio.Env(GDAL_CACHEMAX=64), _open_outputs(paths, specs, grid, tags,
                                                        units) as dsts:
        n_blocks = (h + rows - 1) // rows
        for b, r0 in enumerate(range(0, h, rows)):
            progress.check()
            r1 = min(h, r0 + rows)
            win = Window(0, r0, w, r1 - r0)
            q = block_quality(_read_pairs(pairs, win), pair_index, day_numbers, len(pairs),
                              ncc_threshold, weighting, min_ncc, min_snr)
            _update_stats(stats, q)
            for key, dst in dsts.items():
                a = q.pop(key)
                if key in ("first_valid_date", "last_valid_date"):
                    a = days_to_yyyymmdd(a)
                dst.write(a.astype(specs[key][1], copy=False)[None], window=win)
                del a
            progress.update((b + 1) / n_blocks, "Quality layers: rows %d-%d of %d"
                            % (r0, r1, h))
        progress.check()
    summary = dict(n_pairs=len(pairs), pairs_from=origin,
                   n_valid_pairs_max=int(stats["n_max"]),
                   n_valid_pairs_mean=stats["n_sum"] / max(stats["n_px"], 1),
                   ncc_share_mean=(stats["share_sum"] / stats["share_px"]
                                   if stats["share_px"] else float("nan")),
                   longest_gap_days_max=float(stats["gap_max"]))
    styles = write_styles(paths, [_inv().iso(d) for d in all_dates], len(pairs),
                          stats["gap_max"], ncc_threshold)
    progress.info("Quality layers written to %s: valid pairs per pixel up to %d (mean %.1f), "
                  "mean share with NCC >= %g: %.2f, longest gap up to %.0f days."
                  % (ts_folder, summary["n_valid_pairs_max"], summary["n_valid_pairs_mean"],
                     ncc_threshold, summary["ncc_share_mean"], summary["longest_gap_days_max"]))
    return QualityOutputs(ts_folder, paths, styles, len(pairs),
                          [_inv().iso(d) for d in all_dates], ncc_threshold, summary)


def _check_grids(pairs, grid, ts_folder):
    import rasterio

    h, w = grid["height"], grid["width"]
    for p in pairs:
        with rasterio.open(p.path) as src:
            _band_indices(src)
            same = (src.height, src.width) == (h, w) and np.allclose(
                tuple(src.transform)[:6], tuple(grid["transform"])[:6], rtol=0,
                atol=1e-6 * max(1.0, abs(grid["transform"].a)))
        if not same:
            raise InputError("Pair raster '%s' is not on the grid of the time series in "
                             "'%s'. Were they made by different runs? Re-run the "
                             "inversion on these pairs." % (p.path, ts_folder))


def _read_pairs(pairs, win):
    """Yield the bands of each pair in window ``win``, one pair open at a time (an open
    tiled GeoTIFF keeps its decompression buffers: hundreds of open pairs would cost
    hundreds of MB)."""
    import rasterio

    for k, p in enumerate(pairs):
        with rasterio.open(p.path) as src:
            idx = _band_indices(src)
            names = [n for n, i in zip(_PAIR_BANDS, idx) if i is not None]
            wanted = [i for i in idx if i is not None]
            arr = src.read(wanted, window=win, out_dtype=np.float32)
            nodata = src.nodatavals
        got = {}
        for name, i, a in zip(names, wanted, arr):
            nd = nodata[i - 1]
            if name != BAND_STATUS and nd is not None and not np.isnan(nd):
                a[a == nd] = np.nan
            got[name] = a
        del arr
        yield (k, got[BAND_EAST], got[BAND_NORTH], got.get(BAND_NCC), got.get(BAND_SNR),
               got.get(BAND_STATUS))


def _update_stats(stats, q):
    n = q["n_valid_pairs"]
    ok = n > 0
    stats["n_max"] = max(stats["n_max"], int(n.max()) if n.size else 0)
    stats["n_sum"] += int(n[ok].sum())
    stats["n_px"] += int(ok.sum())
    share = q["ncc_share"]
    fin = np.isfinite(share)
    stats["share_sum"] += float(share[fin].sum())
    stats["share_px"] += int(fin.sum())
    gap = q["longest_gap_days"]
    if np.isfinite(gap).any():
        stats["gap_max"] = max(stats["gap_max"], float(np.nanmax(gap)))


class _open_outputs:
    """Context manager: the five outputs open for writing under temporary names,
    renamed when the block exits without an exception."""

    def __init__(self, paths, specs, grid, tags, units):
        self.paths, self.specs, self.grid, self.tags, self.units = paths, specs, grid, tags, units

    def __enter__(self):
        import contextlib

        import rasterio

        self._es = contextlib.ExitStack()
        try:
            tmps = {k: self._es.enter_context(atomic_output(p)) for k, p in self.paths.items()}
            self.dsts = {}
            for key, tmp in tmps.items():
                desc, dtype, nodata = self.specs[key]
                dst = self._es.enter_context(rasterio.open(tmp, "w", **_profile(
                    self.grid, dtype, nodata)))
                dst.set_band_description(1, desc)
                dst.update_tags(1, UNITS=self.units[key])
                dst.update_tags(**{k: str(v) for k, v in self.tags.items()},
                                CONTENT=_CONTENT[key])
                self.dsts[key] = dst
        except BaseException:
            import sys
            self._es.__exit__(*sys.exc_info())
            raise
        return self.dsts

    def __exit__(self, *exc):
        return self._es.__exit__(*exc)


_CONTENT = dict(
    n_valid_pairs="number of the inversion's pairs with a valid measurement at the pixel",
    ncc_share="share of the inversion's pairs with a valid measurement and NCC >= "
              "NCC_THRESHOLD at the pixel",
    first_valid_date="first date (YYYYMMDD) that is an end of a valid pair at the pixel",
    last_valid_date="last date (YYYYMMDD) that is an end of a valid pair at the pixel",
    longest_gap_days="longest interval (days) between consecutive dates that are ends of "
                     "valid pairs at the pixel")


# ------------------------------------------------------------------------ styles
# One definition of the quality layers' styles: the .qml beside each raster (QGIS applies
# it whenever it opens the raster) and the project slidewatch.qgz, which loads that .qml.
# Every label carries the unit of the data written (pairs, 0-1 share, ISO dates for the
# YYYYMMDD numbers, days), the ramp spans the data's range and a continuous legend shows
# the first and the last label (a colour bar labelled with bare numbers otherwise).
_RED_YELLOW_GREEN = ("#d7191c", "#fdae61", "#ffffbf", "#a6d96a", "#1a9641")
_VIRIDIS = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725")


def _xml(text):
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def qml_pseudocolor(items, vmin, vmax, continuous_legend=True, label_precision=2,
                    opacity=1.0):
    """Text of a QGIS (3.22+) raster style: single-band pseudo-colour, band 1, linear
    interpolation between ``items`` = [(value, "#rrggbb", label), ...]. A continuous
    legend (colour bar) is labelled with the first and the last item's label."""
    rows = "\n".join('          <item alpha="255" value="%r" label="%s" color="%s"/>'
                     % (float(v), _xml(lbl), c) for v, c, lbl in items)
    min_label, max_label = (items[0][2], items[-1][2]) if continuous_legend else ("", "")
    return """<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22.0" styleCategories="AllStyleCategories" hasScaleBasedVisibilityFlag="0" minScale="1e+08" maxScale="0">
  <pipe>
    <provider>
      <resampling enabled="false" zoomedInResamplingMethod="nearestNeighbour" zoomedOutResamplingMethod="nearestNeighbour" maxOversampling="2"/>
    </provider>
    <rasterrenderer type="singlebandpseudocolor" band="1" opacity="%r" alphaBand="-1" classificationMin="%r" classificationMax="%r" nodataColor="">
      <minMaxOrigin>
        <limits>None</limits>
        <extent>WholeRaster</extent>
        <statAccuracy>Estimated</statAccuracy>
        <cumulativeCutLower>0.02</cumulativeCutLower>
        <cumulativeCutUpper>0.98</cumulativeCutUpper>
        <stdDevFactor>2</stdDevFactor>
      </minMaxOrigin>
      <rastershader>
        <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" clip="0" labelPrecision="%d" minimumValue="%r" maximumValue="%r">
%s
          <rampLegendSettings prefix="" suffix="" minimumLabel="%s" maximumLabel="%s" direction="0" orientation="2" useContinuousLegend="%d"/>
        </colorrampshader>
      </rastershader>
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation saturation="0" grayscaleMode="0" colorizeOn="0" colorizeRed="255" colorizeGreen="128" colorizeBlue="128" colorizeStrength="100" invertColors="0"/>
    <rasterresampler maxOversampling="2"/>
    <resamplingStage>resamplingFilter</resamplingStage>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
""" % (float(opacity), float(vmin), float(vmax), int(label_precision), float(vmin),
       float(vmax), rows, _xml(min_label), _xml(max_label), 1 if continuous_legend else 0)


def _ramp_colour(colours, f):
    """Colour at fraction ``f`` (0-1) of the ramp through ``colours`` (equally spaced)."""
    f = min(max(float(f), 0.0), 1.0) * (len(colours) - 1)
    i = min(int(f), len(colours) - 2)
    t = f - i
    a, b = (tuple(int(c[k:k + 2], 16) for k in (1, 3, 5)) for c in colours[i:i + 2])
    return "#%02x%02x%02x" % tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


def style_items(key, dates_iso, n_pairs, gap_max_days, ncc_threshold):
    """(items, vmin, vmax, continuous legend) of the style of a quality layer: ``items``
    are ``(value, "#rrggbb", label)``, increasing, every label with its unit.

    - ``n_valid_pairs`` (count): viridis at whole numbers of pairs from 0 to the number
      of pairs inverted (the largest possible value);
    - ``ncc_share`` (fraction 0-1): red-yellow-green from 0 (no pair) to 1 (every pair);
    - ``first_valid_date`` / ``last_valid_date`` (YYYYMMDD numbers): viridis over the dates
      of the run, legend entries in ISO dates;
    - ``longest_gap_days`` (days): green at the median sampling interval of the run, red at
      the longest gap of the raster, or at twice the median interval when no gap is
      longer (a well-sampled raster stays green), labelled so.
    """
    if key == "n_valid_pairs":
        hi = max(int(n_pairs), 1)
        values = sorted(set(int(round(i * hi / 4.0)) for i in range(5)))
        items = [(float(v), _ramp_colour(_VIRIDIS, v / float(hi)), "%d pairs" % v)
                 for v in values]
        return items, 0.0, float(hi), True
    if key == "ncc_share":
        items = [(v, c, "%.2f" % v) for v, c in zip((0.0, 0.25, 0.5, 0.75, 1.0),
                                                     _RED_YELLOW_GREEN)]
        items[0] = (0.0, items[0][1], "0 (no pair)")
        items[-1] = (1.0, items[-1][1], "1 (every pair)")
        return items, 0.0, 1.0, True
    if key in ("first_valid_date", "last_valid_date"):
        ds = sorted(dates_iso)
        picks = sorted(set(int(round(i * (len(ds) - 1) / 4.0)) for i in range(5)))
        n = len(picks)
        items = [(float(ds[i].replace("-", "")), _ramp_colour(_VIRIDIS, k / max(n - 1, 1)),
                  ds[i]) for k, i in enumerate(picks)]
        if len(items) == 1:  # one date: a ramp needs two values
            items.append((items[0][0] + 1, _VIRIDIS[-1], ds[-1]))
        return items, items[0][0], items[-1][0], False
    if key == "longest_gap_days":
        d64 = np.array(sorted(dates_iso), dtype="datetime64[D]")
        steps = np.diff(d64).astype(float)
        base = float(np.median(steps)) if steps.size else 1.0
        gap = float(gap_max_days) if np.isfinite(gap_max_days) else 0.0
        hi = max(gap, 2.0 * base, base + 1.0)
        top = ("%.0f days (longest gap)" % hi if hi == gap else
               "%.0f days (2 x median sampling; longest gap %.0f days)" % (hi, gap))
        items = [(base, _RED_YELLOW_GREEN[4], "%.0f days (median sampling)" % base),
                 ((base + hi) / 2.0, _RED_YELLOW_GREEN[2], "%.0f days" % ((base + hi) / 2.0)),
                 (hi, _RED_YELLOW_GREEN[0], top)]
        return items, base, hi, True
    raise ParameterError("unknown quality layer %r" % key)


def style_path(path):
    """The ``.qml`` style of a quality layer (same name, beside it)."""
    return os.path.splitext(path)[0] + ".qml"


def write_styles(paths, dates_iso, n_pairs, gap_max_days, ncc_threshold):
    """Write ``<layer>.qml`` beside each quality layer; returns ``{key: qml path}``."""
    out = {}
    for key, path in paths.items():
        items, lo, hi, cont = style_items(key, dates_iso, n_pairs, gap_max_days,
                                          ncc_threshold)
        qml = style_path(path)
        write_text_atomic(qml, qml_pseudocolor(items, lo, hi, cont,
                                               label_precision=0 if key != "ncc_share" else 2))
        out[key] = qml
    return out


def restore_styles(ts_folder):
    """Write the ``.qml`` of the quality layers of ``ts_folder`` that have none, from the
    rasters themselves (their DATES, N_PAIRS, NCC_THRESHOLD tags and the longest gap
    written); returns ``{key: qml path}`` of every layer present."""
    import rasterio

    present = {k: p for k, p in quality_paths(ts_folder).items() if os.path.exists(p)}
    missing = {k: p for k, p in present.items() if not os.path.exists(style_path(p))}
    if missing:
        with rasterio.open(next(iter(missing.values()))) as src:
            tags = src.tags()
        gap = 0.0
        if "longest_gap_days" in missing:
            with rasterio.open(missing["longest_gap_days"]) as src:
                for _ij, win in src.block_windows(1):
                    a = src.read(1, window=win)
                    if np.isfinite(a).any():
                        gap = max(gap, float(np.nanmax(a)))
        write_styles(missing, [d for d in tags.get("DATES", "").split(",") if d],
                     int(tags.get("N_PAIRS", 1)), gap,
                     float(tags.get("NCC_THRESHOLD", DEFAULT_NCC_THRESHOLD)))
    return {k: style_path(p) for k, p in present.items()}


def read_quality_at(ts_folder, x, y):
    """The quality values at map point (x, y) of a ``timeseries/`` folder (dict; missing
    layers left out; dates as ISO strings)."""
    import rasterio

    out = {}
    for key, path in quality_paths(ts_folder).items():
        if not os.path.exists(path):
            continue
        with rasterio.open(path) as src:
            row, col = src.index(x, y)
            if not (0 <= row < src.height and 0 <= col < src.width):
                continue
            v = src.read(1, window=((row, row + 1), (col, col + 1)))[0, 0]
        if key in ("first_valid_date", "last_valid_date"):
            out[key] = yyyymmdd_to_iso(v)
        elif key == "n_valid_pairs":
            out[key] = int(v)
        else:
            out[key] = float(v)
    return out
