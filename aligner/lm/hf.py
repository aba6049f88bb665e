"""The Hugging Face backend of ``aligner.lm.LM``.

Log-likelihoods are exact and batched (right padding, only the continuation positions projected onto the
vocabulary, ``aligner.core.logprobs``); groups of continuations sharing a context are packed behind one copy
of it (``aligner.lm.packing``) when ``share_prefix`` is on and the attention kernel takes a custom mask.  A
request longer than the model's context keeps its last tokens (lm-evaluation-harness's rule), counted and logged.
Generation is batched greedy or sampled decoding with left padding.  LoRA adapters are switched on one
loaded base.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

import torch

from aligner.core.logprobs import (
    PACKABLE_ATTENTION,
    attention_implementation,
    encode_prompt_response,
    encoded_response_logprobs,
    pad_sequences,
)
from aligner.core.models import attach_adapters, load_causal_lm, parse_adapter_paths, use_adapter
from aligner.lm.interface import LM, cut_at_stop, fit_prompt
from aligner.lm.packing import pack_group, packed_group_logprobs

logger = logging.getLogger(__name__)

#: the keyword arguments ``HFLM`` takes (``load_lm`` drops the others)
HF_SETTINGS = ("dtype", "device", "batch_size", "gen_batch_size", "share_prefix", "max_length",
               "trust_remote_code", "allow_base_mismatch", "merge_adapter")


def stop_token_ids(tokenizer, model=None) -> list[int]:
    """EOS ids to stop generation at: the tokenizer's EOS, Llama-3's <|eot_id|>/<|end_of_text|>, the model's."""
    ids: list[int] = []
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    unk = tokenizer.unk_token_id
    for tok in ("<|eot_id|>", "<|end_of_text|>", "<|eom_id|>"):
        tid = tokenizer.convert_tokens_to_ids(tok)  # not get_vocab(): it copies the whole vocabulary
        if isinstance(tid, int) and tid != unk:
            ids.append(tid)
    gen_cfg = getattr(model, "generation_config", None)
    eos = getattr(gen_cfg, "eos_token_id", None) if gen_cfg is not None else None
    if isinstance(eos, int):
        ids.append(eos)
    elif isinstance(eos, (list, tuple)):
        ids.extend(eos)
    return sorted(set(ids))


class HFLM(LM):
    """``batch_size``: sequences (or packed continuations) per log-likelihood forward; ``gen_batch_size``:
    prompts per ``generate`` call (default ``batch_size``); ``share_prefix``: pack a context's continuations
    into one row."""

    def __init__(self, model_path: str, lora_paths: Sequence[str | None] | str | None = None, dtype: str = "auto",
                 device: str = "auto", batch_size: int = 8, gen_batch_size: int | None = None,
                 share_prefix: bool = True, max_length: int | None = None, trust_remote_code: bool = False,
                 model=None, tokenizer=None, allow_base_mismatch: bool = False, merge_adapter: bool = False):
        if model is None:
            model, tokenizer = load_causal_lm(model_path, dtype=dtype, device=device,
                                              trust_remote_code=trust_remote_code)
        self.model_path = model_path
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.gen_batch_size = gen_batch_size or batch_size
        self.generation_chunk = self.gen_batch_size  # one save per generate call
        self.share_prefix = share_prefix
        paths = parse_adapter_paths(lora_paths)
        real = [p for p in paths if p is not None]
        self.adapter_paths = {}
        if real:
            model, names = attach_adapters(model, real, base_path=model_path, allow_base_mismatch=allow_base_mismatch)
            it = iter(names)
            self.adapter_names = [None if p is None else next(it) for p in paths]
        else:
            self.adapter_names = [None]
        for p, n in zip(paths, self.adapter_names):
            self.adapter_paths[n] = p
        self.model = model
        self.active_adapter = self.adapter_names[0]
        self.max_length = max_length or getattr(model.config, "max_position_embeddings", None) or 4096
        self.n_truncated = 0
        self.merged = MergedAdapters(model) if merge_adapter and real else None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def can_pack(self) -> bool:
        """Packing needs an attention kernel that takes a custom 4D mask."""
        return attention_implementation(self.model) in PACKABLE_ATTENTION

    def adapter_active(self):
        """The model with the active adapter applied: unmerged (peft's LoRA forward), or merged into the weights
        with ``merge_adapter``."""
        if self.merged is not None:
            return self.merged.use(self.active_adapter)
        return use_adapter(self.model, self.active_adapter)

    def release(self) -> None:
        self.merged = None
        if hasattr(self, "model"):
            del self.model
        super().release()

    # -- log-likelihoods ----------------------------------------------------------------------
    def loglikelihood(self, requests, progress=True, desc="loglikelihood"):
        encoded = [encode_prompt_response(self.tokenizer, c, r) for c, r in requests]
        return self.loglikelihood_tokens(encoded, progress=progress, desc=desc)

    def loglikelihood_tokens(self, encoded, progress=False, desc="loglikelihood"):
        encoded = [self._fit_request(e) for e in encoded]
        with self.adapter_active():
            return encoded_response_logprobs(self.model, self.tokenizer.pad_token_id, encoded, self.batch_size,
                                             progress, desc)

    def loglikelihood_groups(self, groups, progress=False, desc="loglikelihood"):
        """Each group packed into one row behind one copy of its context, up to ``batch_size`` continuations
        per forward (longest groups first, so memory problems show at once)."""
        if not groups:
            return []
        if not (self.share_prefix and self.can_pack):
            return super().loglikelihood_groups(groups, progress=progress, desc=desc)
        from tqdm.auto import tqdm

        packed = [pack_group(self.tokenizer, ctx, conts) for ctx, conts in groups]
        out: list[list[float]] = [[] for _ in packed]
        too_long = [i for i, g in enumerate(packed) if g.length > self.max_length]
        if too_long:  # scored one sequence at a time, each cut to the context length (lm-eval's rule)
            flat = super().loglikelihood_groups([groups[i] for i in too_long], desc=desc)
            for i, scores in zip(too_long, flat):
                out[i] = scores
        cut = set(too_long)
        order = sorted((i for i in range(len(packed)) if i not in cut), key=lambda i: -packed[i].length)
        bar = tqdm(total=len(packed), desc=desc, disable=not progress, unit="group")
        with self.adapter_active():
            lo = 0
            while lo < len(order):
                batch = [order[lo]]
                n_cont = len(packed[order[lo]].segments)
                while lo + len(batch) < len(order) and \
                        n_cont + len(packed[order[lo + len(batch)]].segments) <= self.batch_size:
                    n_cont += len(packed[order[lo + len(batch)]].segments)
                    batch.append(order[lo + len(batch)])
                sums = packed_group_logprobs(self.model, [packed[i] for i in batch], self.tokenizer.pad_token_id)
                for i, s in zip(batch, sums):
                    out[i] = s
                lo += len(batch)
                bar.update(len(batch))
        bar.close()
        return out

    def _fit_request(self, enc):
        """A request longer than the model's context keeps its last ``max_length`` tokens, the continuation whole,
        the first (BOS) token kept, as lm-evaluation-harness cuts them; counted and logged."""
        n = len(enc.input_ids)
        if n <= self.max_length:
            return enc
        n_cont = n - enc.response_start
        if n_cont + 2 > self.max_length:
            raise ValueError(f"a continuation of {n_cont} tokens does not fit the model's {self.max_length} tokens")
        self.n_truncated += 1
        logger.warning("a log-likelihood request of %d tokens was cut to the model's %d (its context from the "
                       "left, BOS kept; %d so far)", n, self.max_length, self.n_truncated)
        ids = fit_prompt(enc.input_ids, self.max_length, keep_first=True)
        return type(enc)(ids, enc.response_start - (n - len(ids)))

    # -- generation ---------------------------------------------------------------------------
    def _encode_prompt(self, prompt: str, max_new_tokens: int) -> list[int]:
        ids = self.prompt_ids(prompt)
        # Keep the end of the prompt (the question and the generation header) and its BOS; count it.
        fitted = fit_prompt(ids, self.max_length - max_new_tokens, ids[0] == self.tokenizer.bos_token_id)
        self.n_truncated += len(fitted) < len(ids)
        return fitted

    @torch.no_grad()
    def generate_until(self, prompts, max_new_tokens=128, stop=None, temperature=0.0, top_p=1.0, seed=None,
                       progress=True, desc="generate", top_k=None):
        from tqdm.auto import tqdm

        encoded = [self._encode_prompt(p, max_new_tokens) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
        out: list[str] = [""] * len(prompts)
        eos = stop_token_ids(self.tokenizer, self.model)
        pad = self.tokenizer.pad_token_id
        do_sample = temperature > 0
        if do_sample and seed is not None:
            torch.manual_seed(seed)
        bar = tqdm(total=len(prompts), desc=desc, disable=not progress, unit="prompt")
        with self.adapter_active():
            for lo in range(0, len(order), self.gen_batch_size):
                idx = order[lo: lo + self.gen_batch_size]
                ids, mask = pad_sequences([encoded[i] for i in idx], pad, "left", self.device)
                kwargs = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, pad_token_id=pad,
                              eos_token_id=eos)
                if do_sample:
                    kwargs.update(temperature=temperature, top_p=top_p)
                    if top_k is not None:  # None: the model's generation_config decides (HF's default: 50)
                        kwargs["top_k"] = top_k
                else:
                    kwargs.update(temperature=None, top_p=None, top_k=None)
                gen = self.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
                new = gen[:, ids.shape[1]:]
                for row, i in enumerate(idx):
                    text = self.tokenizer.decode(new[row], skip_special_tokens=True)
                    out[i] = cut_at_stop(text, stop)
                bar.update(len(idx))
        bar.close()
        if self.n_truncated:
            logger.warning("%d prompt(s) longer than %d tokens were cut from the left", self.n_truncated,
                           self.max_length - max_new_tokens)
        return out


class MergedAdapters:
    """LoRA adapters merged into the base weights one at a time (the study's evaluation scripts merged the adapter
    into the bf16 / fp16 weights before scoring).  The weights of every LoRA-wrapped layer are kept as loaded and
    restored before the next adapter is merged, so switching adapters never accumulates rounding (peft's unmerge
    subtracts the delta again, which is not exact in half precision)."""

    def __init__(self, model):
        from peft.tuners.lora import LoraLayer

        self.model = model
        self.layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
        # on the CPU: a second copy of every LoRA-wrapped weight on the accelerator would cost up to the model again
        self.original = [m.get_base_layer().weight.detach().to("cpu", copy=True) for m in self.layers]
        self.current: str | None = None

    def _switch(self, name: str | None) -> None:
        if name == self.current:
            return
        with torch.no_grad():
            for layer, weight in zip(self.layers, self.original):
                layer.get_base_layer().weight.copy_(weight)
                layer.merged_adapters = []
            if name is not None:
                for layer in self.layers:
                    if name in layer.lora_A:
                        layer.merge(adapter_names=[name])
        self.current = name

    @contextlib.contextmanager
    def use(self, name: str | None):
        self._switch(name)
        if name is None:
            with self.model.disable_adapter():
                yield self.model
        else:
            yield self.model  # merged layers skip their adapters in forward: the weights hold them
