"""Reports that say what happened: a verdict never contradicts its interval, no negative zeros, degenerate answers
named beside the numbers they make, figures that show every interval and every zero, and make_tables without a
baseline run."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from matplotlib.container import BarContainer

from aligner.core.cli import ErrorExit, run_cli
from aligner.core.paths import result_file
from aligner.eval.checks import degenerate_outputs
from aligner.report import plots
from aligner.report.bootstrap import BootstrapCI
from aligner.report.make_tables import TablesConfig, make_tables
from aligner.report.scoreboard import build_scoreboard, render_scoreboard, what_changed
from aligner.report.tables import Change, collect_results, compare, fmt_abs, fmt_rel, fmt_value, render

N = 60


def _ci(low, high):
    return BootstrapCI(low, high, None, None, N, 200, "f", True)


# --- item 1: verdicts follow the interval; no negative zeros -----------------------------------------------------

@pytest.mark.parametrize("base,run,direction,ci,verdict", [
    (0.46433, 0.46438, "higher", _ci(-0.00023, 0.00034), "no clear change"),   # the "improved"
    (0.46433, 0.46429, "higher", _ci(-0.00026, 0.00012), "no clear change"),   # the "regressed"
    (0.46433, 0.46442, "higher", _ci(0.00001, 0.00021), "improved"),
    (0.30, 0.25, "lower", _ci(-0.09, -0.01), "improved"),
    (0.30, 0.35, "lower", _ci(0.01, 0.09), "regressed"),
    (0.30, 0.35, "lower", _ci(0.0, 0.09), "no clear change"),                  # an end at 0 holds 0
    (0.30, 0.30, "lower", _ci(-0.01, 0.01), "unchanged"),
    (0.30, 0.35, "lower", None, "regressed"),                                  # no interval: the sign decides
])
def test_verdict_follows_the_interval(base, run, direction, ci, verdict):
    assert Change("B", "r", "b", "m", base, run, direction, ci).verdict == verdict


def test_negative_zeros_print_as_zero():
    assert fmt_abs(-0.000001) == fmt_abs(-0.0) == fmt_abs(0.000004) == "0.00000"
    assert fmt_rel(-0.001) == "0.00%" and fmt_value(-0.0) == "0.00000"
    assert fmt_abs(-0.00004) == "-0.00004" and fmt_abs(0.000005) == "+0.00001" and fmt_rel(-1.5) == "-1.50%"


def _write(folder: Path, kind: str, run: str, records: list[dict]):
    folder.mkdir(parents=True, exist_ok=True)
    result_file(folder, kind, run).write_text("".join(json.dumps(r) + "\n" for r in records))


def _metrics(folder: Path, run: str, metrics: dict):
    folder.mkdir(parents=True, exist_ok=True)
    result_file(folder, "metrics", run).write_text(json.dumps(metrics))


@pytest.fixture
def tiny_changes(tmp_path):
    """TruthfulQA MC2 moved by noise only (a positive change whose interval holds 0), HaluEval answers unchanged."""
    rng = np.random.default_rng(3)
    base = rng.uniform(0.3, 0.7, N)
    run = base + rng.normal(0.0, 0.002, N)
    run += 0.0003 - (run.mean() - base.mean())  # a small positive mean change, well inside the noise
    tqa, halu = tmp_path / "TruthfulQA", tmp_path / "Halueval"
    for name, x in (("base", base), ("ad", run)):
        _write(tqa, "detailed_mc", name, [{"question": f"q{i}", "mc2_mass": float(v)} for i, v in enumerate(x)])
        _metrics(tqa, name, {"mc2": float(x.mean()), "lora_path": None if name == "base" else "ad"})
        halluc = [i % 5 == 0 for i in range(N)]
        _write(halu, "detailed", name, [{"question": f"q{i}", "generated": "no", "is_hallucinated": h}
                                        for i, h in enumerate(halluc)])
        _metrics(halu, name, {"hallucination_rate": float(np.mean(halluc)), "total_samples": N})
    return tmp_path


def test_interval_holding_zero_reads_no_clear_change_everywhere(tiny_changes):
    report = compare(collect_results(tiny_changes), baseline="base", n_boot=500)
    (mc2,) = report.changes["TruthfulQA"]["ad"]
    assert mc2.abs_change > 0 and mc2.ci.low < 0 < mc2.ci.high and mc2.verdict == "no clear change"
    (halu,) = [c for c in report.changes["Halueval"]["ad"] if c.metric == "hallucination_rate"]
    assert halu.verdict == "unchanged"
    md = render(report, "md")
    row = [line for line in md.splitlines() if line.startswith("| MC2 |")][-1]  # the change table's row
    assert row.split(" | ")[3] == "no clear change"
    csv_rows = [line for line in render(report, "csv").splitlines() if ",mc2," in line and ",change," in line]
    assert len(csv_rows) == 1 and ",no clear change," in csv_rows[0]
    sb = build_scoreboard(report)
    cell = next(r for r in sb.rows if r.spec.metric == "mc2")
    board = render_scoreboard(sb)
    line = next(ln for ln in board.splitlines() if "TruthfulQA: MC2" in ln and ln.startswith("|"))
    assert line.rstrip(" |").endswith("no clear change") and "improved" not in line
    assert cell.changes["ad"].verdict == "no clear change"
    (sentence,) = what_changed(sb)
    assert "improved" not in sentence and "TruthfulQA: MC2 ↑" in sentence.split("no change distinguishable")[1]
    for text in (md, board, render(report, "latex")):
        assert "-0.00000" not in text and "+0.00000" not in text and "-0.00%" not in text


# --- item 2: degenerate answers --------------------------------------------------------------------------------------

def test_degenerate_outputs_notes():
    assert degenerate_outputs(["no"] * 50) == {"field": "generated", "n": 50, "n_empty": 0, "n_distinct": 1,
                                               "top": "no", "top_count": 50,
                                               "note": "all 50 answers identical: 'no'"}
    assert degenerate_outputs([""] * 49 + [" "], "response")["note"] == "all 50 answers empty"
    assert degenerate_outputs([None] * 30 + ["a"] * 20)["note"] == "30 of 50 answers empty"
    got = degenerate_outputs(["Paris."] * 26 + [f"x{i}" for i in range(24)])
    assert got["note"] == "26 of 50 answers identical: 'Paris.'" and got["n_distinct"] == 25
    assert degenerate_outputs(["a"] * 25 + ["b"] * 25) is None        # half is not more than half
    assert degenerate_outputs(["a", "b", "c"]) is None and degenerate_outputs([]) is None
    long = degenerate_outputs(["word " * 40] * 3)["note"]
    assert long.startswith("all 3 answers identical: '") and long.endswith("...'") and len(long) < 100


def test_degenerate_note_beside_the_numbers(tiny_changes):
    tqa = tiny_changes / "TruthfulQA"
    for run in ("base", "ad"):  # TruthfulQA's metrics files say so; HaluEval's are older files: computed here
        metrics = json.loads(result_file(tqa, "metrics", run).read_text())
        metrics.update(gen_truthfulness=0.0, degenerate={"field": "generated", "n": N, "n_empty": N, "n_distinct": 1,
                                                         "top": "", "top_count": 0, "note": f"all {N} answers empty"})
        _write(tqa, "detailed_gen", run, [{"question": f"q{i}", "is_truthful": False} for i in range(N)])
        _metrics(tqa, run, metrics)
    report = compare(collect_results(tiny_changes), baseline="base", n_boot=200)
    md = render(report, "md")
    assert f"| ⚠ Degenerate answers | all {N} answers identical: 'no' | all {N} answers identical: 'no' |" in md
    assert f"| ⚠ Degenerate answers | all {N} answers empty | all {N} answers empty |" in md
    assert "| Hallucination Rate (lower is better) | 0.20000 ⚠ | 0.20000 ⚠ |" in md
    mc2 = next(line for line in md.splitlines() if line.startswith("| MC2 |"))
    assert "⚠" not in mc2  # multiple choice scores log-probabilities, not the answers
    assert "degenerate." not in md  # the entry is no metric
    board = render_scoreboard(build_scoreboard(report))
    assert (f"⚠ degenerate answers (the numbers marked ⚠ score them): HaluEval, similarity flow, base: all {N} answers "
            f"identical: 'no'; HaluEval, similarity flow, ad: all {N} answers identical: 'no'; TruthfulQA, judged, "
            f"base: all {N} answers empty; TruthfulQA, judged, ad: all {N} answers empty") in board
    csv_text = render(report, "csv")
    assert f"all {N} answers empty" in next(ln for ln in csv_text.splitlines() if ",gen_truthfulness," in ln)
    metrics = json.loads(result_file(tqa, "metrics", "base").read_text())
    _metrics(tqa, "base", {**metrics, "degenerate": None})  # a file that says "fine" is believed
    assert collect_results(tiny_changes)[-1].runs["base"].degenerate == []


# --- item 3: figures -------------------------------------------------------------------------------------------------

@pytest.fixture
def figures(monkeypatch):
    drawn = []

    def keep(plt, fig, out_png):
        drawn.append(fig)
        return Path(out_png)

    monkeypatch.setattr(plots, "_save_figure", keep)
    return drawn


def test_bar_chart_intervals_zero_bars_and_titles(tiny_changes, figures, tmp_path):
    report = compare(collect_results(tiny_changes), baseline="base", n_boot=200)
    plots.plot_results(report, tmp_path / "bars.png")
    (fig,) = figures
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["HaluEval, similarity flow", "TruthfulQA"]
    for ax in axes:
        bar_groups = [c for c in ax.containers if isinstance(c, BarContainer)]
        assert len(bar_groups) == 2
        for bars in bar_groups:
            assert bars.errorbar is not None  # every bar here has per-sample values, so an interval
            for bar in bars:
                assert bar.get_linewidth() > 0  # a zero-height bar is still drawn
    texts = [t.get_text() for t in axes[0].texts]
    assert texts.count("0.200 ⚠") == 2  # the value of each run's bar is written (its answers all "no")


def test_tradeoff_panels_name_the_flow_and_say_when_inverted(figures, tmp_path):
    from test_scoreboard import _report, _samples, _write_run  # the scoreboard tests' result folders

    root = tmp_path / "r"
    _write_run(root, "base", _samples(0, {}))
    _write_run(root, "a1", _samples(1, {("HaluevalLLM", "hallucination_rate"): -0.1}))
    plots.plot_tradeoff(build_scoreboard(_report(root)), tmp_path / "t.png")
    (fig,) = figures
    titled = {ax.get_title(): ax for ax in fig.axes}
    assert list(titled) == ["TruthfulQA", "TruthfulQA, judged", "HaluEval, HHEM judge"]
    halu = titled["HaluEval, HHEM judge"]
    assert halu.yaxis_inverted() and "axis inverted" in halu.get_ylabel()
    assert not titled["TruthfulQA"].yaxis_inverted() and "inverted" not in titled["TruthfulQA"].get_ylabel()
    for ax in fig.axes:  # every point has both intervals as error bars
        assert ax.containers and all(len(c.lines[2]) == 2 for c in ax.containers)


def test_training_curves_legend_only_for_several_stages(figures, tmp_path):
    one, four = tmp_path / "one.jsonl", tmp_path / "four.jsonl"
    one.write_text("".join(json.dumps({"step": s, "stage": 1, "loss": 0.7 - s / 100}) + "\n" for s in range(1, 6)))
    four.write_text("".join(json.dumps({"step": s, "stage": 1 + (s - 1) // 3, "loss": 0.7}) + "\n"
                            for s in range(1, 13)))
    plots.plot_training_curves(one, tmp_path / "1.png", name="latest")
    plots.plot_training_curves(four, tmp_path / "4.png", name="best")
    fig_one, fig_four = figures
    assert fig_one.axes[0].get_legend() is None
    assert fig_one._suptitle.get_text() == "DPOP training curves: latest (one stage)"
    assert [t.get_text() for t in fig_four.axes[0].get_legend().get_texts()] == [
        f"curriculum stage {s}" for s in (1, 2, 3, 4)]
    assert fig_four._suptitle.get_text() == "DPOP training curves: best (4 curriculum stages)"


# --- item 10: make_tables without a baseline -------------------------------------------------------------------------

def test_make_tables_takes_the_base_run_and_says_so(tiny_changes, capsys):
    report = make_tables(TablesConfig(results_dir=str(tiny_changes), n_boot=100, scoreboard=False))
    out, err = capsys.readouterr()
    assert report.baseline == "base"
    assert err.splitlines()[0] == (f"no run named 'baseline' under {tiny_changes}: comparing against 'base', the run "
                                   "without an adapter (--baseline picks another)")
    assert "| Metric | base | ad |" in out and "### ad vs base" in out


def test_make_tables_stops_in_one_line_when_it_cannot_tell(tiny_changes, capsys, monkeypatch):
    _metrics(tiny_changes / "Halueval", "other_base", {"hallucination_rate": 0.1})
    monkeypatch.setattr(sys, "argv", [str(REPO / "scripts/make_tables.py")])
    from conftest import load_script

    main = load_script("scripts/make_tables.py").main
    with pytest.raises(ErrorExit) as exit_:
        run_cli(main, ["--results_dir", str(tiny_changes)])
    assert str(exit_.value) == (f"error: no run named 'baseline' under {tiny_changes} and several runs without an "
                                "adapter (base, other_base); pass --baseline with one of: ad, base, other_base")
    with pytest.raises(ErrorExit, match=r"no run named 'nope' under .*; pass --baseline with one of: ad, base"):
        run_cli(main, ["--results_dir", str(tiny_changes), "--baseline", "nope"])


def test_bar_chart_marks_values_scored_from_degenerate_answers(tiny_changes, figures, tmp_path):
    """Every HaluEval answer here is "no": its values carry " ⚠" in the figure as in the tables; MC2 (log-probs,
    no answers) does not."""
    report = compare(collect_results(tiny_changes), baseline="base", n_boot=100)
    plots.plot_results(report, tmp_path / "bars.png")
    (fig,) = figures
    titled = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    halu = [t.get_text() for t in titled["HaluEval, similarity flow"].texts]
    assert halu == ["0.200 ⚠", "0.200 ⚠"]
    assert not any("⚠" in t.get_text() for t in titled["TruthfulQA"].texts)
    assert "⚠" in fig._suptitle.get_text()
