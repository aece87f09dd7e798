"""Errors a user can cause. Each carries a one-line message that says what to do; exit code 2."""


class UsageError(Exception):
    """Bad option, malformed region, catalog or targets file: nothing was probed."""

    exit_code = 2
