"""Data preparation: readers of the source datasets (``sources``), retrieval over Natural Questions
(``retrieval``), the SFT view (``sft``), easy / medium / hard fakes (``negatives``, ``ner``), teacher pairs
(``teacher``) and the curriculum pairs (``pairs``)."""
