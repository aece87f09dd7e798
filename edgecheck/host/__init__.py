"""Checks of this host itself: inbound ports, system tools, local clock."""

from edgecheck.host.clock import check_clock
from edgecheck.host.ports import check_inbound
from edgecheck.host.tools import check_tool

__all__ = ["check_clock", "check_inbound", "check_tool"]
