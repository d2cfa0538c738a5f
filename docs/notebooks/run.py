"""Run the lecture's notebooks top to bottom and keep the executed copies.

    .venv/bin/python docs/notebooks/run.py              # full mode: docs/results.md, "Notebooks (full mode)"
    .venv/bin/python docs/notebooks/run.py --quick      # what the tests run: small subsets, few steps
    .venv/bin/python docs/notebooks/run.py 02_convolutions_mnist --out runs/notebooks

The notebooks in docs/notebooks are committed without outputs; the executed copies, with
their printouts and plots, go to --out. Notebooks that need a dataset read it as the
experiments do: offline, set JAXDL_MANUAL_DIR to the folder of original files.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from jaxdl import allocator  # the kernel starts with jaxdl's malloc settings: its own threads come first

NOTEBOOKS = Path(__file__).resolve().parent
QUICK_ENV = "JAXDL_QUICK"  # "1": the notebooks' quick mode


def notebook_paths(names=()) -> list[Path]:
    """The notebooks named (file stems, e.g. ``01_perceptron_xor``), or all, in lecture order."""
    every = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if not names:
        return every
    by_name = {path.stem: path for path in every}
    unknown = [name for name in names if Path(name).stem not in by_name]
    if unknown:
        raise SystemExit(f"no notebook named {', '.join(unknown)}; expected one of: {', '.join(by_name)}")
    return [by_name[Path(name).stem] for name in names]


def execute(notebook: nbformat.NotebookNode, *, quick: bool, timeout: int = 1800) -> nbformat.NotebookNode:
    """Run ``notebook`` (read with ``nbformat.read``) in place in a fresh kernel whose working
    directory is docs/notebooks, in quick mode or full, and return it. A failing cell raises
    ``CellExecutionError`` naming the cell and its traceback (``CellTimeoutError`` past ``timeout``
    seconds, ``DeadKernelError`` if the kernel dies); the cells before it keep their outputs."""
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute(
        env={**os.environ, **allocator.environment(), QUICK_ENV: "1" if quick else "0"})  # the kernel's environment
    return notebook


def run(names=(), *, out: Path, quick: bool, timeout: int = 1800) -> list[str]:
    """Run the notebooks named (default: all) and write their executed copies to ``out``, a
    failing one's with its outputs up to the failing cell; returns the names of those that failed."""
    out.mkdir(parents=True, exist_ok=True)
    failed = []
    for path in notebook_paths(names):
        notebook, start = nbformat.read(path, as_version=4), time.perf_counter()
        try:
            execute(notebook, quick=quick, timeout=timeout)
            print(f"{path.name}: ran in {time.perf_counter() - start:.0f} s -> {out / path.name}")
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as error:
            print(f"{path.name}: FAILED (outputs up to the failing cell in {out / path.name})\n{error}",
                  file=sys.stderr)
            failed.append(path.stem)
        nbformat.write(notebook, out / path.name)
    return failed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebooks to run (default: all), e.g. 01_perceptron_xor")
    parser.add_argument("--quick", action="store_true", help="small subsets and few steps (what CI runs)")
    parser.add_argument("--out", type=Path, default=Path("runs/notebooks"), help="folder for the executed copies")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    return 1 if run(args.names, out=args.out, quick=args.quick, timeout=args.timeout) else 0


if __name__ == "__main__":
    sys.exit(main())
