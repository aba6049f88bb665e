"""Training fidelity (issue 14 "Training", issue 15 items 4 and 6).

* With ``--study_compat`` each recipe tokenizes pairs exactly as the study's script did: a literal copy of the
  study's collate code (script:line named) on the real Llama-3.2 tokenizer gives the same token ids and the same
  first scored position; without it, one BOS, the response span only, responses never cut.
* The latest recipe's budget-cut context is decoded with the tokenizer's clean-up, as transformers 4.56 (which the
  study ran) decoded it; pairs with an empty field are kept as the study's readers kept them; the context is read
  by each recipe's own rule (``--truncation budget``, ``--keep_empty_fields``, ``--context_fields study``): literal
  copies of the study's readers (script:line named) give the same fields.
* The latest recipe's system prompt; the plain format's separators; weight decay 0.01.
* On the tiny model: scoring the last prompt token adds exactly that token's log-prob (plain per-sequence
  log-softmax); a pair whose response is cut away trains nothing; ``--schedule per_stage`` restarts the LR and
  the AdamW state at every stage, ``--leftover drop`` trains floor(N / step) steps; ``--rpo_alpha``'s loss/nll is
  the pooled NLL of the chosen answers computed directly; ``--report_to tensorboard`` writes the train_log.jsonl
  values, read back from the event files.
"""

import json
import math

import pytest
import torch
from conftest import load_script
from test_text_cleanup import DECODED_BY_TRANSFORMERS_4, PASSAGE

from aligner.core.io import DataError
from aligner.core.models import load_causal_lm, load_tokenizer
from aligner.prompts import DEFAULT_DATE_STRING, DPO_IMPROVED_SYSTEM, DPO_LATEST_SYSTEM
from aligner.train.preference import LoadStats, PairLevel, PairRules, PairTokenizer, PreferencePair, load_pairs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SCRIPTS = {"first": "first_improvement/training/train_dpop.py",
           "improved": "first_improvement/training/train_dpop_improved.py",
           "latest": "further_improvement/training/train_dpop.py"}
MAX_LEN = 160  # small, so that HaluEval knowledge makes many pairs too long


def _cfg(recipe: str, *flags: str):
    """The DPOPTrainingConfig a recipe script builds from its command line."""
    args = ["--model_path", "m", "--output_dir", "o", "--max_length", str(MAX_LEN), *flags]
    args += ["--data_dir", "d"]
    parsed = load_script(SCRIPTS[recipe]).parse_args(args)
    return parsed[1]


@pytest.fixture(scope="module")
def l3tok(llama32_tokenizer_dir):
    return load_tokenizer(llama32_tokenizer_dir)


@pytest.fixture(scope="module")
def pairs(halueval_file):
    rows = [json.loads(line) for line, _ in zip(open(halueval_file, encoding="utf-8"), range(24))]
    out = [PreferencePair(r["question"], r["knowledge"], r["right_answer"], r["hallucinated_answer"]) for r in rows]
    # NQ-style contexts (space-joined tokens), cut and whole; pairs with an empty field (--keep_empty_fields)
    out.append(PreferencePair("Where is the band from?", PASSAGE, "England.", "The U.S ."))
    out.append(PreferencePair("Is it American?", "The band , which is n't from the U.S . It 's British .", "No.", "Yes."))
    out.append(PreferencePair("Which year?", "It was 1999 .", "", "It was 2001."))
    out.append(PreferencePair("", "The tower is in Paris .", "Paris.", ""))
    # a prompt longer than max_length on its own, and a pair with no context
    out.append(PreferencePair("Who wrote it?", " ".join(r["knowledge"] for r in rows[:6]), "Alice.", "Bob."))
    out.append(PreferencePair(" Which year?", "", "1999", "It was 2001."))
    out.append(PreferencePair("What happened?", "Short context.", "It rained. " * 60, "It snowed."))  # answer > budget
    return out


# --- literal copies of the study's tokenization --------------------------------------------------------------

def _study_first(tok, p: PreferencePair):
    """first_improvement/training/train_dpop.py:72-109 (collate_pairs) and :210-221 (positions >= prompt_lens,
    position 0 never)."""
    full_prompt = p.context + p.prompt
    prompt_len = len(tok(full_prompt, truncation=True, max_length=MAX_LEN, add_special_tokens=False)["input_ids"])
    out = []
    for resp in (p.chosen, p.rejected):
        ids = tok(full_prompt + resp, truncation=True, max_length=MAX_LEN)["input_ids"]
        out.append((ids, min(max(prompt_len, 1), len(ids))))
    return out


def _study_improved(tok, p: PreferencePair):
    """first_improvement/training/train_dpop_improved.py:76-128."""
    messages = [{"role": "system", "content": DPO_IMPROVED_SYSTEM},
                {"role": "user", "content": f"Context: {p.context}\n\nQuestion: {p.prompt}"}]
    prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                     date_string=DEFAULT_DATE_STRING)
    prompt_len = len(tok(prompt, truncation=True, max_length=MAX_LEN, add_special_tokens=False)["input_ids"])
    out = []
    for resp in (p.chosen, p.rejected):
        ids = tok(prompt + resp + tok.eos_token, truncation=True, max_length=MAX_LEN)["input_ids"]
        out.append((ids, min(max(prompt_len, 1), len(ids))))
    return out


def _decode_on_transformers_4_56(tok, ids, **kw):
    """``tok.decode`` as the study ran it on transformers 4.56: the tokenizer's clean-up applied when its config asks
    for it (transformers 5 skips it for BPE), written out here as 4.56's ``clean_up_tokenization`` chain, apart from
    the project's own rule (checked against 4.56's recorded output in tests/test_text_cleanup.py)."""
    text = tok.decode(ids, **kw)
    if not tok.clean_up_tokenization_spaces:
        return text
    return (text.replace(" .", ".").replace(" ?", "?").replace(" !", "!").replace(" ,", ",").replace(" ' ", "'")
            .replace(" n't", "n't").replace(" 'm", "'m").replace(" 's", "'s").replace(" 've", "'ve")
            .replace(" 're", "'re"))


def _study_latest(tok, p: PreferencePair):
    """further_improvement/training/train_dpop.py:98-135 (DPOProcessor._process_single), :146-161 (collate_fn),
    :198-204 (prompt_lens - 1, position 0 never); None when the processor skips the pair."""
    system = {"role": "system", "content": DPO_LATEST_SYSTEM}
    prefix = tok.apply_chat_template([system, {"role": "user", "content": f"Question: {p.prompt}\n\nContext: "}],
                                     tokenize=True, add_generation_prompt=True, date_string=DEFAULT_DATE_STRING)
    prefix_ids = prefix["input_ids"]
    ctx_ids = tok.encode(p.context, add_special_tokens=False)
    answer = max(len(tok.encode(r + tok.eos_token, add_special_tokens=False)) for r in (p.chosen, p.rejected))
    avail = MAX_LEN - (len(prefix_ids) + answer)
    if avail < 0:
        return None
    ctx = _decode_on_transformers_4_56(tok, ctx_ids[:avail] if len(ctx_ids) > avail else ctx_ids, skip_special_tokens=True)
    prompt = tok.apply_chat_template([system, {"role": "user", "content": f"Context: {ctx}\n\nQuestion: {p.prompt}"}],
                                     tokenize=False, add_generation_prompt=True, date_string=DEFAULT_DATE_STRING)
    prompt_len = len(tok(prompt, truncation=True, max_length=MAX_LEN, add_special_tokens=True)["input_ids"])
    out = []
    for resp in (p.chosen, p.rejected):
        ids = tok(prompt + resp + tok.eos_token, truncation=True, max_length=MAX_LEN, add_special_tokens=True)["input_ids"]
        out.append((ids, min(max(prompt_len - 1, 1), len(ids))))
    return out


STUDY = {"first": _study_first, "improved": _study_improved, "latest": _study_latest}


@pytest.mark.parametrize("recipe", ["first", "improved", "latest"])
def test_study_compat_tokenizes_as_the_studys_code(recipe, l3tok, pairs):
    ptok = PairTokenizer.from_config(l3tok, _cfg(recipe, "--study_compat"))
    n_cut = n_empty = n_skipped = 0
    for p in pairs:
        want, got = STUDY[recipe](l3tok, p), ptok.encode(p)
        if want is None:
            assert got is None
            n_skipped += 1
            continue
        assert [(e.input_ids, e.response_start) for e in (got.chosen, got.rejected)] == want
        n_cut += got.response_cut
        n_empty += got.response_empty
        bos = [e.input_ids[:3].count(l3tok.bos_token_id) for e in (got.chosen, got.rejected)]
        assert bos == ([1, 1] if recipe == "first" else [2, 2])
    print(recipe, "pairs with a response cut:", n_cut, "left without response:", n_empty, "skipped:", n_skipped)
    assert n_cut > 0  # the comparison covered the study's truncation, not only pairs that fit
    if recipe == "latest":
        assert n_empty == 0 and n_skipped >= 1  # the budget keeps every answer but its last tokens
    else:
        assert n_empty >= 1  # the long prompt loses its whole response: no gradient


@pytest.mark.parametrize("recipe", ["first", "improved", "latest"])
def test_defaults_keep_one_bos_score_the_response_only_and_never_cut_it(recipe, l3tok, pairs):
    cfg = _cfg(recipe)
    assert (cfg.truncation, cfg.plain_prompt, cfg.double_bos, cfg.score_last_prompt_token, cfg.leftover,
            cfg.keep_identical, cfg.keep_empty_fields, cfg.context_fields) == \
        ("context", "separated", False, False, "wrap", False, False, "any")
    ptok = PairTokenizer.from_config(l3tok, cfg)
    compat = PairTokenizer.from_config(l3tok, _cfg(recipe, "--study_compat"))
    for p in pairs[:6] + pairs[-3:]:
        enc, old = ptok.encode(p), compat.encode(p)
        if enc is None:  # the over-long answer: skipped (never cut)
            assert len(l3tok(p.chosen)["input_ids"]) > MAX_LEN
            continue
        eos = l3tok.eos_token if recipe != "first" else ""
        for side, response in ((enc.chosen, p.chosen), (enc.rejected, p.rejected)):
            assert side.input_ids.count(l3tok.bos_token_id) == 1 and side.input_ids[0] == l3tok.bos_token_id
            assert len(side.input_ids) <= MAX_LEN
            assert l3tok.decode(side.input_ids[side.response_start:]) == response + eos  # whole, untouched
        if recipe != "first" and old is not None and not old.response_cut:
            # the study's span starts one token earlier: the "\n\n" closing the assistant header
            assert l3tok.convert_ids_to_tokens(old.chosen.input_ids[old.chosen.response_start]) == "ĊĊ"
            assert old.chosen.n_response == enc.chosen.n_response + 1


def _latest_prompt_context(ptok: PairTokenizer, pair: PreferencePair) -> str:
    """The context a tokenized latest-recipe pair's chosen sequence holds, read back from its ids."""
    text = ptok.tokenizer.decode(ptok.encode(pair).chosen.input_ids)
    head, tail = "<|start_header_id|>user<|end_header_id|>\n\nContext: ", f"\n\nQuestion: {pair.prompt}<|eot_id|>"
    return text[text.index(head) + len(head): text.index(tail)]


def test_latest_budget_context_is_cleaned_up_as_transformers_4_56_decoded_it(l3tok, llama32_tokenizer_dir):
    """T18: the budget-cut context, decoded on transformers 4.56 by the study (FU:125), held the clean-up of the
    tokenizer's config; the recorded 4.56 strings (tests/test_text_cleanup.py) come back inside the prompt."""
    from transformers import AutoTokenizer

    pair = PreferencePair("Where is the band from?", PASSAGE, "England.", "The U.S.")
    prefix = l3tok.apply_chat_template(
        [{"role": "system", "content": DPO_LATEST_SYSTEM}, {"role": "user", "content": f"Question: {pair.prompt}\n\nContext: "}],
        tokenize=True, add_generation_prompt=True, date_string=DEFAULT_DATE_STRING)["input_ids"]
    base = len(prefix) + max(len(l3tok.encode(r + l3tok.eos_token, add_special_tokens=False))
                             for r in (pair.chosen, pair.rejected))
    for budget in (40, 57, 110):  # the context's first 40, 57 tokens, all 110
        for flags in (("--study_compat",), ("--truncation", "budget")):
            ptok = PairTokenizer.from_config(l3tok, _cfg("latest", *flags, "--max_length", str(base + budget)))
            assert _latest_prompt_context(ptok, pair) == DECODED_BY_TRANSFORMERS_4[budget], (budget, flags)
    spaced = l3tok.decode(l3tok.encode(PASSAGE, add_special_tokens=False)[:57])
    assert "is n't from the U.S . It 's" in spaced  # what transformers 5 alone would have put in the prompt
    # the rule follows the tokenizer's own setting; --truncation context never decodes a context that fits
    plain = AutoTokenizer.from_pretrained(str(llama32_tokenizer_dir), clean_up_tokenization_spaces=False)
    ptok = PairTokenizer.from_config(plain, _cfg("latest", "--study_compat", "--max_length", str(base + 57)))
    assert _latest_prompt_context(ptok, pair) == spaced
    ptok = PairTokenizer.from_config(l3tok, _cfg("latest", "--max_length", "1024"))
    assert _latest_prompt_context(ptok, pair) == PASSAGE


# --- literal copies of the study's readers of a pair line ---------------------------------------------------

def _study_read_first(j: dict) -> dict:
    """first_improvement/training/train_dpop.py:43-48 (train_dpop_improved.py:43-48, the same)."""
    return {
        "context": j.get("context", ""),
        "prompt": j["prompt"],
        "chosen": j["chosen"],
        "rejected": j["rejected"]
    }


def _study_read_latest(e: dict) -> dict:
    """further_improvement/training/train_dpop.py:44-50 (normalize_entry), then the answers as :109-110 and
    :148-149 use them: ``(entry.get('chosen') or "")``."""
    entry = {
        "context": e.get("context", e.get("knowledge", "")),
        "prompt": e.get("prompt", e.get("question", "")),
        "chosen": e.get("chosen", e.get("ideal_answer", "")),
        "rejected": e.get("rejected", e.get("fake_answer", "")),
    }
    return {**entry, "chosen": (entry.get('chosen') or ""), "rejected": (entry.get('rejected') or "")}


STUDY_READ = {"first": _study_read_first, "improved": _study_read_first, "latest": _study_read_latest}


def _fields(pairs) -> list[dict]:
    return [{"context": p.context, "prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]


def _write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("recipe", ["first", "improved", "latest"])
def test_study_compat_keeps_pairs_with_an_empty_field_as_the_study_read_them(recipe, l3tok, tmp_path):
    """T19: the study kept an empty prompt or answer (every recipe: the string as it is), and the latest recipe
    also a missing or null one (as ""): a chat answer of EOS alone.  By default the line is an error."""
    rows = [{"prompt": "Which year?", "context": "It was 1999 .", "chosen": "", "rejected": "2001"},
            {"prompt": "", "context": "c", "chosen": "Alice", "rejected": "Bob"},
            {"prompt": "Who?", "context": "c", "chosen": "Alice", "rejected": "  "},
            {"prompt": "Who?", "context": "c", "chosen": "Alice", "rejected": "Bob"}]
    if recipe == "latest":  # the first and improved scripts stop at a missing key (KeyError)
        rows += [{"question": "Who?", "knowledge": "k", "ideal_answer": "Alice", "fake_answer": None},
                 {"question": "Who?", "knowledge": "k", "ideal_answer": "Alice"},
                 {"knowledge": "k", "chosen": "Alice", "rejected": "Bob"}]
    path = _write_rows(tmp_path / "pairs.jsonl", rows)
    for flags in (("--study_compat",), ("--keep_empty_fields",)):
        stats = LoadStats()
        pairs = load_pairs(path, stats=stats, rules=PairRules.from_config(_cfg(recipe, *flags)))
        assert _fields(pairs) == [STUDY_READ[recipe](r) for r in rows]
        assert stats.n_empty == len(rows) - 1 and stats.n_read == len(rows)
    for flags in ((), ("--study_compat", "--no-keep_empty_fields")):
        with pytest.raises(DataError, match=r"pairs\.jsonl, line 1: empty field 'chosen'"):
            load_pairs(path, rules=PairRules.from_config(_cfg(recipe, *flags)))
    if recipe != "first":  # chat: the empty answer is trained as EOS alone
        enc = PairTokenizer.from_config(l3tok, _cfg(recipe, "--keep_empty_fields")).encode(pairs[0])
        assert enc.chosen.input_ids[enc.chosen.response_start:] == [l3tok.eos_token_id]


@pytest.mark.parametrize("recipe", ["first", "improved", "latest"])
def test_study_compat_reads_the_context_by_the_recipes_rule(recipe, tmp_path):
    """T20: the first and improved scripts read only ``context``, the latest ``knowledge`` only when the record has
    no ``context`` key; by default the first non-empty of context, knowledge, contexts."""
    answers = {"prompt": "q", "chosen": "a", "rejected": "b"}
    rows = [{**answers, "context": "", "knowledge": "K1"}, {**answers, "knowledge": "K2"},
            {**answers, "contexts": ["x", "y"]}, {**answers, "context": "C", "knowledge": "K3"}, answers]
    path = _write_rows(tmp_path / "pairs.jsonl", rows)
    for flags in (("--study_compat",), ("--context_fields", "study")):
        pairs = load_pairs(path, rules=PairRules.from_config(_cfg(recipe, *flags)))
        assert [p.context for p in pairs] == [STUDY_READ[recipe](r)["context"] for r in rows]
    assert [p.context for p in load_pairs(path, rules=PairRules.from_config(_cfg(recipe)))] == \
        ["K1", "K2", "x\n\ny", "C", ""]
    assert [STUDY_READ[recipe](r)["context"] for r in rows] == \
        (["", "", "", "C", ""] if recipe != "latest" else ["", "K2", "", "C", ""])


def test_recipe_system_prompts_and_the_plain_separators(l3tok):
    p = PreferencePair("Who designed it?", "The Eiffel Tower was designed by Eiffel's company.", "Eiffel.", "Bob.")
    latest = PairTokenizer.from_config(l3tok, _cfg("latest")).build_prompt(p.context, p.prompt)
    improved = PairTokenizer.from_config(l3tok, _cfg("improved")).build_prompt(p.context, p.prompt)
    assert f"<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: " \
           f"{DEFAULT_DATE_STRING}\n\n{DPO_LATEST_SYSTEM}<|eot_id|>" in latest
    assert DPO_LATEST_SYSTEM.startswith("You are a careful and honest assistant. Always answer using ONLY")
    assert DPO_IMPROVED_SYSTEM in improved and DPO_LATEST_SYSTEM not in improved
    assert f"<|start_header_id|>user<|end_header_id|>\n\nContext: {p.context}\n\nQuestion: {p.prompt}<|eot_id|>" in latest
    own = _cfg("latest", "--system_prompt", "Be brief.")
    assert "\n\nBe brief.<|eot_id|>" in PairTokenizer.from_config(l3tok, own).build_prompt(p.context, p.prompt)
    # plain: separated by default, the study's raw concatenation with --study_compat (or --plain_prompt raw)
    raw = PreferencePair(" Who designed it?", "The tower was built in 1889.", "Eiffel", "Bob")
    for flags, text in ((("--plain_prompt", "separated"), "The tower was built in 1889.\n\nWho designed it?\nEiffel"),
                        (("--study_compat",), "The tower was built in 1889. Who designed it?Eiffel"),
                        (("--plain_prompt", "raw"), "The tower was built in 1889. Who designed it?Eiffel")):
        enc = PairTokenizer.from_config(l3tok, _cfg("first", *flags)).encode(raw)
        assert l3tok.decode(enc.chosen.input_ids, skip_special_tokens=True) == text
    # the settings the study's trainers ran: AdamW weight decay 0.01 (torch's default), the latest recipe's clamp
    assert {r: _cfg(r).weight_decay for r in SCRIPTS} == {r: 0.01 for r in SCRIPTS}
    assert {r: _cfg(r).logit_clamp for r in SCRIPTS} == {"first": None, "improved": None, "latest": 50.0}
    assert {r: _cfg(r).schedule for r in SCRIPTS} == {"first": "per_stage", "improved": "global", "latest": "per_stage"}


def test_scoring_the_last_prompt_token_adds_its_log_prob(tiny_model_dir):
    model, tok = load_causal_lm(tiny_model_dir)
    p = PreferencePair("Who wrote the letter?", "A letter from Alice to Bob.", "Alice wrote it.", "Bob did.")
    base = PairTokenizer(tok, 256).encode(p)
    shifted = PairTokenizer(tok, 256, score_last_prompt_token=True).encode(p)
    for a, b in ((base.chosen, shifted.chosen), (base.rejected, shifted.rejected)):
        assert a.input_ids == b.input_ids and b.response_start == a.response_start - 1 and b.n_response == a.n_response + 1

        # plain computation: one sequence, full log-softmax
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([a.input_ids])).logits.float(), -1)[0]

        def span(e, logp=logp):
            return sum(logp[t - 1, e.input_ids[t]].item() for t in range(e.response_start, len(e.input_ids)))

        extra = logp[b.response_start - 1, a.input_ids[b.response_start]].item()
        assert span(b) == pytest.approx(span(a) + extra, abs=1e-5) and extra < 0


# --- trainer runs on the tiny model ---------------------------------------------------------------------------

def _levels(halueval_file, n_easy=6, n_medium=6):
    rows = [json.loads(line) for line, _ in zip(open(halueval_file, encoding="utf-8"), range(n_easy + n_medium))]
    mk = [PreferencePair(r["question"], r["knowledge"][:200], r["right_answer"], r["hallucinated_answer"]) for r in rows]
    return [PairLevel("easy", mk[:n_easy], halueval_file), PairLevel("medium", mk[n_easy:], halueval_file)]


def _reference_pooled_nll(model, encoded):
    """-sum of the chosen answers' token log-probs / their token count, one sequence at a time."""
    total, count = 0.0, 0
    with torch.no_grad():
        for e in encoded:
            logp = torch.log_softmax(model(input_ids=torch.tensor([e.input_ids])).logits.float(), -1)[0]
            total += sum(logp[t - 1, e.input_ids[t]].item() for t in range(e.response_start, len(e.input_ids)))
            count += e.n_response
    return -total / count


def test_per_stage_schedule_leftover_drop_rpo_and_tensorboard(tiny_model_dir, halueval_file, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from transformers import get_scheduler

    from aligner.train.config import DPOPTrainingConfig
    from aligner.train.dpop_trainer import DPOPTrainer

    cfg = DPOPTrainingConfig(model_path=str(tiny_model_dir), output_dir=str(tmp_path / "run"), epochs=3, lr=1e-3,
                             warmup_steps=2, per_device_batch_size=2, grad_accum_steps=2, max_length=128,
                             lora_dropout=0.0, rpo_alpha=0.5, leftover="drop", report_to="tensorboard",
                             progress=False, save_every_steps=0)
    assert cfg.schedule == "per_stage" and cfg.weight_decay == 0.01
    trainer = DPOPTrainer(cfg, _levels(halueval_file))
    result = trainer.train()
    plan = trainer.plan
    # stages of 6, 6 + 3 and 12 pairs, 4 pairs per step: floor -> 1, 2, 3 steps; the leftover pairs not trained
    assert [plan.steps[s] for s in plan.stages] == [1, 2, 3] and result.global_step == 6
    assert [d["dropped_pairs"] for d in plan.description] == [2, 1, 0]
    log = [json.loads(x) for x in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["pairs_seen"] for r in log] == [4 * k for k in range(1, 7)]
    # The LR: every stage runs its own get_scheduler("linear", warmup 2, its steps) from lr 0, as the study's loop.
    want = []
    for s in plan.stages:
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        sched = get_scheduler("linear", optimizer=opt, num_warmup_steps=2, num_training_steps=plan.steps[s])
        for _ in range(plan.steps[s]):
            want.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
    assert [r["lr"] for r in log] == pytest.approx(want, abs=1e-15) and want == pytest.approx([0, 0, 5e-4, 0, 5e-4, 1e-3])
    # A new AdamW per stage: after the run its state has counted only the last stage's 3 steps (6 without reset).
    inner = trainer.optimizer
    while hasattr(inner, "optimizer"):
        inner = inner.optimizer
    assert {int(st["step"]) for st in inner.state.values()} == {3}
    assert inner.param_groups[0]["weight_decay"] == 0.01
    # --rpo_alpha at step 1 (policy = reference: LoRA B = 0, no dropout): the DPO term is -log sigmoid(0) = ln 2,
    # the positive (DPOP) penalty is 0, loss/nll is the chosen answers' pooled NLL under the base model averaged
    # over the step's two micro-batches, and the loss is ln 2 + alpha * that NLL.
    base, _ = load_causal_lm(tiny_model_dir)
    step1 = plan.step_pairs(1, 0)
    micro = [[trainer.tokenized[lv][i].chosen for lv, i in step1[k: k + 2]] for k in (0, 2)]
    want_nll = sum(_reference_pooled_nll(base, m) for m in micro) / 2
    assert want_nll > 1.0  # a real NLL (the tiny model is untrained), so the alpha term is visible in the loss
    assert log[0]["loss/dpo"] == pytest.approx(math.log(2), abs=1e-6)
    assert log[0]["loss/positive"] == pytest.approx(0.0, abs=1e-6)
    assert log[0]["loss/nll"] == pytest.approx(want_nll, rel=1e-5)
    assert log[0]["loss"] == pytest.approx(math.log(2) + 0.5 * want_nll, rel=1e-5)
    # --report_to tensorboard: every train_log.jsonl value, under the same name, at the same step.
    ea = EventAccumulator(str(tmp_path / "run" / "runs" / "dpop"), size_guidance={"scalars": 0})
    ea.Reload()
    tags = set(ea.Tags()["scalars"])
    assert {"loss", "loss/nll", "lr", "rewards/margins", "logps/chosen", "grad_norm"} <= tags
    for tag in tags:
        got = {e.step: e.value for e in ea.Scalars(tag)}
        assert got == pytest.approx({r["step"]: r[tag] for r in log}, rel=1e-6, abs=1e-12), tag


def test_a_pair_without_response_tokens_trains_nothing(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    from aligner.train.config import DPOPTrainingConfig
    from aligner.train.dpop_trainer import train_dpop

    long = " ".join(["the tower stands in paris"] * 40)
    pairs = [PreferencePair(f"Question {i}?", long, "Yes.", "No.") for i in range(4)]
    cfg = DPOPTrainingConfig(model_path=str(tiny_model_dir), output_dir=str(tmp_path / "cut"), epochs=1, lr=1e-2,
                             warmup_steps=0, per_device_batch_size=2, grad_accum_steps=1, max_length=48,
                             truncation="right", lora_dropout=0.0, weight_decay=0.0, progress=False,
                             save_every_steps=0)
    result = train_dpop(cfg, [PairLevel("easy", pairs, tmp_path / "p.jsonl")])
    run_cfg = json.loads((tmp_path / "cut" / "run_config.json").read_text())
    assert run_cfg["levels"]["easy"]["tokenize"]["n_response_empty"] == 4
    log = [json.loads(x) for x in (tmp_path / "cut" / "train_log.jsonl").read_text().splitlines()]
    assert result.global_step == 2 and all(r["loss"] == pytest.approx(0.6931471805599453) for r in log)
    assert all(r["loss/nll"] == 0.0 for r in log)
    adapter = load_file(str(tmp_path / "cut" / "adapter_model.safetensors"))
    assert all(t.abs().max() == 0 for n, t in adapter.items() if "lora_B" in n)  # zero gradient: B stays 0


@pytest.mark.slow
def test_bench_train_packed_padded_and_trl_smoke(tmp_path):
    """``bench_train.py`` on a narrow model: on both pair sets the three variants see the same token ids and agree on
    the first step's log-probs; the packed layout computes fewer tokens per pair than the padded one, whose count is
    TRL's (the same 2B padded rows); the ratios printed are those of the measured values."""
    from conftest import run_script

    out = tmp_path / "bench.json"
    proc = run_script("benchmarks/bench_train.py", "--mode", "quick", "--hidden_size", "64", "--n_pairs", "2",
                      "--batch_size", "2", "--steps", "1", "--threads", "1", "--output_json", out)
    summary = json.loads(out.read_text())
    assert set(summary["sets"]) == {"halueval", "long"}
    for name, res in summary["sets"].items():
        assert res["agree"] == {"padded": True, "trl": True}, name
        r = res["results"]
        assert r["trl"]["same_token_ids"] and r["trl"]["losses"][0] == pytest.approx(math.log(2), rel=1e-6)
        assert r["packed"]["tokens_per_pair"] < 0.7 * r["padded"]["tokens_per_pair"]
        assert r["trl"]["tokens_per_pair"] == r["padded"]["tokens_per_pair"]
        for other in ("padded", "trl"):
            ratio = res["ratios"][other]
            assert ratio["speed"] == pytest.approx(r["packed"]["pairs_per_s"] / r[other]["pairs_per_s"], rel=1e-12)
            assert f"packed / {other}: speed {ratio['speed']:.2f}x" in proc.stdout
    assert "target: packed >= 1.8x padded pairs/s" in proc.stdout
