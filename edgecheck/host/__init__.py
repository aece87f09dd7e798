"""Reading this host itself: sockets and their owners, distribution, tools, the clock's state."""
