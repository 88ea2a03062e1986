"""yolo_triton: the library behind every command of this repository (installed editable by ``make setup``).

Layers (ARCHITECTURE.md; tests/test_layers.py): settings and layout -> artefact steps -> operation. Every
function takes paths and parameters and returns results; the commands in ``export/``, ``dali/`` and
``scripts/`` are thin CLIs over it, and the tests call it directly.
"""
