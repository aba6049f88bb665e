"""Text rules that older library versions applied for us and current ones no longer do.

``clean_up_tokenization_spaces``: transformers 4 ran this clean-up on every ``decode`` of a tokenizer whose config
says ``clean_up_tokenization_spaces: true`` (Llama-3.2's does); transformers 5 ignores the setting for BPE
tokenizers.  The study's latest recipe decodes each budget-cut context (further_improvement/training/
train_dpop.py:125) on transformers 4.56, so its prompts hold the cleaned text; ``--study_compat`` applies the rule
to reproduce them (README: Differences from the study).
"""

from __future__ import annotations

#: transformers 4's replacements, in its order (tokenization_utils_base.py, ``clean_up_tokenization``): a space
#: before . ? ! , and before the English clitics n't 'm 's 've 're goes, and " ' " becomes "'"
_CLEAN_UPS: tuple[tuple[str, str], ...] = (
    (" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
    (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"),
)


def clean_up_tokenization_spaces(text: str) -> str:
    """``text`` as transformers 4's ``decode`` returned it with ``clean_up_tokenization_spaces=True``:
    "band , which is n't from the U.S . It 's" -> "band, which isn't from the U.S. It's".  Each replacement runs
    once over the whole text, in the order above, as there."""
    for old, new in _CLEAN_UPS:
        text = text.replace(old, new)
    return text
