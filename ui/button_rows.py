"""Rows of widgets that the docks share (navigation and decision buttons, the layer row,
the comment / analyst form): one spec per button, so the docks do not repeat the
create / connect / add scaffolding."""

from qgis.core import QgsSettings
from qgis.gui import QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QKeySequence
from qgis.PyQt.QtWidgets import QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton

try:  # Qt6 moved QShortcut to QtGui
    from qgis.PyQt.QtGui import QShortcut
except ImportError:
    from qgis.PyQt.QtWidgets import QShortcut

from .validation_model import default_analyst

#: QgsSettings key of the analyst's name, shared by the validation and accuracy docks
SETTINGS_ANALYST = "SlideWatch/analyst"


def button_row(owner, parent, specs):
    """A QHBoxLayout of buttons; ``specs``: (attribute, text, slot[, style, tooltip]).
    Each button is set as ``owner.<attribute>`` (the docks and their tests address them by
    name) and ``slot`` is connected to its ``clicked`` signal."""
    row = QHBoxLayout()
    for spec in specs:
        attr, text, slot = spec[:3]
        style = spec[3] if len(spec) > 3 else None
        tip = spec[4] if len(spec) > 4 else None
        button = QPushButton(text, parent)
        if style:
            button.setStyleSheet(style)
        if tip:
            button.setToolTip(tip)
        button.clicked.connect(slot)
        row.addWidget(button)
        setattr(owner, attr, button)
    return row


def layer_row(owner, parent, label, layer_filter, open_tip, reload_tip, combo_tip=None):
    """Label, layer combo box (``owner.layer_combo``), "Open…" (``owner.open_button``, calls
    ``owner.open_file()``) and "Reload" (``owner.reload_button``, ``owner.reload``)."""
    row = QHBoxLayout()
    row.addWidget(QLabel(label, parent))
    owner.layer_combo = QgsMapLayerComboBox(parent)
    owner.layer_combo.setFilters(layer_filter)
    owner.layer_combo.setAllowEmptyLayer(True)
    if combo_tip:
        owner.layer_combo.setToolTip(combo_tip)
    row.addWidget(owner.layer_combo, 1)
    owner.open_button = QPushButton("Open…", parent)
    owner.open_button.setToolTip(open_tip)
    owner.open_button.clicked.connect(lambda: owner.open_file())
    row.addWidget(owner.open_button)
    owner.reload_button = QPushButton("Reload", parent)
    owner.reload_button.setToolTip(reload_tip)
    owner.reload_button.clicked.connect(owner.reload)
    row.addWidget(owner.reload_button)
    return row


def analyst_form(owner, parent, comment_placeholder):
    """A QFormLayout with "Comment" (``owner.comment``) and "Analyst" (``owner.analyst``,
    remembered in QgsSettings under :data:`SETTINGS_ANALYST`); callers may add rows."""
    form = QFormLayout()
    owner.comment = QLineEdit(parent)
    owner.comment.setPlaceholderText(comment_placeholder)
    form.addRow("Comment", owner.comment)
    owner.analyst = QLineEdit(parent)
    owner.analyst.setText(QgsSettings().value(SETTINGS_ANALYST, "", type=str)
                          or default_analyst())
    owner.analyst.editingFinished.connect(
        lambda: QgsSettings().setValue(SETTINGS_ANALYST, owner.analyst.text().strip()))
    form.addRow("Analyst", owner.analyst)
    return form


def finish_dock(dock, body, outer):
    """The status line at the bottom (``dock.status_label``) and ``body`` as the dock's
    widget."""
    dock.status_label = QLabel(body)
    dock.status_label.setWordWrap(True)
    outer.addWidget(dock.status_label)
    dock.setWidget(body)


def install_shortcuts(dock, specs):
    """Keyboard shortcuts active while the dock (or a child) has the focus; ``specs``:
    (key, slot); kept in ``dock.shortcuts``."""
    dock.shortcuts = []
    for key, slot in specs:
        sc = QShortcut(QKeySequence(key), dock.widget())
        sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        sc.activated.connect(slot)
        dock.shortcuts.append(sc)
