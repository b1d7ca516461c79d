"""Debian's headless Chromium, as the page's browser tests, screenshots and benchmarks start it.

Playwright drives it (a test extra, not imported here): ``chromium.launch(**launch_options())``.
Debian's build rather than Playwright's download, so that CI needs only ``apt-get install chromium``.
"""

from __future__ import annotations

import pathlib
from typing import Any

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "launch_options"]

#: Debian's ``chromium`` package.
CHROMIUM = pathlib.Path("/usr/bin/chromium")
#: Headless, as root in a container (no sandbox), and quiet: no network of its own beyond the page.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch_options() -> dict[str, Any]:
    """Keyword arguments of Playwright's ``chromium.launch`` for Debian's Chromium."""
    return {"executable_path": str(CHROMIUM), "args": list(CHROMIUM_ARGS)}
