"""The three-axis scoreboard: per adapter, hallucination, truthfulness and instruction following side by side,
each metric with its change against the base and the paired bootstrap 95% interval of that change.

The study names the trade-off ("more truthful but less reliably instructable") without measuring the third axis;
this puts the three next to each other.  The axes are lists of (benchmark folder, declared metric): direction,
display name and per-sample field come from ``aligner.eval.metrics.registry``; values, changes and intervals are
those of the ``Report`` (``aligner.report.tables.compare``), so the scoreboard and the benchmark tables cannot
disagree.  ``aligner.report.plots.plot_tradeoff`` draws its figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aligner.eval.metrics.registry import declared, display_name, metric_kind
from aligner.report.degenerate import scored_from_answers
from aligner.report.tables import (
    DEGENERATE_MARK,
    Change,
    Report,
    Table,
    _ci_cells,
    _latex_table,
    _md_table,
    fmt_abs,
    fmt_interval,
    fmt_value,
)


@dataclass(frozen=True)
class AxisMetric:
    benchmark: str          # the results folder (Halueval, HaluevalLLM, TruthfulQA, IFEval)
    metric: str             # a declared metric
    source: str             # what the row says the number comes from
    optional: bool = False  # a benchmark beyond the study's: not named as missing when it did not run


@dataclass(frozen=True)
class Axis:
    name: str
    title: str
    metrics: tuple[AxisMetric, ...]


AXES: tuple[Axis, ...] = (
    Axis("hallucination", "Hallucination", (
        AxisMetric("Halueval", "hallucination_rate", "HaluEval, similarity flow"),
        AxisMetric("HaluevalLLM", "hallucination_rate", "HaluEval, HHEM judge"),
        *(AxisMetric(f"HaluEvalDetection/{split}", "detection_accuracy", f"HaluEval detection, {split}", optional=True)
          for split in ("qa", "dialogue", "summarization")))),
    Axis("truthfulness", "Truthfulness", (
        AxisMetric("TruthfulQA", "mc2", "TruthfulQA"),
        AxisMetric("TruthfulQA", "gen_truthfulness", "TruthfulQA, judged"))),
    Axis("instruction_following", "Instruction following", (
        AxisMetric("IFEval", "prompt_level_strict_acc", "IFEval"),
        AxisMetric("IFEval", "prompt_level_loose_acc", "IFEval"))),
)
#: the trade-off figure: x = instruction following, one panel per y metric (the first of each that has data)
TRADEOFF_X = (AxisMetric("IFEval", "prompt_level_strict_acc", "IFEval"),)
TRADEOFF_Y = ((AxisMetric("TruthfulQA", "mc2", "TruthfulQA"),),
              (AxisMetric("TruthfulQA", "gen_truthfulness", "TruthfulQA, judged"),),
              (AxisMetric("HaluevalLLM", "hallucination_rate", "HaluEval, HHEM judge"),
               AxisMetric("Halueval", "hallucination_rate", "HaluEval, similarity flow")))


@dataclass
class Row:
    axis: Axis
    spec: AxisMetric
    values: dict[str, float]            # run -> value (the base included)
    changes: dict[str, Change]          # adapter run -> change against the base
    degenerate: dict[str, list[str]] = field(default_factory=dict)  # run -> notes on its answers (this metric's)

    @property
    def short_label(self) -> str:
        """The metric's display name with its direction (↓ lower is better, ↑ higher is better)."""
        return display_name(self.spec.metric) + (" ↓" if metric_kind(self.spec.metric) == "lower" else " ↑")

    @property
    def label(self) -> str:
        name = self.short_label
        first = self.spec.source.split(",")[0]
        return name if name.startswith(first) else f"{self.spec.source}: {name}"


@dataclass
class Scoreboard:
    baseline: str
    adapters: list[str]
    rows: list[Row]
    missing: list[str] = field(default_factory=list)   # benchmarks of an axis that have no metrics files

    def row(self, spec: AxisMetric) -> Row | None:
        return next((r for r in self.rows if r.spec == spec), None)


def _metric_key(values: dict[str, float], metric: str) -> str | None:
    if metric in values:
        return metric
    return next((k for k in values if declared(k) is not None and declared(k).name == metric), None)


def build_scoreboard(report: Report, axes: tuple[Axis, ...] = AXES) -> Scoreboard:
    """The scoreboard of ``report``'s runs (adapters in the report's run order, the base first)."""
    benches = {b.name: b for b in report.benchmarks}
    adapters: list[str] = []
    for name in dict.fromkeys(m.benchmark for a in axes for m in a.metrics):
        bench = benches.get(name)
        if bench is None or report.baseline not in bench.runs:
            continue
        adapters += [run for run in report.runs[name][1:] if run not in adapters]
    sb = Scoreboard(report.baseline, adapters, [])
    for axis in axes:
        for spec in axis.metrics:
            bench = benches.get(spec.benchmark)
            if bench is None:
                if spec.benchmark not in sb.missing and not spec.optional:
                    sb.missing.append(spec.benchmark)
                continue
            values = {}
            for run, rm in bench.runs.items():
                key = _metric_key(rm.values, spec.metric)
                if key is not None:
                    values[run] = float(rm.values[key])
            if not values:
                continue
            changes = {c.run: c for run_changes in report.changes.get(spec.benchmark, {}).values()
                       for c in run_changes if declared(c.metric) is not None and declared(c.metric).name == spec.metric}
            notes = {run: rm.degenerate for run, rm in bench.runs.items()
                     if rm.degenerate and scored_from_answers(spec.metric)}
            sb.rows.append(Row(axis, spec, values, changes, notes))
    return sb


def _change_cell(c: Change | None) -> str:
    if c is None:
        return ""
    ci, _ = _ci_cells(c.ci)
    return f"{fmt_abs(c.abs_change)} {ci} {c.verdict}".replace("  ", " ").strip()


def _value_cell(r: Row, run: str) -> str:
    v = r.values.get(run)
    return "" if v is None else fmt_value(v) + (DEGENERATE_MARK if r.degenerate.get(run) else "")


def scoreboard_table(sb: Scoreboard) -> Table:
    header = ["Axis", "Metric", sb.baseline]
    for run in sb.adapters:
        header += [run, f"Δ {run} [95% CI]"]
    rows = []
    for r in sb.rows:
        row = [r.axis.title, r.label, _value_cell(r, sb.baseline)]
        for run in sb.adapters:
            row += [_value_cell(r, run), _change_cell(r.changes.get(run))]
        rows.append(row)
    return Table("Scoreboard: hallucination, truthfulness, instruction following", header, rows)


SCOREBOARD_LEGEND = ("Per adapter, each axis's metrics with the change against the base: absolute change, the paired "
                     "bootstrap 95% interval of the change (questions matched across runs; * = it excludes 0) and the "
                     "verdict from the metric's direction (↓: lower is better, ↑: higher is better), \"no clear "
                     "change\" when the interval includes 0. Hallucination: "
                     "HaluEval hallucination rates; truthfulness: TruthfulQA MC2 and judged truthfulness; instruction "
                     "following: IFEval prompt-level accuracy, strict and loose (lm-evaluation-harness's checkers).")


def what_changed(sb: Scoreboard) -> list[str]:
    """One sentence per adapter: the scoreboard changes whose 95% interval excludes 0 (improved / regressed, with the
    change and its interval), and those it cannot tell from no change."""
    out = []
    for run in sb.adapters:
        groups: dict[str, list[str]] = {"improved": [], "regressed": [], "unclear": []}
        for r in sb.rows:
            c = r.changes.get(run)
            if c is None:
                continue
            if c.verdict in ("improved", "regressed") and c.ci is not None:
                groups[c.verdict].append(f"{r.label} {fmt_abs(c.abs_change)} {fmt_interval(c.ci.low, c.ci.high)}")
            else:
                groups["unclear"].append(r.label)
        parts = [f"{k}: {'; '.join(v)}" for k, v in (("improved", groups["improved"]),
                                                     ("regressed", groups["regressed"])) if v]
        if groups["unclear"]:
            parts.append("no change distinguishable from zero (95% interval includes 0, or no interval): "
                         + ", ".join(groups["unclear"]))
        out.append(f"**{run}** against {sb.baseline}: " + (". ".join(parts) if parts else "nothing compared") + ".")
    return out


def degenerate_lines(sb: Scoreboard) -> list[str]:
    """One line per benchmark and run whose answers are degenerate: what the ⚠ beside its numbers means."""
    seen: dict[tuple[str, str], str] = {}
    for r in sb.rows:
        for run in [sb.baseline, *sb.adapters]:
            for note in r.degenerate.get(run, []):
                seen.setdefault((r.spec.source, run), note)
    return [f"{source}, {run}: {note}" for (source, run), note in seen.items()]


def render_scoreboard(sb: Scoreboard, fmt: str = "md", figure: str | None = None) -> str:
    """The scoreboard section (markdown or LaTeX); empty when no axis has data."""
    if not sb.rows:
        return ""
    table = scoreboard_table(sb)
    notes = [f"{b}: no metrics files, so that axis row is missing" for b in sb.missing]
    degenerate = degenerate_lines(sb)
    if degenerate:
        notes.insert(0, "⚠ degenerate answers (the numbers marked ⚠ score them): " + "; ".join(degenerate))
    if fmt == "latex":
        return "\n\n".join(["% Scoreboard", _latex_table("Scoreboard", table), "% " + SCOREBOARD_LEGEND,
                            *(f"% Note: {n}" for n in notes)]) + "\n"
    parts = ["## Scoreboard", _md_table(table), SCOREBOARD_LEGEND, "What changed:",
             "\n".join(f"- {line}" for line in what_changed(sb)), *(f"Note: {n}" for n in notes)]
    if figure:
        parts.append(f"![trade-off: truthfulness and hallucination against instruction following]({figure})")
    return "\n\n".join(parts) + "\n"
