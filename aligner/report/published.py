"""The reproduction report: the study's published metric files beside the reproduced ones (``make_tables.py
--published DIR``).

Per benchmark, metric and run: the published value, the reproduced value, their difference, and whether the
published value lies inside the reproduced run's bootstrap 95% interval (its per-sample values resampled); where the
published folder also holds the study's per-item files, the published run's own bootstrap interval and whether the
reproduced value lies inside it; for an adapter also the published change against the published base beside the
reproduced change and its paired bootstrap 95% interval (``aligner.report.tables.compare``), the number the study's
claims rest on.  Where a value is outside an interval, the row points at the README's "Differences from the study"
rows that can explain the gap (``DIFFERENCE_ROWS``, ``RUN_ROWS``; the README table carries an
``<a id="diff-e6"></a>`` anchor per row).  The study's per-item files hold no MC1/MC2, BLEU or ROUGE-L values
(``NO_PUBLISHED_ITEMS``), so those rows never get a published-side interval.

Runs are matched by name: the published baseline (``baseline``) with the report's baseline, any other published run
``R`` with the reproduced run named ``R`` or ending in ``_R`` (``study_dpop_best`` for ``dpop_best``), or as given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aligner.eval.metrics.registry import display_name, metric_kind
from aligner.report.bootstrap import _stable_seed, mean_ci, run_values
from aligner.report.tables import Benchmark, Change, Report, Table, _latex_table, _md_table, fmt_abs, fmt_value

#: evaluation differences from the study that move a benchmark's numbers (README "Differences from the study" row
#: ids; ``BENCHMARK/*`` = every metric of the benchmark).  Adapters trained here also carry the training rows.
#: E1/E2 (MC inputs) and the other rows ``--study_compat`` reproduces are left out: the study profiles pass it.
DIFFERENCE_ROWS: dict[str, tuple[str, ...]] = {
    "Halueval/*": ("E6", "E7", "E8", "E18"),     # decoding (sampled), fp16, two BOS, the chat date
    "Halueval/avg_bert_score": ("E6", "E16", "E18", "E23"),  # + BERTScore's NaN -> 0 rows, its tokenizer
    "HaluevalLLM/*": ("E11", "E12", "E18"),      # step 1: fp16, two BOS, the engine, the chat date
    "HaluevalLLM/avg_bert_f1": ("E11", "E16", "E18", "E23"),
    "HaluevalLLM/avg_bleu": ("E15",),            # never computed by the study
    "TruthfulQA/mc1": ("E22", "E4"),             # the hub's multiple_choice data, bf16 and the merged adapter
    "TruthfulQA/mc2": ("E22", "E4"),
    "TruthfulQA/gen_truthfulness": ("E3", "E4", "E5"),  # the judge's continuation, numerics, batched generation
    "TruthfulQA/gen_avg_prob": ("E3", "E4", "E5"),
}
#: published runs whose adapter itself is in question: the study's "best" columns name two different folders
RUN_ROWS: dict[str, tuple[str, ...]] = {"dpop_best": ("E24",)}
#: metrics the study's per-item files carry no values for (no published-side interval)
NO_PUBLISHED_ITEMS = ("MC1", "MC2", "BLEU", "ROUGE-L")
PUBLISHED_BASELINE = "baseline"


def difference_rows(benchmark: str, metric: str, published_run: str = "") -> tuple[str, ...]:
    leaf = metric.split(".")[-1]
    rows = DIFFERENCE_ROWS.get(f"{benchmark}/{leaf}", DIFFERENCE_ROWS.get(f"{benchmark}/*", ()))
    return rows + RUN_ROWS.get(published_run, ())


def readme_link(row: str, readme: str = "README.md") -> str:
    return f"[{row}]({readme}#diff-{row.lower()})"


@dataclass
class PublishedRow:
    benchmark: str
    metric: str
    published_run: str
    run: str
    published: float
    reproduced: float | None
    value_ci: tuple[float, float] | None = None     # bootstrap 95% interval of the reproduced value
    published_ci: tuple[float, float] | None = None  # ... of the published value (the study's per-item files)
    published_change: float | None = None          # published run - published base (adapters)
    change: Change | None = None                    # the reproduced change, with its paired interval

    @property
    def difference(self) -> float | None:
        return None if self.reproduced is None else self.reproduced - self.published

    @property
    def value_inside(self) -> bool | None:
        if self.value_ci is None:
            return None
        return self.value_ci[0] <= self.published <= self.value_ci[1]

    @property
    def reproduced_inside(self) -> bool | None:
        if self.published_ci is None or self.reproduced is None:
            return None
        return self.published_ci[0] <= self.reproduced <= self.published_ci[1]

    @property
    def change_inside(self) -> bool | None:
        if self.change is None or self.change.ci is None or self.published_change is None:
            return None
        return self.change.ci.low <= self.published_change <= self.change.ci.high

    @property
    def gap(self) -> bool:
        """The published number is outside an interval (or, without intervals, differs at all)."""
        checks = [x for x in (self.value_inside, self.reproduced_inside, self.change_inside) if x is not None]
        if checks:
            return not all(checks)
        return self.difference is not None and abs(self.difference) > 0


def match_runs(published: Sequence[str], reproduced: Sequence[str], baseline: str,
               given: dict[str, str] | None = None) -> dict[str, str]:
    """{published run: reproduced run} (see the module docstring); unmatched published runs are left out."""
    out = {}
    for pub in published:
        if given and pub in given:
            ours = given[pub]
        elif pub == PUBLISHED_BASELINE:
            ours = baseline
        else:
            ours = pub if pub in reproduced else next((r for r in reproduced if r.endswith("_" + pub)), None)
        if ours in reproduced:
            out[pub] = ours
    return out


def _value_ci(bench: Benchmark, metric: str, run: str, n_boot: int, seed: int, cache: dict):
    values = run_values(bench, metric, run, cache)
    if values is None or n_boot <= 0:
        return None
    return mean_ci(values, n_boot=n_boot, seed=_stable_seed(str(seed), bench.name, run, metric, "value"))


def compare_published(published: list[Benchmark], report: Report, n_boot: int = 1000, seed: int = 0,
                      given: dict[str, str] | None = None) -> list[PublishedRow]:
    """One row per (benchmark, declared metric, published run) that has a reproduced run."""
    ours = {b.name: b for b in report.benchmarks}
    rows: list[PublishedRow] = []
    for pb in published:
        bench = ours.get(pb.name)
        if bench is None:
            continue
        matched = match_runs(list(pb.runs), list(bench.runs), report.baseline, given)
        pub_base = pb.runs.get(PUBLISHED_BASELINE)
        cache: dict = {}
        for metric in pb.metric_names(list(matched)):
            if metric_kind(metric) not in ("higher", "lower"):
                continue
            for pub_run, run in matched.items():
                pv = pb.runs[pub_run].values.get(metric)
                if pv is None:
                    continue
                row = PublishedRow(pb.name, metric, pub_run, run, float(pv), bench.runs[run].values.get(metric))
                if row.reproduced is not None:
                    row.value_ci = _value_ci(bench, metric, run, n_boot, seed, cache)
                row.published_ci = _value_ci(pb, metric, pub_run, n_boot, seed, cache)
                if pub_run != PUBLISHED_BASELINE and pub_base is not None and metric in pub_base.values:
                    row.published_change = float(pv) - float(pub_base.values[metric])
                    row.change = next((c for c in report.changes.get(pb.name, {}).get(run, [])
                                       if c.metric == metric), None)
                rows.append(row)
    return rows


def _yes_no(x: bool | None) -> str:
    return "" if x is None else ("yes" if x else "**no**")


def _interval(ci: tuple[float, float] | None) -> str:
    return "" if ci is None else f"[{fmt_value(ci[0])}, {fmt_value(ci[1])}]"


def _cells(r: PublishedRow, readme: str) -> list[str]:
    ch = r.change
    ch_cell = "" if ch is None else fmt_abs(ch.abs_change) + (
        "" if ch.ci is None else f" [{ch.ci.low:+.5f}, {ch.ci.high:+.5f}]")
    see = ", ".join(readme_link(x, readme) for x in difference_rows(r.benchmark, r.metric, r.published_run)) \
        if r.gap else ""
    return [display_name(r.metric), f"{r.published_run} → {r.run}", fmt_value(r.published), _interval(r.published_ci),
            "" if r.reproduced is None else fmt_value(r.reproduced),
            "" if r.difference is None else fmt_abs(r.difference), _interval(r.value_ci), _yes_no(r.value_inside),
            _yes_no(r.reproduced_inside), "" if r.published_change is None else fmt_abs(r.published_change), ch_cell,
            _yes_no(r.change_inside), see]


PUBLISHED_HEADER = ["Metric", "Run (published → reproduced)", "Published", "Published 95% CI", "Reproduced",
                    "Difference", "Reproduced 95% CI", "Published inside", "Reproduced inside",
                    "Published Δ vs base", "Reproduced Δ [95% CI]", "Published Δ inside", "See"]


def published_tables(rows: list[PublishedRow], readme: str = "README.md") -> list[Table]:
    tables = []
    for bench in dict.fromkeys(r.benchmark for r in rows):
        tables.append(Table(f"Published vs reproduced: {bench}", PUBLISHED_HEADER,
                            [_cells(r, readme) for r in rows if r.benchmark == bench]))
    return tables


def published_summary(rows: list[PublishedRow]) -> str:
    v = [r.value_inside for r in rows if r.value_inside is not None]
    c = [r.change_inside for r in rows if r.change_inside is not None]
    missing = sum(r.reproduced is None for r in rows)
    text = (f"{sum(v)} of {len(v)} published values lie inside the reproduced run's bootstrap 95% interval; "
            f"{sum(c)} of {len(c)} published changes against the base lie inside the reproduced change's paired "
            "bootstrap 95% interval.")
    p = [r.reproduced_inside for r in rows if r.reproduced_inside is not None]
    if p:
        text += (f" {sum(p)} of {len(p)} reproduced values lie inside the published run's bootstrap 95% interval "
                 "(the study's per-item files).")
    if len(v) < len(rows) - missing:
        text += f" {len(rows) - missing - len(v)} rows have no interval (no per-sample files)."
    if missing:
        text += f" {missing} published numbers have no reproduced counterpart."
    return text


def render_published(rows: list[PublishedRow], fmt: str = "md", readme: str = "README.md",
                     source: str = "") -> str:
    """The reproduction report section; empty without rows."""
    if not rows:
        return ""
    legend = ("Published = the study's metric files" + (f" ({source})" if source else "") + "; Difference = reproduced"
              " - published. Reproduced 95% CI: bootstrap over the reproduced run's per-sample file; Published 95% "
              "CI: the same over the study's per-item file, where the published folder holds it; Reproduced Δ: the "
              "paired bootstrap 95% interval of the change against the base. The study's per-item files hold no "
              f"{', '.join(NO_PUBLISHED_ITEMS[:-1])} or {NO_PUBLISHED_ITEMS[-1]} values (only its metric files "
              "do), so those rows get no interval on the published side. See: the README's \"Differences from the "
              "study\" rows that can explain a gap (given where a value lies outside an interval).")
    tables = published_tables(rows, readme)
    if fmt == "latex":
        return "\n\n".join(["% Published vs reproduced", *(_latex_table("Published", t) for t in tables),
                            "% " + published_summary(rows), "% " + legend]) + "\n"
    return "\n\n".join(["## Published vs reproduced", published_summary(rows), *(_md_table(t) for t in tables),
                        legend]) + "\n"
