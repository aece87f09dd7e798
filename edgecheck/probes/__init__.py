"""Wire layers of the network checks: DNS, TCP, TLS, HTTP, proxies, UDP (NTP, IKE), each bounded
by the probe's budget."""
