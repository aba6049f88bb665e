"""A stand-in for Vectara HHEM-2.1-open, written by the tests themselves: the hub folder's structure (custom config
with a ``foundation`` path, a model class that never calls ``post_init`` and declares no tied weights, a
``predict(pairs)`` method, ``auto_map`` in config.json, no tokenizer files; the tokenizer comes from the
foundation folder at init) around a tiny random T5, with the checkpoint written as transformers 4 wrote it (one
copy of the tied embedding, ``t5.transformer.shared.weight``)."""

import json
import shutil
from pathlib import Path

import torch

PROMPT = "<pad> Determine if the hypothesis is true given the premise?\n\nPremise: {text1}\n\nHypothesis: {text2}"

CONFIGURATION = '''from transformers import PretrainedConfig


class HHEMv2Config(PretrainedConfig):
    model_type = "HHEMv2"
    foundation = "google/flan-t5-base"
    prompt = "<pad> Determine if the hypothesis is true given the premise?\\n\\nPremise: {text1}\\n\\nHypothesis: {text2}"

    def __init___(self, foundation="xyz", prompt="abc", **kwargs):  # (sic) three underscores, as on the hub
        super().__init__(**kwargs)
        self.foundation = foundation
        self.prompt = prompt
'''

MODELING = '''import torch
from transformers import AutoConfig, AutoTokenizer, PreTrainedModel, T5ForTokenClassification

from .configuration_hhem_v2 import HHEMv2Config


class HHEMv2ForSequenceClassification(PreTrainedModel):
    config_class = HHEMv2Config

    def __init__(self, config=HHEMv2Config()):
        super().__init__(config)
        self.t5 = T5ForTokenClassification(AutoConfig.from_pretrained(config.foundation))
        self.prompt = config.prompt
        self.tokenzier = AutoTokenizer.from_pretrained(config.foundation)  # (sic)

    def forward(self, **kwargs):
        self.t5.eval()
        with torch.no_grad():
            outputs = self.t5(**kwargs)
        outputs.logits = outputs.logits[:, 0, :]
        return outputs

    def predict(self, text_pairs):
        tokenizer = self.tokenzier
        pair_dict = [{"text1": pair[0], "text2": pair[1]} for pair in text_pairs]
        inputs = tokenizer([self.prompt.format(**pair) for pair in pair_dict], return_tensors="pt",
                           padding=True).to(self.t5.device)
        self.t5.eval()
        with torch.no_grad():
            outputs = self.t5(**inputs)
        logits = outputs.logits[:, 0, :]
        return torch.softmax(logits, dim=-1)[:, 1]
'''


def build_hhem_standin(root: Path, tokenizer_dir: Path, seed: int = 0) -> Path:
    """Write ``root/foundation`` (a tiny T5 config + the given tokenizer) and ``root/hhem`` (the judge folder);
    returns the judge folder."""
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, T5Config, T5ForTokenClassification

    foundation, hhem = root / "foundation", root / "hhem"
    foundation.mkdir(parents=True)
    hhem.mkdir()
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (tokenizer_dir / f).is_file():
            shutil.copy(tokenizer_dir / f, foundation / f)
    vocab = len(AutoTokenizer.from_pretrained(foundation))
    cfg = T5Config(vocab_size=vocab, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=2,
                   feed_forward_proj="gated-gelu", tie_word_embeddings=False, num_labels=2, pad_token_id=0,
                   architectures=["T5ForConditionalGeneration"])
    cfg.save_pretrained(foundation)
    torch.manual_seed(seed)
    t5 = T5ForTokenClassification(cfg)
    with torch.no_grad():
        for p in t5.parameters():
            p.normal_(0, 0.5)
    state = {f"t5.{k}": v.contiguous().clone() for k, v in t5.state_dict().items()}
    state.pop("t5.transformer.encoder.embed_tokens.weight", None)  # transformers 4 saved the shared copy once
    save_file(state, str(hhem / "model.safetensors"), metadata={"format": "pt"})
    (hhem / "configuration_hhem_v2.py").write_text(CONFIGURATION)
    (hhem / "modeling_hhem_v2.py").write_text(MODELING)
    (hhem / "config.json").write_text(json.dumps({
        "architectures": ["HHEMv2ForSequenceClassification"],
        "auto_map": {"AutoConfig": "configuration_hhem_v2.HHEMv2Config",
                     "AutoModelForSequenceClassification": "modeling_hhem_v2.HHEMv2ForSequenceClassification"},
        "foundation": str(foundation), "model_type": "HHEMv2Config", "prompt": PROMPT, "torch_dtype": "float32",
        "transformers_version": "4.39.3"}, indent=2))
    return hhem


@torch.no_grad()
def reference_scores(hhem: Path, pairs) -> list[float]:
    """HHEM's computation written out on the checkpoint, without the remote code or the loader: the T5 with the
    shared embedding in the encoder, the prompt filled in, softmax of the first position's logits, label 1."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, T5Config, T5ForTokenClassification

    config = json.loads((hhem / "config.json").read_text())
    foundation = Path(config["foundation"])
    t5 = T5ForTokenClassification(T5Config.from_pretrained(foundation)).eval()
    state = {k.removeprefix("t5."): v for k, v in load_file(str(hhem / "model.safetensors")).items()}
    state["transformer.encoder.embed_tokens.weight"] = state["transformer.shared.weight"]
    t5.load_state_dict(state, strict=True)
    tok = AutoTokenizer.from_pretrained(foundation)
    out = []
    for premise, hypothesis in pairs:
        enc = tok([config["prompt"].format(text1=premise, text2=hypothesis)], return_tensors="pt")
        out.append(torch.softmax(t5(**enc).logits[0, 0], -1)[1].item())
    return out
