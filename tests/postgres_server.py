"""A PostgreSQL server of its own, for the tests and the benchmarks: no site server, no state left behind.

`running_postgres` runs ``initdb`` into a new temporary directory, starts ``postgres`` on a free
loopback port (its unix socket in that directory too), trust authentication for the superuser
``postgres``, creates a database and gives its SQLAlchemy URL (``postgresql+psycopg://...``); on
exit it stops the server and deletes the directory. `fresh_database` makes another empty database
on the same server, so that each test gets its own.

The binaries are Debian's (``postgresql-NN``): found with ``pg_config --bindir``, in
``/usr/lib/postgresql/*/bin`` (newest first) or on ``PATH``. ``initdb`` and ``postgres`` refuse to
run as root: as root, they run as the ``postgres`` user (or ``nobody``) through ``runuser``, in a
directory that user owns. The server is tuned for throw-away data (``fsync=off``): reads, what the
page does, are as fast as on a durable server; writes are faster.

``pg_ctl`` runs the server as a daemon, which would outlive a test run killed without its teardown
(``timeout``'s SIGTERM, a SIGKILL): a small watchdog shell, in a session of its own, stops the server
and deletes its directory when the process that started it is gone.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

__all__ = ["PostgresServer", "PostgresUnavailable", "find_bindir", "fresh_database", "running_postgres"]

_SUPERUSER = "postgres"
_START_TIMEOUT = 60.0
# $1: the pid to outlive; $2: the directory to delete; the rest: the command that stops the server.
_WATCHDOG = 'parent=$1; root=$2; shift 2; while kill -0 "$parent" 2>/dev/null; do sleep 2; done; "$@"; rm -rf "$root"'


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries here, or no user to run them as; the message says which."""


def find_bindir() -> pathlib.Path | None:
    """The directory of ``initdb``, ``pg_ctl`` and ``postgres``, or None if there is none."""

    def complete(path: pathlib.Path) -> bool:
        return all((path / name).is_file() for name in ("initdb", "pg_ctl", "postgres"))

    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            path = pathlib.Path(out.stdout.strip())
            if complete(path):
                return path
    # Debian installs server binaries outside PATH; newest major version first.
    candidates = sorted(
        pathlib.Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for path in candidates:
        if complete(path):
            return path
    initdb = shutil.which("initdb")
    if initdb:
        path = pathlib.Path(initdb).resolve().parent
        if complete(path):
            return path
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged user to run the server as when we are root (None when we are not root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PostgresUnavailable("running as root, and neither a 'postgres' nor a 'nobody' user exists to run postgres")


class PostgresServer:
    """One PostgreSQL server in a directory of its own (see the module docstring).

    Parameters
    ----------
    bindir : `pathlib.Path`
        Where ``initdb``, ``pg_ctl`` and ``postgres`` are.
    """

    def __init__(self, bindir: pathlib.Path) -> None:
        self.bindir = bindir
        self.user = _run_as()
        # Not under pytest's tmp_path: that is root's 0700 directory, which the server's user cannot enter.
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="ra-postgres-"))
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self.data = self.root / "data"
        self.log_file = self.root / "server.log"
        self.port = 0
        self.started = False
        #: Seconds initdb and the start took.
        self.startup_seconds = 0.0
        self._watchdog: subprocess.Popen | None = None

    def _command(self, *args: str) -> list[str]:
        if self.user is None:
            return list(args)
        return ["runuser", "-u", self.user.pw_name, "--", *args]

    def _run(self, *args: str, timeout: float = _START_TIMEOUT) -> None:
        done = subprocess.run(self._command(*args), capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            log = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(
                f"{' '.join(args[:2])} failed (exit {done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
                + (f"\nserver log:\n{log}" if log else "")
            )

    def start(self) -> None:
        """initdb, then start the server on a free loopback port; returns when it accepts connections."""
        t0 = time.monotonic()
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            _SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        for attempt in range(3):  # a free port may be taken between the look and the bind
            self.port = _free_port()
            options = " ".join(
                [
                    "-c listen_addresses=127.0.0.1",
                    f"-p {self.port}",
                    f"-k {self.root}",
                    "-c fsync=off",
                    "-c synchronous_commit=off",
                    "-c full_page_writes=off",
                    "-c max_connections=50",
                ]
            )
            try:
                self._run(
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-o",
                    options,
                    "-l",
                    str(self.log_file),
                    "-w",
                    "-t",
                    str(int(_START_TIMEOUT)),
                    "start",
                )
            except RuntimeError:
                if attempt == 2:
                    raise
                continue
            self.started = True
            self.startup_seconds = time.monotonic() - t0
            self._start_watchdog()
            return

    def _start_watchdog(self) -> None:
        stop = self._command(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        self._watchdog = subprocess.Popen(
            ["/bin/sh", "-c", _WATCHDOG, "postgres-watchdog", str(os.getpid()), str(self.root), *stop],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # not killed with our process group
        )

    def stop(self) -> None:
        """Stop the server (at once: the data is thrown away) and delete its directory."""
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait()
            self._watchdog = None
        try:
            if self.started:
                with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
                    self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
                self.started = False
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of a database on this server."""
        return f"postgresql+psycopg://{_SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database; its URL."""
        return fresh_database(self.url(), name)


def fresh_database(server_url: str, name: str | None = None) -> str:
    """Create an empty database on the server of ``server_url`` (a superuser's); return its URL.

    Parameters
    ----------
    server_url : `str`
        A ``postgresql+psycopg://`` URL of any database on the server.
    name : `str`, optional
        The new database's name (letters, digits and ``_``); a unique ``ra_test_...`` if None.
    """
    import sqlalchemy as sa  # here: the helper's binaries part needs no SQLAlchemy

    name = name or f"ra_test_{uuid.uuid4().hex[:12]}"
    if not name.replace("_", "").isalnum():
        raise ValueError(f"database name {name!r} must be letters, digits and '_'")
    url = sa.make_url(server_url)
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")  # CREATE DATABASE cannot run in a transaction
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        engine.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


@contextlib.contextmanager
def running_postgres(database: str = "ra_results") -> Iterator[PostgresServer]:
    """A started `PostgresServer` with ``database`` created (``server.url(database)``); stopped on exit.

    Raises
    ------
    PostgresUnavailable
        No server binaries (install Debian's ``postgresql``), or no user to run them as.
    """
    bindir = find_bindir()
    if bindir is None:
        raise PostgresUnavailable(
            "no PostgreSQL server binaries (initdb, pg_ctl, postgres) from pg_config --bindir, in "
            "/usr/lib/postgresql/*/bin or on PATH: install Debian's postgresql package"
        )
    server = PostgresServer(bindir)
    try:
        server.start()
        server.create_database(database)
        yield server
    finally:
        server.stop()
