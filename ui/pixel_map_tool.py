"""Map tool: click a pixel on the canvas, get its position in the raster's CRS.

The canvas may be in any CRS; the clicked point is reprojected to the CRS of the
time-series rasters with ``QgsCoordinateTransform`` before the pixel is looked up.
"""

from qgis.core import (QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsPointXY,
                       QgsProject)
from qgis.gui import QgsMapToolEmitPoint, QgsVertexMarker
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor


class PixelMapTool(QgsMapToolEmitPoint):
    """Emits ``pixelClicked(QgsPointXY in raster CRS, QgsPointXY in canvas CRS)``.

    ``target_crs`` is the CRS of the rasters (set by the dock); when invalid the point is
    passed through unchanged. Escape deactivates nothing special; the dock owns the tool.
    """

    pixelClicked = pyqtSignal(object, object)

    def __init__(self, canvas, target_crs=None):
        super().__init__(canvas)
        self.canvas = canvas
        self.target_crs = target_crs or QgsCoordinateReferenceSystem()
        self.markers = []

    def set_target_crs(self, crs):
        self.target_crs = crs

    def canvasPressEvent(self, event):  # noqa: N802 - the click is handled on release
        pass

    def canvasReleaseEvent(self, event):  # noqa: N802
        if event.button() != Qt.MouseButton.LeftButton:
            return
        point = self.toMapCoordinates(event.pos())
        self.canvasClicked.emit(point, event.button())
        self.handle_point(point, self.canvas.mapSettings().destinationCrs())

    def to_target(self, point, source_crs):
        """``point`` (QgsPointXY in ``source_crs``) expressed in the raster CRS."""
        if (not self.target_crs.isValid() or not source_crs.isValid()
                or source_crs == self.target_crs):
            return QgsPointXY(point)
        transform = QgsCoordinateTransform(source_crs, self.target_crs, QgsProject.instance())
        return transform.transform(QgsPointXY(point))

    def handle_point(self, point, source_crs):
        """Handle a point in ``source_crs`` as if the user had clicked there."""
        target = self.to_target(point, source_crs)
        canvas_crs = self.canvas.mapSettings().destinationCrs()
        if source_crs.isValid() and canvas_crs.isValid() and source_crs != canvas_crs:
            canvas_point = QgsCoordinateTransform(source_crs, canvas_crs,
                                                  QgsProject.instance()).transform(point)
        else:
            canvas_point = QgsPointXY(point)
        self.pixelClicked.emit(target, canvas_point)
        return target

    def add_marker(self, canvas_point, colour):
        marker = QgsVertexMarker(self.canvas)
        marker.setCenter(canvas_point)
        marker.setColor(QColor(colour))
        marker.setIconSize(12)
        marker.setIconType(QgsVertexMarker.IconType.ICON_CROSS)
        marker.setPenWidth(3)
        self.markers.append(marker)
        return marker

    def clear_markers(self, keep=()):
        """Remove the markers, except those in ``keep`` (the pinned pixels)."""
        keep_ids = {id(m) for m in keep}
        for marker in [m for m in self.markers if id(m) not in keep_ids]:
            self.markers.remove(marker)
            try:
                self.canvas.scene().removeItem(marker)
            except RuntimeError:
                pass

    def cleanup(self):
        self.clear_markers()
        if self.canvas.mapTool() is self:
            self.canvas.unsetMapTool(self)
