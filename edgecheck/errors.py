"""Errors with a one-line message for the user and their own exit code; no traceback."""

from edgecheck import exitcodes


class EdgecheckError(Exception):
    """Base: the message is one line that says what happened and what to do."""

    exit_code = exitcodes.NOT_READY


class UsageError(EdgecheckError):
    """Bad option, malformed region, catalog or targets file: nothing was probed."""

    exit_code = exitcodes.USAGE


class OutputError(EdgecheckError):
    """The run probed, but a report file could not be written."""

    exit_code = exitcodes.OUTPUT_ERROR
