"""Metrics: text overlap (``text``), embedding and BERTScore similarity (``similarity``), multiple choice
(``mc``), model judges (``judges``), and the declaration of every reported metric (``registry``)."""
