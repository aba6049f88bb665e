"""Training: the DPOP loss (``losses``), the curriculum (``curriculum``), preference pairs and the reference
cache (``preference``), the settings (``config``), the trainer (``dpop_trainer``), RAG SFT (``sft``), the
faithfulness classifier (``classifier``) and adapter merging (``merge``)."""
