"""Start the Rapid Analysis CSC in a process of its own, as the summit runs it (the demo and the benches)."""

from __future__ import annotations

import asyncio
import pathlib
import sys

__all__ = ["start_rapid_analysis"]


async def start_rapid_analysis(
    index: int,
    config_dir: pathlib.Path,
    *,
    simulate: bool = False,
    log_path: pathlib.Path | None = None,
    loglevel: int | None = None,
    new_session: bool = False,
) -> asyncio.subprocess.Process:
    """``run_rapid_analysis INDEX --configdir CONFIG_DIR --state enabled`` in a new process.

    Parameters
    ----------
    index : `int`
        SAL index (the instrument).
    config_dir : `pathlib.Path`
        Its configuration directory.
    simulate : `bool`
        Simulation mode (the test pipelines are available).
    log_path : `pathlib.Path`, optional
        Where its output goes; None: discarded.
    loglevel : `int`, optional
        Its ``--loglevel``.
    new_session : `bool`
        Start it in a session of its own, so that a Ctrl-C reaches only the caller, which then
        shuts it down in order.
    """
    exe = pathlib.Path(sys.executable).parent / "run_rapid_analysis"
    args = [str(exe), str(index), "--configdir", str(config_dir), "--state", "enabled"]
    if simulate:
        args.append("--simulate")
    if loglevel is not None:
        args += ["--loglevel", str(loglevel)]
    if log_path is None:
        return await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=new_session,
        )
    with log_path.open("w") as log_file:  # the child keeps its own copy of the descriptor
        return await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=new_session,
        )
