"""Hear new images: the instrument camera's ``endReadout`` and ``largeFileObjectAvailable`` from generators.

Each is turned into an `ImageArrival` and handed to a callback on the event loop. The camera's
``additionalKeys``/``additionalValues`` carry the image type (``imageType``) and group id; a
``largeFileObjectAvailable`` carries a file URL and, in ``id``, the image name.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..sal.domain import Domain
from ..sal.remote import Remote
from .camera import Instrument

__all__ = ["ImageArrival", "ImageListener", "split_colon_list", "additional_items"]


@dataclasses.dataclass(frozen=True)
class ImageArrival:
    """A new image announced on DDS.

    Attributes
    ----------
    image_name : `str`
        obsid (``MC_O_20251115_000226``) or, for a generator's file, its ``id``.
    img_type : `str`
        ``OBJECT``, ``BIAS``, ... (upper case; empty if not announced).
    group_id : `str`
        Group id, if announced.
    source : `str`
        ``endReadout`` or ``largeFileObjectAvailable``.
    arrived : `float`
        Monotonic time it was heard.
    sent_tai : `float`
        When the camera sent it (TAI), for latency.
    url : `str`
        The file's URL (``largeFileObjectAvailable`` only).
    generator : `str`
        Who announced the file (``largeFileObjectAvailable`` only).
    """

    image_name: str
    img_type: str = ""
    group_id: str = ""
    source: str = "endReadout"
    arrived: float = dataclasses.field(default_factory=time.monotonic)
    sent_tai: float = 0.0
    url: str = ""
    generator: str = ""


def split_colon_list(text: str) -> list[str]:
    """Split a ``:``-separated list in which ``\\:`` and ``\\\\`` are escaped ``:`` and ``\\``."""
    if text == "":
        return []
    items, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return items


def additional_items(keys: str, values: str) -> dict[str, str]:
    """The ``additionalKeys``/``additionalValues`` pairs of a camera event as a dict."""
    return dict(zip(split_colon_list(keys), split_colon_list(values), strict=False))


class ImageListener:
    """Listen for images of ``instrument`` and from ``generators``.

    Parameters
    ----------
    domain : `Domain`
        DDS domain (the CSC's).
    instrument : `Instrument`
        Whose camera's ``endReadout`` to hear.
    generators : iterable of `str`
        ``largeFileObjectAvailable`` generators to accept, as ``Component:index`` (e.g.
        ``GenericCamera:101``); others are ignored.
    on_arrival : callable
        Called with each `ImageArrival` (on the event loop).
    log : `logging.Logger`, optional
    """

    def __init__(
        self,
        domain: Domain,
        instrument: Instrument,
        generators: Iterable[str],
        on_arrival: Callable[[ImageArrival], None],
        log: logging.Logger | None = None,
    ) -> None:
        self.on_arrival = on_arrival
        self.log = log or logging.getLogger(__name__)
        self.generators = frozenset(generators)
        self.remotes: list[Remote] = []
        camera = Remote(domain, instrument.camera_component, readonly=True, include=["endReadout"], start=False)
        camera.evt_endReadout.callback = self._end_readout
        self.remotes.append(camera)
        for component, index in sorted({self._parse_generator(g) for g in self.generators}):
            remote = Remote(domain, component, index, readonly=True, include=["largeFileObjectAvailable"], start=False)
            remote.evt_largeFileObjectAvailable.callback = self._large_file
            self.remotes.append(remote)

    @staticmethod
    def _parse_generator(generator: str) -> tuple[str, int | None]:
        component, _, index = generator.partition(":")
        if not component or (index and not index.isdigit()):
            raise ValueError(f"generator {generator!r} is not 'Component' or 'Component:index'")
        return component, int(index) if index else None

    async def start(self) -> None:
        """Start hearing (returns when the remotes read)."""
        for remote in self.remotes:
            await remote.start()

    async def close(self) -> None:
        """Stop hearing."""
        for remote in self.remotes:
            await remote.close()
        self.remotes = []

    def _end_readout(self, data: Any) -> None:
        items = additional_items(data.additionalKeys, data.additionalValues)
        self._deliver(
            ImageArrival(
                image_name=data.imageName,
                img_type=items.get("imageType", "").strip().upper(),
                group_id=items.get("groupId", ""),
                source="endReadout",
                sent_tai=float(data.private_sndStamp),
            )
        )

    def _large_file(self, data: Any) -> None:
        if data.generator not in self.generators:
            return
        self._deliver(
            ImageArrival(
                image_name=data.id,
                source="largeFileObjectAvailable",
                sent_tai=float(data.private_sndStamp),
                url=data.url,
                generator=data.generator,
            )
        )

    def _deliver(self, arrival: ImageArrival) -> None:
        try:
            self.on_arrival(arrival)
        except Exception:  # a bad announcement must not stop the listener
            self.log.exception("Could not handle the arrival of %s", arrival.image_name)
