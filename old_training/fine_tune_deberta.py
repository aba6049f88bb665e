#!/usr/bin/env python
"""Fine-tune a sequence classifier to tell faithful from hallucinated answers given their context.

Data: the *_fakes_with_context.jsonl files of the data preparation ({data_index, question, context,
ideal_answer, fake_answer}). Every distinct (context, ideal_answer) is a faithful example (label 1,
"consistent"), every distinct (context, fake_answer) a hallucinated one (label 0, "hallucinated"). The
held-out split is made by data_index, so no context is in both splits. The model reads the pair
(context, answer) - the order the HaluEval step-2 judge uses for (knowledge, answer) - with the context cut
first when too long. Saved with id2label {0: hallucinated, 1: consistent}, so the output folder can be
passed to evaluation/eval_haleval_llm_step2.py --judge_model_path.
The logic lives in aligner/train/classifier.py.

Example:
    python old_training/fine_tune_deberta.py --data_dir outputs/data --output_dir models/deberta-faithfulness
"""

from aligner.core.cli import parse_config, run_cli
from aligner.train.classifier import FaithfulnessClassifierConfig, train_faithfulness_classifier


def parse_args(argv=None) -> FaithfulnessClassifierConfig:
    return parse_config(FaithfulnessClassifierConfig, argv, description=__doc__)


def main(argv=None):
    cfg = parse_args(argv)
    return train_faithfulness_classifier(cfg)


if __name__ == "__main__":
    run_cli(main)
