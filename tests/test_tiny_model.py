import hashlib

from conftest import run_script
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from aligner.testing.tiny import TinyModelConfig, build_tiny_model, count_parameters


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


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
