"""The `workbench` command: demo, report, stack, serve, load."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from service.settings import ServiceSettings, SettingsError
from workbench._errors import InputError, StackError
from workbench.load import _cli as load_cli

DEMO_NOTEBOOK = "01_quickstart"


def _interrupt(signum: int, frame: Any) -> None:
    # SIGTERM behaves like Ctrl-C: context managers stop what they started.
    raise KeyboardInterrupt


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="The tuning workbench for FastAPI services: launch, load, look inside, plot.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo", help="run the quickstart notebook on an embedded stack; print the report's path"
    )
    demo.add_argument("--duration", type=float, default=5.0, help="seconds of load (default 5)")
    demo.add_argument("--users", type=int, default=100_000, help="users to seed (default 100000)")
    demo.add_argument("--preset", default="optimized", help="naive | optimized (default optimized)")

    report = sub.add_parser(
        "report", help="execute a notebook headless (papermill) and render its HTML report"
    )
    report.add_argument(
        "notebook", help="a notebook path or a name in notebooks/, e.g. 01_quickstart"
    )
    report.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="set a parameter (value parsed as JSON when it can be), repeatable",
    )
    report.add_argument("--no-input", action="store_true", help="hide code cells in the report")

    stack = sub.add_parser(
        "stack", help="embedded PostgreSQL + Redis in the background: up | status | down"
    )
    stack.add_argument("action", choices=("up", "status", "down"))
    stack.add_argument("--users", type=int, default=100_000, help="users to seed (default 100000)")

    serve = sub.add_parser("serve", help="run stack + service in the foreground until Ctrl-C")
    serve.add_argument(
        "--preset", default="optimized", help="naive | optimized (default optimized)"
    )
    serve.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, repeatable; names: " + ", ".join(ServiceSettings.names()),
    )
    serve.add_argument(
        "--port", type=int, default=None, help="port for the service (default: a free one)"
    )
    serve.add_argument("--users", type=int, default=100_000, help="users to seed (default 100000)")

    sweep = sub.add_parser(
        "sweep", help="run a notebook once per grid point (papermill), resumable"
    )
    sweep.add_argument(
        "notebook", help="a notebook path or a name in notebooks/, e.g. 01_quickstart"
    )
    sweep.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUES"),
        help="a grid axis: a notebook parameter or a setting, comma-separated values; repeatable",
    )
    sweep.add_argument("--users", type=int, default=None, help="users to seed once for every point")

    load = sub.add_parser(
        "load", help="load a loopback URL (wrk2-style: open or closed loop, HDR latencies)"
    )
    load_cli.add_arguments(load)
    return parser  # fmt: skip


def _overrides(pairs: Sequence[str]) -> dict[str, Any]:
    from workbench.report import parse_value

    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise InputError("--set", f"must look like KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = parse_value(value)
    return out


def _check_notebook_parameters(notebook: str, values: dict[str, Any]) -> None:
    """Reject unknown parameter names and bad values before the notebook starts anything."""
    import papermill

    from workbench.params import check_params
    from workbench.report import find_notebook

    known = papermill.inspect_notebook(str(find_notebook(notebook)))
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise InputError(unknown[0], f"unknown parameter; this notebook takes: {', '.join(known)}")
    checkable = set(check_params.__kwdefaults__ or {})
    check_params(**{k: v for k, v in values.items() if k in checkable})


def _cmd_demo(args: argparse.Namespace) -> int:
    return _render(
        DEMO_NOTEBOOK, {"duration": args.duration, "users": args.users, "preset": args.preset}
    )


def _cmd_report(args: argparse.Namespace) -> int:
    from workbench.report import RUN_NOTEBOOK, parse_value
    from workbench.store import Store

    values = {name: parse_value(value) for name, value in args.parameter}
    if args.notebook in Store().ids():  # a run id: its own report
        return _render(
            RUN_NOTEBOOK,
            {"run_id": args.notebook, **values},
            no_input=args.no_input,
            name=args.notebook,
        )
    return _render(args.notebook, values, no_input=args.no_input)


def _render(
    notebook: str, values: dict[str, Any], *, no_input: bool = False, name: str | None = None
) -> int:
    import papermill

    from workbench.paths import reports_dir
    from workbench.report import execute, to_html

    _check_notebook_parameters(notebook, values)
    started = time.monotonic()
    try:
        executed = execute(
            notebook, parameters=values, output=reports_dir() / f"{name}.ipynb" if name else None
        )
    except papermill.PapermillExecutionError as exc:
        print(
            f"error: the notebook failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}",
            file=sys.stderr,
        )
        print(
            f"executed notebook with the error: {exc.args[0] if exc.args else ''}", file=sys.stderr
        )
        return 1
    html = to_html(executed, no_input=no_input)
    print(f"report written in {time.monotonic() - started:.1f} s:", file=sys.stderr)
    print(html)
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from workbench.sweep import NotebookSweep, parse_grid

    sweep = NotebookSweep(args.notebook, parse_grid(args.parameter))
    sweep.points()  # checks every name and value before anything starts
    summary = sweep.run(users=args.users)
    columns = [
        c
        for c in ("point", "throughput_rps", "p50_ms", "p95_ms", "p99_ms", "errors", "bottleneck")
        if c in summary
    ]
    print(summary[columns].to_string(index=False) if len(summary) else "no finished point")
    print(f"sweep {sweep.sweep_id}: {len(summary)} finished points")
    return 0


def _cmd_stack(args: argparse.Namespace) -> int:
    from workbench.stack import Stack, read_state, stop_detached

    if args.action == "up":
        if read_state():
            print("a stack is already up; `workbench stack status` shows it", file=sys.stderr)
            return 1
        stack = Stack(users=args.users).start(detach=True)
        print(f"state saved in {stack.save_state()}")
        print(
            f"DATABASE_URL={stack.url}\nREDIS_URL={stack.redis}\nUPSTREAM_URL={stack.upstream_url}"
        )
        return 0
    if args.action == "status":
        state = read_state()
        if not state:
            print("no stack is up")
            return 1
        attached = Stack(database_url=str(state["database_url"]), redis_url=str(state["redis_url"]))
        health = attached.check()
        print(f"DATABASE_URL={state['database_url']}  (PostgreSQL {health['postgres']})")
        print(f"REDIS_URL={state['redis_url']}  (Redis {health['redis']})")
        return 0
    stopped = stop_detached()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from workbench.launcher import ServiceProcess
    from workbench.params import preset_settings
    from workbench.stack import Stack

    settings = preset_settings(args.preset, _overrides(args.overrides))
    if args.port is not None:
        from workbench._net import check_port

        check_port("--port", args.port)
    with Stack(users=args.users) as stack, ServiceProcess(settings, stack, port=args.port) as svc:
        print(f"serving {args.preset} settings at {svc.url}  (Ctrl-C to stop)", flush=True)
        print(f"service log: {svc.log}", flush=True)
        while svc.proc is not None and svc.proc.poll() is None:
            time.sleep(0.5)
        print("the service exited; see its log", file=sys.stderr)
        return 1


COMMANDS = {
    "demo": _cmd_demo,
    "report": _cmd_report,
    "stack": _cmd_stack,
    "serve": _cmd_serve,
    "sweep": _cmd_sweep,
    "load": load_cli.main,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `workbench` command."""
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return COMMANDS[args.command](args)
    except (InputError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; everything this command started is stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
