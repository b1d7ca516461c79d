"""Publishing a finished job so that nothing a part of it raises can lose anything else.

`JobPublisher` publishes a job in parts: its database rows (the job's row, its metrics, each
product, as separate writes), its product files (``largeFileObjectAvailable``), its telemetry
samples, then its one ``jobResult``. Each part fails alone: a URL longer than its topic's field, a
pipeline's telemetry sample with a field of the wrong type or a name the topic does not have, a
string Cyclone DDS cannot encode, a row the database refuses. What was not published as it was is
logged and listed, one sentence each, in ``jobResult.result["publication"]`` and the job's row;
the jobResult is written whatever happened before it.

`write_sample` is how every part writes a topic:

- a string longer than its field is shortened, ending in ``…(truncated, N bytes)``, never dropped
  (field sizes come from the interface XML, through the topic's metadata);
- a string that is not valid UTF-8 (a lone surrogate from JSON) is written with the bad code
  points escaped (``\\ud800``) rather than failing;
- only the topic's public fields may be set: ``private_*`` and ``salIndex`` are the SAL layer's,
  and a value put there would be sent with every later sample of the topic;
- if the write still fails, the topic's sample is put back as it was, so that the next write of the
  topic (``poolStatus`` every second) is not poisoned by this one's values.

Every problem is returned (or raised, as `PublishError`) as one sentence saying what was not
published as it was and why; the CSC puts them in the log and in the job's ``jobResult``.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import hashlib
import json
import logging
import math
import pathlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..dispatch.jobs import Job
    from ..pipelines.base import Product, TelemetrySample
    from .database import ResultsDatabase
    from .writer import ResultsWriter

__all__ = ["JobPublisher", "PublishError", "TRUNCATION_NOTE", "finite_or_zero", "fit_text", "write_sample"]

#: Telemetry topics of the CSC itself, which pipelines may not write.
CSC_TELEMETRY = ("poolStatus",)

#: A product file of a job: (the pipeline's product entry, its path, its size, its md5).
_ProductFile = tuple["Product", pathlib.Path, int, str]

#: What a shortened string ends with; ``{n}`` is the original length in bytes (UTF-8).
TRUNCATION_NOTE = "…(truncated, {n} bytes)"


class PublishError(RuntimeError):
    """A sample could not be written; the message says which topic and why."""


def _encodable(text: str) -> str:
    """``text`` as valid UTF-8: code points UTF-8 cannot encode (lone surrogates) escaped."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def fit_text(text: str, max_bytes: int) -> tuple[str, bool]:
    """``text`` shortened to at most ``max_bytes`` bytes of UTF-8, saying so at its end.

    Parameters
    ----------
    text : `str`
        Any string (code points UTF-8 cannot encode are escaped first).
    max_bytes : `int`
        The field's size in bytes; 0 or less means unbounded.

    Returns
    -------
    text : `str`
        ``text`` itself if it fits, else its start (never a split character) followed by
        ``…(truncated, N bytes)``, N being the length of the whole text in bytes.
    truncated : `bool`
        Whether it was shortened.
    """
    text = _encodable(text)
    data = text.encode("utf-8")
    if max_bytes <= 0 or len(data) <= max_bytes:
        return text, False
    note = TRUNCATION_NOTE.format(n=len(data))
    room = max_bytes - len(note.encode("utf-8"))
    if room <= 0:  # a field too small for the note: as much of the note as fits
        return note.encode("utf-8")[:max_bytes].decode("utf-8", "ignore"), True
    return data[:room].decode("utf-8", "ignore") + note, True


def _field_sizes(topic: Any) -> dict[str, tuple[str, int]]:
    """Public fields of a topic: name → (IDL type, string size in bytes, 0 for unbounded)."""
    return {f.name: (f.idl_type, f.str_length if f.idl_type == "string" else 0) for f in topic.metadata.fields}


def write_sample(
    topic: Any, fields: Mapping[str, Any], *, force_output: bool | None = True, what: str = ""
) -> list[str]:
    """Set ``fields`` of ``topic`` and write it, isolating everything that can go wrong.

    Parameters
    ----------
    topic : `WriteTopic`
        A Controller's event or telemetry topic (``evt_x``/``tel_x``).
    fields : `dict`
        Public field values. A None in a float field is written as NaN (a measurement that is
        missing must not repeat the previous sample's value); in any other field it is left out.
    force_output : `bool` or None
        Passed to ``set_write`` (events: True writes even if nothing changed).
    what : `str`
        How to name this sample in messages (default the topic's name).

    Returns
    -------
    notes : `list` [`str`]
        One sentence per string that was shortened to fit its field.

    Raises
    ------
    PublishError
        If the sample was not written: a field the topic does not have (or a private one), a value
        of the wrong type or out of range, or a failed write. The topic's sample is as it was.
    """
    what = what or topic.name
    sizes = _field_sizes(topic)
    if not isinstance(fields, Mapping):
        raise PublishError(f"{what} rejected: fields must be a mapping of field names to values, not {fields!r:.80}")
    unknown = [str(name) for name in fields if name not in sizes]
    if unknown:
        raise PublishError(
            f"{what} rejected: no field(s) {', '.join(repr(n) for n in unknown)} "
            f"(private_* and salIndex are the SAL layer's); fields: {', '.join(sizes)}"
        )
    values: dict[str, Any] = {}
    notes: list[str] = []
    for name, value in fields.items():
        idl_type, size = sizes[name]
        if value is None:
            if idl_type in ("float", "double"):
                values[name] = math.nan
            continue
        if idl_type == "string" and isinstance(value, str):
            value, truncated = fit_text(value, size)
            if truncated:
                notes.append(f"{what}.{name} was shortened to fit its {size}-byte field ({value[-40:]!r})")
        values[name] = value
    saved = copy.copy(topic.data) if topic.has_data else None
    try:
        topic.set_write(force_output=force_output, **values)
    except Exception as e:
        # set() checks every value before it changes any, but a write that fails after it would
        # leave these values in the topic's sample, and every later write of the topic would fail.
        if saved is not None:
            topic.data = saved
        else:
            topic.data = topic.DataType()
        raise PublishError(f"{what} rejected: {type(e).__name__}: {e}") from e
    return notes


def finite_or_zero(value: Any) -> float:
    """A float for a time field: ``value`` if it is a finite number, else 0."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _is_int32(value: Any) -> bool:
    return isinstance(value, int) and -(2**31) <= value < 2**31


def _call(method: str, database: ResultsDatabase, **kwargs: Any) -> Any:
    """``database.<method>(**kwargs)``: one write for the results writer's thread."""
    return getattr(database, method)(**kwargs)


def _size_and_checksum(path: pathlib.Path) -> tuple[int, str]:
    digest = hashlib.md5()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


class JobPublisher:
    """Publish finished jobs of a RapidAnalysis CSC, each part on its own.

    Parameters
    ----------
    controller : `Controller`
        The CSC: its ``evt_jobResult``, ``evt_largeFileObjectAvailable`` and ``tel_*`` topics.
    job_row : callable
        ``job_row(job, image_name)`` → the job's results-database row (`ResultsDatabase.record_job`).
    product_url : callable
        ``product_url(path)`` → the URL others get a product file by.
    log : `logging.Logger`
        Logger.
    """

    def __init__(
        self,
        controller: Any,
        *,
        job_row: Callable[[Job, str], dict[str, Any]],
        product_url: Callable[[pathlib.Path], str],
        log: logging.Logger,
    ) -> None:
        self.controller = controller
        self.job_row = job_row
        self.product_url = product_url
        self.log = log

    async def publish(self, job: Job, results: ResultsWriter | None) -> None:
        """Database rows, products, telemetry, then the jobResult; never raises for any of them.

        Parameters
        ----------
        job : `Job`
            A job that has ended; its ``publication`` gets what could not be published as it was.
        results : `ResultsWriter` or None
            The results database (None: not open, which is reported).
        """
        problems: list[str] = []
        result = job.result
        image_name = result.image_name or job.image_name
        products = await self._read_products(result.products, problems)
        recorded = await self._record(job, results, image_name, products, problems)
        self._announce_products(job, products, problems)
        self._write_telemetry(result.telemetry, problems)
        if problems:
            job.publication = problems
            self.log.warning(
                "Job %s %s: not everything was published as it was: %s", job.job_id, job.pipeline, "; ".join(problems)
            )
            if recorded and results is not None:  # the row says what the jobResult says
                try:
                    await results.write(
                        functools.partial(_call, "record_job", job_id=job.job_id, result=job.result_json())
                    )
                except Exception as e:
                    self.log.error("Job %s: could not record what was not published: %r", job.job_id, e)
        self._write_job_result(job, image_name)

    async def _read_products(self, declared: list[Product], problems: list[str]) -> list[_ProductFile]:
        """The job's product files that can be read: (product, path, size, md5); others are problems."""
        loop = asyncio.get_running_loop()
        products = []
        for product in declared:
            if not product.path:
                problems.append(f"product {product!r:.120} not published: it has no path")
                continue
            path = pathlib.Path(product.path)
            try:
                size, checksum = await loop.run_in_executor(None, _size_and_checksum, path)
            except OSError as e:
                problems.append(f"product {path.name} not published: unreadable ({e})")
                continue
            products.append((product, path, size, checksum))
        return products

    async def _record(
        self,
        job: Job,
        results: ResultsWriter | None,
        image_name: str,
        products: list[_ProductFile],
        problems: list[str],
    ) -> bool:
        """The job's final row, its metrics and its products, as separate writes; True if the row was written.

        Separate, so that metrics or a product the database refuses do not take the job's row
        (and its final state) with them; the writer still runs them in one transaction.
        """
        if results is None:
            problems.append("results database: not recorded (the database is not open)")
            return False
        writes: list[tuple[str, Callable[[ResultsDatabase], Any]]] = [
            ("the job's row", functools.partial(_call, "record_job", **self.job_row(job, image_name)))
        ]
        if job.outcome is not None and job.outcome.result is not None:
            metrics = functools.partial(
                _call,
                "record_metrics",
                job_id=job.job_id,
                image_name=image_name,
                metrics=job.result.metrics,
                detector_metrics=job.result.detector_metrics,
            )
            writes.append(("its metrics", metrics))
        for product, path, size, checksum in products:
            row = functools.partial(
                _call,
                "record_product",
                job_id=job.job_id,
                image_name=image_name,
                path=str(path),
                url=self.product_url(path),
                mime_type=product.mime_type,
                byte_size=size,
                checksum=checksum,
                description=product.description,
            )
            writes.append((f"product {path.name}", row))
        futures: list[asyncio.Future] = []
        for _, write in writes:
            try:
                futures.append(results.write(write))
            except Exception as e:  # the writer is closed
                failed = asyncio.get_running_loop().create_future()
                failed.set_exception(e)
                futures.append(failed)
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        for (what, _), outcome in zip(writes, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                problems.append(f"results database: {what} not recorded ({type(outcome).__name__}: {outcome})")
        return not isinstance(outcomes[0], BaseException)

    def _announce_products(self, job: Job, products: list[_ProductFile], problems: list[str]) -> None:
        """largeFileObjectAvailable for each product; a URL too long for its field is shortened, saying so."""
        topic = self.controller.evt_largeFileObjectAvailable
        for product, path, size, checksum in products:
            fields = dict(
                url=self.product_url(path),
                generator=f"{self.controller.salinfo.name}:{self.controller.salinfo.index}",
                version=1.0,
                byteSize=size,
                checkSum=checksum,
                mimeType=product.mime_type,
                id=job.job_id,
            )
            try:
                notes = write_sample(topic, fields, what="largeFileObjectAvailable")
            except PublishError as e:
                problems.append(f"product {path.name} not announced: {e}")
                continue
            problems.extend(f"product {path.name}: {note} (the results database has it whole)" for note in notes)

    def _write_telemetry(self, samples: list[TelemetrySample], problems: list[str]) -> None:
        """The telemetry samples the pipeline returned; each bad one is rejected alone."""
        allowed = [name for name in self.controller.salinfo.telemetry_names if name not in CSC_TELEMETRY]
        for sample in samples:
            name = sample.topic
            if name in CSC_TELEMETRY:
                problems.append(
                    f"telemetry {name} rejected: it is the CSC's own topic; pipelines may write {', '.join(allowed)}"
                )
                continue
            if name not in allowed:
                problems.append(f"asked to publish unknown telemetry topic {name!r}; known: {', '.join(allowed)}")
                continue
            topic = getattr(self.controller, f"tel_{name}")
            try:
                problems.extend(write_sample(topic, sample.fields, force_output=None, what=f"telemetry {name}"))
            except PublishError as e:
                problems.append(str(e))

    def _write_job_result(self, job: Job, image_name: str) -> None:
        """The job's one jobResult; if it cannot be written in full, a plain one saying why."""
        from ..dispatch.jobs import ExitCode, JobState

        topic = self.controller.evt_jobResult
        fields = dict(
            jobId=job.job_id,
            pipeline=job.pipeline,
            dataId=job.data_id.to_json(),
            imageName=image_name,
            trigger=job.trigger.value,
            success=job.state == JobState.SUCCEEDED,
            exitCode=job.exit_code,
            errorReport=job.error_report,
            startTime=job.start_time,
            endTime=job.end_time,
            duration=job.duration,
            result=job.result_json(),
        )
        try:
            notes = write_sample(topic, fields, what="jobResult")
        except PublishError as e:
            self.log.error("Job %s: %s; writing a plain jobResult instead", job.job_id, e)
            plain = dict(
                jobId=str(job.job_id),
                pipeline=str(job.pipeline),
                dataId=str(fields["dataId"]),
                imageName=str(image_name),
                trigger=str(job.trigger),
                success=bool(fields["success"]),
                exitCode=job.exit_code if _is_int32(job.exit_code) else int(ExitCode.CRASHED),
                errorReport=f"{job.error_report} [jobResult could not be written in full: {e}]".lstrip(),
                startTime=finite_or_zero(job.start_time),
                endTime=finite_or_zero(job.end_time),
                duration=finite_or_zero(job.duration),
                result=json.dumps({"publication": [*job.publication, str(e)]}),
            )
            try:
                write_sample(topic, plain, what="jobResult")
            except PublishError as e2:
                self.log.critical("Job %s ended (%s) but no jobResult could be written: %s", job.job_id, job.state, e2)
            return
        if notes:
            self.log.warning("Job %s: %s", job.job_id, "; ".join(notes))
