"""The lecture notebooks (docs/notebooks) are committed without outputs and run top to
bottom in quick mode, with their plots; those that need a dataset skip without its files."""

import json
import re
from pathlib import Path

import pytest
from experiment_scripts import ROOT, load_script

runner = load_script(Path("docs/notebooks/run.py"), "notebook_runner")

# The data-dir fixtures (conftest.py) each notebook reads its datasets from.
DATASETS = {
    "01_perceptron_xor": (),
    "02_convolutions_mnist": ("mnist_data_dir",),
    "03_recurrent_networks": ("sst2_data_dir", "tiny_shakespeare_data_dir"),
    "04_last_names": ("conll2003_data_dir",),
    "05_scaling": ("mnist_data_dir",),
}
# How many cells show a plot in quick mode, at least.
PLOTTING_CELLS = {"01_perceptron_xor": 4, "02_convolutions_mnist": 11, "03_recurrent_networks": 2,
                  "04_last_names": 2, "05_scaling": 3}


def test_every_lecture_section_has_a_notebook():
    assert [path.stem for path in runner.notebook_paths()] == list(DATASETS) == list(PLOTTING_CELLS)


@pytest.mark.parametrize("path", runner.notebook_paths(), ids=lambda path: path.stem)
def test_notebook_is_committed_without_outputs(path):
    cells = json.loads(path.read_text())["cells"]
    stale = [i for i, cell in enumerate(cells)
             if cell["cell_type"] == "code" and (cell["outputs"] or cell["execution_count"] is not None)]
    assert not stale, f"{path.name}: cells {stale} carry outputs; clear them before committing"


@pytest.fixture
def tfds_data_dir(request, tmp_path):
    """One TFDS data dir holding every dataset the notebook under test reads (each prepared once
    per session by conftest.py's fixtures), set as TFDS_DATA_DIR for its kernel."""
    for fixture in DATASETS[request.node.callspec.params["name"]]:
        for dataset in request.getfixturevalue(fixture).iterdir():
            if dataset.is_dir() and dataset.name != "downloads" and not (tmp_path / dataset.name).exists():
                (tmp_path / dataset.name).symlink_to(dataset, target_is_directory=True)
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize("name", list(DATASETS))
def test_notebook_runs_in_quick_mode(name, tfds_data_dir, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tfds_data_dir))
    [path] = runner.notebook_paths([name])
    notebook = runner.nbformat.read(path, as_version=4)
    runner.execute(notebook, quick=True, timeout=600)  # a failing cell raises CellExecutionError
    plotted = [cell for cell in notebook.cells if cell.cell_type == "code"
               and any("image/png" in output.get("data", {}) for output in cell.outputs)]
    assert len(plotted) >= PLOTTING_CELLS[name], f"{name}: {len(plotted)} cells showed a plot"


@pytest.mark.parametrize("path", runner.notebook_paths(), ids=lambda path: path.stem)
def test_notebook_imports_only_jaxdl_and_its_dependencies(path):
    """A notebook composes the library's pieces; it does not reach into the experiment scripts
    or the benchmarks (what it needs from them belongs in jaxdl)."""
    code = "\n".join("".join(cell["source"]) for cell in json.loads(path.read_text())["cells"]
                     if cell["cell_type"] == "code")
    assert "sys.path" not in code, f"{path.name} changes sys.path to import a script"
    scripts = {script.stem for folder in ("experiments", "benchmarks") for script in (ROOT / folder).glob("*.py")}
    imported = set(re.findall(r"^\s*(?:import|from)\s+(\w+)", code, re.M))
    assert not imported & scripts, f"{path.name} imports the scripts {sorted(imported & scripts)}"
