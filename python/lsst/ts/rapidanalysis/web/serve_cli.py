"""``rapid_analysis serve``: its arguments and its handler.

Only argparse at import time: ``rapid_analysis --help`` must stay fast, so the web stack
(Starlette, uvicorn, SQLAlchemy, DDS) is imported by `run_serve` alone.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

__all__ = ["add_serve_arguments", "run_serve", "database_url_problem"]

#: SAL index of each instrument's RapidAnalysis CSC.
INSTRUMENT_INDEX = {"LATISS": 1, "LSSTComCam": 2, "LSSTCam": 3}
_EXIT_USAGE = 2


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``rapid_analysis serve``."""
    parser.add_argument(
        "--output-root",
        metavar="DIR",
        type=pathlib.Path,
        required=True,
        help="the CSC's output_root: product files (plots) are served from under it, and nothing else",
    )
    parser.add_argument(
        "--database",
        metavar="URL",
        default=None,
        help="results database: a SQLite file path or a SQLAlchemy URL such as "
        "postgresql+psycopg://user@host/db (default: OUTPUT_ROOT/results.sqlite3, as the CSC)",
    )
    parser.add_argument(
        "--instrument",
        action="append",
        default=[],
        choices=sorted(INSTRUMENT_INDEX),
        help="follow this instrument's RapidAnalysis CSC live over DDS (repeatable)",
    )
    parser.add_argument(
        "--index",
        action="append",
        type=int,
        default=[],
        help="follow the RapidAnalysis CSC of this SAL index live (1 LATISS, 2 LSSTComCam, 3 LSSTCam; repeatable)",
    )
    parser.add_argument("--no-live", action="store_true", help="do not join DDS: the results database only")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 for any free port)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log requests and the live feed to stderr")


def _error(message: str) -> int:
    print(f"rapid_analysis serve: error: {message}", file=sys.stderr)
    return _EXIT_USAGE


def database_url_problem(database: str) -> str | None:
    """Why ``database`` cannot be read as a results database now, or None if it can.

    A SQLite file that does not exist yet is not a problem (the CSC may create it later: the
    pages say so until then); anything else that fails to open is.
    """
    import sqlalchemy as sa

    from ..results.database import ResultsDatabase

    try:
        url = sa.make_url(database) if "://" in database else None
    except (sa.exc.ArgumentError, ValueError) as e:
        return f"{database!r} is not a SQLAlchemy URL ({e})"
    if url is None or url.get_backend_name() == "sqlite":
        path = pathlib.Path(url.database or "" if url is not None else database).expanduser()
        if not path.exists():
            return None
        if path.is_dir():
            return f"{path} is a directory, not a SQLite file"
    try:
        ResultsDatabase(database, create=False).close()
    except Exception as e:
        return f"cannot read {database}: {type(e).__name__}: {e}"
    return None


def run_serve(args: argparse.Namespace) -> int:
    """Serve the page until interrupted; return the exit code."""
    import logging

    from ..data.camera import get_instrument
    from .server import bind_socket, is_loopback, make_server, serve_forever, server_url

    if args.verbose:
        logging.getLogger("lsst.ts.rapidanalysis.web").setLevel(logging.INFO)
    output_root: pathlib.Path = args.output_root.expanduser()
    if not output_root.is_dir():
        return _error(f"--output-root {output_root} is not a directory")
    database = args.database or str(output_root / "results.sqlite3")
    problem = database_url_problem(database)
    if problem is not None:
        return _error(f"--database: {problem}")
    follow: list[int] = []
    if not args.no_live:
        for index in [*(INSTRUMENT_INDEX[name] for name in args.instrument), *args.index]:
            try:
                get_instrument(index)
            except ValueError as e:
                return _error(f"--index {index}: {e}")
            follow.append(index)
        if follow and not os.environ.get("LSST_DDS_PARTITION_PREFIX"):
            return _error(
                "following CSCs live needs LSST_DDS_PARTITION_PREFIX (as the CSCs have it); set it, or use --no-live"
            )
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as e:
        return _error(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}")
    url = server_url(sock)
    server = make_server(
        database, output_root, follow=follow, host=args.host, log_level="info" if args.verbose else "warning"
    )
    following = ", ".join(f"RapidAnalysis:{i} ({get_instrument(i).name})" for i in follow) or "nothing (no DDS)"
    print(f"rapid_analysis serve: {url}/ (results {database}; products {output_root}; live: {following})")
    if not is_loopback(args.host):
        print(
            f"rapid_analysis serve: listening on {args.host}: anyone who can reach this machine can read the page",
            file=sys.stderr,
        )
    sys.stdout.flush()
    try:
        serve_forever(server, sock)
    finally:
        sock.close()
    return 0
