"""The one switch back to the study's own behaviour.

Defaults reproduce the study's settings; where the study's code has a plain bug (an off-by-one, a doubled BOS,
a cut response, a misparsed field, a metric never computed) the default is the correct computation, and
``--study_compat`` (the same flag on every script concerned) reproduces what the study's code did, for a
side-by-side comparison.  README.md, "Differences from the study", lists every such place with the study's
script and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(kw_only=True)
class StudyCompat:
    study_compat: bool = field(default=False, metadata={
        "help": "reproduce the study's code where this project corrects a plain bug in it (README: Differences from "
                "the study), for side-by-side comparisons", "group": "fidelity",
        "record": False})  # its effects are the settings it changes, which fingerprints hold
