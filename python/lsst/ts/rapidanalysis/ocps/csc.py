"""OcpsRapidAnalysisCsc: ``OCPS:101``, the front door existing observing scripts use.

Scripts (ts_standardscripts' focus sweep and AOS sequences, ts_externalscripts, MTAOS) send
``OCPS:101 execute(config='{"<instrument>-FROM-OCS_<KIND>": "<visit ids>"}')`` and wait only for
CMD_COMPLETE (within 5 s; MTAOS 10 s). This CSC serves that interface: ``execute`` checks the
requests (`requests.parse_execute_config`), gives each an OCPS job id, and completes at once (no
in-progress ack); each request is then routed, newest first, to the RapidAnalysis CSC of its
instrument through ``processData`` (`requests.ROUTES`), and ends with exactly one ``job_result``
when its RapidAnalysis job(s) end, or when it cannot be routed (see `OcpsExitCode`).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import enum
import json
import logging
import pathlib
import time
import types
import uuid
from typing import Any

import yaml

from .. import __version__
from ..config_schema import CONFIG_DIR
from ..sal import AckError, AckTimeoutError, ConfigurableCsc, ExpectedError, Remote, SalRetCode, State, current_tai
from ..sal.topics import ControllerCommand, ControllerEvent
from .requests import (
    INSTRUMENTS,
    ROUTES,
    OcpsExitCode,
    Request,
    RequestError,
    Route,
    parse_execute_config,
    processdata_fields,
)

__all__ = ["OcpsRapidAnalysisCsc", "CONFIG_SCHEMA", "DEFAULT_INDEX", "run_ocps_rapid_analysis"]

#: The OCPS index of the Rapid Analysis backend (ts_xml ``OCPS.SalIndex.RA``).
DEFAULT_INDEX = 101
#: Longest RapidAnalysis jobResult.result text copied into a job_result (longer: left out, saying so).
MAX_EMBEDDED_RESULT = 16384
#: jobResults of jobs not (yet) known here kept by id: one may come before processData's ack.
RECENT_RESULTS = 1000
#: Ended jobs remembered, so that abort_job can say "already ended".
ENDED_JOBS = 1000

CONFIG_SCHEMA: dict[str, Any] = yaml.safe_load(
    """
$schema: http://json-schema.org/draft-07/schema#
$id: https://github.com/lsst-ts/ts_rapidanalysis/blob/main/python/lsst/ts/rapidanalysis/ocps/csc.py
title: OCPS v1
description: Configuration of the OCPS:101 facade of Rapid Analysis (not dm_OCPS's schema).
type: object
properties:
  processdata_timeout:
    description: >-
      Seconds to wait for a RapidAnalysis CSC's final processData ack (its in-progress acks extend it).
    type: number
    exclusiveMinimum: 0
    default: 10.0
  discovery_timeout:
    description: >-
      Seconds after this CSC starts during which a RapidAnalysis CSC not yet heard from is waited for
      before a request for it is answered "not running".
    type: number
    minimum: 0
    default: 5.0
  heartbeat_timeout:
    description: A RapidAnalysis CSC whose last heartbeat is older than this (seconds) is not running.
    type: number
    exclusiveMinimum: 0
    default: 5.0
  job_result_timeout:
    description: >-
      Seconds to wait for the jobResult(s) of a routed request before ending it with exit code 14;
      RapidAnalysis ends every job itself (its time limits), so this only catches a CSC that died.
    type: number
    exclusiveMinimum: 0
    default: 3600.0
  max_pending:
    description: >-
      Requests per instrument waiting to be routed; beyond it the oldest waiting one ends (exit code 16)
      so that the newest are served.
    type: integer
    minimum: 1
    default: 100
additionalProperties: false
"""
)


class JobState(enum.StrEnum):
    """Where an OCPS job is."""

    PENDING = "pending"  # waiting to be sent to RapidAnalysis
    ROUTING = "routing"  # processData sent, no final ack yet
    ROUTED = "routed"  # RapidAnalysis job(s) queued; waiting for their jobResults
    ENDED = "ended"


#: A request dropped unrouted because `max_pending` newer ones were waiting.
SUPERSEDED = 16


@dataclasses.dataclass(eq=False)
class OcpsJob:
    """One request of an execute, from its job id to its job_result."""

    job_id: str
    request: Request
    route: Route
    state: JobState = JobState.PENDING
    ra_job_ids: list[str] = dataclasses.field(default_factory=list)
    ra_results: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    abort_requested: bool = False
    exit_code: int | None = None
    timer: asyncio.TimerHandle | None = None

    @property
    def complete(self) -> bool:
        return bool(self.ra_job_ids) and all(i in self.ra_results for i in self.ra_job_ids)


def new_ocps_job_id() -> str:
    """A short unique OCPS job id."""
    return f"ocps-{uuid.uuid4().hex[:12]}"


def _job_result_summary(data: Any) -> dict[str, Any]:
    """What a job_result says of one RapidAnalysis jobResult."""
    summary: dict[str, Any] = {
        "jobId": data.jobId,
        "pipeline": data.pipeline,
        "dataId": data.dataId,
        "success": bool(data.success),
        "exitCode": int(data.exitCode),
        "errorReport": data.errorReport,
        "duration": data.duration,
    }
    text = data.result or ""
    if len(text) > MAX_EMBEDDED_RESULT:
        summary["result"] = None
        summary["resultOmitted"] = f"{len(text)} characters; read the RapidAnalysis jobResult or database"
    else:
        try:
            summary["result"] = json.loads(text) if text.strip() else {}
        except ValueError:
            summary["result"] = text
    return summary


class _RapidAnalysisLink:
    """One instrument's RapidAnalysis CSC as this CSC sees it: a Remote, its heartbeat, the requests
    waiting to be sent to it (newest last: a stack) and the task that sends them."""

    def __init__(self, csc: OcpsRapidAnalysisCsc, index: int) -> None:
        self.index = index
        self.name = f"RapidAnalysis:{index}"
        self.remote = Remote(csc.domain, "RapidAnalysis", index, include=["heartbeat", "jobResult"])
        self.started = time.monotonic()
        self.last_heartbeat: float | None = None
        self.heard = asyncio.Event()
        self.pending: list[OcpsJob] = []
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.remote.evt_heartbeat.callback = self._on_heartbeat
        self.remote.evt_jobResult.callback = csc._on_ra_job_result

    def _on_heartbeat(self, data: Any) -> None:
        self.last_heartbeat = time.monotonic()
        self.heard.set()

    async def absent_reason(self, discovery_timeout: float, heartbeat_timeout: float) -> str:
        """Why the RapidAnalysis CSC is taken as not running; "" if it is."""
        if self.last_heartbeat is None:
            remaining = self.started + discovery_timeout - time.monotonic()
            if remaining > 0:
                try:
                    await asyncio.wait_for(self.heard.wait(), remaining)
                except TimeoutError:
                    pass
        if self.last_heartbeat is None:
            return f"{self.name} is not running (no heartbeat heard since this CSC started)"
        age = time.monotonic() - self.last_heartbeat
        if age > heartbeat_timeout:
            return f"{self.name} is not running (its last heartbeat was {age:.1f} s ago)"
        return ""


class OcpsRapidAnalysisCsc(ConfigurableCsc):
    """The ``OCPS`` CSC at index 101: routes observing scripts' requests to RapidAnalysis.

    Parameters
    ----------
    index : `int`
        SAL index (101, ts_xml's ``OCPS.SalIndex.RA``).
    config_dir : `str`, optional
        Configuration directory; default ``$TS_CONFIG_OCS_DIR/OCPS/v1`` if that variable is set,
        else the shipped one.
    initial_state : `State`, optional
    override : `str`
    simulation_mode : `int`
        Only 0: this CSC is the same in simulation; point it at RapidAnalysis CSCs run with ``--simulate``.
    check_if_duplicate : `bool`
    """

    cmd_execute: ControllerCommand
    cmd_abort_job: ControllerCommand
    evt_job_id: ControllerEvent
    evt_job_result: ControllerEvent

    valid_simulation_modes = (0,)
    version = __version__
    enable_cmdline_state = True
    # $TS_CONFIG_OCS_DIR/<Name>/v1 if that is set, else the configuration shipped in the package.
    shipped_config_root = CONFIG_DIR

    def __init__(
        self,
        index: int = DEFAULT_INDEX,
        config_dir: str | pathlib.Path | None = None,
        initial_state: State | int | None = None,
        override: str = "",
        simulation_mode: int = 0,
        check_if_duplicate: bool = False,
    ) -> None:
        self.config: types.SimpleNamespace | None = None
        self.links: dict[int, _RapidAnalysisLink] = {}
        self.jobs: dict[str, OcpsJob] = {}  # not ended
        self.ended: collections.OrderedDict[str, int] = collections.OrderedDict()  # job id → exit code
        self._by_ra_id: dict[str, OcpsJob] = {}
        self._recent_results: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self._tasks: set[asyncio.Task] = set()
        super().__init__(
            "OCPS",
            index=int(index),
            config_schema=CONFIG_SCHEMA,
            config_dir=config_dir,
            check_if_duplicate=check_if_duplicate,
            initial_state=initial_state,
            override=override,
            simulation_mode=simulation_mode,
        )
        self.cmd_execute.allow_multiple_callbacks = True

    @staticmethod
    def get_config_pkg() -> str:
        """The configuration package (``$TS_CONFIG_OCS_DIR/OCPS/v1``)."""
        return "ts_config_ocs"

    async def configure(self, config: types.SimpleNamespace) -> None:
        """Keep the configuration."""
        self.config = config

    # -- start-up and state --

    async def start_phase2(self) -> None:
        """Listen to every instrument's RapidAnalysis CSC from the start (its heartbeat, its jobResults)."""
        for index in sorted(set(INSTRUMENTS.values())):
            link = _RapidAnalysisLink(self, index)
            self.links[index] = link
            await link.remote.start_task
            link.task = asyncio.create_task(self._route_loop(link))
        await super().start_phase2()

    async def handle_summary_state(self) -> None:
        """Leaving ENABLED: requests not yet routed end (exit code 15); routed ones are still followed."""
        if self.summary_state != State.ENABLED:
            for link in self.links.values():
                while link.pending:
                    job = link.pending.pop(0)
                    self._end(
                        job,
                        OcpsExitCode.OCPS_STOPPED,
                        "not routed",
                        f"{self.salinfo.name_index} went to {self.summary_state.name} before the request "
                        f"was sent to {link.name}",
                    )

    async def close_tasks(self) -> None:
        """End every job still open (exit code 15), stop routing, close the Remotes."""
        for link in self.links.values():
            if link.task is not None:
                link.task.cancel()
        for job in list(self.jobs.values()):
            ids = f" (RapidAnalysis job(s) {', '.join(job.ra_job_ids)} may still end)" if job.ra_job_ids else ""
            self._end(job, OcpsExitCode.OCPS_STOPPED, "not followed", f"{self.salinfo.name_index} closed first{ids}")
        for task in list(self._tasks):
            task.cancel()
        for link in self.links.values():
            await link.remote.close()
        await super().close_tasks()

    # -- commands --

    async def do_execute(self, data: Any) -> Any:
        """Accept the requests of ``config`` (all or none) and complete at once.

        The ack result is ``{"job_id": ...}`` (one request; as dm_OCPS) or
        ``{"job_ids": {key: job id, ...}}`` (several).
        """
        self.assert_enabled("execute")
        assert self.config is not None
        try:
            requests = parse_execute_config(data.config)
        except RequestError as e:
            raise ExpectedError(str(e)) from None
        loop = asyncio.get_running_loop()
        ids: dict[str, str] = {}
        for request in requests:
            route = ROUTES[request.kind]
            job = OcpsJob(new_ocps_job_id(), request, route)
            ids[request.key] = job.job_id
            self.jobs[job.job_id] = job
            self.evt_job_id.set_write(
                event_name="cmd_execute", seq_num=data.private_seqNum, job_id=job.job_id, force_output=True
            )
            if route.pipeline is None:
                # After the ack: the caller hears CMD_COMPLETE first.
                loop.call_soon(self._end, job, OcpsExitCode.NOT_SUPPORTED, "not supported", route.reason)
            else:
                self._push(job)
            self.log.info("Job %s: %s=%s", job.job_id, request.key, ",".join(map(str, request.visit_ids)))
        result: dict[str, Any] = {"job_id": next(iter(ids.values()))} if len(ids) == 1 else {"job_ids": ids}
        return self.salinfo.make_ackcmd(
            private_seqNum=data.private_seqNum, ack=SalRetCode.CMD_COMPLETE, result=json.dumps(result)
        )

    async def do_abort_job(self, data: Any) -> Any:
        """Abort a job: unrouted, it ends at once (255); routed, its RapidAnalysis job(s) are aborted
        (abortJob) and it ends when they do."""
        self.assert_enabled("abort_job")
        job = self.jobs.get(data.job_id)
        if job is None:
            if data.job_id in self.ended:
                raise ExpectedError(f"job {data.job_id} has already ended (exit code {self.ended[data.job_id]})")
            raise ExpectedError(f"no job {data.job_id!r} (job ids are returned by execute and the job_id event)")
        job.abort_requested = True
        if job.state == JobState.PENDING:
            link = self.links[job.request.sal_index]
            if job in link.pending:
                link.pending.remove(job)
            self._end(job, OcpsExitCode.ABORTED, "aborted", f"aborted by abort_job before it was sent to {link.name}")
            return None
        if job.state == JobState.ROUTING:
            # Its RapidAnalysis job ids are not known yet: aborted as soon as they are (`_route`).
            return self.salinfo.make_ackcmd(
                private_seqNum=data.private_seqNum,
                ack=SalRetCode.CMD_COMPLETE,
                result="abort requested; the RapidAnalysis job is aborted as soon as it is queued",
            )
        failures = await self._abort_ra(job)
        if failures and len(failures) == len(job.ra_job_ids):
            raise ExpectedError(f"job {job.job_id}: RapidAnalysis did not abort: {'; '.join(failures)}")
        return None

    # -- routing --

    def _push(self, job: OcpsJob) -> None:
        """Queue a job for routing, newest first; drop the oldest waiting beyond ``max_pending``."""
        assert self.config is not None
        link = self.links[job.request.sal_index]
        link.pending.append(job)
        while len(link.pending) > self.config.max_pending:
            oldest = link.pending.pop(0)
            self._end(
                oldest,
                SUPERSEDED,
                "not routed",
                f"dropped unrouted: more than max_pending={self.config.max_pending} newer requests for "
                f"{link.name} were waiting",
            )
        link.wake.set()

    async def _route_loop(self, link: _RapidAnalysisLink) -> None:
        """Send the newest waiting request to the RapidAnalysis CSC, one at a time, for ever."""
        while True:
            await link.wake.wait()
            link.wake.clear()
            while link.pending:
                job = link.pending.pop()  # newest first
                try:
                    await self._route(link, job)
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    self.log.exception("Job %s: routing failed", job.job_id)
                    if job.state != JobState.ENDED and not job.ra_job_ids:
                        self._end(job, OcpsExitCode.RA_REFUSED, "not routed", f"routing failed: {e!r}")

    async def _route(self, link: _RapidAnalysisLink, job: OcpsJob) -> None:
        assert self.config is not None
        job.state = JobState.ROUTING
        absent = await link.absent_reason(self.config.discovery_timeout, self.config.heartbeat_timeout)
        if absent:
            self._end(job, OcpsExitCode.RA_ABSENT, "not routed", absent)
            return
        fields = processdata_fields(job.request, job.route)
        try:
            ackcmd = await link.remote.cmd_processData.set_start(**fields, timeout=self.config.processdata_timeout)
        except AckTimeoutError as e:
            self._end(
                job,
                OcpsExitCode.RA_NO_ANSWER,
                "not routed",
                f"{link.name} did not answer processData within {self.config.processdata_timeout} s "
                f"(last ack {SalRetCode(e.ackcmd.ack).name}: {e.ackcmd.result})",
            )
            return
        except AckError as e:
            self._end(
                job,
                OcpsExitCode.RA_REFUSED,
                "not routed",
                f"{link.name} refused processData ({SalRetCode(e.ackcmd.ack).name}): {e.ackcmd.result}",
            )
            return
        ra_ids = self._ra_job_ids(ackcmd.result)
        if not ra_ids:
            self._end(
                job,
                OcpsExitCode.RA_REFUSED,
                "not routed",
                f"{link.name} accepted processData but named no job in its ack: {ackcmd.result!r}",
            )
            return
        if job.state == JobState.ENDED:  # closed meanwhile
            return
        job.ra_job_ids = ra_ids
        job.state = JobState.ROUTED
        for ra_id in ra_ids:
            self._by_ra_id[ra_id] = job
            recent = self._recent_results.pop(ra_id, None)
            if recent is not None:
                job.ra_results[ra_id] = _job_result_summary(recent)
        self.log.info("Job %s: %s %s on %s", job.job_id, link.name, fields["pipeline"], ", ".join(ra_ids))
        if job.complete:
            self._end_routed(job)
            return
        job.timer = asyncio.get_running_loop().call_later(self.config.job_result_timeout, self._timed_out, job)
        if job.abort_requested:
            self._spawn(self._abort_ra(job))

    @staticmethod
    def _ra_job_ids(ack_result: str) -> list[str]:
        """The job ids in RapidAnalysis's processData ack result (``jobId`` or ``jobIds``)."""
        try:
            value = json.loads(ack_result)
        except ValueError:
            return []
        if not isinstance(value, dict):
            return []
        if isinstance(value.get("jobId"), str):
            return [value["jobId"]]
        ids = value.get("jobIds")
        if isinstance(ids, list) and all(isinstance(i, str) for i in ids):
            return list(ids)
        return []

    async def _abort_ra(self, job: OcpsJob) -> list[str]:
        """Send abortJob for every RapidAnalysis job of ``job`` not ended yet; return the failures."""
        assert self.config is not None
        link = self.links[job.request.sal_index]
        open_ids = [i for i in job.ra_job_ids if i not in job.ra_results]
        timeout = self.config.processdata_timeout

        async def abort(ra_id: str) -> str:
            try:
                await link.remote.cmd_abortJob.set_start(jobId=ra_id, timeout=timeout)
            except AckError as e:
                if ra_id in job.ra_results:
                    return ""  # it ended meanwhile: its jobResult ends the OCPS job
                return f"{ra_id}: {e.ackcmd.result or SalRetCode(e.ackcmd.ack).name}"
            return ""

        results = await asyncio.gather(*(abort(i) for i in open_ids))
        failures = [r for r in results if r]
        for failure in failures:
            self.log.warning("Job %s: abortJob failed: %s", job.job_id, failure)
        return failures

    def _on_ra_job_result(self, data: Any) -> None:
        """A RapidAnalysis jobResult: record it; end the OCPS job whose last RapidAnalysis job it was."""
        job = self._by_ra_id.get(data.jobId)
        if job is None:
            # Not ours (autonomous jobs, other clients), or ours before processData's ack reached
            # us: the sample is kept for a while, read only if it turns out to be ours.
            self._recent_results[data.jobId] = data
            while len(self._recent_results) > RECENT_RESULTS:
                self._recent_results.popitem(last=False)
            return
        job.ra_results[data.jobId] = _job_result_summary(data)
        if job.complete and job.state == JobState.ROUTED:
            self._end_routed(job)

    def _end_routed(self, job: OcpsJob) -> None:
        results = [job.ra_results[i] for i in job.ra_job_ids]
        failed = [r for r in results if r["exitCode"] != 0 or not r["success"]]
        if not failed:
            self._end(job, OcpsExitCode.SUCCESS, "succeeded", "")
            return
        first = failed[0]
        outcome = "aborted" if first["exitCode"] == OcpsExitCode.ABORTED else "failed"
        reason = f"RapidAnalysis job {first['jobId']}: {first['errorReport']}"
        self._end(job, first["exitCode"] or OcpsExitCode.RA_REFUSED, outcome, reason)

    def _timed_out(self, job: OcpsJob) -> None:
        assert self.config is not None
        if job.state == JobState.ENDED:
            return
        missing = [i for i in job.ra_job_ids if i not in job.ra_results]
        self._end(
            job,
            OcpsExitCode.NO_JOB_RESULT,
            "lost",
            f"no jobResult for {', '.join(missing)} within job_result_timeout={self.config.job_result_timeout} s "
            f"(RapidAnalysis:{job.request.sal_index} may have died)",
        )

    # -- ending --

    def _end(self, job: OcpsJob, exit_code: int, outcome: str, reason: str) -> None:
        """Publish the job's one job_result and log it; forget the job."""
        if job.state == JobState.ENDED:
            return
        job.state = JobState.ENDED
        job.exit_code = int(exit_code)
        if job.timer is not None:
            job.timer.cancel()
        self.jobs.pop(job.job_id, None)
        for ra_id in job.ra_job_ids:
            self._by_ra_id.pop(ra_id, None)
        self.ended[job.job_id] = job.exit_code
        while len(self.ended) > ENDED_JOBS:
            self.ended.popitem(last=False)
        result: dict[str, Any] = {
            **job.request.describe(),
            "pipeline": job.route.pipeline,
            "rapidAnalysis": f"RapidAnalysis:{job.request.sal_index}",
            "outcome": outcome,
            "reason": reason,
            "jobIds": list(job.ra_job_ids),
            "jobs": [job.ra_results[i] for i in job.ra_job_ids if i in job.ra_results],
            "endTime": current_tai(),
        }
        try:
            text = json.dumps(result)
        except (TypeError, ValueError):
            result["jobs"] = []
            text = json.dumps(result, default=str)
        try:
            self.evt_job_result.set_write(job_id=job.job_id, exit_code=job.exit_code, result=text, force_output=True)
        except Exception:
            self.log.exception("Job %s: could not publish job_result; publishing a short one", job.job_id)
            short = json.dumps({"outcome": outcome, "reason": reason[:1000], "jobIds": list(job.ra_job_ids)})
            try:
                self.evt_job_result.set_write(
                    job_id=job.job_id, exit_code=job.exit_code, result=short, force_output=True
                )
            except Exception:
                self.log.exception("Job %s: could not publish job_result at all", job.job_id)
        level = logging.INFO if exit_code == 0 else logging.WARNING
        self.log.log(
            level,
            "Job %s %s (%s, exit code %d)%s",
            job.job_id,
            outcome,
            job.request.key,
            job.exit_code,
            f": {reason}" if reason else "",
        )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- command line --

    @classmethod
    def add_arguments(cls, parser: Any) -> None:
        """An optional ``index`` (default 101)."""
        parser.add_argument(
            "index", nargs="?", type=int, default=DEFAULT_INDEX, help=f"SAL index (default {DEFAULT_INDEX}, RA)."
        )
        super().add_arguments(parser)

    @classmethod
    def add_kwargs_from_args(cls, args: Any, kwargs: dict[str, Any]) -> None:
        """Pass the index on."""
        kwargs["index"] = args.index
        super().add_kwargs_from_args(args, kwargs)


def run_ocps_rapid_analysis() -> None:
    """``run_ocps_rapid_analysis [INDEX]``: serve ``OCPS:101`` (or INDEX) for Rapid Analysis."""
    asyncio.run(OcpsRapidAnalysisCsc.amain(index=None))
