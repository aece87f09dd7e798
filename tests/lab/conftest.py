"""Session fixture: one integration lab for the whole test session (see lab.py for what runs).

Prerequisites (root, iproute2, iptables, openssl, dnsmasq, nginx, chronyd, charon, tinyproxy,
dnspython, ntplib, jsonschema): missing ones skip the lab on a developer machine, but fail it when
the CI environment variable is set — CI must never go green by skipping the lab.
"""

from __future__ import annotations

import os
import signal
from typing import Iterator

import pytest

from tests.lab.lab import Lab, missing_prerequisites

# cn-hangzhou: the full matrix; cn-zhangjiakou: its own spelling of dockerauth (seed 001) and its
# own registry /32 routes and OSS blocks (seed 003).
LAB_REGIONS = ("cn-hangzhou", "cn-zhangjiakou")


def require_prerequisites() -> None:
    missing = missing_prerequisites()
    if not missing:
        return
    message = "integration lab prerequisites missing: " + "; ".join(missing)
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: the lab must run, not skip)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    require_prerequisites()
    lab = Lab(regions=LAB_REGIONS)
    # A SIGTERM (CI timeout, a killed run) must still tear the lab down: turn it into the
    # KeyboardInterrupt pytest already unwinds through fixture finalizers.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        lab.start()  # tears itself down if any step fails
        yield lab
    finally:
        lab.stop()
        signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
