"""Reports: the study's tables with paired bootstrap intervals (``tables``, ``bootstrap``) and figures
(``plots``), driven by the metric declarations in ``aligner.eval.metrics.registry``."""
