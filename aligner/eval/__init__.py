"""Evaluation: the model interface and its backends (``lm``, ``hf``, ``vllm``, ``packing``), metrics and
benchmark tasks."""
