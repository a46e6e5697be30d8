"""``python -m benchmarks [--quick]`` runs every scenario; ``python -m benchmarks SCENARIO [--param ...]`` one.

Each scenario prints its table (metric, value, target, pass/fail) and writes ``benchmarks/results/SCENARIO.json``
and its PNG plots; a whole-suite run ends with the table of every row. Exit status: 0 when every judged row
passed, 1 when one failed or a scenario could not run, 130 after Ctrl-C (servers and workers are stopped first).
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from types import ModuleType

from benchmarks import broadcast, codec, connections, fanout, mprivate, msgget, push, serverget, tags
from benchmarks.machine import ForeignLoad, speed_probe, wait_quiet
from benchmarks.report import Report, Row, table

SCENARIOS: dict[str, ModuleType] = {module.NAME: module for module in
                                    (connections, fanout, broadcast, push, mprivate, tags, serverget, msgget, codec)}
log = logging.getLogger("benchmarks")
BUSY_WARNING = 15.0  # % of a core used by other processes during a scenario: its figures are suspect


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run of everything (< 2 minutes)")
    parser.add_argument("--only", type=lambda s: s.split(","), default=list(SCENARIOS),
                        help="whole suite: run only these scenarios (comma-separated)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="before each scenario, wait up to this long for other processes to leave the CPU idle")
    parser.add_argument("--retry-busy", type=int, default=0, metavar="N",
                        help="run a scenario again, up to N times, when other processes used the CPU meanwhile")
    commands = parser.add_subparsers(dest="scenario", metavar="SCENARIO")
    for name, module in SCENARIOS.items():
        sub = commands.add_parser(name, help=(module.__doc__ or "").split("\n")[0], description=module.__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("--quick", action="store_true", help="the smoke-run parameters (flags given win)")
        module.add_arguments(sub)
    return parser


def scenario_args(parser: argparse.ArgumentParser, name: str, argv: list[str], quick: bool) -> argparse.Namespace:
    """The scenario's parameters: its defaults, then its QUICK values (when quick), then flags given."""
    args = parser.parse_args([name, *argv])
    if quick or args.quick:
        given = {arg.lstrip("-").split("=")[0].replace("-", "_") for arg in argv if arg.startswith("--")}
        for key, value in SCENARIOS[name].QUICK.items():
            if key not in given:
                setattr(args, key, value)
    for key in ("scenario", "only", "quick", "wait_quiet", "retry_busy"):
        if hasattr(args, key):
            delattr(args, key)
    return args


def run_one(name: str, args: argparse.Namespace, wait_quiet_s: float = 0.0, retries: int = 0) -> Report | None:
    """Run one scenario (again, up to ``retries`` times, while other work disturbed it); print and save it."""
    for attempt in range(retries + 1):
        if wait_quiet_s > 0:
            idle = wait_quiet(wait_quiet_s, BUSY_WARNING)
            log.info("before %s: other processes use %.0f%% of a core", name, idle)
        speed = speed_probe()
        started = time.monotonic()
        log.info("scenario %s: %s", name, vars(args))
        foreign = ForeignLoad()
        try:
            report: Report = SCENARIOS[name].run(args)
        except KeyboardInterrupt:
            raise
        except Exception:  # noqa: BLE001 - one broken scenario must not stop the suite; it is reported
            log.error("scenario %s failed", name, exc_info=True)
            return None
        busy = foreign.percent()
        if busy <= BUSY_WARNING or attempt == retries:
            break
        log.warning("scenario %s: other work used %.0f%% of a core meanwhile, running it again", name, busy)
    report.info("machine: CPU used outside the benchmark's processes", busy, "% core")
    report.info("machine: speed probe before the run (JSON round trips)", speed, "k/s")
    if busy > BUSY_WARNING:
        report.note(f"the machine spent {busy:.0f}% of a core on other work during this scenario: its figures are "
                    "low; re-run on a quiet machine")
    path = report.save()
    print(table(report.rows, f"{name} ({time.monotonic() - started:.0f} s)"), flush=True)
    for note in report.notes:
        print(f"- note: {note}", flush=True)
    print(f"- results: {path.relative_to(path.parents[2])}, plots: {', '.join(report.plots) or '-'}\n", flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    top = parser.parse_args(argv)
    names = [top.scenario] if top.scenario else [n for n in SCENARIOS if n in top.only]
    rest = argv[argv.index(top.scenario) + 1:] if top.scenario else []
    rows: list[Row] = []
    broken: list[str] = []
    started = time.monotonic()
    try:
        for name in names:
            report = run_one(name, scenario_args(parser, name, rest, top.quick), top.wait_quiet, top.retry_busy)
            if report is None:
                broken.append(name)
            else:
                rows.extend(report.rows)
    except KeyboardInterrupt:
        log.warning("interrupted: servers and load generators stopped")
        return 130
    if len(names) > 1:
        print(table(rows, f"all scenarios ({time.monotonic() - started:.0f} s)"))
    if broken:
        print(f"scenarios that could not run: {', '.join(broken)}")
    return 0 if not broken and all(row.ok is not False for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
