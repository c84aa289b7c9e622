"""Overview picture of a SlideWatch run: velocity map, detection outlines and a legend.

:func:`write_overview` renders ``overview.png`` with numpy and Pillow only (no QGIS), so
scripts and the headless pipeline produce the same picture the README shows:

- background: one image of the stack in grey (contrast stretched 2-98 %), when given;
- mean velocity magnitude (``v_m_per_yr`` of ``timeseries/velocity.tif``) with a
  yellow-orange-red ramp from 0 to the 99th percentile, transparent where the motion is
  small (below ~10 % of the ramp) so the ground stays visible;
- detection outlines from ``detections.gpkg`` coloured by validation status (the same
  colours as the QGIS project);
- a legend (colour bar in m/yr, statuses with counts), a scale bar and a title.

Pillow comes with Debian's ``python3-pil`` (a dependency of QGIS's Python packages).
"""

import os

import numpy as np

from ..errors import InputError, OutputError
from ..products import BAND_V, BAND_V_SIGMA, BAND_VE, BAND_VN, DETECTION_STATUSES
from ..raster_io import atomic_output

__all__ = ["write_overview", "write_velocity_arrows", "VELOCITY_RAMP", "STATUS_COLOURS",
           "ramp_colours"]

#: colour ramp of the velocity magnitude (position 0..1, RGB), shared with the QGIS project
VELOCITY_RAMP = ((0.0, (255, 255, 178)), (0.25, (254, 204, 92)), (0.5, (253, 141, 60)),
                 (0.75, (240, 59, 32)), (1.0, (189, 0, 38)))

#: outline colours of detections by validation status, shared with the QGIS project
STATUS_COLOURS = {"unvalidated": (0, 200, 255), "confirmed": (220, 0, 220),
                  "rejected": (150, 150, 150), "uncertain": (255, 255, 255)}

_FONT_PATHS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
               "/usr/share/fonts/dejavu/DejaVuSans.ttf")


def ramp_colours(values):
    """Map values in 0..1 (NaN allowed) to uint8 RGB through :data:`VELOCITY_RAMP`."""
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0), 0.0, 1.0)
    pos = np.array([p for p, _ in VELOCITY_RAMP])
    cols = np.array([c for _, c in VELOCITY_RAMP], dtype=np.float64)
    out = np.empty(v.shape + (3,), np.uint8)
    for k in range(3):
        out[..., k] = np.round(np.interp(v, pos, cols[:, k]))
    return out


def _font(size):
    from PIL import ImageFont
    for path in _FONT_PATHS:
        if os.path.exists(path):
            try:
                return ImageFont.truetype(path, size)
            except OSError:
                pass
    return ImageFont.load_default()


def _read_velocity(path):
    import rasterio
    try:
        with rasterio.open(path) as src:
            names = list(src.descriptions)
            idx = names.index(BAND_V) + 1 if BAND_V in names else 3
            v = src.read(idx).astype(np.float64)
            return v, src.transform, src.crs
    except rasterio.errors.RasterioIOError as exc:
        raise InputError("Cannot read the velocity raster '%s' for the overview: %s. Run the "
                         "inversion step first." % (path, exc)) from exc


def _sample(path, transform_out, shape, band=1):
    """Nearest-neighbour sample of ``path`` on the canvas grid (NaN outside / nodata)."""
    import rasterio
    with rasterio.open(path) as src:
        rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
        xs, ys = transform_out * (cols + 0.5, rows + 0.5)
        inv = ~src.transform
        c, r = inv * (xs, ys)
        r = np.floor(r).astype(np.int64)
        c = np.floor(c).astype(np.int64)
        inside = (r >= 0) & (r < src.height) & (c >= 0) & (c < src.width)
        # read a decimated copy when the source is much larger than the canvas
        factor = max(1, int(min(src.height / max(shape[0], 1), src.width / max(shape[1], 1))))
        if factor > 1:
            h, w = max(1, src.height // factor), max(1, src.width // factor)
            arr = src.read(band, out_shape=(h, w)).astype(np.float64)
            r = np.clip(r * h // src.height, 0, h - 1)
            c = np.clip(c * w // src.width, 0, w - 1)
        else:
            arr = src.read(band).astype(np.float64)
            r = np.clip(r, 0, src.height - 1)
            c = np.clip(c, 0, src.width - 1)
        nodata = src.nodata
    if nodata is not None and not np.isnan(nodata):
        arr[arr == nodata] = np.nan
    arr[arr == 0] = np.nan      # 0 is nodata in Sentinel-2 L1C DN
    out = arr[r, c]
    out[~inside] = np.nan
    return out


def _detections(path):
    """[(status, [rings in map coordinates])] from a detections GeoPackage."""
    if not path or not os.path.exists(path):
        return []
    from osgeo import ogr
    ds = ogr.Open(path)
    if ds is None:
        return []
    layer = ds.GetLayerByName("detections")
    if layer is None:
        return []
    out = []
    for feat in layer:
        geom = feat.GetGeometryRef()
        if geom is None:
            continue
        status = feat.GetField("status") if feat.GetFieldIndex("status") >= 0 else None
        rings = []
        gtype = ogr.GT_Flatten(geom.GetGeometryType())
        polys = [geom] if gtype == ogr.wkbPolygon else [
            geom.GetGeometryRef(i) for i in range(geom.GetGeometryCount())]
        for poly in polys:
            if poly is None or poly.GetGeometryCount() == 0:
                continue
            ring = poly.GetGeometryRef(0)
            rings.append(np.array(ring.GetPoints())[:, :2])
        out.append((status or "unvalidated", rings))
    ds = None
    return out


def _nice_length(metres):
    """A round scale-bar length not longer than ``metres``."""
    if metres <= 0:
        return 0
    exp = 10 ** np.floor(np.log10(metres))
    for m in (5, 2, 1):
        if m * exp <= metres:
            return m * exp
    return exp


def write_overview(velocity_path, out_path, detections_path=None, background_path=None,
                   title=None, max_size=900):
    """Render the overview PNG; returns ``out_path``.

    Parameters
    ----------
    velocity_path : ``timeseries/velocity.tif``
    out_path : PNG file to write (atomically)
    detections_path : ``detections.gpkg`` (optional; outlines by status)
    background_path : an image of the stack drawn in grey below the velocity (optional)
    title : text above the map (default "SlideWatch - mean velocity")
    max_size : longest side of the map in pixels
    """
    try:
        from PIL import Image, ImageDraw
    except ImportError as exc:
        raise OutputError("Pillow is needed to write the overview picture '%s'. Install it "
                          "(sudo apt-get install python3-pil)." % out_path) from exc
    from rasterio.transform import Affine

    v, vt, _crs = _read_velocity(velocity_path)
    h, w = v.shape
    left, top = vt.c, vt.f
    right, bottom = vt * (w, h)
    ext_w, ext_h = abs(right - left), abs(top - bottom)
    scale = max_size / max(ext_w, ext_h)
    cw, ch = max(1, int(round(ext_w * scale))), max(1, int(round(ext_h * scale)))
    canvas_t = Affine(ext_w / cw, 0, min(left, right), 0, -ext_h / ch, max(top, bottom))

    vc = _sample(velocity_path, canvas_t, (ch, cw),
                 band=(_band_index(velocity_path, BAND_V) or 3))
    finite = np.isfinite(v)
    vmax = float(np.nanpercentile(v[finite], 99)) if finite.any() else 1.0
    if not np.isfinite(vmax) or vmax <= 0:
        vmax = 1.0

    rgb = np.full((ch, cw, 3), 235.0)
    if background_path and os.path.exists(background_path):
        try:
            bg = _sample(background_path, canvas_t, (ch, cw))
            ok = np.isfinite(bg)
            if ok.sum() > 10:
                lo, hi = np.percentile(bg[ok], [2, 98])
                g = np.clip((bg - lo) / max(hi - lo, 1e-12), 0, 1) * 200 + 30
                g[~ok] = 235
                rgb = np.repeat(g[..., None], 3, axis=2)
        except Exception:
            pass   # the background is decoration only
    frac = vc / vmax
    alpha = 0.85 * np.clip((frac - 0.05) / 0.15, 0, 1)
    alpha[~np.isfinite(vc)] = 0
    rgb = rgb * (1 - alpha[..., None]) + ramp_colours(frac).astype(np.float64) * alpha[..., None]
    map_img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(map_img)

    dets = _detections(detections_path)
    counts = {}
    inv = ~canvas_t
    for status, rings in dets:
        counts[status] = counts.get(status, 0) + 1
        colour = STATUS_COLOURS.get(status, STATUS_COLOURS["unvalidated"])
        for ring in rings:
            cols, rows = inv * (ring[:, 0], ring[:, 1])
            pts = list(zip(cols.tolist(), rows.tolist()))
            if len(pts) >= 2:
                draw.line(pts + [pts[0]], fill=(0, 0, 0), width=4)
                draw.line(pts + [pts[0]], fill=colour, width=2)

    # scale bar (bottom left)
    metres = _nice_length(ext_w / 4)
    if metres > 0:
        px = metres * scale
        x0, y0 = 12, ch - 16
        draw.rectangle([x0 - 4, y0 - 18, x0 + px + 4, y0 + 6], fill=(255, 255, 255))
        draw.rectangle([x0, y0, x0 + px, y0 + 4], fill=(0, 0, 0))
        label = "%g km" % (metres / 1000) if metres >= 1000 else "%g m" % metres
        draw.text((x0, y0 - 16), label, fill=(0, 0, 0), font=_font(12))

    # page: title on top, legend on the right
    legend_w, title_h, pad = 210, 40, 10
    page = Image.new("RGB", (cw + legend_w + 3 * pad, ch + title_h + 2 * pad), (255, 255, 255))
    page.paste(map_img, (pad, title_h + pad))
    pd = ImageDraw.Draw(page)
    pd.rectangle([pad - 1, title_h + pad - 1, pad + cw, title_h + pad + ch], outline=(0, 0, 0))
    pd.text((pad, 10), title or "SlideWatch - mean velocity", fill=(0, 0, 0), font=_font(18))
    lx, ly = cw + 2 * pad + 6, title_h + pad
    pd.text((lx, ly), "Velocity (m/yr)", fill=(0, 0, 0), font=_font(14))
    bar_h, bar_w = min(220, max(80, ch // 2)), 22
    ramp = ramp_colours(np.linspace(1, 0, bar_h))[:, None, :].repeat(bar_w, axis=1)
    page.paste(Image.fromarray(ramp, "RGB"), (lx, ly + 24))
    pd.rectangle([lx, ly + 24, lx + bar_w, ly + 24 + bar_h], outline=(0, 0, 0))
    for f in (0.0, 0.5, 1.0):
        y = ly + 24 + int(round((1 - f) * (bar_h - 1)))
        pd.line([lx + bar_w, y, lx + bar_w + 5, y], fill=(0, 0, 0))
        pd.text((lx + bar_w + 8, y - 7), _fmt_velocity(f * vmax), fill=(0, 0, 0), font=_font(12))
    y = ly + 24 + bar_h + 20
    pd.text((lx, y), "Detections", fill=(0, 0, 0), font=_font(14))
    y += 22
    for status in DETECTION_STATUSES:
        colour = STATUS_COLOURS[status]
        pd.rectangle([lx, y + 2, lx + 22, y + 14], fill=(90, 90, 90), outline=(0, 0, 0))
        pd.rectangle([lx + 3, y + 5, lx + 19, y + 11], outline=colour, width=2)
        pd.text((lx + 30, y), "%s (%d)" % (status, counts.get(status, 0)), fill=(0, 0, 0),
                font=_font(12))
        y += 20
    if not dets:
        pd.text((lx, y + 4), "no detection" if detections_path else "detections not run",
                fill=(90, 90, 90), font=_font(12))

    with atomic_output(out_path) as tmp:
        page.save(tmp, format="PNG", optimize=True)
    return out_path


def _fmt_velocity(x):
    if x >= 10:
        return "%.0f" % x
    if x >= 1:
        return "%.1f" % x
    return "%.2g" % x


def _band_index(path, description):
    import rasterio
    with rasterio.open(path) as src:
        for i, d in enumerate(src.descriptions, start=1):
            if d == description:
                return i
    return None


def write_velocity_arrows(velocity_path, out_path, max_arrows=45, min_fraction=0.1,
                          min_significance=2.0):
    """Write ``velocity_arrows.gpkg`` (layer ``arrows``): points on a coarse grid with the
    mean velocity of each cell, for the direction layer of the QGIS project.

    The grid has at most ``max_arrows`` cells along the longest side; a cell gets an arrow
    when its mean speed is at least ``min_fraction`` of the 99th percentile speed and
    ``min_significance`` times its mean velocity sigma. Fields: ``ve_m_per_yr``,
    ``vn_m_per_yr``, ``v_m_per_yr``, ``direction_deg`` (azimuth of motion, degrees
    clockwise from north, the marker rotation). Returns the number of arrows.
    """
    import rasterio
    from osgeo import ogr, osr

    with rasterio.open(velocity_path) as src:
        names = list(src.descriptions)

        def band(name, default):
            return src.read(names.index(name) + 1 if name in names else default).astype(
                np.float64)

        ve, vn = band(BAND_VE, 1), band(BAND_VN, 2)
        sig = band(BAND_V_SIGMA, 4)
        t, crs = src.transform, src.crs
    h, w = ve.shape
    v = np.hypot(ve, vn)
    finite = np.isfinite(v)
    vmax = float(np.nanpercentile(v[finite], 99)) if finite.any() else 0.0
    cell = max(1, int(np.ceil(max(h, w) / float(max_arrows))))
    feats = []
    with np.errstate(invalid="ignore"):
        for r0 in range(0, h, cell):
            for c0 in range(0, w, cell):
                e = ve[r0:r0 + cell, c0:c0 + cell]
                n = vn[r0:r0 + cell, c0:c0 + cell]
                ok = np.isfinite(e) & np.isfinite(n)
                if ok.sum() < max(1, ok.size // 4):
                    continue
                me, mn = float(e[ok].mean()), float(n[ok].mean())
                mv = float(np.hypot(me, mn))
                s = sig[r0:r0 + cell, c0:c0 + cell]
                ms = float(np.nanmean(s)) if np.isfinite(s).any() else 0.0
                if vmax <= 0 or mv < min_fraction * vmax or mv < min_significance * ms:
                    continue
                rc, cc = min(r0 + cell / 2.0, h), min(c0 + cell / 2.0, w)
                x, y = t * (cc, rc)
                az = float(np.degrees(np.arctan2(me, mn)) % 360.0)
                feats.append((x, y, me, mn, mv, az))
    import uuid
    out_path = os.path.abspath(out_path)
    tmp = os.path.join(os.path.dirname(out_path), ".%s.%s.gpkg" % (
        os.path.basename(out_path), uuid.uuid4().hex[:8]))
    try:
        drv = ogr.GetDriverByName("GPKG")
        ds = drv.CreateDataSource(tmp)
        srs = None
        if crs is not None:
            srs = osr.SpatialReference()
            srs.ImportFromWkt(crs.to_wkt())
            srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        layer = ds.CreateLayer("arrows", srs, ogr.wkbPoint)
        for name in (BAND_VE, BAND_VN, BAND_V, "direction_deg"):
            layer.CreateField(ogr.FieldDefn(name, ogr.OFTReal))
        defn = layer.GetLayerDefn()
        layer.StartTransaction()
        for x, y, me, mn, mv, az in feats:
            f = ogr.Feature(defn)
            f.SetField(BAND_VE, me)
            f.SetField(BAND_VN, mn)
            f.SetField(BAND_V, mv)
            f.SetField("direction_deg", az)
            g = ogr.Geometry(ogr.wkbPoint)
            g.AddPoint_2D(x, y)
            f.SetGeometry(g)
            layer.CreateFeature(f)
        layer.CommitTransaction()
        ds = None
        os.replace(tmp, out_path)
    except OSError as exc:
        raise OutputError("Could not write '%s': %s" % (out_path, exc)) from exc
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return len(feats)
