"""Merge a LoRA adapter into its base model, verified on a probe input.

The merge is done in ``compute_dtype`` (fp32 by default, so W + scale·B·A is rounded once), checked there
against the adapter-applied model (``max |logits_merged - logits_adapter|`` over every probe position must
stay within ``tolerance``), and only then cast to the save dtype and written with the tokenizer.  The saved
folder is loaded back and its logits compared once more; when the save dtype is the compute dtype that second
difference is held to the same tolerance, otherwise it is reported (it then includes the rounding of the
weights to bf16/fp16, which is not a merge error).
"""

from __future__ import annotations

import gc
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from aligner.core.adapter_check import check_adapter_base
from aligner.core.cli import override
from aligner.core.io import AlignerError, read_json
from aligner.core.models import (
    attach_adapters,
    load_causal_lm,
    load_tokenizer,
    merge_adapter,
    resolve_device,
    resolve_dtype,
)
from aligner.core.runinfo import setup_logging, write_run_config
from aligner.lm.settings import AdapterCheckSettings
from aligner.prompts import (
    MERGE_PROBE_ANSWER,
    MERGE_PROBE_CONTEXT,
    MERGE_PROBE_QUESTION,
    halueval_messages,
    merge_probe_plain_text,
    render_chat,
)

logger = logging.getLogger(__name__)

# fp32 merges reorder a few additions; fp16/bf16 merges round the merged weight to 8-11 mantissa bits.
DEFAULT_TOLERANCE = {torch.float32: 1e-3, torch.float16: 5e-2, torch.bfloat16: 2.5e-1}


@dataclass(kw_only=True)
class MergeConfig(AdapterCheckSettings):
    """``scripts/merge_adapter.py`` (the study's layout as defaults)."""

    base_model_path: str = field(default="models/llama3-2-3b-instruct", metadata={
        "help": "base model folder or hub id"})
    adapter_path: str = field(default="dpop_out", metadata={"help": "LoRA adapter folder"})
    output_path: str = field(default="models/llama3-2-3b-dpop-instruct", metadata={
        "help": "where the merged model goes"})
    dtype: str = field(default="auto", metadata={
        "help": "dtype of the saved model: auto (the base checkpoint's), fp32, bf16, fp16"})
    compute_dtype: str = field(default="fp32", metadata={
        "help": "dtype the merge and the check run in; fp32 rounds the merged weights once"})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, cuda:1 or auto"})
    tolerance: float | None = field(default=None, metadata={
        "help": "largest accepted max |logit difference| merged vs base+adapter (default: 1e-3 for fp32, 5e-2 fp16, "
                "0.25 bf16 compute dtype)"})
    probe_text: str | None = field(default=None, metadata={
        "help": "text to check on (default: a chat-rendered HaluEval-style question and answer)"})
    verify_saved: bool = field(default=True, metadata={
        "flag": "--no_verify_saved", "help": "skip reloading the saved model for a second check (default: off)"})
    allow_base_mismatch: bool = override(
        AdapterCheckSettings, "allow_base_mismatch", False,
        help="merge into a base other than the one adapter_config.json names, or one whose vocabulary the adapter's "
             "tokenizer exceeds (a deliberate transfer; the base's tokenizer is saved then); shapes that differ stay "
             "an error")


class MergeCheckError(AlignerError, RuntimeError):
    """The merged model's logits differ from the adapter-applied model's by more than the tolerance."""


@dataclass
class MergeReport:
    base_model_path: str
    adapter_path: str
    output_path: str
    compute_dtype: str
    save_dtype: str
    probe_tokens: int
    max_abs_diff: float            # merged (in memory, compute dtype) vs base + adapter
    mean_abs_diff: float
    adapter_effect: float          # max |logits_adapter - logits_base|: the adapter really changes something
    saved_max_abs_diff: float | None = None   # reloaded saved model vs base + adapter
    tolerance: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def default_tolerance(dtype: torch.dtype) -> float:
    return DEFAULT_TOLERANCE.get(dtype, 1e-3)


def probe_input_ids(tokenizer, text: str | None = None) -> torch.Tensor:
    """A (1, T) probe: the given text, or a chat-rendered HaluEval-style question with an answer."""
    if text is None:
        if getattr(tokenizer, "chat_template", None):
            msgs = halueval_messages(MERGE_PROBE_CONTEXT, MERGE_PROBE_QUESTION)
            text = render_chat(tokenizer, msgs) + MERGE_PROBE_ANSWER
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]  # the rendered chat carries BOS
            return torch.tensor([ids], dtype=torch.long)
        text = merge_probe_plain_text()
    ids = tokenizer(text)["input_ids"]
    return torch.tensor([ids], dtype=torch.long)


@torch.no_grad()
def probe_logits(model, input_ids: torch.Tensor) -> torch.Tensor:
    device = next(model.parameters()).device
    out = model(input_ids=input_ids.to(device), attention_mask=torch.ones_like(input_ids).to(device))
    return out.logits.float().cpu()


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        raise MergeCheckError(f"probe logits have different shapes: {tuple(a.shape)} vs {tuple(b.shape)}")
    d = (a - b).abs()
    if not torch.isfinite(d).all():
        return float("inf")
    return float(d.max())


def check_logits(reference: torch.Tensor, merged: torch.Tensor, tolerance: float, what: str = "merged") -> float:
    """Max |merged - reference|; raises ``MergeCheckError`` above ``tolerance`` (or on NaN/inf)."""
    diff = max_abs_diff(reference, merged)
    if not diff <= tolerance:
        raise MergeCheckError(f"{what} model logits differ from base+adapter by {diff:.3g} on the probe "
                              f"(tolerance {tolerance:.3g}); the output was not accepted")
    return diff


def _adapter_has_tokenizer(adapter_path: str) -> bool:
    p = Path(adapter_path)
    return p.is_dir() and any((p / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))


def merge_lora(base_model_path: str | os.PathLike, adapter_path: str | os.PathLike,
               output_path: str | os.PathLike, save_dtype: str | torch.dtype = "auto",
               compute_dtype: str | torch.dtype = "fp32", device: str = "auto", tolerance: float | None = None,
               probe_text: str | None = None, verify_saved: bool = True,
               safe_serialization: bool = True, allow_base_mismatch: bool = False) -> MergeReport:
    """Merge ``adapter_path`` into ``base_model_path`` and save the result (model + tokenizer) to ``output_path``.

    ``save_dtype='auto'`` keeps the base checkpoint's dtype (config ``dtype``/``torch_dtype``; fp32 if unset).
    Raises ``MergeCheckError`` (before anything is written) if the merged logits drift beyond ``tolerance``, and
    ``AdapterBaseMismatchError`` (before the base is loaded) when the adapter was trained on another base.
    """
    dev = resolve_device(device)
    cdtype = resolve_dtype(compute_dtype, dev)
    tol = default_tolerance(cdtype) if tolerance is None else float(tolerance)

    sdtype = _save_dtype(save_dtype, base_model_path)  # read before loading: loading rewrites config.dtype
    check_adapter_base(str(adapter_path), str(base_model_path), allow_mismatch=allow_base_mismatch)
    model, tok = load_causal_lm(base_model_path, dtype=cdtype, device=dev)
    if _adapter_has_tokenizer(str(adapter_path)):
        adapter_tok = load_tokenizer(adapter_path)  # training may have added a pad token or a chat template
        if len(adapter_tok) <= model.get_input_embeddings().weight.shape[0]:
            tok = adapter_tok
        else:
            logger.warning("the adapter's tokenizer (%d ids) does not fit the base (%d rows); saving the base's",
                           len(adapter_tok), model.get_input_embeddings().weight.shape[0])
    ids = probe_input_ids(tok, probe_text)
    base_logits = probe_logits(model, ids)

    peft_model, names = attach_adapters(model, [str(adapter_path)], check=False)  # checked before loading
    adapter_logits = probe_logits(peft_model, ids)
    effect = max_abs_diff(adapter_logits, base_logits)
    if effect == 0.0:
        logger.warning("the adapter does not change the probe logits (zero LoRA B matrices?)")

    merged = merge_adapter(peft_model, names[0])
    merged_logits = probe_logits(merged, ids)
    diff = check_logits(adapter_logits, merged_logits, tol)
    mean = float((adapter_logits - merged_logits).abs().mean())

    out = Path(output_path)
    out.mkdir(parents=True, exist_ok=True)
    merged.to(sdtype)
    merged.config.dtype = sdtype
    merged.save_pretrained(out, safe_serialization=safe_serialization)
    tok.save_pretrained(out)
    report = MergeReport(str(base_model_path), str(adapter_path), str(out), str(cdtype).replace("torch.", ""),
                         str(sdtype).replace("torch.", ""), int(ids.shape[1]), diff, mean, effect, None, tol)
    del merged, peft_model, model
    gc.collect()

    if verify_saved:
        reloaded, _ = load_causal_lm(out, dtype=sdtype, device=dev)
        saved_logits = probe_logits(reloaded, ids)
        if sdtype == cdtype:
            report.saved_max_abs_diff = check_logits(adapter_logits, saved_logits, tol, what="saved")
        else:
            report.saved_max_abs_diff = max_abs_diff(adapter_logits, saved_logits)
            if report.saved_max_abs_diff == float("inf"):
                raise MergeCheckError(f"the saved {sdtype} model gives non-finite logits on the probe")
        del reloaded
        gc.collect()
    return report


def _save_dtype(save_dtype: str | torch.dtype, base_model_path: str | os.PathLike) -> torch.dtype:
    """The dtype to save in: the one asked for, or for ``auto`` the dtype in the base checkpoint's config."""
    if isinstance(save_dtype, torch.dtype) or save_dtype not in (None, "auto"):
        return resolve_dtype(save_dtype, "cpu")
    cfg_path = Path(base_model_path) / "config.json"
    cfg = read_json(cfg_path) if cfg_path.is_file() else {}
    name = cfg.get("dtype") or cfg.get("torch_dtype")
    if isinstance(name, str):
        try:
            return resolve_dtype(name, "cpu")
        except ValueError:
            logger.warning("%s: unknown dtype %r in config; saving in fp32", cfg_path, name)
    return torch.float32


def run_merge(cfg: MergeConfig) -> MergeReport:
    """``merge_lora`` with the script's report lines and run_config.json (holding the check) beside the model."""
    setup_logging()
    print(f"merging {cfg.adapter_path} into {cfg.base_model_path} -> {Path(cfg.output_path).resolve()}")
    report = merge_lora(cfg.base_model_path, cfg.adapter_path, cfg.output_path, save_dtype=cfg.dtype,
                        compute_dtype=cfg.compute_dtype, device=cfg.device, tolerance=cfg.tolerance,
                        probe_text=cfg.probe_text, verify_saved=cfg.verify_saved,
                        allow_base_mismatch=cfg.allow_base_mismatch)
    print(f"adapter effect on the probe: max |adapter - base| = {report.adapter_effect:.4g}")
    print(f"merged vs base+adapter ({report.compute_dtype}, {report.probe_tokens} tokens): "
          f"max abs diff = {report.max_abs_diff:.3g} (mean {report.mean_abs_diff:.3g}, tolerance {report.tolerance:.3g})")
    if report.saved_max_abs_diff is not None:
        print(f"saved {report.save_dtype} model vs base+adapter: max abs diff = {report.saved_max_abs_diff:.3g}")
    write_run_config(cfg.output_path, cfg, extra={"merge_check": report.to_dict()})
    print(f"saved merged model and tokenizer to {report.output_path}")
    return report
