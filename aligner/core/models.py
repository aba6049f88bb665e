"""Model and adapter loading: local folders or hub ids, dtype/device resolution, LoRA adapters on one base.

A model path that looks local and does not exist, or a hub id that cannot be fetched (offline, gated),
gives a ``ModelLoadError`` with one clear line saying what to do, not a stack of hub retries.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from aligner.core.availability import downloaded_copy, looks_local, unavailable_reason
from aligner.core.io import AlignerError

logger = logging.getLogger(__name__)

NO_ADAPTER = ("none", "base", "")


class ModelLoadError(AlignerError, RuntimeError):
    """A model, tokenizer or adapter that cannot be loaded; ``path`` is the path or hub id as given (``run_cli``
    names the flag that held it)."""

    def __init__(self, message: str, path: str | os.PathLike | None = None):
        super().__init__(message)
        self.path = None if path is None else str(path)


# ---------------------------------------------------------------------------------------------
# devices and dtypes
# ---------------------------------------------------------------------------------------------

def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


_DTYPES = {
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
}


def native_bf16() -> bool:
    """Whether the current CUDA device computes in bf16 natively (Ampere and later, or ROCm).  Pre-Ampere cards
    (V100, T4) can hold bf16 tensors but emulate the arithmetic, which ``torch.cuda.is_bf16_supported()`` counts
    as support; ``including_emulation=False`` does not, so those cards get fp16 (with a gradient scaler)."""
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


def resolve_dtype(dtype: str | torch.dtype | None = "auto", device: str | torch.device | None = "auto") -> torch.dtype:
    """``auto`` is bf16 on CUDA (fp16 where the card has no native bf16, see ``native_bf16``) and fp32 on CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        dev = resolve_device(device)
        if dev.type == "cuda":
            return torch.bfloat16 if native_bf16() else torch.float16
        return torch.float32
    try:
        return _DTYPES[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use one of auto, {', '.join(sorted(_DTYPES))}") from None


# ---------------------------------------------------------------------------------------------
# paths and hub ids
# ---------------------------------------------------------------------------------------------

def check_model_path(path: str | os.PathLike, what: str = "model") -> str:
    """Return the path as a string if it is a local folder, or a hub id in the cache or on a hub that answers
    (one quick check, ``aligner.core.hub.unavailable_reason``); raise a one-line ``ModelLoadError`` otherwise,
    in seconds rather than after the hub client's retries."""
    path = str(path)
    if Path(path).expanduser().exists():
        return str(Path(path).expanduser())
    local = downloaded_copy(path)
    if local is not None:
        logger.info("using the downloaded copy %s for %s", local, path)
        return str(local)
    if looks_local(path):
        raise ModelLoadError(
            f"{what} folder '{path}' does not exist: pass the folder that holds its config.json, or download it "
            "first (scripts/download_model.py)", path=path)
    reason = unavailable_reason(path)
    if reason is not None:
        raise ModelLoadError(f"{what} {reason}: pass a local folder, or download it where the hub is reachable "
                             "(scripts/download_model.py) and copy it over", path=path)
    return path


def _hub_error(path: str, what: str, exc: Exception) -> ModelLoadError:
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    hint = ("the hub is unreachable or the model is gated (set HF_TOKEN); download it with "
            "scripts/download_model.py on a machine with access and pass the local folder")
    return ModelLoadError(f"could not load {what} '{path}': {msg} -- {hint}", path=path)


# ---------------------------------------------------------------------------------------------
# tokenizers and models
# ---------------------------------------------------------------------------------------------

def ensure_pad_token(tokenizer) -> None:
    """Give the tokenizer a pad token without adding rows to the embedding.

    Llama-3 ships none; its reserved ``<|finetune_right_pad_id|>`` is used when present, else EOS.
    """
    if tokenizer.pad_token_id is not None:
        return
    reserved = "<|finetune_right_pad_id|>"
    vocab = tokenizer.get_vocab()
    if reserved in vocab:
        tokenizer.pad_token = reserved
    elif tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    else:
        raise ModelLoadError("tokenizer has neither a pad nor an EOS token to pad with")


def load_tokenizer(path: str | os.PathLike, padding_side: str = "right", trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    path = check_model_path(path, "tokenizer")
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as exc:
        raise _hub_error(path, "tokenizer", exc) from None
    ensure_pad_token(tok)
    tok.padding_side = padding_side
    return tok


def load_causal_lm(path: str | os.PathLike, dtype: str | torch.dtype = "auto", device: str | torch.device = "auto",
                   trust_remote_code: bool = False, padding_side: str = "right", attn_implementation: str | None = None):
    """Load (model, tokenizer) for evaluation: eval mode, on ``device``, pad token set."""
    from transformers import AutoModelForCausalLM

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    path = check_model_path(path)  # a missing folder is the model's, not "the tokenizer's"
    tok = load_tokenizer(path, padding_side=padding_side, trust_remote_code=trust_remote_code)
    kwargs = {"dtype": torch_dtype, "trust_remote_code": trust_remote_code}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise _hub_error(path, "model", exc) from None
    model.to(dev)
    model.eval()
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tok.pad_token_id
    if getattr(model, "generation_config", None) is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok


def load_seq_cls(path: str | os.PathLike, dtype: str | torch.dtype = "auto", device: str | torch.device = "auto",
                 trust_remote_code: bool = False, **model_kwargs):
    """Load (classifier, tokenizer) for a sequence-classification judge (HHEM, NLI, the tiny judge).

    ``model_kwargs`` go to ``from_pretrained`` (e.g. num_labels / id2label for a classifier to fine-tune)."""
    from transformers import AutoModelForSequenceClassification

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    path = check_model_path(path, "judge model")
    if trust_remote_code:
        patch_remote_post_init(path, "AutoModelForSequenceClassification")
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch_dtype,
                                                                   trust_remote_code=trust_remote_code,
                                                                   **model_kwargs)
    except OSError as exc:
        raise _hub_error(path, "judge model", exc) from None
    check_tied_weights(model, path)
    model.to(dev)
    model.eval()
    if callable(getattr(model, "predict", None)) and not has_tokenizer_files(path):
        tok = None  # HHEM carries its own tokenizer (config.foundation) inside the remote code
    else:
        tok = load_tokenizer(path, trust_remote_code=trust_remote_code)
    if tok is not None and getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tok.pad_token_id
    return model, tok


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "spiece.model", "vocab.txt",
                   "vocab.json", "spm.model")


def has_tokenizer_files(path: str | os.PathLike) -> bool:
    """Whether a local model folder carries a tokenizer (a hub id is assumed to)."""
    p = Path(path)
    return not p.is_dir() or any((p / f).is_file() for f in TOKENIZER_FILES)


def patch_remote_post_init(path: str, auto_class: str) -> None:
    """Make a remote-code model class that never calls ``post_init()`` (Vectara HHEM-2.1) loadable on
    transformers 5: ``from_pretrained`` needs what ``post_init`` sets (``all_tied_weights_keys``, the children's
    tied weights, fp32 modules).  Its ``__init__`` is wrapped to call ``post_init()`` when it did not, so the tied
    weights are tied as the checkpoint expects (setting ``all_tied_weights_keys = {}`` would load, but leave
    HHEM's T5 encoder embedding untied and randomly initialised: plausible, wrong scores)."""
    from transformers import AutoConfig
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    try:
        ref = (getattr(AutoConfig.from_pretrained(path, trust_remote_code=True), "auto_map", None) or {}).get(auto_class)
    except (OSError, ValueError):
        return  # not remote code, or no config: from_pretrained reports it
    if not ref:
        return
    cls = get_class_from_dynamic_module(ref if isinstance(ref, str) else ref[0], path)
    if getattr(cls, "_aligner_post_init_patched", False):
        return
    original = cls.__init__

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if not hasattr(self, "all_tied_weights_keys"):
            self.post_init()

    cls.__init__ = __init__
    cls._aligner_post_init_patched = True


def check_tied_weights(model, path: str) -> None:
    """Every weight the model declares tied must share storage with its source after loading (a checkpoint saved
    by transformers 4 stores one copy; an untied copy would stay randomly initialised)."""
    tied = getattr(model, "all_tied_weights_keys", None) or {}
    untied = []
    for target, source in tied.items():
        try:
            a, b = model.get_parameter(target), model.get_parameter(source)
        except AttributeError:
            continue
        if a.data_ptr() != b.data_ptr():
            untied.append(f"{target} -> {source}")
    if untied and hasattr(model, "tie_weights"):
        model.tie_weights()
        untied = [k for k in untied if model.get_parameter(k.split(" -> ")[0]).data_ptr()
                  != model.get_parameter(k.split(" -> ")[1]).data_ptr()]
    if untied:
        raise ModelLoadError(f"{path}: weights that should be tied are not after loading ({untied[0]}); its scores "
                             "would be noise")


# ---------------------------------------------------------------------------------------------
# LoRA adapters
# ---------------------------------------------------------------------------------------------

def parse_adapter_paths(value: str | Sequence[str] | None) -> list[str | None]:
    """Split ``--lora_path`` values ("a,b", "a b", ["a", "none"]) into paths; ``none`` means the base model."""
    if value is None:
        return [None]
    items = [value] if isinstance(value, str) else list(value)
    out: list[str | None] = []
    for item in items:
        for part in re.split(r"[,\s]+", str(item).strip()):
            if part == "" and len(items) > 1:
                continue
            out.append(None if part.lower() in NO_ADAPTER else part)
    return out or [None]


def planned_adapter_names(lora_path) -> list[str | None]:
    """The names the backends will give the adapters of ``--lora_path`` (None: the base), known before loading, so
    that result files can be checked before any model is in memory."""
    names: list[str | None] = []
    for p in parse_adapter_paths(lora_path):
        names.append(None if p is None else adapter_name(p, [n for n in names if n]))
    return names


def adapter_name(path: str | None, taken: Sequence[str] = ()) -> str:
    """A readable, unique name for an adapter: its folder name (``epoch_2``), or ``base`` for none."""
    if path is None:
        return "base"
    p = Path(path.rstrip("/"))
    name = p.name if not p.name.startswith("epoch_") else f"{p.parent.name}_{p.name}"
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "adapter"
    base, i = name, 2
    while name in taken or name == "base":
        name = f"{base}_{i}"
        i += 1
    return name


def check_adapter_path(path: str) -> str:
    p = Path(path).expanduser()
    if p.is_dir():
        if not (p / "adapter_config.json").is_file():
            raise ModelLoadError(f"adapter folder '{path}' has no adapter_config.json; is it a LoRA adapter folder?",
                                 path=path)
        return str(p)
    return check_model_path(path, "adapter")


def attach_adapters(model, adapter_paths: Sequence[str], names: Sequence[str] | None = None,
                    is_trainable: bool = False, base_path: str | None = None, allow_base_mismatch: bool = False,
                    check: bool = True):
    """Load one or several LoRA adapters onto one loaded base; returns (peft_model, names).

    Each adapter is first checked against the base (``aligner.core.adapter_check``: the base it names, its
    shapes, its tokenizer's vocabulary; ``check=False`` when the caller has checked already); ``base_path`` is the
    base as given (its name is compared).
    The first adapter is active afterwards; switch with ``use_adapter``.
    """
    from peft import PeftModel

    from aligner.core.adapter_check import check_adapter_base

    paths = [check_adapter_path(p) for p in adapter_paths]
    if not paths:
        raise ValueError("attach_adapters needs at least one adapter path")
    for p in paths if check else ():
        check_adapter_base(p, base_path, model=model, allow_mismatch=allow_base_mismatch)
    chosen: list[str] = []
    for i, p in enumerate(paths):
        chosen.append(names[i] if names else adapter_name(p, chosen))
    try:
        peft_model = PeftModel.from_pretrained(model, paths[0], adapter_name=chosen[0], is_trainable=is_trainable)
        for p, n in zip(paths[1:], chosen[1:]):
            peft_model.load_adapter(p, adapter_name=n, is_trainable=is_trainable)
    except OSError as exc:
        raise _hub_error(paths[0], "adapter", exc) from None
    peft_model.set_adapter(chosen[0])
    peft_model.eval()
    return peft_model, chosen


@contextlib.contextmanager
def use_adapter(model, name: str | None) -> Iterator:
    """Run with adapter ``name`` active, or with all adapters disabled (the base model) when ``name`` is None."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        if name is not None:
            raise ModelLoadError(f"adapter '{name}' requested but the model has no adapters attached")
        yield model
        return
    if name is None:
        with model.disable_adapter():
            yield model
        return
    if name not in model.peft_config:
        raise ModelLoadError(f"unknown adapter '{name}'; loaded: {sorted(model.peft_config)}")
    model.set_adapter(name)
    yield model


def merge_adapter(model, name: str | None = None):
    """Merge adapter ``name`` (default: the active one) into the base weights and return the plain model."""
    if name is not None:
        model.set_adapter(name)
    return model.merge_and_unload()


def load_sentence_model(model_name_or_path: str, device: str = "auto", what: str = "sentence-embedding model"):
    """A sentence-transformers model from a local folder or hub id, or one line saying why not."""
    from sentence_transformers import SentenceTransformer

    path = check_model_path(model_name_or_path, what)
    try:
        return SentenceTransformer(path, device=str(resolve_device(device)))
    except OSError as exc:
        raise ModelLoadError(f"could not load the {what} '{model_name_or_path}': {str(exc).splitlines()[0]} -- "
                             "download it on a machine with hub access and pass the local folder",
                             path=model_name_or_path) from None
