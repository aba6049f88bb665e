"""Readers of the datasets the project uses: SQuAD v2, Natural Questions, HaluEval QA, TruthfulQA.
Each reports a bad row as ``DataError`` naming the file and line."""
