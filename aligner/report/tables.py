"""Result tables: the study's summary and change-vs-baseline tables, with paired bootstrap intervals.

``collect_results(results_dir)`` reads every ``metrics_<run>.json`` per benchmark folder; ``compare`` gives,
per run, the absolute change and the relative change ``(run - baseline) / baseline * 100`` (sign as is, as
the study computes it), a verdict from the metric's declared direction (``aligner.eval.metrics.registry``:
a hallucination rate should go down), and, where the per-sample files exist, a paired bootstrap 95%
interval of the change (questions matched across runs, seeded; ``aligner.report.bootstrap``).  ``render``
prints it all as Markdown, CSV or LaTeX.  Only declared metrics are tabulated; other numbers in a metrics
file are named in a note.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.io import DataError, read_json
from aligner.core.paths import RESULT_FILES, tag_from_file
from aligner.eval.metrics.registry import NOT_RESULTS, declared, display_name, metric_kind
from aligner.report.bootstrap import BootstrapCI, _stable_seed, bootstrap_ci, paired_values
from aligner.report.degenerate import KEY as DEGENERATE_KEY
from aligner.report.degenerate import run_notes, scored_from_answers

logger = logging.getLogger(__name__)

STUDY_BENCHMARK_ORDER = ("Halueval", "HaluevalLLM", "TruthfulQA")


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------

@dataclass
class RunMetrics:
    run: str
    path: Path
    values: dict[str, float]          # declared metrics and counts, flattened ("gen.mc1" for nested dicts)
    info: dict[str, str]              # model, lora path, method ...
    undeclared: list[str] = field(default_factory=list)  # other numbers in the file (not tabulated)
    degenerate: list[str] = field(default_factory=list)  # notes on degenerate answers (aligner.report.degenerate)


@dataclass
class Benchmark:
    name: str
    folder: Path
    runs: dict[str, RunMetrics]

    def metric_names(self, order: Sequence[str] | None = None) -> list[str]:
        names: list[str] = []
        for run in (order or list(self.runs)):
            if run in self.runs:
                for k in self.runs[run].values:
                    if k not in names:
                        names.append(k)
        return names


def _flatten(obj: dict, prefix: str = "") -> tuple[dict[str, float], dict[str, str], list[str]]:
    values: dict[str, float] = {}
    info: dict[str, str] = {}
    undeclared: list[str] = []
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if str(k) in NOT_RESULTS or k == DEGENERATE_KEY:
            continue
        if isinstance(v, dict):
            sub_v, sub_i, sub_u = _flatten(v, key + ".")
            values.update(sub_v)
            info.update(sub_i)
            undeclared += sub_u
        elif isinstance(v, bool) or v is None:
            info[key] = str(v)
        elif isinstance(v, (int, float)):
            if declared(key) is None:
                undeclared.append(key)
            elif math.isfinite(float(v)):
                values[key] = v
        elif isinstance(v, str):
            info[key] = v
    return values, info, undeclared


def read_metrics_file(path: str | os.PathLike) -> RunMetrics:
    path = Path(path)
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise DataError(path, "expected a JSON object of metrics")
    values, info, undeclared = _flatten(obj)
    run = tag_from_file(path, "metrics")
    return RunMetrics(run=run, path=path, values=values, info=info, undeclared=undeclared,
                      degenerate=run_notes(obj, path.parent, run))


def collect_results(results_dir: str | os.PathLike) -> list[Benchmark]:
    """One ``Benchmark`` per folder holding ``metrics_*.json`` (the folder itself counts too), named by its path
    below ``results_dir`` (a benchmark of several parts: ``HaluEvalDetection/qa``)."""
    root = Path(results_dir)
    if not root.is_dir():
        raise DataError(root, "results folder not found")
    folders = [root] + sorted(p for p in root.rglob("*") if p.is_dir())
    benches = []
    for folder in folders:
        files = sorted(folder.glob(RESULT_FILES["metrics"].format(tag="*")))
        if not files:
            continue
        runs = {}
        for f in files:
            rm = read_metrics_file(f)
            runs[rm.run] = rm
        name = folder.name if folder == root else folder.relative_to(root).as_posix()
        benches.append(Benchmark(name=name, folder=folder, runs=runs))
    rank = {n: i for i, n in enumerate(STUDY_BENCHMARK_ORDER)}
    benches.sort(key=lambda b: (rank.get(b.name, len(rank)), b.name))
    return benches


def run_order(bench: Benchmark, baseline: str, runs: Sequence[str] | None) -> list[str]:
    """The baseline first, then the requested runs (in the given order) or all others sorted."""
    others = [r for r in (runs or sorted(bench.runs)) if r != baseline and r in bench.runs]
    return ([baseline] if baseline in bench.runs else []) + others


# ---------------------------------------------------------------------------------------------
# comparisons
# ---------------------------------------------------------------------------------------------

@dataclass
class Change:
    benchmark: str
    run: str
    baseline: str
    metric: str
    base_value: float
    run_value: float
    direction: str                    # lower | higher
    ci: BootstrapCI | None = None

    @property
    def abs_change(self) -> float:
        return self.run_value - self.base_value

    @property
    def rel_change(self) -> float | None:
        """(run - baseline) / baseline * 100, sign as is (the study's definition); None when baseline is 0."""
        if self.base_value == 0:
            return None
        return (self.run_value - self.base_value) / self.base_value * 100.0

    @property
    def verdict(self) -> str:
        """``improved`` / ``regressed`` by the metric's direction; ``no clear change`` when the change's 95% interval
        holds 0 (a point estimate on the wrong side of an interval that includes 0 is no verdict); ``unchanged``
        when the values are equal.  Without an interval (no per-sample files) the sign of the change decides."""
        return change_verdict(self.abs_change, self.direction, self.ci)


NO_CLEAR_CHANGE = "no clear change"


def change_verdict(change: float, direction: str, ci: BootstrapCI | tuple[float, float] | None = None,
                   words: tuple[str, str] = ("improved", "regressed")) -> str:
    """The one verdict rule of every report (tables, scoreboard, figures, the world's report): see
    ``Change.verdict``.  ``ci``: a bootstrap result or its (low, high); ``words``: what a better and a worse change
    are called (the world's ablations name the better model)."""
    if change == 0:
        return "unchanged"
    low, high = (ci.low, ci.high) if isinstance(ci, BootstrapCI) else (ci if ci is not None else (change, change))
    if low <= 0 <= high:
        return NO_CLEAR_CHANGE
    better = change < 0 if direction == "lower" else change > 0
    return words[0] if better else words[1]


@dataclass
class Report:
    benchmarks: list[Benchmark]
    baseline: str
    runs: dict[str, list[str]]                       # benchmark -> run order (baseline first)
    changes: dict[str, dict[str, list[Change]]]      # benchmark -> run -> changes
    notes: list[str] = field(default_factory=list)


def compare(benchmarks: list[Benchmark], baseline: str = "baseline", runs: Sequence[str] | None = None,
            n_boot: int = 1000, seed: int = 0) -> Report:
    report = Report(benchmarks=benchmarks, baseline=baseline, runs={}, changes={})
    for bench in benchmarks:
        order = run_order(bench, baseline, runs)
        report.runs[bench.name] = order
        report.changes[bench.name] = {}
        undeclared = sorted({k for r in order for k in bench.runs[r].undeclared})
        if undeclared:
            report.notes.append(f"{bench.name}: not declared in aligner.eval.metrics.registry, so not tabulated: "
                                + ", ".join(undeclared))
        if baseline not in bench.runs:
            report.notes.append(f"{bench.name}: no metrics_{baseline}.json, so no changes against a baseline")
            continue
        base = bench.runs[baseline]
        cache: dict = {}
        for run in order[1:]:
            cur = bench.runs[run]
            changes = []
            for metric in bench.metric_names([baseline, run]):
                kind = metric_kind(metric)
                if kind == "count" or metric not in base.values or metric not in cur.values:
                    continue
                ch = Change(bench.name, run, baseline, metric, float(base.values[metric]),
                            float(cur.values[metric]), kind)
                if n_boot > 0:
                    ch.ci = _change_ci(bench, metric, baseline, run, ch, n_boot, seed, cache, report.notes)
                changes.append(ch)
            report.changes[bench.name][run] = changes
    return report


def _change_ci(bench: Benchmark, metric: str, baseline: str, run: str, ch: Change, n_boot: int, seed: int,
               cache: dict, notes: list[str]) -> BootstrapCI | None:
    paired = paired_values(bench, metric, baseline, run, cache)
    if paired is None:
        return None
    xb, xr, files = paired
    consistent = abs(float(xb.mean()) - ch.base_value) <= 1e-6 and abs(float(xr.mean()) - ch.run_value) <= 1e-6
    if not consistent:
        notes.append(f"{bench.name} {run} {metric}: the per-sample means over {len(xb)} matched pairs "
                     f"({xb.mean():.6f}, {xr.mean():.6f}) differ from the metric files "
                     f"({ch.base_value:.6f}, {ch.run_value:.6f}); interval marked with †")
    lo, hi, rlo, rhi = bootstrap_ci(xb, xr, n_boot=n_boot, seed=_stable_seed(str(seed), bench.name, run, metric))
    return BootstrapCI(lo, hi, rlo, rhi, len(xb), n_boot, files, consistent)


# ---------------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------------

def _no_negative_zero(text: str) -> str:
    """"-0.00000" and "+0.00000" (a value that rounds to zero) print as "0.00000": a sign there says nothing."""
    digits = text.lstrip("+-").rstrip("%")
    return text.lstrip("+-") if digits.replace("0", "").replace(".", "") == "" else text


def fmt_value(v: float) -> str:
    if isinstance(v, int):
        return f"{v}"
    return _no_negative_zero(f"{v:.5f}")


def fmt_abs(d: float) -> str:
    return _no_negative_zero(f"{d:+.5f}")


def fmt_rel(r: float | None) -> str:
    return "n/a" if r is None else _no_negative_zero(f"{r:+.2f}%")


def fmt_interval(low: float, high: float, fmt=fmt_abs) -> str:
    return f"[{fmt(low)}, {fmt(high)}]"


def _direction_tag(kind: str) -> str:
    return {"lower": " (lower is better)", "higher": ""}.get(kind, "")


def _ci_cells(ci: BootstrapCI | None) -> tuple[str, str]:
    if ci is None:
        return "", ""
    mark = " *" if ci.excludes_zero else ""
    dagger = "" if ci.consistent else " †"
    rel = "n/a" if ci.rel_low is None else fmt_interval(ci.rel_low, ci.rel_high, fmt_rel)
    return f"{fmt_interval(ci.low, ci.high)}{mark}{dagger}", rel


DEGENERATE_MARK = " ⚠"
DEGENERATE_ROW = "⚠ Degenerate answers"


def degenerate_mark(rm: RunMetrics, metric: str) -> str:
    """" ⚠" beside a number scored from degenerate answers (the note is in the table's ⚠ row)."""
    return DEGENERATE_MARK if rm.degenerate and scored_from_answers(metric) else ""


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    level: int = 3


def report_tables(report: Report) -> list[tuple[str, list[Table]]]:
    """Per benchmark: the summary table, then one change table per run."""
    out = []
    for bench in report.benchmarks:
        order = report.runs[bench.name]
        tables = []
        header = ["Metric", *order]
        rows = []
        for metric in bench.metric_names(order):
            row = [display_name(metric) + _direction_tag(metric_kind(metric))]
            for run in order:
                v = bench.runs[run].values.get(metric)
                row.append("" if v is None else fmt_value(v) + degenerate_mark(bench.runs[run], metric))
            rows.append(row)
        if any(bench.runs[run].degenerate for run in order):
            rows.append([DEGENERATE_ROW] + ["; ".join(bench.runs[run].degenerate) for run in order])
        tables.append(Table("Summary", header, rows))
        for run, changes in report.changes[bench.name].items():
            has_ci = any(c.ci is not None for c in changes)
            head = ["Metric", "Absolute Change", "Relative Change", "Verdict"]
            if has_ci:
                head += ["95% CI (abs)", "95% CI (rel)", "Pairs"]
            rows = []
            for c in changes:
                row = [display_name(c.metric) + _direction_tag(c.direction), fmt_abs(c.abs_change),
                       fmt_rel(c.rel_change), c.verdict]
                if has_ci:
                    a, r = _ci_cells(c.ci)
                    row += [a, r, str(c.ci.n_pairs) if c.ci else ""]
                rows.append(row)
            tables.append(Table(f"{run} vs {report.baseline}", head, rows))
        out.append((bench.name, tables))
    return out


def _md_table(t: Table) -> str:
    lines = [f"{'#' * t.level} {t.title}", "", "| " + " | ".join(t.header) + " |",
             "| " + " | ".join(["---"] + ["---:"] * (len(t.header) - 1)) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in t.rows]
    return "\n".join(lines)


_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}", "†": r"$\dagger$"}


def latex_escape(s: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in s)


def _latex_table(bench: str, t: Table) -> str:
    cols = "l" + "r" * (len(t.header) - 1)
    lines = [r"\begin{table}[ht]", r"\centering", rf"\caption{{{latex_escape(bench)}: {latex_escape(t.title)}}}",
             rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
             " & ".join(latex_escape(h) for h in t.header) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(c) for c in r) + r" \\" for r in t.rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


def _csv_rows(report: Report) -> list[dict]:
    rows = []
    for bench in report.benchmarks:
        for run in report.runs[bench.name]:
            for metric, v in bench.runs[run].values.items():
                rm = bench.runs[run]
                rows.append({"benchmark": bench.name, "table": "summary", "run": run, "metric": metric,
                             "kind": metric_kind(metric), "value": v,
                             "degenerate": "; ".join(rm.degenerate) if degenerate_mark(rm, metric) else ""})
        for run, changes in report.changes[bench.name].items():
            for c in changes:
                row = {"benchmark": bench.name, "table": "change", "run": run, "baseline": c.baseline,
                       "metric": c.metric, "kind": c.direction, "value": c.run_value, "baseline_value": c.base_value,
                       "abs_change": c.abs_change, "rel_change_pct": c.rel_change, "verdict": c.verdict}
                if c.ci is not None:
                    row.update({"ci_low": c.ci.low, "ci_high": c.ci.high, "rel_ci_low": c.ci.rel_low,
                                "rel_ci_high": c.ci.rel_high, "ci_excludes_zero": c.ci.excludes_zero,
                                "n_pairs": c.ci.n_pairs, "n_boot": c.ci.n_boot})
                rows.append(row)
    return rows


CSV_COLUMNS = ["benchmark", "table", "run", "baseline", "metric", "kind", "value", "baseline_value", "abs_change",
               "rel_change_pct", "verdict", "ci_low", "ci_high", "rel_ci_low", "rel_ci_high", "ci_excludes_zero",
               "n_pairs", "n_boot", "degenerate"]


def render(report: Report, fmt: str = "md") -> str:
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in _csv_rows(report):
            writer.writerow(row)
        return buf.getvalue()
    parts = []
    for bench, tables in report_tables(report):
        if fmt == "latex":
            parts.append(f"% {bench}")
            parts.extend(_latex_table(bench, t) for t in tables)
        elif fmt == "md":
            parts.append(f"## {bench}")
            parts.extend(_md_table(t) for t in tables)
        else:
            raise ValueError(f"unknown format {fmt!r}; use md, csv or latex")
    legend = ("Relative change = (run - baseline) / baseline x 100. Verdict follows the metric's direction "
              "(hallucination rate: lower is better), and is \"no clear change\" when the 95% interval includes "
              "zero. 95% CI: paired bootstrap over the per-sample files, questions matched across runs; * = the "
              "interval excludes zero.")
    if fmt == "md":
        parts.append(legend)
        parts.extend(f"Note: {n}" for n in report.notes)
    else:
        parts.append("% " + legend)
        parts.extend(f"% Note: {n}" for n in report.notes)
    return "\n\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------------


