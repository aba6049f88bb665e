"""The earlier module name of the preference trainer (``aligner.train.trainer``); other branches and user scripts
import from here."""

from aligner.train.layouts import collate_pairs, policy_and_reference_logps  # noqa: F401
from aligner.train.trainer import (  # noqa: F401
    TRAIN_LOG,
    DPOPTrainer,
    LogWindow,
    PreferenceTrainer,
    TrainResult,
    train_dpop,
    train_preference,
    train_recipe,
)
