"""Offline models for tests, the demo and benchmarks, with random weights.

By default a tiny Llama-architecture causal LM (or 2-label classifier) with a byte-level BPE tokenizer trained on
real benchmark text, carrying the Llama-3 special tokens and a Llama-3 style chat template.  With ``tokenizer`` a
real tokenizer folder is used instead (its vocabulary size and special-token ids shape the model), and with
``config_preset`` the real configuration of one of the study's models (hidden size, heads, KV heads, rope
settings, tied embeddings), narrowed for a CPU with ``num_layers`` / ``hidden_size``.  With ``word_vocab`` a
word-level tokenizer over a closed vocabulary (the open-book world's, ``scripts/make_world.py``): every piece of
that text is one token, so a small model learns whole words from the first step.  Building is deterministic: the
same settings and seed give the same bytes."""

from __future__ import annotations

import csv
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from aligner.core.io import read_json
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

#: the word-level tokenizer's pieces: a run of letters and digits, or a run of other non-space characters.  Spaces
#: belong to no piece, so a word is the same token wherever it stands (after a space, a newline or a chat header);
#: decoding puts one space between pieces and none before . , ? ! (the WordPiece decoder's clean-up).
WORD_PIECE_PATTERN = r"\w+|[^\w\s]+"
UNK = "<unk>"

# The world's vocabulary has no words for a system prompt, so this template leaves system turns out: a prompt
# rendered with or without one is the same text (the warm start and the DPOP trainer send the recipe's system
# prompt, the HaluEval similarity flow sends none).
WORD_CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- if message['role'] != 'system' %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{%- endif %}"
)


def word_pieces(text: str) -> list[str]:
    """The pieces the word-level tokenizer cuts ``text`` into (each becomes one token, or ``<unk>``)."""
    return re.findall(WORD_PIECE_PATTERN, text)


#: the study's model shapes (from their config.json); vocab_size and special ids come from the tokenizer
CONFIG_PRESETS: dict[str, dict] = {
    "llama-3.2-3b": dict(hidden_size=3072, intermediate_size=8192, num_layers=28, num_heads=24, num_kv_heads=8,
                         head_dim=128, max_position_embeddings=131072, tie_word_embeddings=True, rms_norm_eps=1e-5,
                         rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                                          "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                          "original_max_position_embeddings": 8192}),
    "llama-3.2-1b": dict(hidden_size=2048, intermediate_size=8192, num_layers=16, num_heads=32, num_kv_heads=8,
                         head_dim=64, max_position_embeddings=131072, tie_word_embeddings=True, rms_norm_eps=1e-5,
                         rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                                          "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                          "original_max_position_embeddings": 8192}),
    "llama-2-7b": dict(hidden_size=4096, intermediate_size=11008, num_layers=32, num_heads=32, num_kv_heads=32,
                       head_dim=128, max_position_embeddings=4096, tie_word_embeddings=False, rms_norm_eps=1e-5,
                       rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
}


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
    tokenizer: str | None = field(default=None, metadata={
        "help": "a tokenizer folder (e.g. ../shared/tokenizers/llama-3.2-instruct) to build the model around: its "
                "vocabulary size and special-token ids are used instead of training a 2k BPE tokenizer (default: none)"})
    config_preset: str | None = field(default=None, metadata={
        "help": "the real configuration of one of the study's models (default: none = the tiny shape)",
        "choices": sorted(CONFIG_PRESETS)})
    hidden_size: int | None = field(default=None, metadata={
        "help": "model width; with --config_preset, narrows the preset (heads and MLP scaled along) (default: 128, "
                "or the preset's)"})
    intermediate_size: int | None = field(default=None, metadata={
        "help": "MLP width (default: 256, or the preset's, scaled with --hidden_size)"})
    num_layers: int | None = field(default=None, metadata={"help": "decoder layers (default: 4, or the preset's)"})
    initializer_range: float = field(default=0.02, metadata={
        "help": "standard deviation of the random init (transformers' default 0.02; the open-book world's 2-layer "
                "policy learns to copy from the context several times sooner at 0.06)"})
    num_heads: int | None = field(default=None, metadata={"cli": False})
    num_kv_heads: int | None = field(default=None, metadata={"cli": False})
    max_position_embeddings: int = field(default=4096, metadata={"cli": False})
    word_vocab: str | None = field(default=None, metadata={
        "help": "a JSON list of word pieces (scripts/make_world.py writes vocab.json): a word-level tokenizer with one "
                "token per piece, the special tokens and a chat template without a system turn, instead of the BPE "
                "one (default: none)"})
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


def build_word_tokenizer(pieces: list[str], max_length: int):
    """A word-level tokenizer over ``pieces`` (cut as ``word_pieces`` cuts text; anything else is ``<unk>``), with
    the Llama-3 special tokens, BOS added in front, and ``WORD_CHAT_TEMPLATE``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = SPECIAL_TOKENS + [UNK]
    bad = [p for p in pieces if word_pieces(p) != [p]]
    if bad:
        raise ValueError(f"--word_vocab: {len(bad)} entries are not single pieces, e.g. {bad[0]!r}")
    vocab = {t: i for i, t in enumerate(specials + sorted(set(pieces) - set(specials)))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()  # the pieces of WORD_PIECE_PATTERN
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    tok.add_special_tokens(specials)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS}:0 $A:0", pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1", special_tokens=[(BOS, vocab[BOS])],
    )
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOT, unk_token=UNK, model_max_length=max_length,
        clean_up_tokenization_spaces=False,
    )
    hf_tok.chat_template = WORD_CHAT_TEMPLATE
    return hf_tok


def load_word_vocab(path: str) -> list[str]:
    """The pieces of a ``--word_vocab`` file: a JSON list of strings."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"--word_vocab {path}: no such file")
    pieces = read_json(p)  # a malformed file is named with its line and column
    if not isinstance(pieces, list) or not pieces or not all(isinstance(x, str) and x for x in pieces):
        raise ValueError(f"--word_vocab {path}: expected a non-empty JSON list of non-empty strings")
    return pieces


def shape_from_preset(cfg: TinyModelConfig) -> dict:
    """The LlamaConfig shape: the tiny default, or a preset narrowed by ``hidden_size`` / ``num_layers`` (the heads
    and the MLP width scale with the width, keeping the preset's grouping of query heads per KV head)."""
    if cfg.config_preset is None:
        return dict(hidden_size=cfg.hidden_size or 128, intermediate_size=cfg.intermediate_size or 256,
                    num_hidden_layers=cfg.num_layers or 4, num_attention_heads=cfg.num_heads or 4,
                    num_key_value_heads=cfg.num_kv_heads or 2, max_position_embeddings=cfg.max_position_embeddings,
                    tie_word_embeddings=True, rms_norm_eps=1e-5, rope_theta=500000.0)
    if cfg.config_preset not in CONFIG_PRESETS:
        raise ValueError(f"unknown --config_preset {cfg.config_preset!r}; one of {sorted(CONFIG_PRESETS)}")
    p = CONFIG_PRESETS[cfg.config_preset]
    hidden = cfg.hidden_size or p["hidden_size"]
    scale = hidden / p["hidden_size"]
    heads = cfg.num_heads or max(1, round(p["num_heads"] * scale))
    group = p["num_heads"] // p["num_kv_heads"]
    kv = cfg.num_kv_heads or max(1, heads // group)
    if hidden % heads or heads % kv:
        raise ValueError(f"--hidden_size {hidden} gives {heads} heads and {kv} KV heads, which do not divide it")
    return dict(hidden_size=hidden, intermediate_size=cfg.intermediate_size or max(1, round(p["intermediate_size"] * scale)),
                num_hidden_layers=cfg.num_layers or p["num_layers"], num_attention_heads=heads, num_key_value_heads=kv,
                head_dim=p["head_dim"] if hidden == p["hidden_size"] else hidden // heads,
                max_position_embeddings=p["max_position_embeddings"], tie_word_embeddings=p["tie_word_embeddings"],
                rms_norm_eps=p["rms_norm_eps"], rope_parameters=dict(p["rope_parameters"]))


def load_given_tokenizer(path: str):
    """A real tokenizer folder as the model's tokenizer (no pad token added: the loaders choose one)."""
    from transformers import AutoTokenizer

    if not Path(path).is_dir():
        raise FileNotFoundError(f"--tokenizer {path}: no such folder")
    return AutoTokenizer.from_pretrained(path)


def _special_ids(tokenizer) -> dict:
    pad = tokenizer.pad_token_id
    if pad is None and PAD in tokenizer.get_vocab():
        pad = tokenizer.convert_tokens_to_ids(PAD)
    return dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=pad)


def build_tiny_model(output_dir: str | os.PathLike, cfg: TinyModelConfig) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    if cfg.kind not in ("causal", "seq_cls"):
        raise ValueError(f"--kind must be causal or seq_cls, not {cfg.kind!r}")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.tokenizer and cfg.word_vocab:
        raise ValueError("give at most one of --tokenizer and --word_vocab")
    if cfg.tokenizer:
        tokenizer = load_given_tokenizer(cfg.tokenizer)
    elif cfg.word_vocab:
        tokenizer = build_word_tokenizer(load_word_vocab(cfg.word_vocab), cfg.max_position_embeddings)
    else:
        tokenizer = build_tokenizer(cfg)
    vocab = max(len(tokenizer), cfg.model_vocab_size or 0)
    config = LlamaConfig(vocab_size=vocab, **shape_from_preset(cfg), **_special_ids(tokenizer), torch_dtype="float32",
                         initializer_range=cfg.initializer_range)
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
