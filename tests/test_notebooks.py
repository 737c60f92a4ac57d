"""Every committed notebook runs top to bottom at the tiny setting; a failing cell fails the test."""

import os

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")
NAMES = ["demo.ipynb", "train_shapes.ipynb", "inspect_data.ipynb", "inspect_model.ipynb"]


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_executes(name, tmp_path, monkeypatch):
    monkeypatch.setenv("MRCNN_TINY", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    notebook = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    for cell in notebook.cells:
        cell["outputs"] = []
    NotebookClient(notebook, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()  # raises CellExecutionError
    images = [o for cell in notebook.cells for o in cell.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images, "each notebook draws at least one picture"


def test_committed_notebooks_are_the_built_ones():
    """The .ipynb sources match notebooks/build_notebooks.py (outputs aside)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_notebooks", os.path.join(NOTEBOOKS, "build_notebooks.py"))
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    assert sorted(builder.NOTEBOOKS) == sorted(NAMES)
    for name, cells in builder.NOTEBOOKS.items():
        committed = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
        assert [c.source for c in committed.cells] == [c.source for c in cells], name
        assert os.path.getsize(os.path.join(NOTEBOOKS, name)) < 1_500_000
