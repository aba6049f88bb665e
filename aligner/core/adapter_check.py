"""Is a LoRA adapter being put on the base it was trained for?  Checked before anything is loaded into it.

An adapter on another base either fails deep inside PEFT or an embedding lookup (a 128k-vocabulary adapter's
tokenizer on a 32k-vocabulary base: a raw ``IndexError``), or, worse, loads and gives numbers of a model nobody
trained (an adapter of a base model on the instruct model of the same shapes).  ``check_adapter_base`` compares
what the adapter folder records with the base given, and says in one line which base the adapter expects and
what was given:

* the base's name: ``base_model_name_or_path`` of ``adapter_config.json`` against the path or hub id given,
  compared by their last path component with case and punctuation ignored (``meta-llama/Llama-3.2-3B-Instruct``
  and ``models/llama3-2-3b-instruct`` are the same base);
* the shapes: every LoRA matrix and every fully saved module (``modules_to_save``) against the base's module of
  that name (the base instantiated on the meta device from its config when it is not loaded yet);
* the vocabulary: a tokenizer saved with the adapter must fit the base's embedding.

``allow_mismatch`` (``--allow_base_mismatch``) turns a name or vocabulary mismatch into a warning, for deliberate
transfers; shapes that differ can never be loaded and stay an error.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from aligner.core.io import AlignerError

logger = logging.getLogger(__name__)

ALLOW_FLAG = "--allow_base_mismatch"


class AdapterBaseMismatchError(AlignerError, RuntimeError):
    """A LoRA adapter given with a base model it was not trained for."""


def base_name_key(name: str) -> str:
    """A model name as compared: the last path component, lower case, letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", str(name).rstrip("/").split("/")[-1].lower())


def same_base_name(expected: str, given: str) -> bool:
    if base_name_key(expected) == base_name_key(given):
        return True
    try:
        a, b = Path(expected).expanduser(), Path(given).expanduser()
        return a.exists() and b.exists() and a.resolve() == b.resolve()
    except OSError:
        return False


def adapter_tensor_shapes(adapter_dir: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of an adapter's weights, read from the safetensors header (no tensor is loaded)."""
    st = adapter_dir / "adapter_model.safetensors"
    if st.is_file():
        from safetensors import safe_open

        with safe_open(str(st), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    binf = adapter_dir / "adapter_model.bin"
    if binf.is_file():
        import torch

        return {k: tuple(v.shape) for k, v in torch.load(binf, map_location="meta", weights_only=True).items()}
    return {}


def _meta_model(base_path: str):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(base_path)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def _vocab_rows(model) -> int | None:
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    return int(emb.weight.shape[0]) if emb is not None else None


def adapter_vocabulary(adapter_dir: Path) -> int | None:
    """The size of the tokenizer saved with the adapter (training saves it there), or None without one."""
    if not any((adapter_dir / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        return None
    from transformers import AutoTokenizer

    try:
        return len(AutoTokenizer.from_pretrained(str(adapter_dir)))
    except (OSError, ValueError):
        return None


def shape_problems(shapes: dict[str, tuple[int, ...]], model) -> list[str]:
    """What in the adapter's tensors does not fit the base model's modules (empty when all fit)."""
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())
    out = []
    for key, shape in shapes.items():
        name = key.removeprefix("base_model.model.")
        for part, dim, what in ((".lora_A.", 1, "in_features"), (".lora_B.", 0, "out_features"),
                                (".lora_embedding_A", 1, "num_embeddings"), (".lora_embedding_B", 0, "embedding_dim")):
            if part in name:
                mod_name = name.split(part)[0]
                mod = modules.get(mod_name)
                if mod is None or not hasattr(mod, "weight"):
                    out.append(f"it adapts {mod_name}, which the base does not have")
                    break
                w = tuple(mod.weight.shape)
                want = {"in_features": w[-1], "out_features": w[0], "num_embeddings": w[0], "embedding_dim": w[-1]}[what]
                if shape[dim] != want:
                    out.append(f"{mod_name}: {what} {shape[dim]} in the adapter, {want} in the base")
                break
        else:  # a module saved whole (modules_to_save)
            pname = name.replace(".modules_to_save.default", "").replace(".original_module", "")
            if pname in params and tuple(params[pname].shape) != shape:
                out.append(f"{pname}: shape {shape} in the adapter, {tuple(params[pname].shape)} in the base")
    return out


def check_adapter_base(adapter_path: str, base_path: str | None = None, model=None,
                       allow_mismatch: bool = False) -> list[str]:
    """Raise ``AdapterBaseMismatchError`` (one line) when ``adapter_path`` was not trained for this base; returns
    the tolerated problems (``allow_mismatch``).  ``model``: the loaded base (else built on the meta device from
    ``base_path``'s config)."""
    adapter_dir = Path(adapter_path)
    cfg_file = adapter_dir / "adapter_config.json"
    if not cfg_file.is_file():
        return []
    expected = json.loads(cfg_file.read_text(encoding="utf-8")).get("base_model_name_or_path")
    given = base_path or getattr(getattr(model, "config", None), "_name_or_path", None) or "the loaded model"
    soft: list[str] = []
    if expected and base_path and not same_base_name(expected, base_path):
        soft.append("another base model name")
    if model is None and base_path is not None:
        model = _meta_model(base_path)
    hard = shape_problems(adapter_tensor_shapes(adapter_dir), model) if model is not None else []
    rows, vocab = (_vocab_rows(model) if model is not None else None), adapter_vocabulary(adapter_dir)
    if rows is not None and vocab is not None and vocab > rows:
        soft.append(f"its tokenizer has {vocab} ids, the base's embedding {rows} rows")
    if not hard and (not soft or allow_mismatch):
        for p in soft:
            logger.warning("adapter %s on base %s: %s (allowed by %s)", adapter_path, given, p, ALLOW_FLAG)
        return soft
    expects = f"'{expected}'" + (f" (vocabulary {vocab})" if vocab else "")
    got = f"'{given}'" + (f" (vocabulary {rows})" if rows else "")
    what = "; ".join((hard + soft)[:2])
    hint = ("the shapes differ, so it cannot be loaded on this base" if hard else
            f"pass the base it was trained on, or {ALLOW_FLAG} to load it anyway")
    raise AdapterBaseMismatchError(f"adapter {adapter_path} was trained on base {expects}, but the base given is "
                                   f"{got}: {what}; {hint}")
