"""edgecheck: can this host join an ACK Edge cluster and keep working?"""

__version__ = "0.1.0"
