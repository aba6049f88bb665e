"""README's "Differences from the study": every row the reproduction report points to has its anchor, and every
flag a row names for the other behaviour is a flag some script really takes."""

import argparse
import re
from pathlib import Path

from test_cli_help import SCRIPTS, _parser_of

from aligner.report.published import DIFFERENCE_ROWS, RUN_ROWS

REPO = Path(__file__).resolve().parents[1]


def _section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("## Differences from the study")
    return text[start: text.index("\n## ", start + 10)]


def test_every_row_the_report_links_to_has_its_anchor():
    section = _section()
    ids = {row for rows in (*DIFFERENCE_ROWS.values(), *RUN_ROWS.values()) for row in rows}
    missing = [r for r in sorted(ids) if f'<a id="diff-{r.lower()}"></a>' not in section]
    assert not missing


def test_every_flag_of_the_table_exists():
    flags = set()
    for script in SCRIPTS:
        parser = _parser_of(script)
        for action in parser._actions:
            flags.update(action.option_strings)
            if isinstance(action, argparse.BooleanOptionalAction):
                flags.update(s.replace("--", "--no-", 1) for s in action.option_strings)
    rows = [ln for ln in _section().splitlines() if ln.startswith("| <a id=")]
    assert len(rows) > 50
    named = {m for ln in rows for m in re.findall(r"`(--[a-z][a-z0-9_-]*)", ln.rsplit("|", 2)[-2])}
    unknown = sorted(named - flags)
    assert not unknown, f"flags named in the differences table that no script takes: {unknown}"
    assert "--study_compat" in named
