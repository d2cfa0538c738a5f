"""Import a script of the repository (experiments/NAME.py, docs/build.py, ...) as a module, for tests."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"


def load_script(path: Path, name: str):
    """The script at ``path`` (relative to the repository root), imported as module ``name``."""
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_experiment(name: str):
    return load_script(EXPERIMENTS / f"{name}.py", f"experiments_{name}")
