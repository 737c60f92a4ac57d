"""Every committed notebook runs top to bottom at the tiny setting; a failing cell fails the test.

The kernel is this interpreter (``sys.executable``): a ``python3`` kernel spec written to a
temporary ``JUPYTER_PATH`` (searched before any user or system spec) points at it, so the
notebooks import the mrcnn_tf under test whatever kernels the machine has installed.
"""

import importlib.util
import json
import os
import sys

import nbformat
import pytest

NOTEBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")
NAMES = ["demo.ipynb", "train_shapes.ipynb", "inspect_data.ipynb", "inspect_model.ipynb"]
KERNEL_NAME = "python3"
MAX_BYTES = 1_500_000


def load_builder():
    spec = importlib.util.spec_from_file_location("build_notebooks",
                                                  os.path.join(NOTEBOOKS, "build_notebooks.py"))
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    return builder


def outputs_of(notebook):
    return [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]


def stdout_of(cell):
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("name") == "stdout")


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory):
    """A ``python3`` kernel spec running ``sys.executable``, first on JUPYTER_PATH."""
    from jupyter_client.kernelspec import KernelSpecManager

    root = tmp_path_factory.mktemp("jupyter")
    spec_dir = root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (mrcnn_tf tests)", "language": "python"}))
    patch = pytest.MonkeyPatch()
    patch.setenv("JUPYTER_PATH", str(root) + os.pathsep + os.environ.get("JUPYTER_PATH", ""))
    spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    assert spec.argv[0] == sys.executable, spec.argv
    yield KERNEL_NAME
    patch.undo()


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_executes_at_the_tiny_setting(name, kernel_name, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("MRCNN_TINY", "1")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    monkeypatch.setenv("MPLBACKEND", "Agg")  # as CI sets it; %matplotlib inline takes over
    notebook = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    # Runs in tmp_path (its logs/ and export/ land there); raises CellExecutionError on a failing cell.
    NotebookClient(notebook, timeout=600, kernel_name=kernel_name,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), "every code cell ran"
    assert "TINY=True" in stdout_of(code[0]), "the parameter cell picked the tiny setting"
    pictures = [o for o in outputs_of(notebook) if "image/png" in o.get("data", {})]
    assert pictures, "the notebook draws pictures"
    if name == "train_shapes.ipynb":
        assert os.path.isfile(os.path.join(tmp_path, "export", "1", "saved_model.pb"))
        assert any(f.startswith("shapes") for f in os.listdir(tmp_path / "logs"))


def test_committed_notebooks_are_the_built_ones_with_small_outputs():
    """The .ipynb sources match notebooks/build_notebooks.py, and carry their (small) outputs."""
    builder = load_builder()
    assert sorted(builder.NOTEBOOKS) == sorted(NAMES)
    for name, cells in builder.NOTEBOOKS.items():
        path = os.path.join(NOTEBOOKS, name)
        committed = nbformat.read(path, as_version=4)
        nbformat.validate(committed)
        assert [(c.cell_type, c.source) for c in committed.cells] == \
               [(c.cell_type, c.source) for c in cells], f"{name}: run notebooks/build_notebooks.py"
        assert "TINY" in committed.cells[1].source and "parameters" in committed.cells[1].metadata.get("tags", [])
        assert os.path.getsize(path) < MAX_BYTES, f"{name}: {os.path.getsize(path)} bytes"
        outputs = outputs_of(committed)
        assert not [o for o in outputs if o.get("output_type") == "error"], f"{name} was saved with an error"
        assert any("image/png" in o.get("data", {}) for o in outputs), f"{name} was saved without its outputs"
        assert all(c.execution_count for c in committed.cells if c.cell_type == "code"), \
            f"{name}: every code cell executed, in order"


def test_builder_does_not_alter_its_sources(tmp_path, monkeypatch):
    """Building (without executing) writes valid notebooks and leaves NOTEBOOKS untouched."""
    builder = load_builder()
    monkeypatch.setattr(builder, "HERE", str(tmp_path))
    before = {name: [dict(c) for c in cells] for name, cells in builder.NOTEBOOKS.items()}
    builder.build()
    assert sorted(os.listdir(tmp_path)) == sorted(NAMES)
    for name in NAMES:
        nbformat.validate(nbformat.read(tmp_path / name, as_version=4))
    assert {name: [dict(c) for c in cells] for name, cells in builder.NOTEBOOKS.items()} == before
