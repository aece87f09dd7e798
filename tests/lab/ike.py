"""A minimal IKEv2 IKE_SA_INIT initiator, to check the lab's strongSwan answers on UDP 4500.

    python3 ike.py HOST [PORT]   -> prints JSON {"answered": bool, "notify": int|null, ...}

On port 4500 (NAT-T) IKE messages carry a 4-byte zero "non-ESP marker" first (RFC 3948).
"""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
from typing import Any, Dict, Optional

IKE_SA_INIT = 34
PAYLOAD_SA, PAYLOAD_KE, PAYLOAD_NONCE, PAYLOAD_NOTIFY = 33, 34, 40, 41


def _transform(ttype: int, tid: int, attrs: bytes = b"", last: bool = False) -> bytes:
    body = struct.pack("!BxH", ttype, tid) + attrs
    return struct.pack("!BxH", 0 if last else 3, 4 + len(body)) + body


def ike_sa_init(spi: bytes) -> bytes:
    """AES-CBC-128 / HMAC-SHA2-256 / MODP-2048: a proposal any IKEv2 responder understands."""
    transforms = [
        _transform(1, 12, struct.pack("!HH", 0x800E, 128)),  # ENCR_AES_CBC, key length 128
        _transform(2, 5),  # PRF_HMAC_SHA2_256
        _transform(3, 12),  # AUTH_HMAC_SHA2_256_128
        _transform(4, 14, last=True),  # DH group 14
    ]
    tbytes = b"".join(transforms)
    proposal = struct.pack("!BxHBBBB", 0, 8 + len(tbytes), 1, 1, 0, len(transforms)) + tbytes
    sa = struct.pack("!BxH", PAYLOAD_KE, 4 + len(proposal)) + proposal
    ke_data = os.urandom(256)
    ke = struct.pack("!BxHHxx", PAYLOAD_NONCE, 8 + len(ke_data), 14) + ke_data
    nonce = os.urandom(32)
    nonce_payload = struct.pack("!BxH", 0, 4 + len(nonce)) + nonce
    body = sa + ke + nonce_payload
    header = spi + b"\0" * 8 + struct.pack("!BBBBII", PAYLOAD_SA, 0x20, IKE_SA_INIT, 0x08, 0, 28 + len(body))
    return header + body


def probe(host: str, port: int = 4500, timeout: float = 2.0) -> Dict[str, Any]:
    spi = os.urandom(8)
    marker = b"\0\0\0\0" if port == 4500 else b""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    try:
        sock.connect((host, port))
        sock.send(marker + ike_sa_init(spi))
        data = sock.recv(65535)
    except socket.timeout:
        return {"answered": False, "error": "timeout"}
    except OSError as exc:
        return {"answered": False, "error": exc.__class__.__name__, "errno": exc.errno}
    finally:
        sock.close()
    msg = data[len(marker):]
    notify: Optional[int] = None
    if len(msg) >= 28 and msg[16] == PAYLOAD_NOTIFY and len(msg) >= 36:
        notify = struct.unpack("!H", msg[28 + 6:28 + 8])[0]
    return {"answered": True, "spi_matches": msg[:8] == spi, "exchange": msg[18] if len(msg) > 18 else None,
            "response_flag": bool(msg[19] & 0x20) if len(msg) > 19 else None, "notify": notify}


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 4500)))
