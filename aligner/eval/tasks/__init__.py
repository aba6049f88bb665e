"""Benchmarks, one small module each, talking to models only through ``aligner.lm.LM``."""
