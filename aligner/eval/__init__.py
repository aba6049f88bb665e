"""Evaluation: metrics (``metrics``, each declared once in ``metrics.registry``) and benchmark tasks
(``tasks``), which talk to models only through ``aligner.lm.LM``."""
