"""Exceptions raised by the core, with messages meant for the end user.

Processing algorithms turn :class:`SlideWatchError` into a
``QgsProcessingException`` carrying the same message, so every message here must
say what is wrong, which file or parameter it concerns, and what to do.
"""


class SlideWatchError(Exception):
    """An error a user can act on (bad input, bad parameter, unwritable output)."""


class InputError(SlideWatchError):
    """An input file or array is missing, unreadable, or unsuitable."""


class ParameterError(SlideWatchError):
    """A parameter value is out of its valid range or inconsistent with others."""


class OutputError(SlideWatchError):
    """An output cannot be written (permissions, full disk, locked file)."""


class Cancelled(SlideWatchError):
    """The user cancelled a long operation. Nothing partial is left behind."""

    def __init__(self, message="Operation cancelled by the user."):
        super().__init__(message)
