import hashlib

import pytest
from conftest import run_script
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from aligner.testing.tiny import TinyModelConfig, build_tiny_model, count_parameters


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


@pytest.mark.vllm_env
def test_tiny_causal_model_shape_and_chat_template(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = model.config
    assert cfg.model_type == "llama" and cfg.num_hidden_layers == 4
    assert cfg.num_key_value_heads < cfg.num_attention_heads and cfg.tie_word_embeddings
    assert 0.5e6 < count_parameters(model) < 1.5e6
    assert 1500 <= len(tok) <= 2100
    for t in ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"):
        assert t in tok.get_vocab()
    assert tok("hello")["input_ids"][0] == tok.bos_token_id
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert text == ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                    "<|start_header_id|>assistant<|end_header_id|>\n\n")
    ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)["input_ids"]
    assert ids.count(tok.bos_token_id) == 1


def test_tiny_seq_cls_has_two_labels(tiny_judge_dir):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_judge_dir)
    assert model.config.num_labels == 2 and model.config.id2label[1] == "consistent"


def test_same_seed_same_bytes_different_seed_differs(tmp_path, tiny_model_dir):
    a = build_tiny_model(tmp_path / "a", TinyModelConfig(seed=0))
    b = build_tiny_model(tmp_path / "b", TinyModelConfig(seed=1))
    assert _digest(a) == _digest(tiny_model_dir)
    assert (a / "model.safetensors").read_bytes() != (b / "model.safetensors").read_bytes()


def test_script_cli(tmp_path):
    proc = run_script("scripts/make_tiny_model.py", "--output_dir", tmp_path / "m", "--kind", "seq_cls", "--seed", "3")
    assert "written" in proc.stdout
    assert (tmp_path / "m" / "config.json").is_file()


def test_real_tokenizer_and_preset_shape(llama32_policy_dir, sentencepiece_judge_dir):
    from aligner.testing.tiny import CONFIG_PRESETS, TinyModelConfig, shape_from_preset

    cfg = AutoModelForCausalLM.from_pretrained(llama32_policy_dir).config
    tok = AutoTokenizer.from_pretrained(llama32_policy_dir)
    assert cfg.vocab_size == len(tok) == 128256 and cfg.tie_word_embeddings
    assert cfg.bos_token_id == tok.convert_tokens_to_ids("<|begin_of_text|>") == 128000
    assert cfg.eos_token_id == tok.convert_tokens_to_ids("<|eot_id|>")
    assert cfg.rope_parameters["rope_type"] == "llama3" and cfg.rope_parameters["factor"] == 32.0
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.num_hidden_layers) == (4, 2, 2)
    judge = AutoModelForCausalLM.from_pretrained(sentencepiece_judge_dir).config
    assert judge.vocab_size == 32000 and not judge.tie_word_embeddings and judge.bos_token_id == 1
    # the full preset is the real model's shape
    full = shape_from_preset(TinyModelConfig(config_preset="llama-3.2-3b"))
    p = CONFIG_PRESETS["llama-3.2-3b"]
    assert (full["hidden_size"], full["num_attention_heads"], full["num_key_value_heads"], full["head_dim"],
            full["num_hidden_layers"], full["intermediate_size"]) == (3072, 24, 8, 128, 28, 8192) == (
        p["hidden_size"], p["num_heads"], p["num_kv_heads"], p["head_dim"], p["num_layers"], p["intermediate_size"])
    narrow = shape_from_preset(TinyModelConfig(config_preset="llama-3.2-3b", hidden_size=384, num_layers=2))
    assert (narrow["num_attention_heads"], narrow["num_key_value_heads"], narrow["intermediate_size"]) == (3, 1, 1024)


def test_script_builds_around_a_real_tokenizer(tmp_path, sentencepiece_tokenizer_dir):
    run_script("scripts/make_tiny_model.py", "--output_dir", tmp_path / "m", "--tokenizer", sentencepiece_tokenizer_dir,
               "--config_preset", "llama-2-7b", "--num_layers", "1", "--hidden_size", "128")
    cfg = AutoModelForCausalLM.from_pretrained(tmp_path / "m").config
    assert cfg.vocab_size == 32000 and cfg.hidden_size == 128 and cfg.num_hidden_layers == 1
    assert cfg.rope_parameters["rope_theta"] == 10000.0
