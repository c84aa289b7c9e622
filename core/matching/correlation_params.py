"""Parameters of the correlator (:func:`slidewatch.core.matching.correlation.correlate`), with
units, bounds, choices and help: the one source of the correlation defaults.

:class:`CorrelationParams` is a frozen dataclass. :meth:`CorrelationParams.from_options`
checks keyword options (``window``, ``step``, ``search`` and every option of
``correlate(..., **options)``) and returns the normalised object (numbers as float /
int, ``window`` as ``(height, width)``, ``prefilter_options`` filled in);
:meth:`CorrelationParams.as_dict` is the plain dict the kernels, the pair-raster tags and
the resume check use (:func:`.correlation.normalize_params`). ``correlation.DEFAULTS``
(the options besides the geometry) is derived from the field defaults here.

The Processing algorithms take their defaults, bounds (:data:`CorrelationParams.BOUNDS`),
choices (:data:`CorrelationParams.CHOICES`) and help (:meth:`CorrelationParams.describe`)
from this class. Why each default has the value it has is written in
``core/correlation.py`` (comment above ``DEFAULTS``).
"""

import dataclasses
from dataclasses import dataclass, fields

from ..errors import ParameterError
from .prefilters import PREFILTERS, check_prefilter

#: sub-pixel refinement modes -> kernel code
SUBPIXEL_MODES = {"none": 0, "parabola": 1, "iterative": 2}

#: resampling kernels of the iterative refinement -> kernel half-width
INTERPOLATIONS = {"bicubic": 2, "lanczos3": 3, "lanczos4": 4, "lanczos6": 6}

#: the fields that set the grid of windows (positional in ``correlate``)
GEOMETRY = ("window", "step", "search")

#: Parameters of the pair-raster driver (:mod:`.pair_correlation`) besides these, with
#: their defaults: band (1-based), zero_is_nodata, stable (one of :data:`STABLE_MODES`),
#: stable_mask (raster path or None), max_velocity_m_per_day (m/day >= 0, None = off)
DRIVER_DEFAULTS = dict(band=1, zero_is_nodata=True, stable="none", stable_mask=None,
                       max_velocity_m_per_day=None)

#: stable-ground corrections of the pair driver: none, constant median offset, robust plane
STABLE_MODES = ("none", "median", "plane")


@dataclass(frozen=True)
class CorrelationParams:
    """Every parameter of one correlation; units and bounds in :data:`UNITS`,
    :data:`BOUNDS` (checked by :meth:`from_options`)."""

    #: px: window size, an int (square) or (height, width); each side >= 4
    window: object = 32
    #: px: spacing of the window centres (the pair raster's pixel), >= 1
    step: int = 8
    #: px: largest |shift| looked for per axis (integer search), >= 1
    search: int = 8
    #: sub-pixel refinement: "iterative" (Lucas-Kanade), "parabola" (fast, pixel
    #: locking) or "none"
    subpixel: str = "iterative"
    #: prefilter of both images (:mod:`.prefilters`): "gaussian_hp" (sigma 1 px),
    #: "none", "wallis", "orientation"
    prefilter: str = "gaussian_hp"
    #: dict of prefilter options (None: the prefilter's defaults)
    prefilter_options: object = None
    #: fraction [0, 1) of invalid pixels tolerated in a window
    max_nodata: float = 0.1
    #: image units (after the prefilter): flatter windows are STATUS_FLAT; >= 0
    min_std: float = 0.0
    #: NCC [-1, 1]: lower peaks are STATUS_LOW_NCC
    min_ncc: float = 0.3
    #: ratio >= 0: peak / second peak below it is STATUS_LOW_SNR ...
    min_snr: float = 1.2
    #: ratio in [0, min_snr]: ... unless >= this and coherent with the neighbours
    min_snr_coherent: float = 1.0
    #: px > 0: agreement with the neighbours' median needed by a coherent window
    coherence_px: float = 0.5
    #: iterations >= 1 of the sub-pixel refinement
    max_iter: int = 20
    #: px > 0: the refinement converges when its update is smaller
    tol: float = 0.02
    #: resampling kernel of the refinement: "lanczos4", "lanczos3", "lanczos6", "bicubic"
    interpolation: str = "lanczos4"
    #: px in [0, 2000]: largest displacement looked for by the coarse-to-fine search
    #: (used when larger than ``search``; 0 = off)
    max_displacement: float = 0
    #: px in [0, 50]: Gaussian high-pass sigma of the second pass for rejected windows
    #: (0 = no second pass)
    fallback_sigma: float = 3.0
    #: px >= 0: windows predicted less precise are STATUS_IMPRECISE (0 = off)
    max_sigma: float = 0.0
    #: px in [0, 10]: valid windows predicted less precise are correlated again with a
    #: window twice as large (0 = off; default 0.025, the measured setting, issue 18)
    wide_sigma: float = 0.025

    #: (lowest, highest) allowed value of each numeric field (None = unbounded); a bound
    #: in :data:`EXCLUSIVE` is not itself allowed. For ``window`` per side.
    BOUNDS = {
        "window": (4, None), "step": (1, None), "search": (1, None),
        "max_nodata": (0.0, 1.0), "min_std": (0.0, None), "min_ncc": (-1.0, 1.0),
        "min_snr": (0.0, None), "min_snr_coherent": (0.0, None),
        "coherence_px": (0.0, None), "max_iter": (1, None), "tol": (0.0, None),
        "max_displacement": (0.0, 2000.0), "fallback_sigma": (0.0, 50.0),
        "max_sigma": (0.0, None), "wide_sigma": (0.0, 10.0),
    }
    #: (field, "lo" | "hi"): bounds that are excluded
    EXCLUSIVE = {("max_nodata", "hi"), ("coherence_px", "lo"), ("tol", "lo")}
    #: allowed values of the text fields, the first being the preferred order of a menu
    CHOICES = {
        "subpixel": ("iterative", "parabola", "none"),
        "prefilter": PREFILTERS,
        "interpolation": ("lanczos4", "lanczos3", "lanczos6", "bicubic"),
    }
    #: unit of each numeric field
    UNITS = {
        "window": "px", "step": "px", "search": "px", "max_nodata": "fraction",
        "min_std": "image units", "min_ncc": "NCC", "min_snr": "ratio",
        "min_snr_coherent": "ratio", "coherence_px": "px", "max_iter": "iterations",
        "tol": "px", "max_displacement": "px", "fallback_sigma": "px", "max_sigma": "px",
        "wide_sigma": "px",
    }
    #: one line of help per field (the Processing dialogs' help is built from these)
    HELP = {
        "window": "correlation window size (16 to 64 usual; larger = more robust, "
                  "smoother)",
        "step": "spacing of the window centres; the output pixel is step x the input pixel",
        "search": "largest displacement looked for, per axis (around the seed when a "
                  "maximum velocity is given)",
        "subpixel": "iterative (Lucas-Kanade refinement, ~0.01 px), parabola (fast "
                    "preview, biased towards whole pixels), none (whole pixels)",
        "prefilter": "none, gaussian_hp (sigma 1 px: removes haze/illumination gradients; "
                     "clearly better on real Sentinel-2 pairs), wallis (local contrast "
                     "equalisation), orientation (gradient orientation, robust to "
                     "illumination changes)",
        "prefilter_options": "options of the prefilter (e.g. {\"sigma\": 1.0})",
        "max_nodata": "windows with a larger fraction of invalid pixels get status 2",
        "min_std": "windows flatter than this get status 3",
        "min_ncc": "windows whose correlation peak is lower get status 5 (no value)",
        "min_snr": "windows whose peak-to-second-peak ratio is lower get status 6, "
                   "unless coherent with their neighbours (min_snr_coherent)",
        "min_snr_coherent": "lowest peak ratio kept for a window that agrees with its "
                            "neighbours (= min_snr: off)",
        "coherence_px": "how close to its neighbours' median a coherent window must be",
        "max_iter": "iterations of the sub-pixel refinement",
        "tol": "convergence threshold of the refinement",
        "interpolation": "resampling kernel of the refinement (bicubic leaves ~0.03 px "
                         "pixel-locking bias)",
        "max_displacement": "largest displacement of the coarse-to-fine search (used "
                            "when larger than search; 0 = off)",
        "fallback_sigma": "second pass for rejected windows with a Gaussian high-pass "
                          "of this sigma (0 = off)",
        "max_sigma": "windows whose predicted error is larger get status 8 (0 = off)",
        "wide_sigma": "valid windows whose predicted error is larger are correlated "
                      "again with a window twice as large (0 = off; 0.025 measured)",
    }

    # ------------------------------------------------------------------ class helpers
    @classmethod
    def names(cls):
        """Every field name (geometry first)."""
        return [f.name for f in fields(cls)]

    @classmethod
    def option_names(cls):
        """The fields besides the geometry: the ``**options`` of ``correlate``."""
        return [n for n in cls.names() if n not in GEOMETRY]

    @classmethod
    def defaults(cls):
        """{field: default} of the options (``correlation.DEFAULTS``)."""
        d = cls()
        return {n: getattr(d, n) for n in cls.option_names()}

    @classmethod
    def default(cls, name):
        """The default of one field."""
        return getattr(cls(), name)

    @classmethod
    def describe(cls, name):
        """``help (unit, default X)`` for a dialog's help text."""
        d = cls.default(name)
        unit = cls.UNITS.get(name)
        tail = ", ".join(x for x in (unit if unit and unit != "fraction" else "",
                                     "default %s" % (d,)) if x)
        return "%s (%s)" % (cls.HELP[name], tail)

    # ------------------------------------------------------------------ checking
    @classmethod
    def from_options(cls, window=32, step=8, search=8, **options):
        """The checked, normalised parameters; :class:`.errors.ParameterError` naming the
        option, its bounds and the value for anything unusable (or unknown)."""
        known = cls.option_names()
        unknown = set(options) - set(known)
        if unknown:
            raise ParameterError("Unknown correlation option(s): %s. Known: %s."
                                 % (", ".join(sorted(unknown)), ", ".join(known)))
        p = dict(cls.defaults())
        p.update(options)
        p["window"] = window_shape(window)
        p["step"], p["search"] = _geometry(step, search)
        _check_choices(p)
        p["prefilter_options"] = check_prefilter(p["prefilter"], p["prefilter_options"])
        _check_thresholds(p)
        from .seeded_search import check_max_displacement
        p["max_displacement"] = check_max_displacement(p["max_displacement"])
        p.update(max_nodata=float(p["max_nodata"]), min_std=float(p["min_std"]),
                 min_ncc=float(p["min_ncc"]), min_snr=float(p["min_snr"]),
                 max_iter=int(p["max_iter"]), tol=float(p["tol"]))
        return cls(**p)

    def replace(self, **changes):
        """A checked copy with ``changes``."""
        d = dataclasses.asdict(self)
        d.update(changes)
        return type(self).from_options(**d)

    def as_dict(self):
        """The plain dict of :func:`.correlation.normalize_params` (options in
        declaration order, then ``window`` as [height, width], ``step``, ``search``)."""
        p = {n: getattr(self, n) for n in self.option_names()}
        if isinstance(p["prefilter_options"], dict):
            p["prefilter_options"] = dict(p["prefilter_options"])
        p.update(window=[int(v) for v in self.window], step=self.step, search=self.search)
        return p


def window_shape(window):
    """(height, width) of ``window`` (int or pair); ParameterError if unusable."""
    import numpy as np
    try:
        if np.ndim(window) == 0:
            h = w = int(window)
        else:
            h, w = (int(v) for v in window)
    except (TypeError, ValueError):
        raise ParameterError("window must be an integer or (height, width), got %r."
                             % (window,)) from None
    lo = CorrelationParams.BOUNDS["window"][0]
    if h < lo or w < lo:
        raise ParameterError("window %r is too small: use at least %d x %d pixels (16 to 64 "
                             "is usual for Sentinel-2)." % (window, lo, lo))
    return h, w


def _geometry(step, search):
    step = int(step)
    search = int(search)
    if step < CorrelationParams.BOUNDS["step"][0]:
        raise ParameterError("step must be >= 1 pixel (got %d)." % step)
    if search < CorrelationParams.BOUNDS["search"][0]:
        raise ParameterError("search must be >= 1 pixel (got %d): it is the largest "
                             "displacement looked for." % search)
    return step, search


def _check_choices(p):
    for name in ("subpixel", "interpolation"):
        if p[name] not in CorrelationParams.CHOICES[name]:
            raise ParameterError("%s must be one of %s (got %r)."
                                 % (name, ", ".join(_kernel_names(name)), p[name]))


def _kernel_names(name):
    # the error messages list the values in the kernels' table order, as before
    return SUBPIXEL_MODES if name == "subpixel" else INTERPOLATIONS


def _as_px(p, name, what="a number of pixels"):
    try:
        p[name] = float(p[name] or 0.0)
    except (TypeError, ValueError):
        raise ParameterError("%s must be %s (got %r)." % (name, what, p[name])) from None


def _check_thresholds(p):
    """The numeric options of ``p`` (in place: the sigma options become floats)."""
    b = CorrelationParams.BOUNDS
    if not b["max_nodata"][0] <= float(p["max_nodata"]) < b["max_nodata"][1]:
        raise ParameterError("max_nodata must be in [0, 1) (fraction of invalid pixels "
                             "tolerated in a window).")
    if float(p["min_std"]) < b["min_std"][0]:
        raise ParameterError("min_std must be >= 0.")
    if not b["min_ncc"][0] <= float(p["min_ncc"]) <= b["min_ncc"][1]:
        raise ParameterError("min_ncc must be in [-1, 1].")
    _as_px(p, "fallback_sigma")
    lo, hi = b["fallback_sigma"]
    if not (lo <= p["fallback_sigma"] <= hi):
        raise ParameterError("fallback_sigma must be in [%g, %g] pixels (0 = no second "
                             "pass), got %r." % (lo, hi, p["fallback_sigma"]))
    _as_px(p, "max_sigma")
    if not p["max_sigma"] >= b["max_sigma"][0]:
        raise ParameterError("max_sigma must be >= 0 px (0 = off), got %r." % p["max_sigma"])
    _as_px(p, "wide_sigma")
    lo, hi = b["wide_sigma"]
    if not lo <= p["wide_sigma"] <= hi:
        raise ParameterError("wide_sigma must be in [%g, %g] px (0 = no wide-window pass), "
                             "got %r." % (lo, hi, p["wide_sigma"]))
    _check_coherence(p)
    if int(p["max_iter"]) < b["max_iter"][0] or not float(p["tol"]) > b["tol"][0]:
        raise ParameterError("max_iter must be >= 1 and tol > 0.")


def _check_coherence(p):
    try:
        p["min_snr_coherent"] = float(p["min_snr_coherent"])
        p["coherence_px"] = float(p["coherence_px"])
    except (TypeError, ValueError):
        raise ParameterError("min_snr_coherent and coherence_px must be numbers (got %r, "
                             "%r)." % (p["min_snr_coherent"], p["coherence_px"])) from None
    if not CorrelationParams.BOUNDS["min_snr_coherent"][0] <= p["min_snr_coherent"] \
            <= float(p["min_snr"]):
        raise ParameterError("min_snr_coherent must be between 0 and min_snr (%s), got %r: "
                             "it is the lowest peak ratio kept for a window that agrees "
                             "with its neighbours (= min_snr switches this off)."
                             % (p["min_snr"], p["min_snr_coherent"]))
    if not p["coherence_px"] > CorrelationParams.BOUNDS["coherence_px"][0]:
        raise ParameterError("coherence_px must be > 0 px (got %r)." % p["coherence_px"])
