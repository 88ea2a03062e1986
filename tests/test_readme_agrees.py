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


def test_readme_figures_have_a_file_behind_them():
    """Figures measured here are kept as JSON in benchmarks/ (issue 21, item 8): the CPU serving section's
    images/s series must be cells of benchmarks/cpu_serving.json, and the demo's duration needs a file."""
    import json

    cells = json.loads((REPO / "benchmarks" / "cpu_serving.json").read_text())["cells"]
    kept = {tuple(round(c["images_per_s"], 1) for c in sorted((c for c in cells if c["track"] == track),
                                                             key=lambda c: c["concurrency"]))
            for track in {c["track"] for c in cells}}
    text = paragraph("How to read it:")
    series = {tuple(float(v) for v in m.split("/")) for m in re.findall(r"\b\d+\.\d(?:/\d+\.\d){3}\b", text)}
    assert series <= kept, f"images/s series with no file behind them: {sorted(series - kept)}"
    demo = paragraph("**`make demo`** needs no GPU")
    if re.search(r"\b(took|minute|\d+ s)\b", demo):
        cited = re.findall(r"benchmarks/[\w.-]+\.json", demo)
        assert cited and all((REPO / c).is_file() for c in cited), "the demo's time needs its JSON in benchmarks/"
