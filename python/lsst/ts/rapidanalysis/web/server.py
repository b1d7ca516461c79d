"""Serving the page with uvicorn: in the foreground (``rapid_analysis serve``) or in a background thread.

The listening socket is bound here, before uvicorn starts, so that port 0 (any free port) gives
a known address to print or return at once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence

from ..results.database import ResultsDatabase

__all__ = [
    "LOOPBACK_HOSTS",
    "bind_socket",
    "is_loopback",
    "make_server",
    "serve_forever",
    "server_url",
    "start_server_in_background",
]

#: Host headers a loopback-only server accepts (a DNS-rebinding page names another host).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
#: Seconds open event streams get to end when the server stops, before they are cut.
GRACEFUL_SHUTDOWN = 1


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one).

    Raises
    ------
    OSError
        If the address cannot be bound (in use, not an address of this machine).
    """
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


def server_url(sock: socket.socket) -> str:
    """``http://host:port`` of a bound socket."""
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def make_server(
    database: str | os.PathLike[str] | ResultsDatabase,
    output_root: str | os.PathLike[str],
    *,
    follow: Sequence[int] = (),
    host: str = "127.0.0.1",
    log_level: str = "warning",
) -> object:
    """A `uvicorn.Server` of the page's app (not started).

    A server on a loopback address accepts loopback Host headers only.
    """
    import uvicorn

    from .app import create_app

    allowed = list(LOOPBACK_HOSTS) if is_loopback(host) else None
    app = create_app(database, output_root, follow=follow, allowed_hosts=allowed)
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
        lifespan="on",
    )
    return uvicorn.Server(config)


def serve_forever(server: object, sock: socket.socket) -> None:
    """Run a server made by `make_server` on ``sock`` until it is told to stop (Ctrl-C, SIGTERM)."""
    import uvicorn

    assert isinstance(server, uvicorn.Server)
    server.run(sockets=[sock])


def start_server_in_background(
    database: str | os.PathLike[str] | ResultsDatabase,
    output_root: str | os.PathLike[str],
    *,
    follow: Sequence[int] = (),
    host: str = "127.0.0.1",
    port: int = 0,
    timeout: float = 30.0,
) -> tuple[str, Callable[[], None]]:
    """Serve the page from a thread of this process (its own event loop and DDS participant).

    Parameters
    ----------
    database : `str`, path-like or `ResultsDatabase`
        The results database (URL or SQLite path; it may not exist yet).
    output_root : `str` or path-like
        The products' root directory.
    follow : sequence of `int`
        SAL indices of the RapidAnalysis CSCs to follow live (none: no DDS).
    host : `str`
        Address to listen on (loopback by default).
    port : `int`
        Port; 0 for a free one.
    timeout : `float`
        Seconds to wait for the server to be up.

    Returns
    -------
    url : `str`
        Where the page is, e.g. ``http://127.0.0.1:40123``.
    stop : callable
        Stops the server and waits for its thread (idempotent).

    Raises
    ------
    RuntimeError
        If the server did not start within ``timeout``.
    """
    import uvicorn

    sock = bind_socket(host, port)
    url = server_url(sock)
    server = make_server(database, output_root, follow=follow, host=host)
    assert isinstance(server, uvicorn.Server)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            # uvicorn installs no signal handlers outside the main thread.
            asyncio.run(server.serve(sockets=[sock]))
        except BaseException as e:  # reported by start_server_in_background
            failure.append(e)

    thread = threading.Thread(target=run, name="rapid-analysis-page", daemon=True)
    thread.start()

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout)
        sock.close()

    deadline = time.monotonic() + timeout
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        stop()
        cause = failure[0] if failure else None
        raise RuntimeError(f"the page's server did not start within {timeout} s: {cause!r}") from cause
    return url, stop
