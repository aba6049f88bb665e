"""Training: the preference losses and their registry (``losses``), the curriculum (``curriculum``), preference
pairs (``preference``, ``pair_tokens``), the batch layouts (``layouts``, ``packing``: padded and prefix-shared
packed), one optimizer step (``steps``), the per-pair reference cache (``reference``), the settings (``config``),
the trainer (``trainer``; ``dpop_trainer`` is its earlier name), RAG SFT (``sft``), the faithfulness classifier
(``classifier``) and adapter merging (``merge``)."""
