"""Every workshop notebook runs top to bottom at its quick size (TOYDS_QUICK=1), and is stored
without outputs, with one settings cell that TOYDS_QUICK switches. Slow (they train); CI runs them."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_one_notebook_per_chapter():
    names = [p.stem for p in NOTEBOOKS]
    for prefix in ("00_", "01_", "02_", "03_", "04_", "05_", "06_", "07_", "08_"):
        assert any(n.startswith(prefix) for n in names), f"no notebook for chapter {prefix}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_without_outputs_with_one_settings_cell(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c["outputs"] and c["execution_count"] is None for c in code), f"{path.name} has outputs"
    settings = [c for c in code if "TOYDS_QUICK" in "".join(c["source"])]
    assert len(settings) == 1 and code.index(settings[0]) == 0, "the first code cell, and only it, reads TOYDS_QUICK"
    assert any("## Settings" in "".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    text = "".join("".join(c["source"]) for c in code)
    assert "from toyds" in text or "import toyds" in text


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_at_quick_size(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("TOYDS_QUICK", "1")  # the kernel inherits it
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    # run in a fresh folder, so whatever a notebook writes (runs/...) lands there
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
