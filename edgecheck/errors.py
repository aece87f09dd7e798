"""Errors with a one-line message for the user and their own exit code; no traceback."""


class EdgecheckError(Exception):
    """Base: the message is one line that says what happened and what to do."""

    exit_code = 1


class UsageError(EdgecheckError):
    """Bad option, malformed region, catalog or targets file: nothing was probed."""

    exit_code = 2


class OutputError(EdgecheckError):
    """The run probed, but a report file could not be written (sysexits EX_IOERR)."""

    exit_code = 74
