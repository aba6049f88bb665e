"""Tiny offline models for tests and the demo: a Llama-architecture causal LM (or 2-label classifier)
with a byte-level BPE tokenizer trained on real benchmark text, carrying the Llama-3 special tokens and
a Llama-3 style chat template.  Building is deterministic: the same seed gives the same bytes."""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.paths import halueval_path, truthfulqa_csv_path

BOS, EOT_TEXT, START_HEADER, END_HEADER, EOT, PAD = (
    "<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
    "<|finetune_right_pad_id|>",
)
SPECIAL_TOKENS = [BOS, EOT_TEXT, START_HEADER, END_HEADER, EOT, PAD]

# Same shape as the Llama-3 template: BOS, then one header+content+<|eot_id|> block per turn.
LLAMA3_CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{%- endif %}"
)


@dataclass
class TinyModelConfig:
    """The tiny model's shape (``scripts/make_tiny_model.py`` generates its flags from these fields)."""

    kind: str = field(default="causal", metadata={
        "help": "causal LM (policy / truth judge) or 2-label sequence classifier (faithfulness judge)",
        "choices": ["causal", "seq_cls"]})
    seed: int = field(default=0, metadata={"help": "weight-init seed; same seed, same bytes"})
    vocab_size: int = field(default=2048, metadata={"help": "BPE vocabulary size, trained on real text"})
    model_vocab_size: int | None = field(default=None, metadata={
        "help": "embedding rows, if larger than the tokenizer (benchmarks at a 32k+ vocabulary) (default: tokenizer "
                "size)"})
    hidden_size: int = field(default=128, metadata={"help": "model width"})
    intermediate_size: int = field(default=256, metadata={"help": "MLP width"})
    num_layers: int = field(default=4, metadata={"help": "decoder layers"})
    num_heads: int = field(default=4, metadata={"cli": False})
    num_kv_heads: int = field(default=2, metadata={"cli": False})
    max_position_embeddings: int = field(default=4096, metadata={"cli": False})
    n_text_rows: int = field(default=3000, metadata={"cli": False})  # rows of benchmark text for the tokenizer


@dataclass(kw_only=True)
class TinyModelOutput:
    output_dir: str = field(metadata={"help": "where to save the model and tokenizer (HF format)"})


def training_text(n_rows: int) -> list[str]:
    """Real text for the tokenizer: HaluEval knowledge/questions/answers and TruthfulQA questions/answers."""
    texts: list[str] = []
    hp = halueval_path()
    tp = truthfulqa_csv_path()
    if not hp.is_file() and not tp.is_file():
        raise FileNotFoundError(
            f"no training text for the tokenizer: neither {hp} nor {tp} exists "
            "(set ALIGNER_SHARED_DATA to the folder holding halueval/ and truthfulqa/)")
    if hp.is_file():
        with hp.open(encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                if i >= n_rows:
                    break
                rec = json.loads(line)
                texts.extend(str(rec.get(k, "")) for k in ("knowledge", "question", "right_answer",
                                                           "hallucinated_answer"))
    if tp.is_file():
        with tp.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                texts.extend(row.get(k, "") for k in ("Question", "Best Answer", "Correct Answers",
                                                      "Incorrect Answers"))
    # Chat-format scaffolding the models will see often.
    texts.extend(["Context:", "Question:", "Q:", "A:", "True:", " yes", " no", "system", "user", "assistant"] * 50)
    return [t for t in texts if t]


def build_tokenizer(cfg: TinyModelConfig):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(training_text(cfg.n_text_rows), trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    # Llama-3 adds <|begin_of_text|> through its post-processor; chat templates then skip special tokens.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS}:0 $A:0", pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1", special_tokens=[(BOS, bos_id)],
    )
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOT, model_max_length=cfg.max_position_embeddings,
        clean_up_tokenization_spaces=False,
    )
    hf_tok.chat_template = LLAMA3_CHAT_TEMPLATE
    return hf_tok


def build_tiny_model(output_dir: str | os.PathLike, cfg: TinyModelConfig) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    if cfg.kind not in ("causal", "seq_cls"):
        raise ValueError(f"--kind must be causal or seq_cls, not {cfg.kind!r}")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(cfg)
    vocab = max(len(tokenizer), cfg.model_vocab_size or 0)
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads, max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True, rms_norm_eps=1e-5, rope_theta=500000.0,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.convert_tokens_to_ids(PAD), torch_dtype="float32",
    )
    torch.manual_seed(cfg.seed)
    if cfg.kind == "causal":
        model = LlamaForCausalLM(config)
    else:
        config.num_labels = 2
        config.id2label = {0: "hallucinated", 1: "consistent"}
        config.label2id = {"hallucinated": 0, "consistent": 1}
        model = LlamaForSequenceClassification(config)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = config.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def make_tiny_model(out: TinyModelOutput, cfg: TinyModelConfig) -> Path:
    """``scripts/make_tiny_model.py``: build the model into ``out.output_dir`` and say where and how fast."""
    t0 = time.perf_counter()
    path = build_tiny_model(out.output_dir, cfg)
    print(f"tiny {cfg.kind} model written to {path} in {time.perf_counter() - t0:.1f}s")
    return path


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())
