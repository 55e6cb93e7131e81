"""Loopback TCP ports for the tests: the one free-port helper.

free_port() is a port nothing listens on (bound to port 0, then released: a server started right after
gets it, and a URL on it is refused until then). listening(port) holds a port on purpose: a socket bound
and listening on 127.0.0.1 that never accepts, until the block ends (a port already in use, a server that
never answers)."""

import contextlib
import socket


def free_port():
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def listening(port=0, backlog=1):
    """A socket listening on 127.0.0.1:port (0: a free one), never accepting, closed when the block ends.
    Its port is sock.getsockname()[1]."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen(backlog)
        yield sock
