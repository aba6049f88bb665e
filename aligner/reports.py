"""Result tables: the study's summary and change-vs-baseline tables, with paired bootstrap intervals.

``collect_results(results_dir)`` reads every ``metrics_<run>.json`` per benchmark folder; ``compare`` gives,
per run, the absolute change and the relative change ``(run - baseline) / baseline * 100`` (sign as is, as
the study computes it), a verdict that knows which way is better (a hallucination rate should go down), and,
where the per-sample ``detailed_*.jsonl`` files exist, a paired bootstrap 95% interval of the change
(questions matched across runs, seeded).  ``render`` prints it all as Markdown, CSV or LaTeX.
``plot_results`` draws a grouped bar chart, ``plot_training_curves`` the loss / reward curves of a DPOP run.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aligner.io import DataError, ReadStats, iter_jsonl, read_json

logger = logging.getLogger(__name__)

STUDY_BENCHMARK_ORDER = ("Halueval", "HaluevalLLM", "TruthfulQA")

DISPLAY_NAMES = {
    "hallucination_rate": "Hallucination Rate",
    "avg_confidence_margin": "Avg Confidence Margin",
    "avg_bert_score": "Avg BERT Score",
    "avg_bleu": "Avg BLEU",
    "avg_rouge_l": "Avg ROUGE-L",
    "total_samples": "Total Samples",
    "avg_faithfulness": "Avg Faithfulness",
    "avg_bert_f1": "Avg BERT F1",
    "total": "Total Samples",
    "mc1": "MC1",
    "mc2": "MC2",
    "gen_truthfulness": "Gen Truthfulness",
    "gen_avg_prob": "Gen Avg Prob",
    "n_questions": "Questions",
    "n_mc_questions": "MC Questions",
    "n_gen_questions": "Gen Questions",
}

# Metrics where a smaller value is the better one; everything else that is not a count is "higher is better".
LOWER_IS_BETTER = re.compile(r"halluc|error|loss|perplexity|(^|_)ppl($|_)|contradict")
# Counts are shown in the summary but not compared; timings are not results and are left out altogether.
COUNT_KEYS = re.compile(r"^(total|total_samples|n|count|num_\w+|n_\w+|\w+_count|\w+_total)$")
TIMING_KEYS = re.compile(r"second|(^|_)time($|_)|elapsed|duration|per_s($|_)|throughput|timestamp")


@dataclass(frozen=True)
class PerSampleField:
    """Where a metric's per-sample values live: the detailed file (first pattern that exists) and the field.

    ``fields`` are alternatives (the first present in a record is used); ``derive`` computes the value from
    the record instead (the confidence margin is sim_right - sim_halluc).
    """

    files: tuple[str, ...]
    fields: tuple[str, ...] = ()
    derive: Callable[[dict], float] | None = None

    def value(self, rec: dict) -> float | None:
        if self.derive is not None:
            try:
                return _as_float(self.derive(rec))
            except (KeyError, TypeError):
                return None
        for f in self.fields:
            if f in rec:
                return _as_float(rec[f])
        return None


_DETAILED = ("detailed_{run}.jsonl",)
_GEN = ("detailed_gen_{run}.jsonl", "detailed_{run}.jsonl")
_MC = ("detailed_mc_{run}.jsonl",)

# metric name in metrics_<run>.json -> its per-sample values in the detailed files, as written by
# aligner/halueval.py (similarity flow: DETAILED_FIELDS; two-step flow: score_faithfulness) and
# aligner/truthfulqa.py (detailed_mc_R: mc1_hit, mc2_mass; detailed_gen_R: truth_prob, is_truthful).
# The mean of the per-sample values is the metric; alternatives cover the study's own spellings.
PER_SAMPLE_FIELDS: dict[str, PerSampleField] = {
    # HaluEval similarity flow (detailed_R.jsonl) and the two-step LLM-judge flow (detailed_R.jsonl)
    "hallucination_rate": PerSampleField(_DETAILED, ("is_hallucinated",)),
    "avg_confidence_margin": PerSampleField(_DETAILED, derive=lambda r: r["sim_right"] - r["sim_halluc"]),
    "avg_bert_score": PerSampleField(_DETAILED, ("bert_score",)),
    "avg_bleu": PerSampleField(_DETAILED, ("bleu",)),
    "avg_rouge_l": PerSampleField(_DETAILED, ("rouge_l",)),
    "avg_faithfulness": PerSampleField(_DETAILED, ("faithfulness_score", "faithfulness")),
    "avg_bert_f1": PerSampleField(_DETAILED, ("bert_f1", "bert_score")),
    # TruthfulQA: generation judged (detailed_gen_R.jsonl), multiple choice (detailed_mc_R.jsonl)
    "gen_truthfulness": PerSampleField(_GEN, ("is_truthful",)),
    "gen_avg_prob": PerSampleField(_GEN, ("truth_prob",)),
    "mc1": PerSampleField(_MC, ("mc1_hit", "mc1", "mc1_correct")),
    "mc2": PerSampleField(_MC, ("mc2_mass", "mc2", "mc2_score")),
}
# Fields that identify a question across runs, in order of preference.
PAIR_KEYS = ("id", "data_index", "question_id", "question")


def _as_float(v) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------

@dataclass
class RunMetrics:
    run: str
    path: Path
    values: dict[str, float]          # flattened numeric metrics ("gen.mc1" for nested dicts)
    info: dict[str, str]              # model, lora path, method ...


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


def _flatten(obj: dict, prefix: str = "") -> tuple[dict[str, float], dict[str, str]]:
    values: dict[str, float] = {}
    info: dict[str, str] = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if TIMING_KEYS.search(str(k)):
            continue
        if isinstance(v, dict):
            sub_v, sub_i = _flatten(v, key + ".")
            values.update(sub_v)
            info.update(sub_i)
        elif isinstance(v, bool) or v is None:
            info[key] = str(v)
        elif isinstance(v, (int, float)):
            if math.isfinite(float(v)):
                values[key] = v
        elif isinstance(v, str):
            info[key] = v
    return values, info


def read_metrics_file(path: str | os.PathLike) -> RunMetrics:
    path = Path(path)
    obj = read_json(path)
    if not isinstance(obj, dict):
        raise DataError(path, "expected a JSON object of metrics")
    values, info = _flatten(obj)
    run = path.stem[len("metrics_"):]
    return RunMetrics(run=run, path=path, values=values, info=info)


def collect_results(results_dir: str | os.PathLike) -> list[Benchmark]:
    """One ``Benchmark`` per folder holding ``metrics_*.json`` (the folder itself counts too)."""
    root = Path(results_dir)
    if not root.is_dir():
        raise DataError(root, "results folder not found")
    folders = [root] + sorted(p for p in root.iterdir() if p.is_dir())
    benches = []
    for folder in folders:
        files = sorted(folder.glob("metrics_*.json"))
        if not files:
            continue
        runs = {}
        for f in files:
            rm = read_metrics_file(f)
            runs[rm.run] = rm
        benches.append(Benchmark(name=folder.name, folder=folder, runs=runs))
    rank = {n: i for i, n in enumerate(STUDY_BENCHMARK_ORDER)}
    benches.sort(key=lambda b: (rank.get(b.name, len(rank)), b.name))
    return benches


def run_order(bench: Benchmark, baseline: str, runs: Sequence[str] | None) -> list[str]:
    """The baseline first, then the requested runs (in the given order) or all others sorted."""
    others = [r for r in (runs or sorted(bench.runs)) if r != baseline and r in bench.runs]
    return ([baseline] if baseline in bench.runs else []) + others


# ---------------------------------------------------------------------------------------------
# direction and display
# ---------------------------------------------------------------------------------------------

def metric_kind(name: str) -> str:
    """``lower`` / ``higher`` (which value is better) or ``count`` (not compared)."""
    leaf = name.split(".")[-1]
    if COUNT_KEYS.match(leaf):
        return "count"
    return "lower" if LOWER_IS_BETTER.search(leaf) else "higher"


ACRONYMS = {"bleu", "rouge", "bert", "f1", "mc1", "mc2", "nli", "hhem", "auc", "em", "qa", "llm"}


def display_name(name: str) -> str:
    leaf = name.split(".")[-1]
    if leaf in DISPLAY_NAMES:
        base = DISPLAY_NAMES[leaf]
    else:
        base = " ".join(w.upper() if w.lower() in ACRONYMS else w.capitalize() for w in leaf.split("_"))
    prefix = ".".join(name.split(".")[:-1])
    return f"{prefix}.{base}" if prefix else base


# ---------------------------------------------------------------------------------------------
# paired bootstrap over the per-sample files
# ---------------------------------------------------------------------------------------------

@dataclass
class BootstrapCI:
    low: float               # 95% interval of the absolute change (run - baseline)
    high: float
    rel_low: float | None    # 95% interval of the relative change, in percent
    rel_high: float | None
    n_pairs: int
    n_boot: int
    file: str
    consistent: bool         # the per-sample means reproduce both metric values (to 1e-6)

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def _pair_key_field(a: list[dict], b: list[dict]) -> str | None:
    for k in PAIR_KEYS:
        if a and b and all(k in r for r in a) and all(k in r for r in b):
            return k
    return None


def _keyed(records: list[dict], key: str | None) -> dict:
    """Key each record by (its id, occurrence number): a question asked twice pairs with its second asking."""
    seen: dict = {}
    out = {}
    for i, rec in enumerate(records):
        k = json.dumps(rec[key], sort_keys=True, default=str) if key else i
        n = seen.get(k, 0)
        seen[k] = n + 1
        out[(k, n)] = rec
    return out


def find_detailed(folder: Path, run: str, patterns: Sequence[str]) -> Path | None:
    for pat in patterns:
        p = folder / pat.format(run=run)
        if p.is_file():
            return p
    return None


def _read_detailed(path: Path, cache: dict) -> list[dict]:
    if path not in cache:
        stats = ReadStats()
        cache[path] = list(iter_jsonl(path, skip_invalid=True, stats=stats))
    return cache[path]


def paired_values(bench: Benchmark, metric: str, baseline: str, run: str,
                  cache: dict | None = None) -> tuple[np.ndarray, np.ndarray, str] | None:
    """The per-sample values of ``metric`` for baseline and run, matched by question; None without files."""
    spec = PER_SAMPLE_FIELDS.get(metric.split(".")[-1])
    if spec is None:
        return None
    cache = {} if cache is None else cache
    fb = find_detailed(bench.folder, baseline, spec.files)
    fr = find_detailed(bench.folder, run, spec.files)
    if fb is None or fr is None:
        return None
    rb, rr = _read_detailed(fb, cache), _read_detailed(fr, cache)
    key = _pair_key_field(rb, rr)
    if key is None and len(rb) != len(rr):
        logger.warning("%s vs %s: no shared question field and different lengths; no pairing possible", fb, fr)
        return None
    kb, kr = _keyed(rb, key), _keyed(rr, key)
    xs, ys = [], []
    for k, rec_b in kb.items():
        rec_r = kr.get(k)
        if rec_r is None:
            continue
        vb, vr = spec.value(rec_b), spec.value(rec_r)
        if vb is None or vr is None:
            continue
        xs.append(vb)
        ys.append(vr)
    if not xs:
        return None
    return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64), f"{fb.name} / {fr.name}"


def _stable_seed(*parts: str) -> int:
    return zlib.crc32("\x1f".join(parts).encode("utf-8"))


def paired_bootstrap(base: np.ndarray, run: np.ndarray, n_boot: int = 1000, seed: int = 0,
                     chunk: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap means of paired samples: resample pair indices with replacement ``n_boot`` times.

    ``base`` and ``run`` are (n,) or (n, k) arrays (k metrics share the same resamples).  Returns the
    resampled means of base and of run, each (n_boot,) or (n_boot, k).
    """
    base = np.asarray(base, dtype=np.float64)
    run = np.asarray(run, dtype=np.float64)
    n = base.shape[0]
    rng = np.random.default_rng(seed)
    mb, mr = [], []
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(m, n))
        mb.append(base[idx].mean(axis=1))
        mr.append(run[idx].mean(axis=1))
    return np.concatenate(mb), np.concatenate(mr)


def bootstrap_ci(base: np.ndarray, run: np.ndarray, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float, float | None, float | None]:
    """Percentile intervals of the mean change (run - base) and of the relative change in percent."""
    mb, mr = paired_bootstrap(base, run, n_boot=n_boot, seed=seed)
    alpha = (1.0 - level) / 2.0
    q = [100 * alpha, 100 * (1 - alpha)]
    lo, hi = np.percentile(mr - mb, q)
    rel_lo = rel_hi = None
    if np.all(mb != 0):
        rlo, rhi = np.percentile((mr - mb) / mb * 100.0, q)
        rel_lo, rel_hi = float(rlo), float(rhi)
    return float(lo), float(hi), rel_lo, rel_hi


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
        d = self.abs_change
        if d == 0:
            return "unchanged"
        better = d < 0 if self.direction == "lower" else d > 0
        return "improved" if better else "regressed"


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

def fmt_value(v: float) -> str:
    if isinstance(v, int):
        return f"{v}"
    return f"{v:.5f}"


def fmt_abs(d: float) -> str:
    return f"{d:+.5f}"


def fmt_rel(r: float | None) -> str:
    return "n/a" if r is None else f"{r:+.2f}%"


def _direction_tag(kind: str) -> str:
    return {"lower": " (lower is better)", "higher": ""}.get(kind, "")


def _ci_cells(ci: BootstrapCI | None) -> tuple[str, str]:
    if ci is None:
        return "", ""
    mark = " *" if ci.excludes_zero else ""
    dagger = "" if ci.consistent else " †"
    rel = "n/a" if ci.rel_low is None else f"[{ci.rel_low:+.2f}%, {ci.rel_high:+.2f}%]"
    return f"[{ci.low:+.5f}, {ci.high:+.5f}]{mark}{dagger}", rel


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
                row.append("" if v is None else fmt_value(v))
            rows.append(row)
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
                rows.append({"benchmark": bench.name, "table": "summary", "run": run, "metric": metric,
                             "kind": metric_kind(metric), "value": v})
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
               "n_pairs", "n_boot"]


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
              "(hallucination rate: lower is better). 95% CI: paired bootstrap over the per-sample files, "
              "questions matched across runs; * = the interval excludes zero.")
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

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_results(report: Report, out_png: str | os.PathLike) -> Path:
    """Grouped bars: one panel per benchmark, metrics on the x axis, one bar per run."""
    plt = _pyplot()
    benches = [b for b in report.benchmarks if report.runs.get(b.name)]
    if not benches:
        raise ValueError("nothing to plot: no metrics files found")
    fig, axes = plt.subplots(len(benches), 1, figsize=(10, 3.6 * len(benches)), squeeze=False)
    for ax, bench in zip(axes[:, 0], benches):
        order = report.runs[bench.name]
        metrics = [m for m in bench.metric_names(order) if metric_kind(m) != "count"]
        x = np.arange(len(metrics))
        width = 0.8 / max(1, len(order))
        for i, run in enumerate(order):
            vals = [bench.runs[run].values.get(m, np.nan) for m in metrics]
            bars = ax.bar(x + (i - (len(order) - 1) / 2) * width, vals, width, label=run)
            if run != report.baseline:
                for bar, c in zip(bars, _changes_for(report, bench.name, run, metrics)):
                    if c is not None and c.ci is not None and c.ci.excludes_zero:
                        ax.annotate("*", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                                    ha="center", va="bottom")
        ax.set_xticks(x)
        ax.set_xticklabels([display_name(m) + (" ↓" if metric_kind(m) == "lower" else "") for m in metrics],
                           rotation=15, ha="right")
        ax.set_title(bench.name)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    return _save_figure(plt, fig, out_png)


def _save_figure(plt, fig, out_png: str | os.PathLike) -> Path:
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _changes_for(report: Report, bench: str, run: str, metrics: list[str]) -> list[Change | None]:
    by_metric = {c.metric: c for c in report.changes.get(bench, {}).get(run, [])}
    return [by_metric.get(m) for m in metrics]


TRAIN_CURVES = (("loss", "loss"), ("rewards/accuracies", "reward accuracy"), ("rewards/margins", "reward margin"))


def read_train_log(train_log_path: str | os.PathLike) -> list[dict]:
    """The training log's step records (a torn last line from an interrupted run is skipped, and counted)."""
    stats = ReadStats()
    recs = [r for r in iter_jsonl(train_log_path, skip_invalid=True, stats=stats)
            if any(k in r for k, _ in TRAIN_CURVES)]
    if not recs:
        raise DataError(train_log_path, "no logging records with loss / rewards fields")
    return recs


def plot_training_curves(train_log_path: str | os.PathLike, out_png: str | os.PathLike) -> Path:
    """Loss, reward accuracy and reward margin against the optimizer step, one colour per curriculum stage.

    The x axis is the logged (global) optimizer step; a step logged twice (a run resumed from a checkpoint
    re-logs the steps after it) keeps its last record.  Without numeric steps the logging order is used.
    """
    plt = _pyplot()
    recs = read_train_log(train_log_path)
    by_step = all(isinstance(r.get("step"), (int, float)) and not isinstance(r.get("step"), bool) for r in recs)
    if by_step:
        recs = sorted({float(r["step"]): r for r in recs}.values(), key=lambda r: float(r["step"]))
        xs = [float(r["step"]) for r in recs]
    else:
        xs = list(range(1, len(recs) + 1))
    monotone = by_step
    stages = [str(r.get("stage", "")) for r in recs]
    stage_names = list(dict.fromkeys(stages))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(len(TRAIN_CURVES), 1, figsize=(9, 2.8 * len(TRAIN_CURVES)), sharex=True)
    for ax, (key, label) in zip(axes, TRAIN_CURVES):
        for si, stage in enumerate(stage_names):
            pts = [(x, _as_float(r.get(key))) for x, r, s in zip(xs, recs, stages) if s == stage]
            pts = [(x, y) for x, y in pts if y is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", ms=3, lw=1.2,
                        color=colors[si % len(colors)], label=f"stage {stage}" if stage else None)
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if any(stage_names):
        axes[0].legend(fontsize=8, ncol=min(4, len(stage_names)))
    axes[-1].set_xlabel("optimizer step" if monotone else "logging step")
    fig.suptitle(f"training curves: {Path(train_log_path).parent.name or Path(train_log_path).name}")
    return _save_figure(plt, fig, out_png)
