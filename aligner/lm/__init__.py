"""The model layer between the data and the stages that use models: one interface (``LM``: ``loglikelihood``,
``loglikelihood_groups``, ``generate_until``, ``release``) with a Hugging Face backend (``hf``, exact batched
log-likelihoods, prefix sharing via ``packing``) and a vLLM backend (``vllm``), and the generation settings
every model-using stage shares (``settings``).  Data generation (hard fakes, teacher pairs) and evaluation
tasks load models through ``load_lm`` and never look inside a backend."""

from aligner.lm.interface import LM, cut_at_stop, load_lm, release_lm, resolve_backend, vllm_available

__all__ = ["LM", "cut_at_stop", "load_lm", "release_lm", "resolve_backend", "vllm_available"]
