import pytest
import torch

from aligner.core.io import read_csv
from aligner.core.logprobs import encode_prompt_response, reference_response_logprob, response_logprobs
from aligner.core.models import (
    ModelLoadError,
    adapter_name,
    attach_adapters,
    load_causal_lm,
    parse_adapter_paths,
    resolve_dtype,
    use_adapter,
)
from aligner.lm.hf import HFLM
from aligner.lm.interface import cut_at_stop
from aligner.prompts import render_chat, truthfulqa_choice, truthfulqa_prompt

pytestmark = pytest.mark.vllm_env  # also run on the vLLM env's transformers (make test-vllm-env)


@pytest.fixture(scope="module")
def policy(tiny_model_dir):
    return load_causal_lm(tiny_model_dir)


def test_dtype_auto_is_fp32_on_cpu(policy):
    model, tok = policy
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert next(model.parameters()).dtype == torch.float32
    assert tok.pad_token == "<|finetune_right_pad_id|>"
    assert model.get_input_embeddings().weight.shape[0] == len(tok)  # no resize


def test_response_span_excludes_bos_and_prompt(policy):
    _, tok = policy
    enc = encode_prompt_response(tok, "Q: Where is Paris?\nA:", " In France.")
    assert enc.input_ids[0] == tok.bos_token_id and enc.input_ids.count(tok.bos_token_id) == 1
    assert tok.decode(enc.input_ids[enc.response_start:]) == " In France."
    chat = render_chat(tok, [{"role": "user", "content": "hi"}])
    enc2 = encode_prompt_response(tok, chat, "Hello")
    assert enc2.input_ids.count(tok.bos_token_id) == 1
    assert tok.decode(enc2.input_ids[enc2.response_start:]) == "Hello"


def test_batched_logprobs_equal_plain_computation(policy, truthfulqa_csv):
    model, tok = policy
    rows = read_csv(truthfulqa_csv, limit=8)
    prompts, responses = [], []
    for r in rows:
        for a in [r["Best Answer"], *r["Incorrect Answers"].split("; ")]:
            prompts.append(truthfulqa_prompt(r["Question"]))
            responses.append(truthfulqa_choice(a))
    chat = render_chat(tok, [{"role": "user", "content": rows[0]["Question"]}])
    prompts.append(chat)
    responses.append(rows[0]["Best Answer"])
    batched = response_logprobs(model, tok, prompts, responses, batch_size=7)
    plain = [reference_response_logprob(model, tok, p, r) for p, r in zip(prompts, responses)]
    assert len(batched) == len(plain) > 30
    assert max(abs(a - b) for a, b in zip(batched, plain)) < 1e-4
    assert all(v < 0 for v in batched)
    # the batch size does not change the numbers
    again = response_logprobs(model, tok, prompts, responses, batch_size=1)
    assert max(abs(a - b) for a, b in zip(batched, again)) < 1e-4


def test_missing_local_model_path_is_clear(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_causal_lm(tmp_path / "no-such-model")
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_causal_lm("models/llama3-2-3b-instruct-missing")


def test_unreachable_hub_id_is_clear():
    with pytest.raises(ModelLoadError, match=r"^model 'someone-offline/not-a-real-model-xyz' is neither a local folder "
                                             r"nor in the Hugging Face cache, and offline mode is on"):
        load_causal_lm("someone-offline/not-a-real-model-xyz")  # at once: no hub call (the conftest is offline)


def test_parse_adapter_paths():
    assert parse_adapter_paths(None) == [None]
    assert parse_adapter_paths("none") == [None]
    assert parse_adapter_paths("a,b") == ["a", "b"]
    assert parse_adapter_paths(["none", "x/y z"]) == [None, "x/y", "z"]
    assert adapter_name("out/run/epoch_2") == "run_epoch_2"
    assert adapter_name("out/run/", ["run"]) == "run_2"


def _make_adapter(model_dir, out, seed):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    peft = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft.save_pretrained(out)
    return out


def test_several_adapters_on_one_base_switch_disable_merge(tiny_model_dir, tmp_path):
    a = _make_adapter(tiny_model_dir, tmp_path / "run_a", 1)
    b = _make_adapter(tiny_model_dir, tmp_path / "run_b", 2)
    model, tok = load_causal_lm(tiny_model_dir)
    prompt, resp = "Q: What is 2+2?\nA:", " 4"
    base_lp = response_logprobs(model, tok, [prompt], [resp])[0]
    peft, names = attach_adapters(model, [str(a), str(b)])
    assert names == ["run_a", "run_b"]
    vals = {}
    for n in [None, *names]:
        with use_adapter(peft, n):
            vals[n] = response_logprobs(peft, tok, [prompt], [resp])[0]
    assert abs(vals[None] - base_lp) < 1e-5
    assert abs(vals["run_a"] - vals["run_b"]) > 1e-4 and abs(vals["run_a"] - base_lp) > 1e-4
    # a single adapter loaded alone gives the same numbers as when switched on a shared base
    model2, _ = load_causal_lm(tiny_model_dir)
    solo, _ = attach_adapters(model2, [str(b)])
    assert abs(response_logprobs(solo, tok, [prompt], [resp])[0] - vals["run_b"]) < 1e-5
    with pytest.raises(ModelLoadError, match="adapter_config.json"):
        attach_adapters(load_causal_lm(tiny_model_dir)[0], [str(tmp_path)])


def test_hflm_batched_greedy_equals_unbatched(tiny_model_dir, halueval_file):
    from aligner.core.io import read_records
    from aligner.prompts import halueval_messages

    lm = HFLM(str(tiny_model_dir), batch_size=6)
    rows = read_records(halueval_file, ["knowledge", "question"], limit=10)
    prompts = [lm.chat_prompt(halueval_messages(r["knowledge"], r["question"])) for r in rows]
    prompts += [truthfulqa_prompt(r["question"]) for r in rows]
    batched = lm.generate_until(prompts, max_new_tokens=16, progress=False)
    one_at_a_time = HFLM(str(tiny_model_dir), model=lm.model, tokenizer=lm.tokenizer, batch_size=1)
    single = one_at_a_time.generate_until(prompts, max_new_tokens=16, progress=False)
    assert batched == single
    assert all(isinstance(x, str) for x in batched)
    assert lm.loglikelihood([("Q: a\nA:", " b")], progress=False)[0] < 0


def test_cut_at_stop():
    assert cut_at_stop("Paris.\nQ: next", ["\nQ:"]) == "Paris."
    assert cut_at_stop("abc", None) == "abc"
    assert cut_at_stop("a1b2", ["2", "1"]) == "a"
