"""Write the small offset samples of tests/data/import/ (run once; reproducible).

Every synthetic sample holds the same known motion, written the way the foreign tool
writes it: a block of rows 10-29, columns 15-34 moving EAST_M metres east and NORTH_M
metres north between the two dates, the rest still (plus a little deterministic noise),
and a 3 x 3 corner without data. ``truth.json`` records what SlideWatch must read back.

* ``cosicorr/``: a COSI-Corr / geoCosiCorr3D correlation raster (float32 bands
  ``East/West``, ``North/South``, ``SNR``; metres, north positive; NaN + SNR 0 where not
  correlated), 10 m grid.
* ``micmac/<Im1>_<Im2>/``: an MPIC-OPT-style MicMac folder: the two images (tiny uint8,
  georeferenced), ``param.xml`` (Im1, Im2, Px1Pas = Px2Pas = 0.05) and ``MEC/`` with
  ``Px1_Num6_DeZoom1_LeChantier.tif`` (column offset / Pas), ``Px2_...`` (row offset /
  Pas, rows downwards: north motion is negative Px2) and ``Correl_LeChantier_Num_5.tif``
  (uint8, 127.5 * (1 + c), 0 = not correlated); the Px maps carry no georeferencing.
* ``itslive/``: an autoRIFT / ITS_LIVE V2-like NetCDF4 granule (variables and attributes
  named as autoRIFT's netcdf_output.py writes them: int16 ``vx``/``vy``/``v``/``v_error``
  in meter/year with _FillValue -32767, ``interp_mask``, ``mapping`` with spatial_ref /
  crs_wkt / GeoTransform, ``img_pair_info`` with acquisition_date_img1/2, date_center,
  date_dt...), 120 m UTM grid, 16 days.
* ``geotiff/``: plain pairs: two single-band files in metres (north positive) and one
  two-band file in pixels with the row convention (north = -band 2).
* ``carst/``: a 100 x 100 crop of CARST's real Yahtse offsets (../shared/data/
  landsat8_pair_yahtse_glacier/, names kept: ``2016200_2016216_r32x32_s32x32_*xyz.tif``).

    .venv/bin/python scripts/make_import_samples.py
"""

import json
import os
import shutil

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "import")
YAHTSE = os.path.join(os.path.dirname(ROOT), "shared", "data", "landsat8_pair_yahtse_glacier")

H, W = 40, 50
BLOCK = (slice(10, 30), slice(15, 35))
CORNER = (slice(0, 3), slice(0, 3))
EAST_M, NORTH_M = 3.0, 2.0           # 10 m grids: dx = +0.3 px, dy = -0.2 px
REF, SEC = "2020-01-05", "2020-01-30"
UTM32 = CRS.from_epsg(32632)
T10 = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5100000.0)


def _motion(east, north, noise, seed):
    rng = np.random.default_rng(seed)
    e = rng.normal(0.0, noise, (H, W))
    n = rng.normal(0.0, noise, (H, W))
    e[BLOCK] += east
    n[BLOCK] += north
    return e, n


def _tif(path, bands, transform, crs, dtype="float32", nodata=None, descriptions=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    prof = dict(driver="GTiff", height=bands[0].shape[0], width=bands[0].shape[1],
                count=len(bands), dtype=dtype, compress="deflate")
    if transform is not None:
        prof.update(transform=transform, crs=crs)
    if nodata is not None:
        prof["nodata"] = nodata
    with rasterio.open(path, "w", **prof) as dst:
        for i, b in enumerate(bands, start=1):
            dst.write(np.asarray(b).astype(dtype), i)
            if descriptions:
                dst.set_band_description(i, descriptions[i - 1])


def cosicorr(truth):
    e, n = _motion(EAST_M, NORTH_M, 0.02, 1)
    snr = np.clip(np.random.default_rng(2).normal(0.9, 0.03, (H, W)), 0.5, 0.99)
    e[CORNER] = n[CORNER] = np.nan
    snr[CORNER] = 0.0
    name = "T32TLR_20200105_B04_VS_T32TLR_20200130_B04_frequency_wz_64_step_8.tif"
    _tif(os.path.join(OUT, "cosicorr", name), [e, n, snr], T10, UTM32,
         descriptions=["East/West", "North/South", "SNR"])
    truth["cosicorr"] = dict(file="cosicorr/" + name, reference_date=REF, secondary_date=SEC,
                             east_m=EAST_M, north_m=NORTH_M, tol_m=0.1, pixel_m=10.0)


def micmac(truth):
    im1, im2 = "T32TLR_20200105T103329_B04.tif", "T32TLR_20200130T103251_B04.tif"
    folder = os.path.join(OUT, "micmac", im1[:-4] + "_" + im2[:-4])
    rng = np.random.default_rng(3)
    for name in (im1, im2):
        _tif(os.path.join(folder, name), [rng.integers(1, 255, (H, W))], T10, UTM32,
             dtype="uint8", nodata=0)
    pas = 0.05
    e, n = _motion(EAST_M, NORTH_M, 0.02, 4)
    px1 = e / 10.0 / pas             # column offset (east), in steps of Pas
    px2 = -n / 10.0 / pas            # row offset (rows go south), in steps of Pas
    c = np.clip(np.random.default_rng(5).normal(0.85, 0.05, (H, W)), 0.3, 0.99)
    correl = np.round(127.5 * (1.0 + c))
    correl[CORNER] = 0
    px1[CORNER] = px2[CORNER] = 0.0
    mec = os.path.join(folder, "MEC")
    _tif(os.path.join(mec, "Px1_Num6_DeZoom1_LeChantier.tif"), [px1], None, None)
    _tif(os.path.join(mec, "Px2_Num6_DeZoom1_LeChantier.tif"), [px2], None, None)
    _tif(os.path.join(mec, "Correl_LeChantier_Num_5.tif"), [correl], None, None, dtype="uint8")
    with open(os.path.join(folder, "param.xml"), "w", encoding="utf-8") as fh:
        fh.write("""<ParamMICMAC>
  <!-- MPIC-OPT-style 2-D matching of two orthoimages (tests/data/import sample) -->
  <Section_PriseDeVue>
    <GeomImages>eGeomImage_EpipolairePure</GeomImages>
    <Images>
      <Im1>%s</Im1>
      <Im2>%s</Im2>
    </Images>
  </Section_PriseDeVue>
  <Section_MEC>
    <ChantierFullImage1>true</ChantierFullImage1>
    <EtapeMEC>
      <DeZoom>-1</DeZoom>
      <SzW>4</SzW>
      <AlgoRegul>eAlgo2PrgDyn</AlgoRegul>
      <Px1Pas>0.2</Px1Pas>
      <Px2Pas>0.2</Px2Pas>
      <Px1DilatAlti>2</Px1DilatAlti>
      <Px2DilatAlti>2</Px2DilatAlti>
    </EtapeMEC>
    <EtapeMEC><DeZoom>4</DeZoom></EtapeMEC>
    <EtapeMEC><DeZoom>2</DeZoom></EtapeMEC>
    <EtapeMEC><DeZoom>1</DeZoom></EtapeMEC>
    <EtapeMEC>
      <DeZoom>1</DeZoom>
      <Px1Pas>%g</Px1Pas>
      <Px2Pas>%g</Px2Pas>
    </EtapeMEC>
  </Section_MEC>
</ParamMICMAC>
""" % (im1, im2, pas, pas))
    truth["micmac"] = dict(file=os.path.relpath(os.path.join(
        mec, "Px1_Num6_DeZoom1_LeChantier.tif"), OUT), reference_date=REF,
        secondary_date=SEC, east_m=EAST_M, north_m=NORTH_M, tol_m=0.1, px_step=pas,
        pixel_m=10.0)


def geotiff(truth):
    e, n = _motion(EAST_M, NORTH_M, 0.02, 6)
    e[CORNER] = n[CORNER] = -9999.0
    base = os.path.join(OUT, "geotiff")
    _tif(os.path.join(base, "slide_20200105_20200130_east.tif"), [e], T10, UTM32,
         nodata=-9999.0)
    _tif(os.path.join(base, "slide_20200105_20200130_north.tif"), [n], T10, UTM32,
         nodata=-9999.0)
    # pixels, rows downwards (a raw dx, dy field), NaN nodata
    dx, dy = e / 10.0, -n / 10.0
    dx[CORNER] = dy[CORNER] = np.nan
    _tif(os.path.join(base, "offsets_px_rows_2020-01-05_2020-01-30.tif"), [dx, dy], T10,
         UTM32, descriptions=["dx_px", "dy_px"])
    truth["geotiff"] = dict(
        east="geotiff/slide_20200105_20200130_east.tif",
        north="geotiff/slide_20200105_20200130_north.tif",
        two_band_px_rows="geotiff/offsets_px_rows_2020-01-05_2020-01-30.tif",
        reference_date=REF, secondary_date=SEC, east_m=EAST_M, north_m=NORTH_M, tol_m=0.1,
        pixel_m=10.0)


def itslive(truth):
    from osgeo import gdal, osr
    gdal.UseExceptions()
    ref, sec, dt_days = "2016-07-18", "2016-08-03", 16.00000231
    vx_true, vy_true = 365, 219            # m/yr -> 16.0 m east, 9.6 m north in 16 days
    rng = np.random.default_rng(7)
    vx = np.round(rng.normal(0.0, 3.0, (H, W)))
    vy = np.round(rng.normal(0.0, 3.0, (H, W)))
    vx[BLOCK] += vx_true
    vy[BLOCK] += vy_true
    interp = np.zeros((H, W), np.uint8)
    interp[35:38, 40:45] = 1
    vx[CORNER] = vy[CORNER] = -32767
    v = np.where(vx == -32767, -32767, np.round(np.hypot(vx, vy)))
    v_err = np.where(vx == -32767, -32767, 12)
    name = ("LC08_L1TP_063018_20160718_20200906_02_T1_X_LC08_L1TP_063018_20160803_20200906_"
            "02_T1_G0120V02_P095.nc")
    path = os.path.join(OUT, "itslive", name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path):
        os.remove(path)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32607)
    x0, y0, res = 465727.5, 6681037.5, 120.0   # upper-left corner (Yahtse area)
    ds = gdal.GetDriverByName("netCDF").CreateMultiDimensional(path, [], ["FORMAT=NC4"])
    rg = ds.GetRootGroup()
    S = gdal.ExtendedDataType.CreateString()
    F64 = gdal.ExtendedDataType.Create(gdal.GDT_Float64)
    I16 = gdal.ExtendedDataType.Create(gdal.GDT_Int16)
    U8 = gdal.ExtendedDataType.Create(gdal.GDT_Byte)
    I32 = gdal.ExtendedDataType.Create(gdal.GDT_Int32)

    def attrs(obj, items):
        for k, val in items:
            t = S if isinstance(val, str) else (I32 if isinstance(val, int) else F64)
            obj.CreateAttribute(k, [], t).Write(val)

    attrs(rg, [("GDAL_AREA_OR_POINT", "Area"), ("Conventions", "CF-1.8"),
               ("title", "autoRIFT surface velocities"),
               ("autoRIFT_software_version", "1.5.0"), ("scene_pair_type", "optical"),
               ("satellite", "L8"), ("motion_detection_method", "feature"),
               ("motion_coordinates", "map"),
               ("author", "ITS_LIVE, a NASA MEaSUREs project (its-live.jpl.nasa.gov)"),
               ("institution", "NASA Jet Propulsion Laboratory (JPL), California Institute "
                               "of Technology"),
               ("source", "SlideWatch test sample in the layout of an ITS_LIVE V2 granule "
                          "(synthetic values)")])
    dx = rg.CreateDimension("x", "HORIZONTAL_X", None, W)
    dy = rg.CreateDimension("y", "HORIZONTAL_Y", None, H)
    xv = rg.CreateMDArray("x", [dx], F64)
    xv.Write(x0 + res / 2 + np.arange(W) * res)          # pixel centres, as autoRIFT
    attrs(xv, [("standard_name", "projection_x_coordinate"),
               ("description", "x coordinate of projection"), ("units", "m")])
    yv = rg.CreateMDArray("y", [dy], F64)
    yv.Write(y0 - res / 2 - np.arange(H) * res)
    attrs(yv, [("standard_name", "projection_y_coordinate"),
               ("description", "y coordinate of projection"), ("units", "m")])
    ip = rg.CreateMDArray("img_pair_info", [], S)
    attrs(ip, [("standard_name", "image_pair_information"),
               ("acquisition_date_img1", "20160718T20:37:06.14059"),
               ("acquisition_date_img2", "20160803T20:37:06.34058"),
               ("collection_category_img1", "T1"), ("collection_category_img2", "T1"),
               ("correction_level_img1", "L1TP"), ("correction_level_img2", "L1TP"),
               ("mission_img1", "L"), ("mission_img2", "L"),
               ("path_img1", 63.0), ("path_img2", 63.0), ("row_img1", 18.0),
               ("row_img2", 18.0), ("satellite_img1", "8"), ("satellite_img2", "8"),
               ("sensor_img1", "C"), ("sensor_img2", "C"),
               ("time_standard_img1", "UTC"), ("time_standard_img2", "UTC"),
               ("date_center", "20160726T20:37:06.24058"), ("date_dt", dt_days),
               ("latitude", 60.24), ("longitude", -141.56),
               ("roi_valid_percentage", 97.0)])
    mp = rg.CreateMDArray("mapping", [], S)
    tran = [x0 + res / 2, res, 0.0, y0 - res / 2, 0.0, -res]   # autoRIFT's centre-based
    attrs(mp, [("grid_mapping_name", "universal_transverse_mercator"),
               ("utm_zone_number", 7.0), ("semi_major_axis", 6378137.0),
               ("inverse_flattening", 298.257223563), ("spatial_ref", srs.ExportToWkt()),
               ("crs_wkt", srs.ExportToWkt()), ("proj4text", srs.ExportToProj4()),
               ("spatial_epsg", 32607), ("GeoTransform", " ".join(str(t) for t in tran))])

    def grid(name, arr, dtype, fill, items):
        var = rg.CreateMDArray(name, [dy, dx], dtype)
        if fill is not None:
            var.SetNoDataValueDouble(fill)
        attrs(var, items + [("grid_mapping", "mapping")])
        var.Write(np.ascontiguousarray(arr))

    for comp, arr in (("x", vx), ("y", vy)):
        grid("v" + comp, arr.astype(np.int16), I16, -32767,
             [("standard_name", "land_ice_surface_%s_velocity" % comp),
              ("description", "velocity component in %s direction" % comp),
              ("units", "meter/year"), ("error", 8.5), ("error_stationary", 8.5),
              ("error_modeled", 20.1), ("error_slow", 9.0), ("stable_shift", 1.2),
              ("stable_shift_flag", 1), ("stable_count_stationary", 1200),
              ("stable_count_slow", 800)])
    grid("v", v.astype(np.int16), I16, -32767,
         [("standard_name", "land_ice_surface_velocity"), ("description", "velocity magnitude"),
          ("units", "meter/year")])
    grid("v_error", v_err.astype(np.int16), I16, -32767,
         [("standard_name", "velocity_error"),
          ("description", "velocity magnitude error"), ("units", "meter/year")])
    grid("interp_mask", interp, U8, 0,
         [("standard_name", "interpolated_value_mask"),
          ("description", "true where values have been interpolated"),
          ("flag_values", "0, 1"), ("flag_meanings", "measured interpolated")])
    del ds
    truth["itslive"] = dict(file="itslive/" + name, reference_date=ref, secondary_date=sec,
                            east_m=vx_true * dt_days / 365.0, north_m=vy_true * dt_days / 365.0,
                            tol_m=0.5, pixel_m=res, interp_rows=[35, 38], interp_cols=[40, 45])


def carst(truth):
    src_e = os.path.join(YAHTSE, "2016200_2016216_r32x32_s32x32_eastxyz.tif")
    src_n = os.path.join(YAHTSE, "2016200_2016216_r32x32_s32x32_northxyz.tif")
    with rasterio.open(src_e) as se, rasterio.open(src_n) as sn:
        e = se.read(1).astype(float)
        n = sn.read(1).astype(float)
        nod = se.nodata
        sp = np.where((e == nod) | (n == nod), 0, np.hypot(e, n) / 16.0)
        fast = (sp > 5) & (sp < 25)
        # 100 columns holding the most fast (5-25 m/day) windows, 100 rows from the top
        counts = [fast[:100, c:c + 100].sum() for c in range(0, se.width - 100 + 1)]
        c0 = int(np.argmax(counts))
        win = Window(c0, 0, 100, 100)
        for src, path in ((se, src_e), (sn, src_n)):
            a = src.read(1, window=win)
            _tif(os.path.join(OUT, "carst", os.path.basename(path)), [a],
                 src.window_transform(win), src.crs, nodata=src.nodata)
    shutil.copy(os.path.join(YAHTSE, "params_landsat8_2016_200_to_216_r32x32_s32x32.txt"),
                os.path.join(OUT, "carst"))
    shutil.copy(os.path.join(YAHTSE, "SOURCE_CREDITS.txt"), os.path.join(OUT, "carst"))
    truth["carst"] = dict(file="carst/2016200_2016216_r32x32_s32x32_eastxyz.tif",
                          reference_date="2016-07-18", secondary_date="2016-08-03",
                          window_col_off=c0, window_row_off=0, pixel_m=120.0)


def main():
    truth = dict(block_rows=[BLOCK[0].start, BLOCK[0].stop],
                 block_cols=[BLOCK[1].start, BLOCK[1].stop],
                 corner=[CORNER[0].stop, CORNER[1].stop], shape=[H, W])
    cosicorr(truth)
    micmac(truth)
    geotiff(truth)
    itslive(truth)
    if os.path.isdir(YAHTSE):
        carst(truth)
    else:
        print("no %s: CARST crop not rebuilt" % YAHTSE)
        old = os.path.join(OUT, "truth.json")
        if os.path.exists(old):
            with open(old) as fh:
                truth["carst"] = json.load(fh).get("carst")
    with open(os.path.join(OUT, "truth.json"), "w") as fh:
        json.dump(truth, fh, indent=1, sort_keys=True)
    for root, _d, files in os.walk(OUT):
        for f in files:
            if f.endswith(".aux.xml"):
                os.remove(os.path.join(root, f))
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _d, fs in os.walk(OUT) for f in fs)
    print("written %s (%.0f KB)" % (OUT, total / 1024))


if __name__ == "__main__":
    main()
