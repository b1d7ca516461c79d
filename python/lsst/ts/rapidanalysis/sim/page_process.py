"""Serve the page (``rapid_analysis serve``) in a process of its own while the demo runs.

Its own process, as at a site: the demo's process runs the camera and mount simulators, and
the page's DDS reader and database queries must not share their GIL.
"""

from __future__ import annotations

import asyncio
import html
import pathlib
import re
import sys
import urllib.request

__all__ = ["start_page", "check_page"]

#: What ``rapid_analysis serve`` prints first: ``rapid_analysis serve: http://host:port/ (...)``.
_URL_LINE = re.compile(r"^rapid_analysis serve: (http://\S+?)/? ")


async def start_page(
    output_root: pathlib.Path, index: int, log_path: pathlib.Path, timeout: float = 60.0
) -> tuple[asyncio.subprocess.Process, str]:
    """``rapid_analysis serve --output-root OUTPUT_ROOT --index INDEX --port 0``; its process and URL.

    Parameters
    ----------
    output_root : `pathlib.Path`
        The CSC's output root (products; its ``results.sqlite3`` is the database).
    index : `int`
        SAL index of the RapidAnalysis CSC the page follows live (the environment's DDS partition).
    log_path : `pathlib.Path`
        Where the server's output goes after its first line.
    timeout : `float`
        Seconds to wait for it to print its address.

    Raises
    ------
    RuntimeError
        If it exits or says nothing usable within ``timeout`` (with what it printed).
    """
    exe = pathlib.Path(sys.executable).parent / "rapid_analysis"
    args = [str(exe), "serve", "--output-root", str(output_root), "--index", str(index), "--port", "0"]
    process = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert process.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                line = (await process.stdout.readline()).decode(errors="replace")
                if not line:
                    raise RuntimeError(f"rapid_analysis serve exited ({await process.wait()}): {''.join(seen)}")
                seen.append(line)
                match = _URL_LINE.match(line)
                if match:
                    break
    except BaseException as e:
        if process.returncode is None:
            process.terminate()
            await process.wait()
        if isinstance(e, TimeoutError):
            raise RuntimeError(f"rapid_analysis serve said no address in {timeout:g} s: {''.join(seen)}") from None
        raise
    asyncio.get_running_loop().create_task(_copy_rest(process.stdout, log_path, seen))
    return process, match.group(1)


async def _copy_rest(stream: asyncio.StreamReader, log_path: pathlib.Path, first: list[str]) -> None:
    """The server's output into its log file (an unread pipe would fill and block it)."""
    with log_path.open("w") as log:
        log.writelines(first)
        while line := await stream.readline():
            log.write(line.decode(errors="replace"))
            log.flush()


def check_page(url: str, instrument: str, image_names: list[str], timeout: float = 10.0) -> str:
    """Fetch the instrument's night page; a line saying which of ``image_names`` it shows.

    Blocking (urllib): call it in a thread. Raises `OSError` if the page cannot be fetched.
    """
    with urllib.request.urlopen(f"{url}/night/{instrument}", timeout=timeout) as response:
        text = response.read().decode()
    # The night table fills in from its JSON: ask for that too, as the browser does.
    days = sorted({name.split("_")[2] for name in image_names if name.count("_") >= 3})
    for day in days:
        with urllib.request.urlopen(f"{url}/night/{instrument}/{day}.json", timeout=timeout) as response:
            text += response.read().decode()
    shown = [name for name in image_names if html.escape(name) in text]
    return f"{len(shown)} of {len(image_names)} images in the night table"
