"""Python logging → the ``logMessage`` event."""

from __future__ import annotations

import asyncio
import logging
import threading
import traceback
from typing import Any

from .safe_text import escape_text

__all__ = ["SalLogHandler"]


class SalLogHandler(logging.Handler):
    """Write each log record as a ``logMessage`` event of a Controller.

    Records from other threads are handed to the Controller's loop. A record logged while a
    logMessage is being written (e.g. a DDS warning) is not re-published, to avoid recursion.

    Parameters
    ----------
    controller : `Controller`
        Its ``evt_logMessage`` is written.
    """

    def __init__(self, controller: Any) -> None:
        super().__init__()
        self.controller = controller
        self.loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()
        self._local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._local, "busy", False):
            return
        try:
            self.format(record)
            tb = "".join(traceback.format_exception(*record.exc_info)) if record.exc_info else ""
            # An exception's message may quote user input: lone surrogates cannot be written.
            tb = escape_text(tb)
            fields = dict(
                name=record.name,
                level=record.levelno,
                # salobj re-encodes to latin-1 so that any DDS string can carry it
                message=record.getMessage().encode("utf-8", "replace").decode("latin-1"),
                traceback=tb,
                filePath=record.pathname,
                functionName=record.funcName,
                lineNumber=record.lineno,
                process=record.process or 0,
                timestamp=0.0,
            )
            if threading.get_ident() == self._thread_id:
                self._write(fields)
            elif not self.loop.is_closed():
                self.loop.call_soon_threadsafe(self._write, fields)
        except Exception:
            self.handleError(record)

    def _write(self, fields: dict[str, Any]) -> None:
        evt = getattr(self.controller, "evt_logMessage", None)
        if evt is None or self.controller.closing:
            return
        self._local.busy = True
        try:
            evt.set_write(**fields)
        except Exception as e:  # never let logging break the caller
            print(f"Could not write logMessage: {e!r}")
        finally:
            self._local.busy = False
