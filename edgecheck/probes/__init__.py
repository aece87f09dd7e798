"""Network probes: DNS, TCP, TLS/HTTP, NTP and IKE (UDP 4500), each bounded by the probe's budget.

Layers (dns, tcp, tls, http, ntp, ike, proxy) do I/O and return plain outcome objects;
`checks` composes them into one CheckResult per target; `classify` and `remedies` are pure.
"""
