"""What Raven's IPsec tunnel leaves for pod traffic, for a given path MTU to the Raven gateway.

Pure arithmetic, no I/O.

How Raven builds the tunnel (openyurtio/raven, commit 5fc4c4ca, 2026-06):
- pkg/networkengine/vpndriver/libreswan/libreswan.go: whack `--psk --encrypt --forceencaps`
  `--ikeport 4500`: libreswan, ESP in tunnel mode, always UDP-encapsulated on port 4500 (NAT-T,
  RFC 3948), no esp= line, so libreswan's default proposal, AES-GCM first (both ends are Raven).
- the same file: `IPSecEncapLen = 64`; MTU() returns the default-route interface MTU minus 64.
- pkg/networkengine/routedriver/vxlan/vxlan.go: `vxlanEncapLen = 50`; the raven0 VXLAN link
  and its routes get min(interface MTU - 64, LAN link MTU - 50).
So Raven sizes the tunnel from this host's *interface* MTU, never from the path MTU: when the path
to the gateway is smaller (PPPoE, a VPN, a dedicated line with its own tunnel), pod packets that
fit Raven's MTU make ESP packets that do not fit the path. Inner TCP packets carry DF and tunnel
mode copies DF to the outer header (linux net/xfrm, unless the SA has nopmtudisc), so they are
dropped, and only an ICMP "fragmentation needed" reaching this host would repair it.

ESP overhead per packet (tunnel mode, UDP-encapsulated):
  outer IP header 20 (IPv4) / 40 (IPv6) + UDP 8 (RFC 3948) + ESP SPI and sequence 8 (RFC 4303)
  + IV + padding so that (inner + padding + 2) is a multiple of the block size + pad length and
  next header 2 (RFC 4303 section 2.4) + ICV.
  AES-GCM-16: IV 8, ICV 16, 4-byte alignment (RFC 4106): 62-65 bytes over IPv4.
  AES-CBC + HMAC-SHA2-256-128: IV 16, ICV 16, 16-byte blocks (RFC 3602, RFC 4868): 70-85 bytes.
  AES-CBC + HMAC-SHA1-96: IV 16, ICV 12 (RFC 2404): 66-81 bytes.
"""

from __future__ import annotations

from typing import Dict, Optional

from edgecheck.evidence import RavenMtuNote
from edgecheck.records import record

RAVEN_IPSEC_ENCAP = 64  # libreswan.go IPSecEncapLen
UDP_ENCAP = 8  # RFC 3948
ESP_HEADER = 8  # SPI + sequence number, RFC 4303
ESP_TRAILER = 2  # pad length + next header


@record(frozen=True)
class EspSuite:
    name: str
    iv: int
    icv: int
    block: int  # padding alignment


SUITES: Dict[str, EspSuite] = {
    "aes-gcm-16": EspSuite("aes-gcm-16", iv=8, icv=16, block=4),
    "aes-cbc-sha256": EspSuite("aes-cbc-sha256", iv=16, icv=16, block=16),
    "aes-cbc-sha1": EspSuite("aes-cbc-sha1", iv=16, icv=12, block=16),
}
DEFAULT_SUITE = "aes-gcm-16"


def max_inner_packet(path_mtu: int, suite: str = DEFAULT_SUITE, outer_ipv6: bool = False) -> int:
    """Largest inner (pod) IP packet whose ESP-in-UDP packet still fits path_mtu."""
    s = SUITES[suite]
    room = path_mtu - (40 if outer_ipv6 else 20) - UDP_ENCAP - ESP_HEADER - s.iv - s.icv
    padded = room - room % s.block  # (inner + padding + trailer) fills whole blocks
    return max(0, padded - ESP_TRAILER)


def overhead_range(suite: str = DEFAULT_SUITE, outer_ipv6: bool = False) -> tuple:
    """(least, most) bytes ESP-in-UDP adds to one packet, over all padding cases."""
    s = SUITES[suite]
    fixed = (40 if outer_ipv6 else 20) + UDP_ENCAP + ESP_HEADER + s.iv + s.icv + ESP_TRAILER
    return fixed, fixed + s.block - 1


def raven_note(path_mtu: int, interface_mtu: Optional[int] = None, suite: str = DEFAULT_SUITE,
               outer_ipv6: bool = False) -> RavenMtuNote:
    """The note for a path MTU measured (or bounded) toward the Raven gateway."""
    inner = max_inner_packet(path_mtu, suite, outer_ipv6)
    lo, hi = overhead_range(suite, outer_ipv6)
    raven = interface_mtu - RAVEN_IPSEC_ENCAP if interface_mtu else None
    msg = (f"A {path_mtu}-byte path to the Raven gateway carries pod packets of up to {inner} bytes through "
           f"Raven's IPsec tunnel (ESP in UDP 4500, {suite}: {lo}-{hi} bytes of overhead).")
    lossy = None
    if raven is not None:
        if raven > inner:
            lossy = (inner + 1, raven)
            msg += (f" Raven sizes its tunnel from this host's interface MTU ({interface_mtu} - "
                    f"{RAVEN_IPSEC_ENCAP} = {raven}), so pod packets of {inner + 1}-{raven} bytes are lost "
                    f"unless ICMP 'fragmentation needed' reaches this host.")
            # The interface must fit the path itself too (the host's own traffic), and leave Raven room.
            fix = (f"Lower this host's interface MTU to {min(path_mtu, inner + RAVEN_IPSEC_ENCAP)} or less, or clamp the TCP MSS "
                   f"of pod traffic to {inner - 40}, so Raven's IPsec packets fit the path to the gateway.")
            return RavenMtuNote(path_mtu, suite, inner, (lo, hi), interface_mtu, raven, lossy, msg, fix)
        msg += f" Raven's tunnel MTU ({raven}, from the interface MTU {interface_mtu}) fits."
    return RavenMtuNote(path_mtu, suite, inner, (lo, hi), interface_mtu, raven, lossy, msg)
