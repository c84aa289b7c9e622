"""Progress reporting and cancellation shared by every long core operation.

Core functions accept an optional ``progress`` argument: a :class:`Progress`
(or ``None``). Processing algorithms wrap their ``QgsProcessingFeedback`` in one;
scripts can pass ``Progress(callback=print)`` or nothing at all.

Numba kernels cannot be interrupted, so drivers call :meth:`Progress.check`
between chunks (blocks of windows, blocks of pixels, pairs).
"""

from .errors import Cancelled


class Progress:
    """Progress sink in the range [0, 100] with cancellation.

    Parameters
    ----------
    callback : callable(percent: float, message: str) or None
        Receives progress updates.
    is_cancelled : callable() -> bool or None
        Polled by :meth:`check`; when it returns True, :class:`Cancelled` is raised.
    log : callable(str) or None
        Receives human-readable log lines (what was done, skipped and why).
    """

    def __init__(self, callback=None, is_cancelled=None, log=None, _lo=0.0, _hi=100.0):
        self._callback = callback
        self._is_cancelled = is_cancelled
        self._log = log
        self._lo = float(_lo)
        self._hi = float(_hi)

    def update(self, fraction, message=""):
        """Report ``fraction`` (0..1) of this (sub-)task as done."""
        if self._callback is not None:
            f = min(max(float(fraction), 0.0), 1.0)
            self._callback(self._lo + f * (self._hi - self._lo), message)

    def check(self):
        """Raise :class:`Cancelled` if the user asked to stop."""
        if self._is_cancelled is not None and self._is_cancelled():
            raise Cancelled()

    def info(self, message):
        if self._log is not None:
            self._log(message)

    def sub(self, start, stop):
        """A child reporter mapping its own 0..1 onto ``start..stop`` of this one."""
        span = self._hi - self._lo
        return Progress(self._callback, self._is_cancelled, self._log,
                        self._lo + start * span, self._lo + stop * span)

    @property
    def cancelled(self):
        return self._is_cancelled is not None and bool(self._is_cancelled())


def as_progress(progress):
    """Return ``progress`` or a silent :class:`Progress` when it is None."""
    return progress if progress is not None else Progress()
