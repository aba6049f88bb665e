"""IFEval: the verdicts are lm-evaluation-harness's own, the data readers agree, eval_ifeval.py runs end to end
(several adapters, resume) and answers as lm-eval's own ifeval task does; the tables pair IFEval records."""

import json
import os

import pytest

from aligner.core.paths import ifeval_path, nltk_data_dir

os.environ.setdefault("NLTK_DATA", str(nltk_data_dir()))  # before lm-eval's ifeval modules are imported
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from conftest import load_script  # noqa: E402

pytest.importorskip("lm_eval")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Hand-written responses, each aimed at a checker's edge: (key, response).
RESPONSES = [
    (1001, "Day one we land in Tokyo and marvel at the lights. Day two we journey to Kyoto."),  # no comma
    (1001, "Day one, Tokyo."),
    (1019, "Sure, here it is:\nall lowercase words here."),  # strict fails on the first line, loose drops it
    (1019, "all lowercase words here."),
    (1005, "Name: [name] Address: [address]"),  # 2 of 12 placeholders
    (102, "* one\n* two\n* three"),  # exactly 3 bullets
    (1012, "Write an email to my boss telling him that I am quitting. The email must contain a title wrapped in double "
           "angular brackets, i.e. <<title>>.\n<<Resignation>>\nDear boss, I quit."),
    (1000, "*Intro* short, with commas"),
    (1000, ""),  # empty: nothing is followed
    (1075, '```json\n{"product": "diaper", "comfort": "high"}\n```'),
    (1108, "Hamburgers are sandwiches in the eyes of many people who eat them every day."),  # English, not Kannada
    (1128, "It is unclear. Is there anything else I can help with?"),
    (1268, "Stress is real. I breathe. I walk. I write."),
]


@pytest.fixture(scope="module")
def raw_docs() -> dict:
    path = ifeval_path()
    if not path.is_file():
        pytest.skip(f"shared IFEval data not found at {path}")
    return {d["key"]: d for d in map(json.loads, path.read_text().splitlines())}


@pytest.fixture(scope="module")
def checkers():
    from aligner.eval.tasks.ifeval import load_checkers

    return load_checkers()


def _hub_rows(raw_docs: dict) -> list[dict]:
    """The rows as the hub's google/IFEval holds them: every argument name of every checker, mostly null."""
    names = sorted({k for d in raw_docs.values() for kw in d["kwargs"] for k in kw})
    return [{**d, "kwargs": [{n: kw.get(n) for n in names} for kw in d["kwargs"]]} for d in raw_docs.values()]


def test_verdicts_equal_lm_eval_process_results(raw_docs, checkers, monkeypatch):
    """Our records (both readers: the local file and hub-shaped rows) carry exactly the verdicts of lm-eval's
    ``process_results`` on the raw docs, and the metrics are lm-eval's aggregations of them."""
    import datasets
    from lm_eval.tasks.ifeval.utils import agg_inst_level_acc, process_results

    from aligner.data.sources import ifeval as source
    from aligner.eval.tasks.ifeval import IFEVAL_METRICS, ifeval_metrics, score_responses

    local = {it.key: it for it in source.load_ifeval(ifeval_path())[0]}
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: datasets.Dataset.from_list(_hub_rows(raw_docs)))
    hub_items, hub_source = source.load_ifeval(None)
    assert hub_source == f"hf:{source.HF_DATASET}" and len(hub_items) == len(local) == 541
    hub = {it.key: it for it in hub_items}
    assert all(hub[k] == local[k] for k in local)  # null arguments dropped: the two read the same

    keys, responses = zip(*RESPONSES)
    theirs = [process_results(raw_docs[k], [r]) for k, r in RESPONSES]
    for items in (local, hub):
        records = score_responses(checkers, [items[k] for k in keys], responses)
        for rec, ref, (k, r) in zip(records, theirs, RESPONSES):
            assert (rec["key"], rec["prompt"], rec["response"]) == (k, raw_docs[k]["prompt"], r)
            assert rec["instruction_id_list"] == raw_docs[k]["instruction_id_list"]
            assert {m: rec[m] for m in IFEVAL_METRICS} == {m: ref[m] for m in IFEVAL_METRICS}
    metrics = ifeval_metrics(records)
    assert metrics["n_prompts"] == len(RESPONSES)
    assert metrics["n_instructions"] == sum(len(raw_docs[k]["instruction_id_list"]) for k in keys)
    for m in IFEVAL_METRICS:
        expected = (agg_inst_level_acc([t[m] for t in theirs]) if m.startswith("inst")
                    else sum(t[m] for t in theirs) / len(theirs))
        assert metrics[m] == pytest.approx(expected, abs=1e-12)
    # the responses do probe the checkers: strict and loose differ, both outcomes occur, empty follows nothing
    by = {(k, r): rec for (k, r), rec in zip(RESPONSES, records)}
    assert not by[RESPONSES[2]]["prompt_level_strict_acc"] and by[RESPONSES[2]]["prompt_level_loose_acc"]
    assert by[RESPONSES[0]]["prompt_level_strict_acc"] and not by[RESPONSES[1]]["prompt_level_strict_acc"]
    assert by[RESPONSES[8]]["inst_level_loose_acc"] == [False, False, False]
    assert 0 < metrics["prompt_level_strict_acc"] < metrics["prompt_level_loose_acc"] < 1


def test_missing_punkt_data_says_what_to_install(tmp_path, monkeypatch):
    import nltk

    from aligner.eval.tasks import ifeval

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    monkeypatch.setattr(ifeval, "nltk_data_dir", lambda: tmp_path / "absent")
    with pytest.raises(ifeval.IFEvalSetupError, match="nltk.downloader punkt_tab"):
        ifeval.prepare_nltk()
    with pytest.raises(ifeval.IFEvalSetupError, match="no such folder"):
        ifeval.prepare_nltk(tmp_path / "absent")


def test_bad_rows_are_named(tmp_path, tiny_model_dir):
    from aligner.core.cli import run_cli

    script = load_script("evaluation/eval_ifeval.py")
    bad = tmp_path / "bad.jsonl"
    row = {"key": 1, "prompt": "Say hi.", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
    bad.write_text(json.dumps(row) + "\n" + json.dumps({**row, "key": 2, "kwargs": []}) + "\n")
    argv = ["--model_path", str(tiny_model_dir), "--run_name", "x", "--output_dir", str(tmp_path / "o"),
            "--data_path", str(bad), "--no_progress"]
    with pytest.raises(SystemExit, match=r"bad\.jsonl.*line 2.*key 2: 'kwargs' must be a list of 1"):
        run_cli(script.main, argv)
    bad.write_text(json.dumps({**row, "instruction_id_list": ["made:up"]}) + "\n")
    with pytest.raises(SystemExit, match=r"key 1: instruction\(s\) \['made:up'\] have no checker"):
        run_cli(script.main, argv)


def test_max_new_tokens_is_lm_eval_ifeval_max_gen_toks():
    """LM_EVAL_MAX_GEN_TOKS (and so the default --max_new_tokens) is the installed lm-eval ifeval task's
    generation_kwargs.max_gen_toks, read from the task's own yaml."""
    import pathlib

    import lm_eval.tasks
    import yaml

    from aligner.eval.tasks.ifeval import LM_EVAL_MAX_GEN_TOKS, IFEvalConfig

    class TaskLoader(yaml.SafeLoader):  # the yaml names its functions with a custom "!function" tag
        pass

    TaskLoader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    task_yaml = pathlib.Path(lm_eval.tasks.__file__).parent / "ifeval" / "ifeval.yaml"
    task = yaml.load(task_yaml.read_text(), Loader=TaskLoader)
    assert task["task"] == "ifeval"
    want = task["generation_kwargs"]["max_gen_toks"]
    assert isinstance(want, int) and LM_EVAL_MAX_GEN_TOKS == want
    assert IFEvalConfig.__dataclass_fields__["max_new_tokens"].default == want


# ---------------------------------------------------------------------------------------------
# the script on the tiny model
# ---------------------------------------------------------------------------------------------

LIMIT, MAX_NEW = 4, 16


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, tiny_model_dir):
    import torch
    from peft import LoraConfig, get_peft_model

    from aligner.core.models import load_causal_lm

    model, _ = load_causal_lm(tiny_model_dir)
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("ifeval-lora") / "lora_a"
    get_peft_model(model, LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                     init_lora_weights=False)).save_pretrained(path)
    return path


def _argv(model, out, *extra):
    return ["--model_path", str(model), "--run_name", "r", "--output_dir", str(out), "--data_path", str(ifeval_path()),
            "--limit", str(LIMIT), "--max_new_tokens", str(MAX_NEW), "--batch_size", "2", "--dtype", "fp32",
            "--device", "cpu", "--no_progress", *extra]


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def script_run(tmp_path_factory, tiny_model_dir, adapter_dir, raw_docs):
    out = tmp_path_factory.mktemp("ifeval-run")
    results = load_script("evaluation/eval_ifeval.py").main(_argv(tiny_model_dir, out, "--lora_path", "none",
                                                                  str(adapter_dir)))
    return out, results


def test_script_end_to_end_with_adapters(script_run, raw_docs, checkers, adapter_dir):
    from lm_eval.tasks.ifeval.utils import agg_inst_level_acc, process_results

    out, results = script_run
    assert sorted(results) == ["base", "lora_a"]
    import lm_eval

    from aligner.prompts import DEFAULT_DATE_STRING

    run_cfg = json.loads((out / "run_config_r_lora_a.json").read_text())
    assert run_cfg["flags"]["date_string"] == DEFAULT_DATE_STRING == "26 Jul 2024"
    assert run_cfg["versions"]["lm-eval"] == lm_eval.__version__ and run_cfg["n_documents"] == {"docs": LIMIT}
    assert run_cfg["adapter"] == str(adapter_dir) and run_cfg["tag"] == "r_lora_a"
    assert run_cfg["flags"]["max_new_tokens"] == MAX_NEW and run_cfg["flags"]["limit"] == LIMIT
    responses = {}
    for name in results:
        metrics = json.loads((out / f"metrics_r_{name}.json").read_text())
        records = _read(out / f"detailed_r_{name}.jsonl")
        assert [r["key"] for r in records] == list(raw_docs)[:LIMIT]
        refs = [process_results(raw_docs[r["key"]], [r["response"]]) for r in records]
        for rec, ref in zip(records, refs):
            assert {k: rec[k] for k in ref} == ref
        assert metrics["n_prompts"] == LIMIT and metrics["date_string"] == DEFAULT_DATE_STRING
        assert metrics["backend"] == "hf"  # the backend that ran, not "auto"
        assert metrics["lm_eval"] == lm_eval.__version__
        assert metrics["prompt_level_loose_acc"] == pytest.approx(
            sum(r["prompt_level_loose_acc"] for r in refs) / LIMIT)
        assert metrics["inst_level_strict_acc"] == pytest.approx(agg_inst_level_acc(
            [r["inst_level_strict_acc"] for r in refs]))
        responses[name] = [r["response"] for r in records]
    assert responses["base"] != responses["lora_a"]  # the adapter was applied


def test_resume_finishes_a_torn_run(tmp_path, script_run, tiny_model_dir):
    out, _ = script_run
    full = _read(out / "detailed_r_base.jsonl")
    part = tmp_path / "detailed_r.jsonl"
    part.write_text("".join(json.dumps(r) + "\n" for r in full[:2]) + '{"key": 10')  # a crash mid-line
    fingerprint = out / "detailed_r_base.jsonl.fingerprint.json"
    (tmp_path / "detailed_r.jsonl.fingerprint.json").write_text(fingerprint.read_text())
    load_script("evaluation/eval_ifeval.py").main(_argv(tiny_model_dir, tmp_path, "--resume"))
    assert _read(part) == full


def test_responses_equal_lm_eval_ifeval_task(tmp_path, script_run, tiny_model_dir, raw_docs):
    """lm-eval's own ifeval task (chat template applied, greedy, max_gen_toks as ours) on the same model and
    prompts: the same contexts, the same responses, the same four metrics."""
    import pathlib

    import lm_eval
    import lm_eval.tasks
    from lm_eval.tasks import TaskManager

    from aligner.prompts import DEFAULT_DATE_STRING

    builtin = pathlib.Path(lm_eval.tasks.__file__).parent / "ifeval" / "ifeval.yaml"
    (tmp_path / "local_ifeval.yaml").write_text(
        f"include: {builtin}\ntask: local_ifeval\ndataset_path: json\ndataset_name: null\n"
        f"dataset_kwargs:\n  data_files:\n    train: {ifeval_path()}\n  cache_dir: {tmp_path / 'hf_cache'}\n")
    res = lm_eval.simple_evaluate(
        model="hf", model_args={"pretrained": str(tiny_model_dir), "dtype": "float32",
                                "chat_template_args": {"date_string": DEFAULT_DATE_STRING}},
        device="cpu", tasks=["local_ifeval"], task_manager=TaskManager(include_path=str(tmp_path),
                                                                        include_defaults=False),
        limit=LIMIT, batch_size=1, gen_kwargs={"max_gen_toks": MAX_NEW}, apply_chat_template=True,
        log_samples=True, bootstrap_iters=0)
    out, _ = script_run
    ours = {r["key"]: r for r in _read(out / "detailed_r_base.jsonl")}
    samples = res["samples"]["local_ifeval"]
    assert len(samples) == LIMIT
    from aligner.core.models import load_tokenizer
    from aligner.prompts import ifeval_messages, render_chat

    tok = load_tokenizer(tiny_model_dir)
    for s in samples:
        key = s["doc"]["key"]
        assert s["arguments"][0][0] == render_chat(tok, ifeval_messages(raw_docs[key]["prompt"]))
        assert s["filtered_resps"][0] == ours[key]["response"]
    metrics = json.loads((out / "metrics_r_base.json").read_text())
    for m in ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc"):
        assert metrics[m] == pytest.approx(res["results"]["local_ifeval"][f"{m},none"], abs=1e-12)


# ---------------------------------------------------------------------------------------------
# the report: records paired by IFEval's key; the pooled instruction-level metrics get no interval
# ---------------------------------------------------------------------------------------------

def test_tables_pair_ifeval_records_by_key(tmp_path, raw_docs, checkers):
    from aligner.core.io import write_json_atomic
    from aligner.data.sources.ifeval import load_ifeval
    from aligner.eval.metrics.registry import declared
    from aligner.eval.tasks.ifeval import IFEVAL_METRICS, ifeval_metrics, score_responses
    from aligner.report.bootstrap import paired_values
    from aligner.report.tables import collect_results, compare

    items = {it.key: it for it in load_ifeval(ifeval_path())[0]}
    keys = [k for k, _ in RESPONSES[:8]]
    folder = tmp_path / "IFEval"
    runs = {"baseline": [r for _, r in RESPONSES[:8]], "other": ["" if i % 3 else r for i, (_, r) in
                                                                 enumerate(RESPONSES[:8])]}
    # the same prompts with another key each (1001 and 1019 appear twice): unique keys for pairing
    records = {}
    for run, responses in runs.items():
        recs = score_responses(checkers, [items[k] for k in keys], responses)
        for i, rec in enumerate(recs):
            rec["key"] = i
        records[run] = recs
        ordered = recs if run == "baseline" else recs[::-1]  # another order: pairing must go by key
        folder.mkdir(exist_ok=True)
        (folder / f"detailed_{run}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ordered))
        write_json_atomic(folder / f"metrics_{run}.json", ifeval_metrics(recs))
    bench = next(b for b in collect_results(tmp_path) if b.name == "IFEval")
    xb, xr, _ = paired_values(bench, "prompt_level_strict_acc", "baseline", "other")
    assert list(xb) == [float(r["prompt_level_strict_acc"]) for r in records["baseline"]]
    assert list(xr) == [float(r["prompt_level_strict_acc"]) for r in records["other"]]
    report = compare([bench], baseline="baseline", n_boot=200)
    changes = {c.metric: c for c in report.changes["IFEval"]["other"]}
    assert set(IFEVAL_METRICS) <= set(changes)
    for m in IFEVAL_METRICS:
        if declared(m).pooled:
            assert changes[m].ci is None  # a ratio of sums: no per-sample mean to resample
        else:
            assert changes[m].ci is not None and changes[m].ci.consistent and changes[m].ci.n_pairs == len(keys)
