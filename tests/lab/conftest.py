"""Session fixture: one integration lab for the whole test session (see lab.py for what runs).

Prerequisites (root, iproute2, iptables, openssl, dnsmasq, nginx, chronyd, charon, tinyproxy,
dnspython, ntplib, jsonschema): missing ones skip the lab (tests/prereq.py); under tests/run or CI
a skip is a failure (tests/conftest.py), so the lab can never go green by skipping.
"""

from __future__ import annotations

import signal
from typing import Iterator

import pytest

from tests.lab.lab import Lab, missing_prerequisites
from tests.prereq import require

# cn-hangzhou: the full matrix; cn-zhangjiakou: its own spelling of dockerauth (seed 001) and its
# own registry /32 routes and OSS blocks (seed 003).
LAB_REGIONS = ("cn-hangzhou", "cn-zhangjiakou")


def require_prerequisites() -> None:
    require(missing_prerequisites(), "integration lab")


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
