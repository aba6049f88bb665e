"""Test and demo support: tiny random-init models with a tokenizer trained on the benchmark text."""
