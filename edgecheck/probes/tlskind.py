"""Why a certificate failed verification (SPEC 7.1 `tls.verify_kind`), and whether the local clock
explains an "expired" / "not yet valid". Pure functions, no I/O.

ssl.SSLCertVerificationError carries OpenSSL's X509_V_ERR_* code (verify_code) and its text
(verify_message). Codes from openssl include/openssl/x509_vfy.h(.in), stable across 1.1 and 3.x.
The code names the first problem OpenSSL met, for whichever certificate of the chain; Python
does not say which one (no error depth), so the words stay about "the certificate chain" where
it could be an intermediate.
"""

from __future__ import annotations

import datetime
import ssl
from typing import Any, Dict, Optional, Union

from edgecheck.evidence import Certificate
from edgecheck.netloc import host_port
from edgecheck.records import record

UNKNOWN_ISSUER = "unknown-issuer"
SELF_SIGNED = "self-signed"
HOSTNAME_MISMATCH = "hostname-mismatch"
EXPIRED = "expired"
NOT_YET_VALID = "not-yet-valid"
OTHER = "other"
KINDS = (UNKNOWN_ISSUER, SELF_SIGNED, HOSTNAME_MISMATCH, EXPIRED, NOT_YET_VALID, OTHER)

# X509_V_ERR_* (openssl x509_vfy.h)
X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT = 2
X509_V_ERR_CERT_NOT_YET_VALID = 9
X509_V_ERR_CERT_HAS_EXPIRED = 10
X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT = 18
X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN = 19
X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE = 21
X509_V_ERR_CERT_UNTRUSTED = 27
X509_V_ERR_HOSTNAME_MISMATCH = 62
X509_V_ERR_EMAIL_MISMATCH = 63
X509_V_ERR_IP_ADDRESS_MISMATCH = 64

_KIND_BY_CODE = {
    X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT: UNKNOWN_ISSUER,
    X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: UNKNOWN_ISSUER,
    X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE: UNKNOWN_ISSUER,
    # A chain that ends in a self-signed root the trust store does not hold: the server did send
    # a root, but it is an issuer nobody here trusts (a private CA or an inspecting proxy's CA).
    X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN: UNKNOWN_ISSUER,
    X509_V_ERR_CERT_UNTRUSTED: UNKNOWN_ISSUER,
    X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT: SELF_SIGNED,  # the server's own certificate signs itself
    X509_V_ERR_HOSTNAME_MISMATCH: HOSTNAME_MISMATCH,
    X509_V_ERR_IP_ADDRESS_MISMATCH: HOSTNAME_MISMATCH,
    X509_V_ERR_CERT_HAS_EXPIRED: EXPIRED,
    X509_V_ERR_CERT_NOT_YET_VALID: NOT_YET_VALID,
}

_WORDS = {
    UNKNOWN_ISSUER: "it is issued by a CA this host does not trust",
    SELF_SIGNED: "it is self-signed (the server presents a certificate that nobody issued)",
    HOSTNAME_MISMATCH: "it is not valid for this name (the server presents another site's certificate)",
    EXPIRED: "it has expired",
    NOT_YET_VALID: "it is not valid yet (its start date is in the future)",
    OTHER: "it is rejected",
}


@record(frozen=True)
class VerifyKind:
    kind: str  # one of KINDS
    code: Optional[int]
    detail: str  # OpenSSL's own text
    words: str  # "it has expired", for "the certificate of HOST fails verification: <words>"

    def evidence(self) -> Dict[str, Any]:
        return {"verify_kind": self.kind, "verify_code": self.code, "verify_error": self.detail}


def kind_for_code(code: Optional[int], message: str = "") -> str:
    if code in _KIND_BY_CODE:
        return _KIND_BY_CODE[code]
    # No code (e.g. an error rebuilt from text by another layer): OpenSSL's fixed messages.
    text = (message or "").lower()
    for needle, kind in (("hostname mismatch", HOSTNAME_MISMATCH), ("ip address mismatch", HOSTNAME_MISMATCH),
                         ("has expired", EXPIRED), ("not yet valid", NOT_YET_VALID),
                         ("self-signed certificate in certificate chain", UNKNOWN_ISSUER),
                         ("self signed certificate in certificate chain", UNKNOWN_ISSUER),
                         ("self-signed certificate", SELF_SIGNED), ("self signed certificate", SELF_SIGNED),
                         ("unable to get local issuer", UNKNOWN_ISSUER), ("unable to get issuer", UNKNOWN_ISSUER),
                         ("unable to verify the first certificate", UNKNOWN_ISSUER)):
        if needle in text:
            return kind
    return OTHER


def classify(exc: Union[ssl.SSLCertVerificationError, BaseException]) -> VerifyKind:
    """The kind of a verification failure, from the exception the handshake raised."""
    code = getattr(exc, "verify_code", None)
    message = getattr(exc, "verify_message", None) or str(exc)
    kind = kind_for_code(code, message)
    return VerifyKind(kind, code, message, _WORDS[kind])


def classify_message(message: str) -> VerifyKind:
    """For layers that only kept the text (e.g. requests' SSLError chain without the cause)."""
    kind = kind_for_code(None, message)
    return VerifyKind(kind, None, message, _WORDS[kind])


# ------------------------------------------------------------------------------ the clock
def parse_time(value: Union[str, datetime.datetime, None]) -> Optional[datetime.datetime]:
    """describe_certificate's "YYYY-MM-DDTHH:MM:SSZ", or ssl's "Jun  1 12:00:00 2026 GMT"."""
    if value is None or isinstance(value, datetime.datetime):
        if isinstance(value, datetime.datetime) and value.tzinfo is None:
            return value.replace(tzinfo=datetime.timezone.utc)
        return value
    iso = value.strip()
    if len(iso) == 20 and iso[4] == "-" and iso[10] == "T" and iso.endswith("Z"):  # without _strptime's import
        try:
            return datetime.datetime(int(iso[:4]), int(iso[5:7]), int(iso[8:10]), int(iso[11:13]), int(iso[14:16]),
                                     int(iso[17:19]), tzinfo=datetime.timezone.utc)
        except ValueError:
            return None
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%b %d %H:%M:%S %Y %Z"):
        try:
            return datetime.datetime.strptime(value, fmt).replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            continue
    return None


@record(frozen=True)
class ClockExplanation:
    """Is a date failure the clock's fault?

    explained True: at the true time (local time + offset) the certificate is within its
    validity, and the clock is off by more than the warn threshold: report it under the clock
    (its root cause). explained False: the certificate is out of its dates whatever the clock
    says (the server's certificate is the problem). None: no offset known, cannot tell.
    """

    explained: Optional[bool]
    clock_status: str  # "ok" | "warn" | "fail" | "unknown" by the clock thresholds
    offset_s: Optional[float]
    true_time: Optional[str]
    words: str


def _iso(t: datetime.datetime) -> str:
    return t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def explain_by_clock(kind: str, not_before: Union[str, datetime.datetime, None],
                     not_after: Union[str, datetime.datetime, None], offset_s: Optional[float],
                     local_now: Optional[datetime.datetime] = None, *,
                     warn_s: float, fail_s: float) -> ClockExplanation:
    """offset_s as in edgecheck/checks/clock.py: reference time - local time (positive: behind);
    warn_s/fail_s are the clock check's thresholds (ClockEvidence.warn_s/fail_s).

    Only `expired` / `not-yet-valid` can be explained. The certificate dates are those of the
    certificate that failed (the leaf, as far as Python lets us see).
    """
    if kind not in (EXPIRED, NOT_YET_VALID):
        return ClockExplanation(False, "unknown", offset_s, None, "not a date problem")
    if offset_s is None:
        return ClockExplanation(None, "unknown", None, None,
                                "the clock offset is unknown (no NTP answer), so the clock cannot be ruled out")
    status = "fail" if abs(offset_s) > fail_s else "warn" if abs(offset_s) > warn_s else "ok"
    now = local_now or datetime.datetime.now(datetime.timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=datetime.timezone.utc)
    true_now = now + datetime.timedelta(seconds=offset_s)
    nb, na = parse_time(not_before), parse_time(not_after)
    if nb is None or na is None:
        return ClockExplanation(None, status, offset_s, _iso(true_now), "the certificate's dates are unknown")
    valid_at_true_time = nb <= true_now <= na
    direction = "behind" if offset_s > 0 else "ahead"
    if valid_at_true_time and status != "ok":
        return ClockExplanation(True, status, offset_s, _iso(true_now),
                                f"this host's clock is {abs(offset_s):.0f} s {direction}; at the correct time "
                                f"({_iso(true_now)}) the certificate is valid ({_iso(nb)} to {_iso(na)}): fix the "
                                f"clock, not the certificate")
    if status == "ok":
        words = (f"the clock is right (offset {offset_s:+.3f} s), so the certificate itself is out of its "
                 f"dates ({_iso(nb)} to {_iso(na)})")
    else:
        words = (f"this host's clock is {abs(offset_s):.0f} s {direction}, but even at the correct time "
                 f"({_iso(true_now)}) the certificate is out of its dates ({_iso(nb)} to {_iso(na)})")
    return ClockExplanation(False, status, offset_s, _iso(true_now), words)



def words(kind: str) -> str:
    return _WORDS.get(kind, _WORDS[OTHER])


def message(host: str, port: int, kind: str, cert: Optional[Certificate] = None, via: str = "") -> str:
    """Pure: the tls-verify-failed message of a check, the kind in words. cert is the peer
    certificate (fetched unverified after the failure), when known."""
    who = ""
    if cert is not None:
        who = (f" (subject \"{cert.subject}\", issuer \"{cert.issuer}\", valid "
               f"{cert.not_before} to {cert.not_after})")
    return f"TLS to {host_port(host, port)}{via} connects but the certificate fails verification: {words(kind)}{who}."

