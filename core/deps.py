"""Check the optional third-party modules SlideWatch needs, without importing QGIS.

The plugin loads even when some are missing: it reports exactly which module is
missing or incompatible and the command that installs it, and each Processing
algorithm refuses to run (``canExecute``) while one of *its* modules is missing.
"""

import importlib
import os

#: module -> (minimum version, maximum version exclusive or None, Debian package, pip spec)
REQUIREMENTS = {
    "numpy": ("1.21", "2", "python3-numpy", "numpy<2"),
    "scipy": ("1.6", None, "python3-scipy", "scipy"),
    "rasterio": ("1.2", None, "python3-rasterio", "rasterio"),
    "numba": ("0.56", None, None, "numba==0.60.0"),
    "pyqtgraph": ("0.12", None, "python3-pyqtgraph", "pyqtgraph"),
}

#: what each part of SlideWatch needs
NEEDS = {
    "core": ("numpy", "scipy", "rasterio", "numba"),
    "ui": ("numpy", "rasterio", "pyqtgraph"),
}

#: environment variable tests use to simulate missing modules (comma separated)
SIMULATE_MISSING_ENV = "SLIDEWATCH_SIMULATE_MISSING"

_cache = {}


def _version_tuple(text):
    out = []
    for part in str(text).split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def check_module(name):
    """Return None if ``name`` is importable and compatible, else a problem string."""
    simulated = {m.strip() for m in os.environ.get(SIMULATE_MISSING_ENV, "").split(",") if m.strip()}
    if name in simulated:
        return "%s is not installed" % name
    if name in _cache:
        return _cache[name]
    lo, hi, _deb, _pip = REQUIREMENTS[name]
    problem = None
    try:
        mod = importlib.import_module(name)
        version = getattr(mod, "__version__", "0")
        if _version_tuple(version) < _version_tuple(lo):
            problem = "%s %s is too old (need >= %s)" % (name, version, lo)
        elif hi is not None and _version_tuple(version) >= _version_tuple(hi):
            problem = "%s %s is too new (need < %s)" % (name, version, hi)
    except Exception as exc:  # ImportError, but also broken binary modules
        problem = "%s cannot be imported (%s: %s)" % (name, type(exc).__name__, exc)
    _cache[name] = problem
    return problem


def missing(part="core"):
    """List of problem strings for the modules that ``part`` needs."""
    return [p for p in (check_module(m) for m in NEEDS[part]) if p]


def install_hint(problems_or_modules=None):
    """The command(s) that install what is missing."""
    if problems_or_modules is None:
        names = sorted(REQUIREMENTS)
    else:
        names = sorted({p.split()[0] for p in problems_or_modules})
    deb = [REQUIREMENTS[n][2] for n in names if REQUIREMENTS[n][2]]
    pip = [REQUIREMENTS[n][3] for n in names if not REQUIREMENTS[n][2]]
    parts = []
    if deb:
        parts.append("sudo apt-get install %s" % " ".join(deb))
    if pip:
        parts.append("python3 -m pip install --user --break-system-packages '%s' 'numpy<2'" % "' '".join(pip))
    text = " ; ".join(parts)
    return ("%s  (or, from the SlideWatch plugin folder: make install)" % text) if text else ""


def describe(part="core"):
    """A full sentence for the user, or '' when nothing is missing."""
    problems = missing(part)
    if not problems:
        return ""
    return "SlideWatch needs: %s. Install with: %s" % ("; ".join(problems), install_hint(problems))


def clear_cache():
    _cache.clear()
