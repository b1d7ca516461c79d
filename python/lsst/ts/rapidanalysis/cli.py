"""``rapid_analysis``: the command line of Rapid Analysis.

``rapid_analysis run PIPELINE INPUT... [--config JSON] [--json] [--output-dir DIR] [--simulate]``
runs a pipeline here, in this process (no DDS, no Dask), on local files, and prints what it
measured. Subcommands are entries of `SUBCOMMANDS`; add one there to extend the tool.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import math
import pathlib
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # imported where used: ``--help`` must not wait for SciPy and the pipelines
    from .pipelines.base import PipelineResult

__all__ = ["Subcommand", "SUBCOMMANDS", "build_parser", "main", "run_main", "EXIT_USAGE", "EXIT_ABORTED"]

#: Exit code for a bad command line (unknown pipeline, bad configuration, missing files), as argparse uses.
EXIT_USAGE = 2
#: Exit code when interrupted (Ctrl-C), as shells report SIGINT.
EXIT_ABORTED = 130
#: Exit code for an unexpected exception in a pipeline.
EXIT_CRASH = 1

log = logging.getLogger("rapid_analysis")


@dataclasses.dataclass(frozen=True)
class Subcommand:
    """One subcommand of ``rapid_analysis``.

    Attributes
    ----------
    help : `str`
        One line for ``--help``.
    add_arguments : callable
        Adds the subcommand's arguments to its parser.
    handler : callable
        Runs it with the parsed arguments; returns the exit code.
    """

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]


# run


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pipeline", metavar="PIPELINE", help="pipeline name, e.g. image_stats")
    parser.add_argument("inputs", metavar="INPUT", nargs="+", type=pathlib.Path, help="input file(s)")
    parser.add_argument(
        "--config",
        metavar="JSON",
        default=None,
        help="configuration overrides as a JSON object, e.g. '{\"make_plot\": false}' (or @FILE to read it)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a summary")
    parser.add_argument(
        "--output-dir",
        metavar="DIR",
        type=pathlib.Path,
        default=None,
        help="where to write products (default ./rapid_analysis_output/JOB_ID)",
    )
    parser.add_argument("--simulate", action="store_true", help="simulation mode: also offer the test.* pipelines")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")


def _error(message: str) -> None:
    print(f"rapid_analysis: error: {message}", file=sys.stderr)


def _parse_config(text: str | None) -> dict[str, Any]:
    """The ``--config`` overrides; ValueError with a clear message if they are not a JSON object."""
    if text is None:
        return {}
    source = "--config"
    if text.startswith("@"):
        path = pathlib.Path(text[1:])
        try:
            text = path.read_text()
        except OSError as e:
            raise ValueError(f"cannot read configuration file {path}: {e.strerror or e}") from None
        source = str(path)
    try:
        overrides = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{source} is not valid JSON ({e.msg} at character {e.pos}): {text[:80]!r}") from None
    if not isinstance(overrides, dict):
        raise ValueError(f'{source} must be a JSON object such as {{"make_plot": false}}, not {text[:80]!r}')
    return overrides


def _job_id() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return f"local-{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}"


@contextmanager
def _cancel_on_sigint() -> Iterator[threading.Event]:
    """An event set by the first Ctrl-C (the pipeline then stops at its next check); a second one interrupts."""
    cancelled = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield cancelled
        return

    def handler(signum: int, frame: Any) -> None:
        if cancelled.is_set():
            raise KeyboardInterrupt
        cancelled.set()
        print("rapid_analysis: stopping at the next check (Ctrl-C again to interrupt)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield cancelled
    finally:
        signal.signal(signal.SIGINT, previous)


def _run(args: argparse.Namespace) -> int:
    from .pipelines.base import JobAborted, PipelineContext, PipelineError
    from .pipelines.registry import PipelineRegistry

    registry = PipelineRegistry(simulation_mode=args.simulate)
    try:
        pipeline_class = registry.get(args.pipeline)
    except ValueError as e:
        hint = ""
        if not args.simulate and args.pipeline in PipelineRegistry(simulation_mode=True).names:
            hint = f" ({args.pipeline} is a simulation-mode pipeline: add --simulate)"
        _error(f"{e}{hint}")
        return EXIT_USAGE
    try:
        config = pipeline_class.make_config(_parse_config(args.config))
    except ValueError as e:
        _error(str(e))
        return EXIT_USAGE
    missing = [str(p) for p in args.inputs if not p.exists()]
    not_files = [str(p) for p in args.inputs if p.exists() and not p.is_file()]
    if missing or not_files:
        problems = []
        if missing:
            problems.append(f"input file(s) not found: {', '.join(missing)}")
        if not_files:
            problems.append(f"input(s) not regular files: {', '.join(not_files)}")
        _error("; ".join(problems))
        return EXIT_USAGE

    job_id = _job_id()
    output_dir = args.output_dir if args.output_dir is not None else pathlib.Path("rapid_analysis_output") / job_id
    inputs = [p.absolute() for p in args.inputs]
    with _cancel_on_sigint() as cancelled:
        context = PipelineContext(job_id=job_id, output_dir=output_dir.absolute(), is_cancelled=cancelled.is_set)
        log.info("Running %s on %d file(s) as job %s", pipeline_class.name, len(inputs), job_id)
        t0 = time.monotonic()
        try:
            result = pipeline_class().run(inputs, config, context)
        except PipelineError as e:
            _error(f"pipeline {pipeline_class.name} failed: {e}")
            return e.exit_code
        except (JobAborted, KeyboardInterrupt):
            _error(f"pipeline {pipeline_class.name} aborted")
            return EXIT_ABORTED
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            _error(f"pipeline {pipeline_class.name} crashed: {type(e).__name__}: {e}")
            return EXIT_CRASH
        duration = time.monotonic() - t0
    if args.json:
        print(result.model_dump_json(indent=2))
    else:
        print_summary(result, pipeline=pipeline_class.name, job_id=job_id, n_inputs=len(inputs), duration=duration)
    return 0


# Human-readable output


def _format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value.is_integer() and abs(value) < 1e15:
            return f"{value:.1f}"
        return f"{value:.6g}"
    return str(value)


def _table(rows: Sequence[dict[str, Any]], out: TextIO, indent: str = "  ") -> None:
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    cells = [[_format_value(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print(indent + "  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)), file=out)
    for r in cells:
        print(indent + "  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)), file=out)


def print_summary(
    result: PipelineResult,
    *,
    pipeline: str,
    job_id: str,
    n_inputs: int,
    duration: float,
    out: TextIO | None = None,
) -> None:
    """Print a pipeline result for people: metrics, per-detector table, flags, products.

    Parameters
    ----------
    result : `PipelineResult`
        What the pipeline returned.
    pipeline : `str`
        Pipeline name.
    job_id : `str`
        The local job id.
    n_inputs : `int`
        Number of input files.
    duration : `float`
        Seconds the pipeline ran.
    out : text file, optional
        Where to print (default stdout).
    """
    out = out or sys.stdout
    print(f"{pipeline}: {n_inputs} input file(s), job {job_id}, {duration:.2f} s", file=out)
    if result.image_name:
        print(f"image: {result.image_name}", file=out)
    if result.metrics:
        print("metrics:", file=out)
        width = max(len(k) for k in result.metrics)
        for key, value in result.metrics.items():
            print(f"  {key.ljust(width)}  {_format_value(value)}", file=out)
    if result.detector_metrics:
        print(f"detectors ({len(result.detector_metrics)}):", file=out)
        _table(result.detector_metrics, out)
    flags = result.summary.get("flags") if isinstance(result.summary, dict) else None
    if flags:
        print(f"flags ({len(flags)}):", file=out)
        for flag in flags:
            print(f"  - {flag}", file=out)
    if result.telemetry:
        topics = ", ".join(sorted({t.topic for t in result.telemetry}))
        print(f"telemetry: {len(result.telemetry)} sample(s) ({topics})", file=out)
    if result.products:
        print("products:", file=out)
        for product in result.products:
            note = f"  ({product.description})" if product.description else ""
            print(f"  {product.path}{note}", file=out)


#: The subcommands, by name. Others add theirs here (e.g. ``simulate``, ``demo``).
def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    from .sim.demo import add_demo_arguments  # the simulator is only imported when asked for

    add_demo_arguments(parser)


def _demo(args: argparse.Namespace) -> int:
    from .sim.demo import run_demo_command

    return run_demo_command(args)


def _add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    from .sim.simulate_cli import add_simulate_arguments

    add_simulate_arguments(parser)


def _simulate(args: argparse.Namespace) -> int:
    from .sim.simulate_cli import run_simulate

    return run_simulate(args)


def _add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    from .web.serve_cli import add_serve_arguments  # argparse only: the web stack is imported by the handler

    add_serve_arguments(parser)


def _serve(args: argparse.Namespace) -> int:
    from .web.serve_cli import run_serve

    return run_serve(args)


SUBCOMMANDS: dict[str, Subcommand] = {
    "run": Subcommand(
        help="run a pipeline here, in this process, on local files, and print its result",
        add_arguments=_add_run_arguments,
        handler=_run,
    ),
    "simulate": Subcommand(
        help="simulate raws (images) or a night's untriggered image stream on DDS (night)",
        add_arguments=_add_simulate_arguments,
        handler=_simulate,
    ),
    "demo": Subcommand(
        help="a simulated observatory end to end: camera and mount simulators, the CSC, an observing sequence",
        add_arguments=_add_demo_arguments,
        handler=_demo,
    ),
    "serve": Subcommand(
        help="the page: the night as it happens, in the browser (read-only, from the results database and DDS)",
        add_arguments=_add_serve_arguments,
        handler=_serve,
    ),
}


def _pipeline_help(parser: argparse.ArgumentParser, name: str, simulate: bool) -> int:
    """``run PIPELINE --help``: the run options and the pipeline's configuration fields."""
    from .pipelines.registry import PipelineRegistry

    out = sys.stdout
    try:
        pipeline = PipelineRegistry(simulation_mode=simulate).get(name)
    except ValueError as e:
        _error(str(e))
        return EXIT_USAGE
    run_parser = argparse.ArgumentParser(prog=f"{parser.prog} run", description=SUBCOMMANDS["run"].help)
    _add_run_arguments(run_parser)
    run_parser.print_help(out)
    print(f"\n{name}: {pipeline.description or ''}".rstrip(), file=out)
    print("configuration (--config '{\"field\": value}'):", file=out)
    for field, info in pipeline.Config.model_fields.items():
        default = info.get_default(call_default_factory=True)
        print(f"  {field} = {default!r}: {info.description or ''}".rstrip(), file=out)
    return 0


def build_parser(only: str | None = "*") -> argparse.ArgumentParser:
    """The argument parser, with one sub-parser per entry of `SUBCOMMANDS`.

    Parameters
    ----------
    only : `str` or None
        Give arguments to this subcommand's parser alone (None: to none; ``*``: to all). Adding a
        subcommand's arguments may import what it runs (the simulator for ``demo``): ``--help`` and
        a usage error need none of it.
    """
    parser = argparse.ArgumentParser(
        prog="rapid_analysis", description="Rubin Observatory Rapid Analysis: run and try out its pipelines."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, subcommand in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=subcommand.help, description=subcommand.help)
        if only in ("*", name):
            subcommand.add_arguments(sub)
        sub.set_defaults(handler=subcommand.handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``rapid_analysis`` with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # The subcommand is the first word that is not an option (the top level has no valued options).
    command = next((word for word in argv if not word.startswith("-")), None)
    parser = build_parser(only=command if command in SUBCOMMANDS else None)
    if command == "run" and {"-h", "--help"} & set(argv):
        words = [word for word in argv[argv.index("run") + 1 :] if not word.startswith("-")]
        if words:  # ``run PIPELINE --help``: the run options, then that pipeline's (only it imported)
            return _pipeline_help(parser, words[0], simulate="--simulate" in argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help (0) or a usage error (2)
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return args.handler(args)


def run_main() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run_main()
