"""The file behind a QGIS layer, for core functions that read files (never QGIS layers).

File-based layers (GDAL rasters, OGR vectors: ``path`` or ``path|layername=x``) are
given as they are; any other layer (memory, PostGIS, WFS, a vector with a selection
filter) is first written to a GeoPackage in the Processing temporary folder.
"""

import os
import uuid

from qgis.core import (QgsProcessingException, QgsProcessingUtils, QgsRasterLayer,
                       QgsVectorFileWriter, QgsVectorLayer)


def layer_file_source(layer, context):
    """A path (``path|layername=x`` for one layer of a multi-layer file) core can read."""
    if isinstance(layer, QgsRasterLayer):
        if layer.providerType() == "gdal" and os.path.exists(layer.source().split("|")[0]):
            return layer.source()
        raise QgsProcessingException(
            "The raster layer '%s' is not a file (%s provider): save it as a GeoTIFF first."
            % (layer.name(), layer.providerType()))
    if isinstance(layer, QgsVectorLayer):
        src = layer.source()
        path = src.split("|")[0]
        if (layer.providerType() == "ogr" and os.path.exists(path)
                and "subset=" not in src.lower() and not layer.subsetString()):
            return src
        out = os.path.join(QgsProcessingUtils.tempFolder(),
                           "stable_area_%s.gpkg" % uuid.uuid4().hex[:8])
        opts = QgsVectorFileWriter.SaveVectorOptions()
        opts.driverName = "GPKG"
        err = QgsVectorFileWriter.writeAsVectorFormatV2(layer, out, context.transformContext(),
                                                         opts)
        if err[0] != QgsVectorFileWriter.NoError:
            raise QgsProcessingException("Could not write the layer '%s' to %s: %s"
                                         % (layer.name(), out, err[1]))
        return out
    raise QgsProcessingException("Unsupported layer type for '%s'." % layer.name())
