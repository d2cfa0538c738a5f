"""Fixtures shared by test files."""

import pytest


@pytest.fixture(scope="session")
def mnist_data_dir(tmp_path_factory):
    """A TFDS data dir holding MNIST, prepared once per test session from $JAXDL_MANUAL_DIR/mnist."""
    from jaxdl.data import load_image_classification, resolve_manual_dir

    manual_dir = resolve_manual_dir()
    if manual_dir is None or not (manual_dir / "mnist").is_dir():
        pytest.skip("needs real MNIST: set JAXDL_MANUAL_DIR to a folder holding mnist/ with its original files")
    data_dir = tmp_path_factory.mktemp("tfds")
    load_image_classification("mnist", data_dir=data_dir)
    return data_dir
