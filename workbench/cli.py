"""The `workbench` command: demo, report, sweep, stack, serve, load, the studies, init and lab."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from service.settings import ServiceSettings, SettingsError
from workbench._errors import InputError, StackError, allowed, positive_float, positive_int
from workbench.load import _cli as load_cli
from workbench.load._load import STUDY_CONNECTIONS, Load
from workbench.load._scenario import DISTRIBUTIONS
from workbench.params import PRESETS

DEMO_NOTEBOOK = "01_quickstart"
# The ladder's traffic by default: the account's conditions (85% of requests on 0.1% of ids).
# The ladder's default conditions are the account's: its hot keys and its richer responses.
LADDER_IDS = "seed"
LADDER_PATH = "/users/{id}/full"


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
    _settings_arguments(serve)
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
    sweep.add_argument(
        "--cluster",
        default=None,
        help="Dask scheduler address (tcp://host:8786): each point on a worker with bench=1",
    )

    load = sub.add_parser(
        "load", help="load a loopback URL (wrk2-style: open or closed loop, HDR latencies)"
    )
    load_cli.add_arguments(load)

    ladder = sub.add_parser(
        "ladder",
        help="climb the optimization ladder: capacity per step with 95%% CIs, ratios, mechanisms",
        description="Each ladder step (naive, +pool, ...) measured --repeats times in interleaved "
        "rounds: a run at --fixed-rate (P95, anatomy, CPU per request) and a capacity search "
        "(open-loop steps, then bisection to within --tolerance). Prints the table and, with "
        "--json, writes one object per step. Attaches to DATABASE_URL / REDIS_URL when set.",
    )
    _search_arguments(ladder, ids=LADDER_IDS, path=LADDER_PATH)
    ladder.add_argument(
        "--repeats", type=int, default=3, help="measurements of each step, interleaved (default 3)"
    )
    ladder.add_argument(
        "--steps",
        default="",
        help="comma-separated subset of the steps, in ladder order (default all)",
    )
    ladder.add_argument(
        "--fixed-rate",
        type=float,
        default=300.0,
        help="req/s of the P95 / anatomy run (default 300)",
    )

    capacity = sub.add_parser(
        "capacity",
        help="the highest offered rate holding an SLO, its interval, bottleneck and anatomy",
        description="Open-loop steps (the rate doubles) until the SLO breaks, then bisection "
        "until the bracket [held, broke) is within --tolerance: that bracket is the interval "
        "(or, with --repeats N > 1, a bootstrap 95%% CI of the median of N searches). Attaches "
        "to DATABASE_URL / REDIS_URL when set.",
    )
    _search_arguments(capacity, ids="uniform", path="/users/{id}")
    _settings_arguments(capacity)
    capacity.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="searches to run; > 1 gives a bootstrap CI (default 1)",
    )
    _study_commands(sub)
    _folder_commands(sub)
    return parser  # fmt: skip


def _folder_commands(sub: Any) -> None:
    """`init` and `lab`: a working folder of notebooks and data, and JupyterLab on it."""
    init = sub.add_parser(
        "init",
        help="copy the notebooks into a working folder (DIR/notebooks, with DIR/data beside them)",
        description="Copies the notebooks this installation ships into DIR/notebooks and makes "
        "DIR/data (runs, reports). From DIR, demo, report, sweep and lab use them. Notebooks "
        "already there are kept (your edits) unless --force. Exits 0, or 2 on a bad DIR.",
    )
    init.add_argument("dir", nargs="?", default=".", metavar="DIR", help="default: this folder")
    init.add_argument(
        "--force", action="store_true", help="overwrite notebooks already in DIR/notebooks"
    )
    lab = sub.add_parser(
        "lab",
        help="JupyterLab on the notebooks, with the workbench's kernel (what `make lab` does)",
        description="Starts JupyterLab on the project's notebooks/ (this checkout's, or the "
        "working folder's that `workbench init` made) with the kernel 'Python (FastAPI "
        "workbench)'; runs go to the project's data/. Runs until Ctrl-C.",
    )
    lab.add_argument("--port", type=int, default=None, help="port (default: Jupyter's, 8888)")
    lab.add_argument("--no-browser", action="store_true", help="do not open a browser")


def _study_commands(sub: Any) -> None:
    """`tune` and `compare`: the studies of the autotune and compare notebooks, as commands."""
    tune = sub.add_parser(
        "tune",
        help="search settings (Optuna) for the highest throughput that holds an SLO",
        description="A TPE study over the settings in --space, on top of --preset/--set: each "
        "trial is a closed-loop run; a run that breaks the SLO scores 0. The best settings are "
        "measured again. Exits 0 when a trial held the SLO, 1 when none did, 2 on bad input. "
        "Attaches to DATABASE_URL / REDIS_URL when set.",
    )
    tune.add_argument("--trials", type=int, default=12, help="trials, one run each (default 12)")
    tune.add_argument(
        "--connections", type=int, default=32, help="closed-loop connections (default 32)"
    )
    tune.add_argument(
        "--space",
        default="",
        metavar="JSON",
        help='the search space as JSON, e.g. \'{"pool_size": ["int", 2, 40]}\' '
        "(default: pool, overflow, workers, cache, batcher, serializer)",
    )
    tune.add_argument("--seed", type=int, default=0, help="the sampler's seed (default 0)")
    _slo_argument(tune)
    _run_arguments(tune, path="/users/{id}", duration=3.0)
    _settings_arguments(tune)

    compare = sub.add_parser(
        "compare",
        help="two runs side by side: throughput and percentiles with bootstrap 95%% CIs",
        description="RUN_A and RUN_B are stored run ids (data/runs) or presets "
        f"({' | '.join(PRESETS)}) measured now, closed loop. Prints b against a per metric with "
        "the 95%% CI of the difference, or 'no significant difference'. Exits 0, or 2 on bad "
        "input. Attaches to DATABASE_URL / REDIS_URL when set.",
    )
    compare.add_argument("run_a", metavar="RUN_A", help="a run id, or a preset measured now")
    compare.add_argument("run_b", metavar="RUN_B", help="a run id, or a preset measured now")
    compare.add_argument(
        "--connections", type=int, default=32, help="closed-loop connections (default 32)"
    )
    _run_arguments(compare, path="/users/{id}", duration=5.0)


def _settings_arguments(parser: argparse.ArgumentParser) -> None:
    """--preset and --set: the service's settings, shared by `serve`, `capacity` and `tune`."""
    parser.add_argument(
        "--preset", default="optimized", help="naive | optimized (default optimized)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, repeatable; names: " + ", ".join(ServiceSettings.names()),
    )


def _search_arguments(parser: argparse.ArgumentParser, *, ids: str, path: str) -> None:
    """The options of a capacity search, shared by `ladder` and `capacity`."""
    parser.add_argument(
        "--ids",
        default=ids,
        help=f"id distribution of {{id}}: {' | '.join(DISTRIBUTIONS)} (default {ids})",
    )
    parser.add_argument("--zipf-s", type=float, default=1.1, help="zipf exponent (with --ids zipf)")
    _slo_argument(parser)
    _run_arguments(parser, path=path, duration=3.0)
    parser.add_argument(
        "--start", type=float, default=250.0, help="first offered rate (default 250)"
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=STUDY_CONNECTIONS,
        help=f"the open loop's cap on requests in flight (default {STUDY_CONNECTIONS})",
    )
    parser.add_argument(
        "--limit", type=float, default=50_000.0, help="never offer more (default 50000)"
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.05,
        help="bisect until (broke - held) / held <= this (default 0.05)",
    )


def _slo_argument(parser: argparse.ArgumentParser) -> None:
    """--slo: what a run must hold, shared by the searches and `tune`."""
    parser.add_argument(
        "--slo",
        default="p95=50ms,errors=1%",
        help="the SLO a run must hold (default p95=50ms,errors=1%%)",
    )


def _run_arguments(parser: argparse.ArgumentParser, *, path: str, duration: float) -> None:
    """The options of every measured run (duration, warm-up, endpoint, data) and --json."""
    parser.add_argument(
        "--duration",
        type=float,
        default=duration,
        help=f"measured seconds per run (default {duration:g})",
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="seconds before each run (default 1)"
    )
    parser.add_argument("--path", default=path, help=f"the endpoint (default {path})")
    parser.add_argument("--users", type=int, default=100_000, help="users to seed (default 100000)")
    parser.add_argument(
        "--json", type=Path, default=None, metavar="PATH", help="also write the result here"
    )


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


def _search_options(args: argparse.Namespace) -> dict[str, Any]:
    """The checked options of a capacity search (InputError names the first bad one)."""
    from workbench.load import SLO

    if args.ids not in DISTRIBUTIONS:
        raise InputError("ids", f"must be one of {allowed(DISTRIBUTIONS)}, got {args.ids!r}")
    positive_int("repeats", args.repeats)
    return {
        "slo": SLO.parse(args.slo),
        "load": _run_load(args, ids=args.ids, zipf_s=args.zipf_s, connections=args.connections),
        "start": positive_float("start", args.start),
        "limit": positive_float("limit", args.limit),
        "tolerance": positive_float("tolerance", args.tolerance),
    }


def _run_load(args: argparse.Namespace, **shape: Any) -> Load:
    """The checked Load of `_run_arguments`, with shape (Load's fields) over it; users and --json
    checked too."""
    positive_int("users", args.users)
    if args.json is not None and not args.json.parent.is_dir():
        raise InputError("json", f"no folder {args.json.parent} to write {args.json.name} in")
    return Load(path=args.path, duration=args.duration, warmup=args.warmup, **shape)


def _jsonable(value: Any) -> Any:
    """value with NaN as null and numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_json(path: Path | None, payload: dict[str, Any]) -> None:
    if path is None:
        return
    path.write_text(json.dumps(_jsonable(payload), indent=2) + "\n")
    print(f"JSON written to {path}", flush=True)


def _cmd_ladder(args: argparse.Namespace) -> int:
    from workbench import climb as ladder
    from workbench.stack import Stack

    options = _search_options(args)
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    ladder.choose_steps(steps)
    fixed_rate = positive_float("fixed_rate", args.fixed_rate)
    with Stack(users=args.users) as stack:
        measured = ladder.measure(
            stack, fixed_rate=fixed_rate, repeats=args.repeats, steps=steps, **options
        )
    table = ladder.table(measured)
    print()
    print(ladder.shown(table).to_string(index=False))
    print()
    for sentence in table["mechanism"]:
        print(sentence)
    _write_json(
        args.json,
        {
            "slo": args.slo,
            "ids": args.ids,
            "repeats": args.repeats,
            "duration": options["load"].duration,
            "connections": options["load"].connections,
            "fixed_rate": fixed_rate,
            "steps": ladder.records(table),
        },
    )
    return 0


def _cmd_capacity(args: argparse.Namespace) -> int:
    from workbench.params import preset_settings

    options = _search_options(args)
    settings = preset_settings(args.preset, _overrides(args.overrides))
    # imported once the input holds: a typo costs no pandas, SQLAlchemy nor plotly import
    from workbench import climb as ladder
    from workbench.capacity import estimate, search
    from workbench.experiment import Session
    from workbench.stack import Stack

    found = []
    with Stack(users=args.users) as stack, Session() as session:
        for round_ in range(1, args.repeats + 1):
            if args.repeats > 1:
                print(f"--- search {round_}/{args.repeats}", flush=True)
            found.append(search(stack, settings=settings, session=session, **options))
    rate, low, high = estimate(found)
    middle = sorted(found, key=lambda f: f.max_rate or 0.0)[len(found) // 2]
    held = middle.held
    print()
    print(middle.points.to_string(index=False))
    print()
    print(middle.sentence())
    shown_high = "never broke" if high is None else f"{high:,.0f}"
    print(f"capacity {rate:,.0f} req/s, interval [{low:,.0f}, {shown_high}]")
    anatomy = ladder.anatomy_ms(held) if held is not None else {}
    if anatomy:
        print("where a request's time goes at capacity (mean ms): "
              + ", ".join(f"{k} {v:.2f}" for k, v in anatomy.items()))  # fmt: skip
    _write_json(
        args.json,
        {
            "preset": args.preset,
            "settings": settings.to_dict(),
            "slo": args.slo,
            "ids": args.ids,
            "repeats": args.repeats,
            "connections": options["load"].connections,
            "capacity_rps": rate,
            "capacity_ci": [low, high],
            "capacity_repeats": [f.max_rate or 0.0 for f in found],
            "broke_at": middle.broke_at,
            "broken": list(middle.broken),
            "bottleneck": middle.bottleneck.get("kind", ""),
            "bottleneck_sentence": middle.bottleneck.get("sentence", ""),
            "anatomy_ms": anatomy,
            "cpu_ms_per_request": ladder.cpu_ms_per_request(held) if held is not None else {},
            "points": middle.points.to_dict("records"),
        },
    )
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from workbench.load import SLO
    from workbench.params import preset_settings
    from workbench.report import parse_value
    from workbench.stack import Stack
    from workbench.tune import DEFAULT_SPACE, check_space, tune

    load = _run_load(args, connections=args.connections)
    trials = positive_int("trials", args.trials)
    slo = SLO.parse(args.slo)
    space = parse_value(args.space) if args.space else DEFAULT_SPACE
    if not isinstance(space, dict):
        raise InputError("space", f"must be a JSON object of setting: range, got {args.space!r}")
    space = check_space(space)
    base = preset_settings(args.preset, _overrides(args.overrides))
    with Stack(users=args.users) as stack:
        found = tune(
            stack, base=base, space=space, trials=trials, slo=slo, seed=args.seed, load=load,
        )  # fmt: skip
    print()
    print(found.sentence())
    held = found.best_value > 0
    if not held:
        print(f"no trial held the SLO ({args.slo})")
    again = found.confirm.summary() if found.confirm is not None else {}
    _write_json(
        args.json,
        {
            "preset": args.preset,
            "slo": args.slo,
            "space": {name: list(spec) for name, spec in space.items()},
            "held": held,
            "best_rps": found.best_value,
            "best_settings": found.best.to_dict(),
            "best_diff": found.best.diff(base),
            "confirm_run_id": found.confirm.run_id if found.confirm is not None else None,
            "confirm_rps": again.get("throughput_rps"),
            "trials": [
                {"number": t.number, "value": t.value, "params": t.params, **t.user_attrs}
                for t in found.study.trials
            ],
        },
    )
    return 0 if held else 1


def _cmd_compare(args: argparse.Namespace) -> int:
    from workbench.compare import compare, verdict
    from workbench.experiment import Experiment, Session
    from workbench.params import preset_settings
    from workbench.stack import Stack
    from workbench.store import Store

    load = _run_load(args, connections=args.connections)
    names = {"run_a": args.run_a, "run_b": args.run_b}
    store = Store()
    for name, value in names.items():
        if value not in PRESETS and value not in store.ids():
            latest = ", ".join(store.ids()[-3:]) or "none yet"
            raise InputError(
                name,
                f"no run {value!r} in {store.root}, nor a preset ({allowed(PRESETS)}); "
                f"latest runs: {latest}",
            )
    runs = {name: store.load(value) for name, value in names.items() if value not in PRESETS}
    measure = {name: value for name, value in names.items() if value in PRESETS}
    if measure:
        with Stack(users=args.users) as stack, Session() as session:
            for name, preset in measure.items():
                print(f"--- measuring {preset} ({name})", flush=True)
                runs[name] = Experiment(preset_settings(preset), load, name=preset).run(
                    stack, session=session
                )
    a, b = runs["run_a"], runs["run_b"]
    table = compare(a, b)
    print()
    print(f"{b.run_id} against {a.run_id}:")
    print(table.to_string(index=False))
    print()
    print(verdict(table))
    _write_json(
        args.json,
        {
            "run_a": a.run_id,
            "run_b": b.run_id,
            "metrics": table.to_dict("records"),
            "verdict": verdict(table),
        },
    )
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    import shutil

    from workbench.paths import shipped_notebooks

    target = Path(args.dir).resolve()
    if target.exists() and not target.is_dir():
        raise InputError("dir", f"{target} is a file; give a folder (made when missing)")
    notebooks = target / "notebooks"
    for folder in (notebooks, target / "data"):
        if folder.exists() and not folder.is_dir():
            raise InputError("dir", f"{folder} is a file; init needs it as a folder")
    notebooks.mkdir(parents=True, exist_ok=True)
    (target / "data").mkdir(exist_ok=True)
    copied, kept = [], []
    for source in sorted(shipped_notebooks().glob("*.ipynb")):
        destination = notebooks / source.name
        if destination.exists() and (not args.force or destination.samefile(source)):
            kept.append(source.stem)
            continue
        shutil.copyfile(source, destination)
        copied.append(source.stem)
    if copied:
        print(f"copied into {notebooks}: " + ", ".join(copied))
    if kept:
        print("kept as they were (--force overwrites): " + ", ".join(kept))
    print(f"runs and reports go to {target / 'data'}")
    print(f"next: cd {target} && workbench demo   (or: workbench lab)")
    return 0


def _cmd_lab(args: argparse.Namespace) -> int:
    from workbench.paths import PACKAGE, notebooks_dir, project_dir
    from workbench.report import ensure_kernel

    folder = notebooks_dir()
    if folder.is_relative_to(PACKAGE):  # the wheel's copy: edits there would be lost
        raise InputError(
            "notebooks",
            f"no notebooks/ folder in {project_dir()}; `workbench init` copies them here first",
        )
    if args.port is not None:
        from workbench._net import check_port

        check_port("--port", args.port)
    _pin_project()
    ensure_kernel()
    argv = [sys.executable, "-m", "jupyterlab", f"--notebook-dir={folder}"]
    argv += ["--allow-root"] if os.getuid() == 0 else []
    argv += [f"--port={args.port}"] if args.port is not None else []
    argv += ["--no-browser"] if args.no_browser else []
    print(f"JupyterLab on {folder}; runs go to {project_dir() / 'data'}", flush=True)
    os.execv(sys.executable, argv)  # Lab gets the signals: Ctrl-C stops its kernels cleanly


def _pin_project() -> None:
    """Kernels run in the notebooks' folder: tell them the project folder this command uses."""
    from workbench.paths import project_dir

    os.environ["WORKBENCH_HOME"] = str(project_dir())


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
    _pin_project()
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
    from workbench.sweep import NotebookSweep, SweepFailed, parse_grid, point_key

    sweep = NotebookSweep(args.notebook, parse_grid(args.parameter))
    sweep.points()  # checks every name and value before anything starts
    if args.cluster is not None:
        from workbench.load._distributed import check_cluster

        check_cluster(args.cluster)
    _pin_project()
    try:
        summary = sweep.run(users=args.users, cluster=args.cluster)
    except SweepFailed as exc:
        _print_summary(sweep.sweep_id, exc.summary)
        for failure in exc.failures:
            print(
                f"error: sweep point {point_key(failure.point)} failed in its notebook: "
                f"{failure.ename}: {failure.evalue}\n"
                f"  the executed notebook, with the error: {failure.executed}",
                file=sys.stderr,
            )
        print(
            "finished points are kept; run the same command again to retry the failed ones",
            file=sys.stderr,
        )
        return 1
    _print_summary(sweep.sweep_id, summary)
    return 0


def _print_summary(sweep_id: str, summary: Any) -> None:
    columns = [
        c
        for c in ("point", "throughput_rps", "p50_ms", "p95_ms", "p99_ms", "errors", "bottleneck")
        if c in summary
    ]
    print(summary[columns].to_string(index=False) if len(summary) else "no finished point")
    print(f"sweep {sweep_id}: {len(summary)} finished points")


def _cmd_stack(args: argparse.Namespace) -> int:
    from workbench._secrets import PASSWORD_FILE, mask_url
    from workbench.stack import Stack, read_state, stack_dir, state_alive, stop_detached

    if args.action == "up":
        state = read_state()
        if state and state_alive(state):
            print("a stack is already up; `workbench stack status` shows it", file=sys.stderr)
            return 1
        stack = Stack(users=args.users).start(detach=True)
        print(f"state saved in {stack.save_state()}")
        print(
            f"DATABASE_URL={mask_url(stack.url)}\nREDIS_URL={mask_url(stack.redis)}\n"
            f"UPSTREAM_URL={stack.upstream_url}"
        )
        print(f"password (for *** above) in {stack.root / PASSWORD_FILE}")
        return 0
    if args.action == "status":
        state = read_state()
        if not state or not state_alive(state):
            print("no stack is up")
            return 1
        attached = Stack(database_url=str(state["database_url"]), redis_url=str(state["redis_url"]))
        health = attached.check()
        print(
            f"DATABASE_URL={mask_url(str(state['database_url']))}  (PostgreSQL {health['postgres']})"
        )
        print(f"REDIS_URL={mask_url(str(state['redis_url']))}  (Redis {health['redis']})")
        print(f"password (for *** above) in {stack_dir() / PASSWORD_FILE}")
        return 0
    listed = (read_state() or {}).get("pids")
    stopped = stop_detached()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    if isinstance(listed, dict) and listed and not stopped:
        # pids are reused: one is signalled only while its start time is the recorded one
        print(
            f"state.json listed pids {sorted(listed.values())} (not the stack's servers any more, "
            "or recorded without start times by an older workbench); none was signalled"
        )
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from workbench.params import preset_settings

    settings = preset_settings(args.preset, _overrides(args.overrides))
    if args.port is not None:
        from workbench._net import check_port

        check_port("--port", args.port)
    from workbench.launcher import ServiceProcess  # once the input holds (pandas, SQLAlchemy)
    from workbench.stack import Stack

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
    "ladder": _cmd_ladder,
    "capacity": _cmd_capacity,
    "tune": _cmd_tune,
    "compare": _cmd_compare,
    "init": _cmd_init,
    "lab": _cmd_lab,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `workbench` command."""
    args = _parser().parse_args(argv)
    from workbench._process import raise_interrupt  # SIGTERM behaves like Ctrl-C

    signal.signal(signal.SIGTERM, raise_interrupt)
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
