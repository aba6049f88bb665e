"""transformers 4's decode clean-up (``aligner.core.text.clean_up_tokenization_spaces``) on NQ-style spaced text
with the real Llama-3.2 tokenizer: the expected strings are what transformers 4.56.2's ``decode`` returned for the
same token ids (recorded from that version; the study's latest recipe decoded its budget-cut contexts with it)."""

import pytest
from transformers import AutoTokenizer

from aligner.core.paths import shared_data_dir
from aligner.core.text import clean_up_tokenization_spaces

LLAMA = shared_data_dir().parent / "tokenizers" / "llama-3.2-instruct"
PASSAGE = ("Yes are an English rock band formed in London in 1968 . The band , which has had many line - up changes , "
           "is n't from the U.S . It 's known for `` Roundabout '' ( 1971 ) and `` Owner of a Lonely Heart '' ; "
           "the song reached No . 1 in the US . Anderson said : ' I 'm sure we 've done it ' , and `` we 're not done ! '' "
           "Why ? Because it 's 50 % of the work , $ 5 each .")
#: transformers 4.56.2: tok.decode(ids[:k], skip_special_tokens=True) for the passage's ids (110 tokens)
DECODED_BY_TRANSFORMERS_4 = {
    110: "Yes are an English rock band formed in London in 1968. The band, which has had many line - up changes, isn't "
         "from the U.S. It's known for `` Roundabout '' ( 1971 ) and `` Owner of a Lonely Heart '' ; the song reached "
         "No. 1 in the US. Anderson said :'I'm sure we've done it ', and `` we're not done! '' Why? Because it's 50 % "
         "of the work, $ 5 each.",
    40: "Yes are an English rock band formed in London in 1968. The band, which has had many line - up changes, isn't "
        "from the U.S. It's known for ``",
    57: "Yes are an English rock band formed in London in 1968. The band, which has had many line - up changes, isn't "
        "from the U.S. It's known for `` Roundabout '' ( 1971 ) and `` Owner of a Lonely Heart '' ;",
}


@pytest.fixture(scope="module")
def llama():
    if not (LLAMA / "tokenizer.json").is_file():
        pytest.skip("the Llama-3.2 tokenizer is not in ../shared/tokenizers")
    return AutoTokenizer.from_pretrained(str(LLAMA))


def test_budget_cut_contexts_decode_as_on_transformers_4(llama):
    ids = llama(PASSAGE, add_special_tokens=False)["input_ids"]
    assert len(ids) == 110
    for k, expected in DECODED_BY_TRANSFORMERS_4.items():
        spaced = llama.decode(ids[:k], skip_special_tokens=True)
        assert spaced != expected  # transformers 5 leaves the spaces: the clean-up is ours to apply
        assert clean_up_tokenization_spaces(spaced) == expected


def test_the_rule_itself():
    assert clean_up_tokenization_spaces("band , which … is n't … U.S . It 's") == "band, which … isn't … U.S. It's"
    assert clean_up_tokenization_spaces("Why ? Now ! I 'm , we 've , they 're") == "Why? Now! I'm, we've, they're"
    # only the space before the mark goes; other spacing, brackets and quotes stay as tokenized
    assert clean_up_tokenization_spaces("( 1971 ) `` A '' ; B : C - D") == "( 1971 ) `` A '' ; B : C - D"
    assert clean_up_tokenization_spaces("said : ' I") == "said :'I"
    assert clean_up_tokenization_spaces("no change.") == "no change."


def test_study_hard_fake_extraction_reads_the_cleaned_decode():
    """generate_hard_fakes.py:83 decoded prompt + generation with transformers 4, cleaned, before its markers."""
    from aligner.data.hard_fakes import extract_generated_answer, study_extract_generated_answer

    prompt = "Context:\nThe band , formed in 1968 , is n't from the U.S .\n\nQuestion: q\nCorrect Answer: a\n\nFlawed Answer:"
    generation = " The band is from the U.S . It 's American , and was formed in 1971 ."
    assert study_extract_generated_answer(prompt, generation) == "The band is from the U.S. It's American, and was " \
                                                                  "formed in 1971."
    assert extract_generated_answer(generation) == generation.strip()
