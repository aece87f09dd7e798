from __future__ import annotations

from typing import Iterator

import pytest

from tests.firewall.fwlab import FwLab, need


@pytest.fixture
def lab() -> Iterator[FwLab]:
    need("ip", "nft", "iptables", "iptables-nft-save")
    fw = FwLab()
    try:
        yield fw
    finally:
        fw.close()
