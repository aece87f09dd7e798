"""Just enough DER to name a peer certificate (subject, issuer, expiry) without `cryptography`.

Used on certificates fetched *unverified* after a verification failure, where the stdlib's
getpeercert() returns an empty dict.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from edgecheck.evidence import Certificate

_OID_NAMES = {
    "2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O",
    "2.5.4.11": "OU", "1.2.840.113549.1.9.1": "emailAddress",
}


def _tlv(data: bytes, pos: int) -> Tuple[int, int, int]:
    """(tag, content start, content end) of the element at pos."""
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int) -> List[Tuple[int, int, int]]:
    out = []
    while start < end:
        tag, cs, ce = _tlv(data, start)
        out.append((tag, cs, ce))
        start = ce
    return out


def _oid(raw: bytes) -> str:
    first = raw[0]
    parts = [str(first // 40), str(first % 40)]
    value = 0
    for b in raw[1:]:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(str(value))
            value = 0
    return ".".join(parts)


def _name(data: bytes, start: int, end: int) -> str:
    """RFC 4514-ish one-line name, most significant RDN first as openssl prints it."""
    rdns = []
    for _, ss, se in _children(data, start, end):  # SET
        for _, as_, ae in _children(data, ss, se):  # SEQUENCE { OID, value }
            (ot, os_, oe), (vt, vs, ve) = _children(data, as_, ae)[:2]
            key = _OID_NAMES.get(_oid(data[os_:oe]), _oid(data[os_:oe]))
            raw = data[vs:ve]
            value = raw.decode("utf-16-be" if vt == 0x1E else "utf-8", errors="replace")
            rdns.append(f"{key}={value}")
    return ", ".join(rdns)


def _time(tag: int, raw: bytes) -> Optional[str]:
    """UTCTime (YYMMDDHHMMSSZ; RFC 5280 4.1.2.5.1: YY >= 50 is 19YY) or GeneralizedTime
    (YYYYMMDDHHMMSSZ) as RFC 3339. Sliced by hand: datetime.strptime imports _strptime, calendar
    and locale on first use, inside the first TLS check of a run."""
    text = raw.decode("ascii", errors="replace")
    digits = text[:-1] if text.endswith("Z") else ""
    if tag == 0x17 and len(digits) == 12 and digits.isdigit():
        year = int(digits[:2])
        digits = str(1900 + year if year >= 50 else 2000 + year) + digits[2:]
    if len(digits) != 14 or not digits.isdigit():
        return text
    return f"{digits[:4]}-{digits[4:6]}-{digits[6:8]}T{digits[8:10]}:{digits[10:12]}:{digits[12:14]}Z"


def describe_certificate(der: bytes) -> Optional[Certificate]:
    """Subject, issuer and validity of a DER certificate; None if unparsable."""
    try:
        _, cs, ce = _tlv(der, 0)  # Certificate
        _, ts, te = _tlv(der, cs)  # TBSCertificate
        fields = _children(der, ts, te)
        if fields and fields[0][0] == 0xA0:  # [0] version
            fields = fields[1:]
        # serial, signature, issuer, validity, subject
        issuer = _name(der, fields[2][1], fields[2][2])
        (nbt, nbs, nbe), (nat, nas, nae) = _children(der, fields[3][1], fields[3][2])
        subject = _name(der, fields[4][1], fields[4][2])
        return Certificate(subject, issuer, _time(nbt, der[nbs:nbe]), _time(nat, der[nas:nae]))
    except (IndexError, ValueError):
        return None
