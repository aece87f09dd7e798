"""Every exit code edgecheck uses, in one place (SPEC section 5, then sysexits.h values).

The sysexits values never clash with 0/1/2 nor with a shell's 126/127/128+N, so a systemd unit
or a fleet script can tell "the host is not ready" from "the agent itself has a problem".
"""

READY = 0  # no check failed (warnings allowed unless --strict)
NOT_READY = 1  # at least one check failed (or, with --strict, warned)
USAGE = 2  # bad option or input file: nothing was probed
INTERNAL_ERROR = 70  # EX_SOFTWARE: a bug; one line on stderr, --debug shows the traceback
OUTPUT_ERROR = 74  # EX_IOERR: the checks ran but a report or metrics file could not be written
BUSY = 75  # EX_TEMPFAIL: another agent run holds the lock; nothing was probed or written
INTERRUPTED = 130  # SIGINT, as a shell reports it


def for_verdict(passes: bool) -> int:
    return READY if passes else NOT_READY
