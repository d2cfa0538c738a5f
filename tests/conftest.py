"""Fixtures shared by test files, 8 simulated CPU devices for the multi-device tests, and the
``slow`` tier: every test that reads a real dataset is marked slow here, besides the tests
marked slow in their files (training runs, script runs, notebooks, several processes, and
all but one case of the longer parametrized tests: tests/tiers.py)."""

import os
import sys

import pytest
from filelock import FileLock

SIMULATED_DEVICES = 8
if "jax" not in sys.modules:  # XLA reads the flag when JAX starts; on one CPU device it changes nothing else
    os.environ["XLA_FLAGS"] = (
        f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={SIMULATED_DEVICES}"
    ).strip()


REAL_DATA_FIXTURES = {"originals", "mnist_data_dir", "sst2_data_dir", "conll2003_data_dir", "tiny_shakespeare_data_dir"}


def pytest_collection_modifyitems(items):
    """Mark slow every test that reads a real dataset (``python -m pytest -m "not slow"`` skips them),
    and start the tests marked ``longest`` first, so that pytest-xdist's workers finish together."""
    for item in items:
        if REAL_DATA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: item.get_closest_marker("longest") is None)  # stable: the rest keep their order


@pytest.fixture(scope="session")
def originals():
    """``originals(folder)``: the manual dir ``$JAXDL_MANUAL_DIR`` when it holds ``folder/``
    (a dataset's original files, see the shared data folder's README.md); else the test skips."""
    from jaxdl.data import resolve_manual_dir

    def manual_dir_with(folder: str):
        manual_dir = resolve_manual_dir()
        if manual_dir is None or not (manual_dir / folder).is_dir():
            pytest.skip(f"needs the original files: set JAXDL_MANUAL_DIR to a folder holding {folder}/")
        return manual_dir

    return manual_dir_with


def _prepared_offline(tmp_path_factory, originals, name: str, folder: str, split: str):
    """A TFDS data dir with ``name`` prepared from ``$JAXDL_MANUAL_DIR/<folder>/``, where TFDS
    must not try to download anything: once per test session, shared by pytest-xdist's workers."""
    import jaxdl.data.tfds as loader

    manual_dir = originals(folder)
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's folder, above each worker's own
    data_dir = root / f"prepared-{name.replace('/', '-')}"
    with FileLock(f"{data_dir}.lock"):  # one worker prepares, the others wait and reuse
        if not (data_dir / ".prepared").exists():
            def no_download(self, resource):
                raise AssertionError(f"TFDS tried to download {resource.url} while preparing {name} offline")

            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(loader._tfds().download.DownloadManager, "_download", no_download)
                loader.load_arrays(name, split, data_dir=data_dir, manual_dir=manual_dir)
            (data_dir / ".prepared").touch()
    return data_dir


@pytest.fixture(scope="session")
def mnist_data_dir(tmp_path_factory, originals):
    """A TFDS data dir holding MNIST, prepared once per test session from $JAXDL_MANUAL_DIR/mnist."""
    return _prepared_offline(tmp_path_factory, originals, "mnist", "mnist", "test")


@pytest.fixture(scope="session")
def sst2_data_dir(tmp_path_factory, originals):
    """A TFDS data dir holding glue/sst2, prepared once per test session from $JAXDL_MANUAL_DIR/glue/SST-2."""
    return _prepared_offline(tmp_path_factory, originals, "glue/sst2", "glue/SST-2", "validation")


@pytest.fixture(scope="session")
def conll2003_data_dir(tmp_path_factory, originals):
    """A TFDS data dir holding conll2003, prepared once per test session from $JAXDL_MANUAL_DIR/conll2003."""
    return _prepared_offline(tmp_path_factory, originals, "conll2003", "conll2003", "dev")


@pytest.fixture(scope="session")
def tiny_shakespeare_data_dir(tmp_path_factory, originals):
    """A TFDS data dir holding tiny_shakespeare, prepared once per test session from $JAXDL_MANUAL_DIR/tiny_shakespeare."""
    return _prepared_offline(tmp_path_factory, originals, "tiny_shakespeare", "tiny_shakespeare", "test")
