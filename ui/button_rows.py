"""Rows of push buttons for the docks (navigation, labelling): one spec per button, so the
docks do not repeat the create / connect / add scaffolding."""

from qgis.PyQt.QtWidgets import QHBoxLayout, QPushButton


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
