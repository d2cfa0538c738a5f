"""The lecture notebooks (docs/notebooks) are committed without outputs; the documentation
site's build runs them top to bottom in quick mode and renders them with their plots (it needs
every dataset's files, and skips without them)."""

import json
import re
from pathlib import Path

import pytest
from experiment_scripts import ROOT, load_script

runner = load_script(Path("docs/notebooks/run.py"), "notebook_runner")
build_site = load_script(Path("docs/build.py"), "build_site")

# The data-dir fixtures (conftest.py) each notebook reads its datasets from.
DATASETS = {
    "01_perceptron_xor": (),
    "02_convolutions_mnist": ("mnist_data_dir",),
    "03_recurrent_networks": ("sst2_data_dir", "tiny_shakespeare_data_dir"),
    "04_last_names": ("conll2003_data_dir",),
    "05_scaling": ("mnist_data_dir",),
    "06_optimisation_losses": ("mnist_data_dir",),
}
# How many cells show a plot in quick mode, at least.
PLOTTING_CELLS = {"01_perceptron_xor": 9, "02_convolutions_mnist": 15, "03_recurrent_networks": 11,
                  "04_last_names": 7, "05_scaling": 3, "06_optimisation_losses": 10}


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
    """One TFDS data dir holding every dataset the notebooks read (each prepared once per
    session by conftest.py's fixtures), set as TFDS_DATA_DIR for their kernels."""
    data_dir = tmp_path / "tfds"
    data_dir.mkdir()
    for fixture in sorted({fixture for fixtures in DATASETS.values() for fixture in fixtures}):
        for dataset in request.getfixturevalue(fixture).iterdir():
            if dataset.is_dir() and dataset.name != "downloads" and not (data_dir / dataset.name).exists():
                (data_dir / dataset.name).symlink_to(dataset, target_is_directory=True)
    return data_dir


def cell_images(notebook) -> list[int]:
    """How many images each code cell of an executed notebook (nbformat) shows."""
    return [sum("image/png" in output.get("data", {}) for output in cell.outputs)
            for cell in notebook.cells if cell.cell_type == "code"]


@pytest.mark.slow
@pytest.mark.longest
def test_site_builds_with_every_notebook_run_in_quick_mode(tfds_data_dir, tmp_path, monkeypatch):
    """docs/build.py --quick: every notebook runs top to bottom (a failing cell fails the build),
    shows its plots, and its page on the site holds every one of them; the pages build without a
    warning and their links resolve (both checked inside build())."""
    monkeypatch.setenv("TFDS_DATA_DIR", str(tfds_data_dir))
    index = build_site.build(tmp_path / "site", quick=True, timeout=600)
    for path in runner.notebook_paths():
        executed = runner.nbformat.read(tmp_path / "site" / "notebooks" / path.name, as_version=4)
        images = cell_images(executed)
        plotted = sum(count > 0 for count in images)
        assert plotted >= PLOTTING_CELLS[path.stem], f"{path.stem}: {plotted} cells showed a plot"
        page = (index.parent / "notebooks" / f"{path.stem}.html").read_text(encoding="utf-8")
        assert page.count('<img alt="../_images/') == sum(images), f"{path.stem}'s page lacks some of its figures"


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
