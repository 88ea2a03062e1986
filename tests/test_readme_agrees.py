"""README statements that the code decides, checked against the code (issue 21, items 5 and 8)."""
from __future__ import annotations

import re

from conftest import REPO
from yolo_triton import ensemble as ens

README = (REPO / "README.md").read_text()


def paragraph(start: str) -> str:
    """The README paragraph that begins with ``start`` (up to the next blank line)."""
    begin = README.index(start)
    end = README.find("\n\n", begin)
    return " ".join(README[begin:end if end != -1 else None].split())


def test_track_d_bad_input_paragraph_says_what_the_generated_dali_config_does():
    config = ens.preprocess_config(ens.preprocess_model_name(640), 640, 8, 100)
    ragged = config.input[0].allow_ragged_batch
    text = paragraph("**Bad input.**")
    assert ragged  # the generated DALI config merges requests of different byte lengths
    assert "allow_ragged_batch" in text
    assert not re.search(r"allow_ragged_batch`? is not enabled|are not merged", text), text
    assert re.search(r"different (byte )?lengths? (are|is) merged", text), text
