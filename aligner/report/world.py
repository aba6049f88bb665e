"""The open-book world's report (``scripts/make_world_report.py``): does curriculum DPOP lower the answers from memory?

The world (``aligner.data.sources.world``) knows, for every held-out conflict item, the right answer (the context's
value) and the hallucinated one (the person's default, the model's "memory").  Its held-out evaluation is the HaluEval
similarity flow (``results/World``: the conflicts; ``results/World/control``: items whose context agrees with memory
and items about people the model never saw), whose records say whether each answer *is* the right or the hallucinated
answer (``match_right``, ``match_hallucinated``).  This module reads those records and the training logs and writes:

* the headline table: per model, the memory-answer rate, the right-answer rate, the other answers, the flow's
  hallucination rate, BLEU and ROUGE-L, and the right-answer rate on the controls; each with its bootstrap 95%
  interval and, for an adapter, the change against the base with its paired bootstrap interval and the verdict the
  tables use (an interval that contains 0 reads "no clear change");
* the ablations: paired differences between two adapters on the same items (DPOP against plain DPO, the curriculum
  against one shuffled stage), with the same rule;
* the chosen answers' log-probability over training (the DPOP paper's point: plain DPO can push it down);
* one figure: memory-answer and right-answer rates per model with their interval bars.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aligner.core.io import DataError, atomic_write_text, read_jsonl
from aligner.core.paths import result_file
from aligner.report.bootstrap import _stable_seed, bootstrap_ci, mean_ci
from aligner.report.tables import NO_CLEAR_CHANGE, _no_negative_zero, change_verdict, fmt_interval

#: per-sample quantities of the headline, in percent: (name, shown as, from the conflicts or the controls, value)
QUANTITIES: tuple[tuple[str, str, str, Callable[[dict], float], bool], ...] = (
    ("memory", "memory answers", "conflict", lambda r: float(r["match_hallucinated"]), False),
    ("right", "right answers", "conflict", lambda r: float(r["match_right"]), True),
    ("other", "other answers", "conflict", lambda r: float(not (r["match_right"] or r["match_hallucinated"])), False),
    ("halluc", "similarity-flow hallucination rate", "conflict", lambda r: float(r["is_hallucinated"]), False),
    ("bleu", "BLEU", "conflict", lambda r: float(r["bleu"]), True),
    ("rouge", "ROUGE-L", "conflict", lambda r: float(r["rouge_l"]), True),
    ("control", "right answers, controls (agree, novel)", "control", lambda r: float(r["match_right"]), True),
)
PERCENT = ("memory", "right", "other", "halluc", "control")


@dataclass(kw_only=True)
class WorldReportConfig:
    results_dir: str = field(metadata={"help": "the world's results folder (World/, with control/ inside)"})
    run_name: str = field(default="world", metadata={"help": "the evaluation's run name (files <kind>_RUN_<model>)"})
    models: list[str] = field(default_factory=lambda: ["base", "dpop", "dpo", "shuffled"], metadata={
        "help": "the models, base first, as the evaluation named them", "sep": ","})
    labels: list[str] = field(default_factory=list, metadata={
        "help": "MODEL=what it is, shown in the tables (default: the model names)", "append": True})
    ablations: list[str] = field(default_factory=lambda: ["dpop-dpo", "dpop-shuffled"], metadata={
        "help": "A-B pairs of models compared on the same items", "sep": ","})
    train_log: list[str] = field(default_factory=list, metadata={
        "help": "MODEL=train_log.jsonl, for the chosen answers' log-prob trend; repeatable", "append": True})
    output: str = field(metadata={"help": "the Markdown report"})
    plot: str | None = field(default=None, metadata={"help": "the figure (PNG) (default: none)"})
    n_boot: int = field(default=2000, metadata={"help": "bootstrap resamples"})


def _records(folder: Path, run_name: str, model: str) -> list[dict]:
    recs = read_jsonl(result_file(folder, "detailed", f"{run_name}_{model}"))
    return sorted(recs, key=lambda r: r["index"])


def per_sample(cfg: WorldReportConfig) -> dict[str, dict[str, np.ndarray]]:
    """model -> quantity -> per-item values (items in index order, the same items for every model)."""
    root = Path(cfg.results_dir)
    folders = {"conflict": root, "control": root / "control"}
    out: dict[str, dict[str, np.ndarray]] = {}
    for model in cfg.models:
        recs = {part: _records(folder, cfg.run_name, model) for part, folder in folders.items()}
        out[model] = {name: np.array([value(r) for r in recs[part]], dtype=np.float64)
                      for name, _, part, value, _ in QUANTITIES}
    return out


def _pct(name: str, x: float) -> str:
    return f"{100 * x:.1f}" if name in PERCENT else f"{x:.3f}"


def _signed(name: str, x: float) -> str:
    return _no_negative_zero(f"{100 * x:+.1f}" if name in PERCENT else f"{x:+.3f}")


@dataclass
class Cell:
    value: float
    ci: tuple[float, float]
    change: tuple[float, float, float] | None = None     # change, low, high (adapters)


def headline(values: dict[str, dict[str, np.ndarray]], models: Sequence[str], n_boot: int) -> dict:
    base = models[0]
    table: dict[str, dict[str, Cell]] = {}
    for name, *_ in QUANTITIES:
        row = {}
        for model in models:
            v = values[model][name]
            cell = Cell(float(v.mean()), mean_ci(v, n_boot=n_boot, seed=_stable_seed("world", model, name)))
            if model != base:
                low, high, _, _ = bootstrap_ci(values[base][name], v, n_boot=n_boot,
                                               seed=_stable_seed("world", base, model, name))
                cell.change = (float(v.mean() - values[base][name].mean()), low, high)
            row[model] = cell
        table[name] = row
    return table


def _cell_text(name: str, cell: Cell, better_up: bool) -> str:
    text = f"{_pct(name, cell.value)} [{_pct(name, cell.ci[0])}, {_pct(name, cell.ci[1])}]"
    if cell.change is not None:
        d, lo, hi = cell.change
        text += (f"; {_signed(name, d)} {fmt_interval(lo, hi, lambda x: _signed(name, x))} "
                 f"{change_verdict(d, 'higher' if better_up else 'lower', (lo, hi))}")
    return text


def chosen_trend(path: Path) -> dict:
    """The chosen answers' summed log-prob and reward (beta x log-ratio to the reference) over training."""
    logged = [x for x in read_jsonl(path) if "logps/chosen" in x]
    if not logged:
        raise DataError(path, "no training step logged logps/chosen: is it a preference trainer's train_log.jsonl?")
    logps, rewards = [x["logps/chosen"] for x in logged], [x["rewards/chosen"] for x in logged]
    return {"logp_first": logps[0], "logp_last": logps[-1], "logp_min": min(logps), "reward_last": rewards[-1],
            "reward_min": min(rewards)}


def _labels(cfg: WorldReportConfig) -> dict[str, str]:
    given = dict(item.split("=", 1) for item in cfg.labels)
    return {m: given.get(m, m) for m in cfg.models}


def render(cfg: WorldReportConfig, values: dict, table: dict, trends: dict) -> str:
    labels, models = _labels(cfg), cfg.models
    n_conflict, n_control = (len(values[models[0]][k]) for k in ("memory", "control"))
    lines = [f"Held-out items: {n_conflict} knowledge conflicts (the context states another value than the person's "
             f"default; the right answer is the context's, the hallucinated one the default) and {n_control} controls. "
             "Rates in percent, [bootstrap 95% interval]; for an adapter, the change against the base [paired "
             f"bootstrap 95% interval] and its verdict (\"{NO_CLEAR_CHANGE}\" when the interval contains 0).", "",
             "| model | " + " | ".join(shown for _, shown, *_ in QUANTITIES) + " |",
             "| --- |" + " --- |" * len(QUANTITIES)]
    for model in models:
        cells = [_cell_text(name, table[name][model], up) for name, _, _, _, up in QUANTITIES]
        lines.append(f"| {labels[model]} | " + " | ".join(cells) + " |")
    pairs = [pair.split("-", 1) for pair in cfg.ablations]
    shown = [(a, b) for a, b in pairs if a in values and b in values]
    if pairs and not shown:
        lines += ["", f"No ablation: its models ({', '.join(sorted({m for p in pairs for m in p} - set(values)))}) "
                  "were not evaluated."]
    elif shown:
        lines += ["", "Ablations: the difference between two adapters on the same items (A minus B), paired "
                  "bootstrap 95% interval:", "", "| comparison | " + " | ".join(s for _, s, *_ in QUANTITIES[:3])
                  + " |", "| --- |" + " --- |" * 3]
    for a, b in shown:
        cells = []
        for name, _, _, _, up in QUANTITIES[:3]:
            lo, hi, _, _ = bootstrap_ci(values[b][name], values[a][name], n_boot=cfg.n_boot,
                                        seed=_stable_seed("world", a, b, name))
            d = float(values[a][name].mean() - values[b][name].mean())
            better = (f"{labels[a]} better", f"{labels[b]} better")
            cells.append(f"{_signed(name, d)} {fmt_interval(lo, hi, lambda x, n=name: _signed(n, x))} "
                         f"{change_verdict(d, 'higher' if up else 'lower', (lo, hi), better)}")
        lines.append(f"| {labels[a]} − {labels[b]} | " + " | ".join(cells) + " |")
    if trends:
        lines += ["", "The chosen answers during training (summed log-prob of the chosen answer; its reward "
                  "β·(log π − log π_ref)):", "", "| model | log-prob first | log-prob last | lowest | reward last | "
                  "lowest reward |", "| --- | --- | --- | --- | --- | --- |"]
        for model, t in trends.items():
            lines.append(f"| {labels.get(model, model)} | {t['logp_first']:.2f} | {t['logp_last']:.2f} | "
                         f"{t['logp_min']:.2f} | {t['reward_last']:+.3f} | {t['reward_min']:+.3f} |")
    return "\n".join(lines) + "\n"


def plot_world(table: dict, models: Sequence[str], labels: dict[str, str], out_png: str | os.PathLike) -> Path:
    """Memory-answer and right-answer rates on the conflicts per model, bootstrap 95% error bars, values written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    x = np.arange(len(models))
    for k, (name, shown, color) in enumerate((("memory", "memory answers (hallucinated)", "#c0392b"),
                                               ("right", "right answers (the context's)", "#2471a3"))):
        vals = np.array([100 * table[name][m].value for m in models])
        err = np.array([[100 * (table[name][m].value - table[name][m].ci[0]) for m in models],
                        [100 * (table[name][m].ci[1] - table[name][m].value) for m in models]])
        bars = ax.bar(x + (k - 0.5) * 0.38, vals, 0.38, yerr=err, capsize=3, color=color, label=shown,
                      edgecolor="black", linewidth=0.5)
        for bar, v, hi in zip(bars, vals, vals + err[1]):
            ax.annotate(f"{v:.1f}", (bar.get_x() + bar.get_width() / 2, hi), xytext=(0, 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, [labels[m] for m in models], fontsize=8)
    ax.set_ylabel("% of held-out conflict items")
    ax.set_ylim(0, 105)
    ax.set_title("Open-book world: answers from memory vs from the context (95% intervals)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out


def make_world_report(cfg: WorldReportConfig) -> str:
    values = per_sample(cfg)
    table = headline(values, cfg.models, cfg.n_boot)
    trends = {m: chosen_trend(Path(p)) for m, p in (item.split("=", 1) for item in cfg.train_log)}
    text = render(cfg, values, table, trends)
    if cfg.plot:
        plot_world(table, cfg.models, _labels(cfg), cfg.plot)
        text += f"\n![the open-book world]({os.path.relpath(cfg.plot, Path(cfg.output).parent)})\n"
    atomic_write_text(cfg.output, text)
    return text
