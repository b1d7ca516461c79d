"""Hear new images: the instrument camera's ``endReadout`` and ``largeFileObjectAvailable`` from generators.

Each is turned into an `ImageArrival` and handed to a callback on the event loop. The camera's
``additionalKeys``/``additionalValues`` carry the image type (``imageType``) and group id; a
``largeFileObjectAvailable`` carries a file URL and, in ``id``, the image name (what it is, an
image of the instrument or a generator's file, the dispatcher decides).

Generators are ``Component:index`` (that SAL index only) or ``Component`` (every index). A
generator that cannot be listened to (malformed, or a component without the event) is reported
when listening starts and the others are heard; an announcement heard whose ``generator`` field is
not one configured is reported and ignored, never dropped silently.
"""

from __future__ import annotations

import dataclasses
import logging
import math
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
    exposure_time : `float`
        The requested exposure time (s; ``endReadout`` only, else NaN).
    readout_tai : `float`
        When the readout ended (TAI; ``endReadout`` only, else 0).
    """

    image_name: str
    img_type: str = ""
    group_id: str = ""
    source: str = "endReadout"
    arrived: float = dataclasses.field(default_factory=time.monotonic)
    sent_tai: float = 0.0
    url: str = ""
    generator: str = ""
    exposure_time: float = math.nan
    readout_tai: float = 0.0


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
        ``GenericCamera:101``) or ``Component`` (any index); others are ignored (and reported).
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
        # Components configured without an index: their generators are "Component:<any index>".
        self._any_index: set[str] = set()
        for generator in sorted(self.generators):
            try:
                component, index = self._parse_generator(generator)
                remote = Remote(
                    domain, component, index, readonly=True, include=["largeFileObjectAvailable"], start=False
                )
            except Exception as e:
                self.log.error("Cannot listen to generator %r (autonomous.generators): %s", generator, e)
                continue
            topic = getattr(remote, "evt_largeFileObjectAvailable", None)
            if topic is None:
                self.log.error(
                    "Cannot listen to generator %r (autonomous.generators): %s has no largeFileObjectAvailable",
                    generator,
                    component,
                )
                self.remotes.append(remote)  # (closed with the others)
                continue
            topic.callback = self._large_file
            self.remotes.append(remote)
            if index is None:
                self._any_index.add(component)

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
                exposure_time=float(data.requestedExposureTime),
                readout_tai=float(data.timestampEndOfReadout),
            )
        )

    def accepts(self, generator: str) -> bool:
        """Whether files announced as from ``generator`` are for us."""
        return generator in self.generators or generator.partition(":")[0] in self._any_index

    def _large_file(self, data: Any) -> None:
        if not self.accepts(data.generator):
            self.log.warning(
                "largeFileObjectAvailable %s (%s) ignored: generator %r is not in autonomous.generators (%s)",
                data.id,
                data.url[:200],
                data.generator,
                ", ".join(sorted(self.generators)),
            )
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
