"""What a scenario reports: a table (metric, value, target, pass/fail), a JSON file and PNG plots.

``Report.check(metric, value, unit, ">=", 5000)`` adds a row judged against a target; ``Report.info`` adds a row
without one (baselines, ratios, CPU). ``Report.save()`` writes ``benchmarks/results/<scenario>.json`` with
every row, the scenario's parameters, its raw series and a description of the machine; the plot helpers write
``benchmarks/results/<scenario>-<what>.png``.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

from benchmarks.harness import RESULTS
from benchmarks.machine import machine


@dataclass
class Row:
    scenario: str
    metric: str
    value: float
    unit: str
    target: str  # e.g. ">= 5000", "" for an informational row
    ok: bool | None  # None: no target

    @property
    def verdict(self) -> str:
        return "info" if self.ok is None else "PASS" if self.ok else "FAIL"


def fmt(value: float) -> str:
    if value != value:  # NaN: not measured
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank; NaN for no samples."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return float(ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))])


class Report:
    def __init__(self, scenario: str, params: dict[str, Any]) -> None:
        self.scenario = scenario
        self.params = params
        self.rows: list[Row] = []
        self.data: dict[str, Any] = {}
        self.notes: list[str] = []
        self.plots: list[str] = []

    def check(self, metric: str, value: float, unit: str, op: str, target: float) -> Row:
        ok = value == value and (value >= target if op == ">=" else value <= target)
        row = Row(self.scenario, metric, value, unit, f"{op} {fmt(target)}", ok)
        self.rows.append(row)
        return row

    def info(self, metric: str, value: float, unit: str = "") -> Row:
        row = Row(self.scenario, metric, value, unit, "", None)
        self.rows.append(row)
        return row

    def note(self, text: str) -> None:
        self.notes.append(text)

    @property
    def passed(self) -> bool:
        return all(row.ok is not False for row in self.rows)

    def save(self) -> Path:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"{self.scenario}.json"
        doc = {"scenario": self.scenario, "machine": machine(), "params": self.params,
               "rows": [asdict(row) | {"verdict": row.verdict} for row in self.rows], "notes": self.notes,
               "plots": self.plots, "data": self.data}
        path.write_text(json.dumps(doc, indent=1, default=float))
        return path


def table(rows: Sequence[Row], title: str = "") -> str:
    """A plain-text table of rows (also valid Markdown)."""
    lines = [f"## {title}", ""] if title else []
    lines.append("| scenario | metric | value | unit | target | result |")
    lines.append("|---|---|---:|---|---|---|")
    for row in rows:
        lines.append(f"| {row.scenario} | {row.metric} | {fmt(row.value)} | {row.unit} | {row.target or '-'} | "
                     f"{row.verdict} |")
    return "\n".join(lines)


def latency_summary(samples_ns: Sequence[int]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max in milliseconds."""
    ms = [s / 1e6 for s in samples_ns]
    return {"count": len(ms), "p50": percentile(ms, 50), "p90": percentile(ms, 90), "p99": percentile(ms, 99),
            "p999": percentile(ms, 99.9), "max": max(ms) if ms else float("nan"),
            "mean": statistics.fmean(ms) if ms else float("nan")}


def _pyplot() -> Any:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_cdf(report: Report, what: str, title: str, series: dict[str, Sequence[int]]) -> None:
    """Latency distribution: for each series of ns samples, the fraction of requests at or below x ms."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, samples in series.items():
        if samples:
            ordered = sorted(s / 1e6 for s in samples)
            ax.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=label)
    ax.set_xscale("log")
    ax.set_xlabel("latency, ms (log)")
    ax.set_ylabel("fraction of messages")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    _save(report, fig, what)


def plot_xy(report: Report, what: str, title: str, xlabel: str, ylabel: str,
            series: dict[str, tuple[Sequence[float], Sequence[float]]], diagonal: bool = False) -> None:
    """Lines of (x, y) points, e.g. RSS against connections or achieved against offered load."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", label=label)
    if diagonal:
        top = max((max(xs) for xs, _ in series.values() if xs), default=1)
        ax.plot([0, top], [0, top], linestyle=":", color="grey", label="offered = achieved")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    _save(report, fig, what)


def _save(report: Report, fig: Any, what: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"{report.scenario}-{what}.png"
    fig.tight_layout()
    fig.savefig(RESULTS / name, dpi=90)
    _pyplot().close(fig)
    report.plots.append(name)


def plot_bars(report: Report, what: str, title: str, xlabel: str, bars: dict[str, float], log: bool = True) -> None:
    """Horizontal bars, e.g. operations per second of each micro-benchmark (``log``: a log scale)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(bars) + 1.2))
    labels = list(bars)
    ax.barh(labels, [bars[label] for label in labels])
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(True, axis="x", which="both", alpha=0.3)
    _save(report, fig, what)
