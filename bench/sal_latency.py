"""SAL layer latency and throughput between two processes, beside raw Cyclone DDS in the same run.

Measures, on this machine, in one run:

1. raw Cyclone DDS ping-pong (two processes, synchronous WaitSet loops, same sample type):
   the floor any DDS layer stands on;
2. SAL command round trip: a Remote here sends a no-op command (``setLogLevel`` to the current
   level) to a Test CSC in another process and awaits CMD_COMPLETE;
3. event throughput: a Controller in another process writes ``scalars`` events at a fixed
   rate (and then flat out); a Remote here counts them and the seqNum gaps (lost samples).

Prints a table, the ratio SAL/raw at p50 (target: within 3x) and a JSON line.

Usage: ``python bench/sal_latency.py [--round-trips 3000] [--rate 1000] [--seconds 5]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

from cyclonedds.core import InstanceState, ReadCondition, SampleState, ViewState, WaitSet
from cyclonedds.domain import DomainParticipant
from cyclonedds.pub import DataWriter, Publisher
from cyclonedds.sub import DataReader, Subscriber
from cyclonedds.topic import Topic

from lsst.ts.rapidanalysis import sal
from lsst.ts.rapidanalysis.sal.dds_config import ensure_dds_domain, topic_qos
from lsst.ts.rapidanalysis.sal.idl_types import get_topic_type
from lsst.ts.rapidanalysis.sal.testutils import set_random_lsst_dds_partition_prefix

WARMUP = 200


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# -- raw Cyclone DDS ping-pong --


def _raw_endpoints(role: str) -> tuple[DataWriter, DataReader, ReadCondition, WaitSet, type]:
    domain_id = sal.get_domain_id()
    ensure_dds_domain(domain_id)
    info = sal.load_component_info("Test").topics["command_setScalars"]
    sample_type = get_topic_type(info, True).data_type
    participant = DomainParticipant(domain_id)
    prefix = os.environ["LSST_DDS_PARTITION_PREFIX"]
    topic_ping = Topic(participant, "bench_raw_ping", sample_type)
    topic_pong = Topic(participant, "bench_raw_pong", sample_type)
    from cyclonedds.core import Policy, Qos

    partition = Qos(Policy.Partition([prefix + ".bench"]))
    out_topic, in_topic = (topic_ping, topic_pong) if role == "ping" else (topic_pong, topic_ping)
    writer = DataWriter(Publisher(participant, partition), out_topic, topic_qos("command", writer=True))
    reader = DataReader(Subscriber(participant, partition), in_topic, topic_qos("command", writer=False))
    condition = ReadCondition(reader, SampleState.NotRead | ViewState.Any | InstanceState.Any)
    waitset = WaitSet(participant)
    waitset.attach(condition)
    return writer, reader, condition, waitset, sample_type


def run_raw_pong(count: int) -> None:
    """Echo every sample back until ``count`` have been echoed."""
    writer, reader, condition, waitset, _ = _raw_endpoints("pong")
    echoed = 0
    while echoed < count:
        waitset.wait(10_000_000_000)
        for sample in reader.take(N=16, condition=condition):
            if sample.sample_info.valid_data:
                writer.write(sample)
                echoed += 1
    time.sleep(0.5)  # let the last echo out before leaving


def run_raw_ping(count: int) -> list[float]:
    """Start a pong process, then time ``count`` round trips (after a warm-up)."""
    pong = subprocess.Popen([sys.executable, __file__, "--role", "raw-pong", "--round-trips", str(count + WARMUP)])
    try:
        writer, reader, condition, waitset, sample_type = _raw_endpoints("ping")
        deadline = time.monotonic() + 20
        while writer.get_publication_matched_status().current_count == 0 or not reader.get_matched_publications():
            if time.monotonic() > deadline:
                raise RuntimeError("raw pong process never matched")
            time.sleep(0.01)
        sample = sample_type(private_seqNum=0, int0=1, string0="ping")
        times = []
        for i in range(count + WARMUP):
            sample.private_seqNum = i + 1
            t0 = time.perf_counter()
            writer.write(sample)
            while True:
                waitset.wait(5_000_000_000)
                got = [s for s in reader.take(N=4, condition=condition) if s.sample_info.valid_data]
                if got:
                    break
            if i >= WARMUP:
                times.append(time.perf_counter() - t0)
        return times
    finally:
        pong.wait(timeout=20)


# -- SAL command round trip --


async def run_sal_round_trips(count: int, index: int) -> list[float]:
    exe = pathlib.Path(sys.executable).parent / "run_test_csc"
    process = await asyncio.create_subprocess_exec(
        str(exe), str(index), stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        async with sal.Domain() as domain, sal.Remote(domain, "Test", index, include=["summaryState"]) as remote:
            await remote.evt_summaryState.next(flush=False, timeout=30)
            times = []
            for i in range(count + WARMUP):
                t0 = time.perf_counter()
                await remote.cmd_setLogLevel.set_start(level=20, timeout=10)
                if i >= WARMUP:
                    times.append(time.perf_counter() - t0)
            await sal.set_summary_state(remote, sal.State.OFFLINE, timeout=30)
        await asyncio.wait_for(process.wait(), 20)
        return times
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


# -- event throughput --


async def run_event_source(index: int, rate: float, seconds: float) -> None:
    """Write ``rate`` events/s for ``seconds`` (rate 0: as fast as possible)."""
    controller = sal.Controller("Test", index)
    await controller.start_task
    writer = controller.evt_scalars._writer
    deadline = time.monotonic() + 20
    while writer.get_publication_matched_status().current_count == 0:
        if time.monotonic() > deadline:
            raise RuntimeError("event reader never matched")
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    n_total = int(rate * seconds) if rate > 0 else 0
    t_start = time.monotonic()
    i = 0
    if rate > 0:
        batch_period = 0.005  # write in small batches on a fixed schedule
        per_batch = max(1, round(rate * batch_period))
        while i < n_total:
            for _ in range(min(per_batch, n_total - i)):
                controller.evt_scalars.set_write(int0=i, force_output=True)
                i += 1
            next_time = t_start + i / rate
            await asyncio.sleep(max(0.0, next_time - time.monotonic()))
    else:
        while time.monotonic() - t_start < seconds:
            for _ in range(100):
                controller.evt_scalars.set_write(int0=i, force_output=True)
                i += 1
            await asyncio.sleep(0)
    elapsed = time.monotonic() - t_start
    print(json.dumps({"written": i, "write_seconds": elapsed}), flush=True)
    await controller.close()


async def run_event_sink(index: int, rate: float, seconds: float) -> dict:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--role",
        "event-source",
        "--index",
        str(index),
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )
    received: list[int] = []
    first_last: list[float] = []

    def on_event(data: object) -> None:
        received.append(data.private_seqNum)
        now = time.monotonic()
        if not first_last:
            first_last.append(now)
        first_last[1:] = [now]

    async with sal.Domain() as domain, sal.Remote(domain, "Test", index, readonly=True, include=["scalars"]) as remote:
        remote.evt_scalars.callback = on_event
        stdout, _ = await asyncio.wait_for(proc.communicate(), timeout=seconds + 60)
        report = json.loads(stdout.decode().strip().splitlines()[-1])
        await asyncio.sleep(0.5)  # samples still in flight
    written = report["written"]
    gaps = sum(1 for a, b in zip(received, received[1:], strict=False) if b != a + 1)
    span = (first_last[-1] - first_last[0]) if len(first_last) == 2 else float("nan")
    return {
        "target_rate": rate,
        "written": written,
        "received": len(received),
        "lost": written - len(received),
        "seq_gaps": gaps,
        "write_rate": written / report["write_seconds"],
        "receive_rate": len(received) / span if span > 0 else float("nan"),
    }


async def run_all(args: argparse.Namespace) -> dict:
    raw = run_raw_ping(args.round_trips)
    sal_times = await run_sal_round_trips(args.round_trips, index=1)
    steady = await run_event_sink(index=2, rate=args.rate, seconds=args.seconds)
    flat_out = await run_event_sink(index=3, rate=0, seconds=2)
    return {"raw": raw, "sal": sal_times, "steady": steady, "flat_out": flat_out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--round-trips", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s for the steady throughput test")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of the steady throughput test")
    parser.add_argument("--role", default="main", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "raw-pong":
        run_raw_pong(args.round_trips)
        return
    if args.role == "event-source":
        asyncio.run(run_event_source(args.index, args.rate, args.seconds))
        return

    set_random_lsst_dds_partition_prefix()
    os.environ.setdefault("LSST_SITE", "bench")
    results = asyncio.run(run_all(args))
    raw, sal_times, steady, flat_out = results["raw"], results["sal"], results["steady"], results["flat_out"]
    raw_p50, sal_p50 = statistics.median(raw), statistics.median(sal_times)
    print(f"\nSAL layer between two processes ({args.round_trips} round trips after {WARMUP} warm-up), this machine:")
    print(f"{'':34s} {'p50':>9s} {'p90':>9s} {'p99':>9s} {'max':>9s}")
    for label, values in (("raw Cyclone DDS ping-pong", raw), ("SAL command round trip (no-op)", sal_times)):
        print(
            f"{label:34s} "
            + " ".join(f"{percentile(values, q) * 1e6:7.0f}µs" for q in (0.5, 0.9, 0.99))
            + f" {max(values) * 1e6:7.0f}µs"
        )
    ratio = sal_p50 / raw_p50
    print(f"ratio SAL/raw at p50: {ratio:.2f} (target <= 3)")
    for label, r in (("steady", steady), ("flat out", flat_out)):
        print(
            f"events {label}: target {r['target_rate'] or 'max':>6} /s, written {r['written']} at "
            f"{r['write_rate']:.0f}/s, received {r['received']} at {r['receive_rate']:.0f}/s, "
            f"lost {r['lost']}, seqNum gaps {r['seq_gaps']}"
        )
    summary = {
        "raw_p50_us": raw_p50 * 1e6,
        "raw_p99_us": percentile(raw, 0.99) * 1e6,
        "sal_p50_us": sal_p50 * 1e6,
        "sal_p99_us": percentile(sal_times, 0.99) * 1e6,
        "ratio_p50": ratio,
        "steady": steady,
        "flat_out": flat_out,
    }
    print("JSON " + json.dumps(summary))


if __name__ == "__main__":
    main()
