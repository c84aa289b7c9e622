"""Guard: nothing under core/ imports QGIS or Qt (core must run in plain Python/Dask)."""

import ast
import os

FORBIDDEN = ("qgis", "PyQt4", "PyQt5", "PyQt6", "PySide2", "PySide6", "pyqtgraph", "sip")
CORE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "core")


def forbidden_imports(source, filename="<string>"):
    hits = []
    for node in ast.walk(ast.parse(source, filename)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            if name.split(".")[0] in FORBIDDEN:
                hits.append("%s:%d imports %s" % (filename, node.lineno, name))
    return hits


def test_guard_detects_a_forbidden_import():
    assert forbidden_imports("import os\nfrom qgis.core import QgsProject\n")
    assert forbidden_imports("def f():\n    import PyQt5.QtCore\n")
    assert not forbidden_imports("import numpy as np\nfrom .errors import InputError\n")


def test_core_never_imports_qgis_or_qt():
    hits = []
    count = 0
    for folder, _dirs, files in os.walk(CORE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as fh:
                    hits += forbidden_imports(fh.read(), path)
                count += 1
    assert count >= 5
    assert not hits, "core/ must stay free of QGIS/Qt:\n" + "\n".join(hits)
