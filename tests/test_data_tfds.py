"""jaxdl.data.tfds: TFDS datasets as numpy arrays, prepared online or from a folder of originals.

The mocked tests need no files and no network. The tests on real MNIST need its original
files in ``$JAXDL_MANUAL_DIR/mnist/`` (see the shared data folder's README.md) and skip
without them; they prepare MNIST once per module (about 20 s).
"""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import jaxdl.data.tfds as loader
from jaxdl.data import DataError, load_arrays, load_image_classification, resolve_manual_dir

MNIST_FILES = [
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
]
# Published with MNIST: how many of each digit the 10,000 test images show.
MNIST_TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def tfds():
    return loader._tfds()


@pytest.fixture
def offline(monkeypatch, tfds):
    """No manual dir from the environment, and no test ever reaches for the network."""
    monkeypatch.delenv(loader.MANUAL_DIR_ENV, raising=False)
    monkeypatch.setattr(loader, "_unreachable_host", lambda urls: None)


def _real_mnist() -> Path:
    manual_dir = resolve_manual_dir()
    if manual_dir is None:
        pytest.skip(f"{loader.MANUAL_DIR_ENV} is not set: point it at a folder holding mnist/ with MNIST's original files")
    if not all((manual_dir / "mnist" / f).is_file() for f in MNIST_FILES):
        pytest.skip(f"{manual_dir}/mnist lacks MNIST's original files {MNIST_FILES}")
    return manual_dir


def _copy_originals(real, to) -> Path:
    """A manual dir at ``to`` with a copy of the original MNIST files; returns their folder."""
    shutil.copytree(real / "mnist", to / "mnist")
    return to / "mnist"


def _flip_byte(path, at=1000):
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _leftovers(data_dir) -> list[str]:
    """Anything a failed preparation could leave for a later call to mistake for data."""
    return sorted(
        str(p.relative_to(data_dir)) for p in data_dir.rglob("*")
        if p.name == "3.0.1" or "incomplete" in p.name or p.name.startswith("jaxdl-")
    )


# --- without files ----------------------------------------------------------------------------


def test_importing_jaxdl_does_not_import_tensorflow():
    code = "import jaxdl, jaxdl.data.tfds, sys; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_resolve_manual_dir(monkeypatch, tmp_path):
    monkeypatch.delenv(loader.MANUAL_DIR_ENV, raising=False)
    assert resolve_manual_dir() is None
    monkeypatch.setenv(loader.MANUAL_DIR_ENV, str(tmp_path / "env"))
    assert resolve_manual_dir() == tmp_path / "env"
    assert resolve_manual_dir(str(tmp_path / "arg")) == tmp_path / "arg"
    monkeypatch.setenv(loader.MANUAL_DIR_ENV, "")
    assert resolve_manual_dir() is None


@pytest.mark.parametrize(
    "name, shape, first_class",
    # cifar10 reads its class names from the downloaded files, so mocked it has none but numbers
    [("mnist", (28, 28, 1), "0"), ("fashion_mnist", (28, 28, 1), "T-shirt/top"), ("cifar10", (32, 32, 3), "0")],
)
def test_image_classification_from_mocked_data(offline, tfds, tmp_path, name, shape, first_class):
    with tfds.testing.mock_data(num_examples=6):
        data = load_image_classification(name, data_dir=tmp_path)
    assert data.num_classes == 10 and len(data.class_names) == 10 and data.class_names[0] == first_class
    for split in (data.train, data.test):
        assert split["x"].shape == (6, *shape) and split["x"].dtype == np.float32
        assert 0.0 <= split["x"].min() and split["x"].max() <= 1.0 and split["x"].max() > 0.5
        assert split["y"].shape == (6,) and split["y"].dtype == np.int32
        assert ((0 <= split["y"]) & (split["y"] < 10)).all()


def test_a_dataset_without_image_and_label_is_refused(offline, tfds, tmp_path):
    with tfds.testing.mock_data(num_examples=2):
        with pytest.raises(DataError, match=r"expected the features 'image' and 'label', it has \['text'\]"):
            load_image_classification("tiny_shakespeare", data_dir=tmp_path)


def test_an_unknown_name_suggests_close_ones(offline, tmp_path):
    with pytest.raises(DataError, match="no dataset named 'mnistt': did you mean mnist"):
        load_arrays("mnistt", "train", data_dir=tmp_path)


@pytest.mark.parametrize("make_folder", [True, False])
def test_a_manual_dir_without_the_files_names_folder_and_files(offline, tmp_path, make_folder):
    manual_dir = tmp_path / "manual"
    (manual_dir / "mnist" if make_folder else manual_dir).mkdir(parents=True)
    with pytest.raises(DataError) as error:
        load_image_classification("mnist", data_dir=tmp_path / "data", manual_dir=manual_dir)
    message = str(error.value)
    assert str(manual_dir / "mnist") in message and loader.MANUAL_DIR_ENV in message and "--manual-dir" in message
    assert all(f in message for f in MNIST_FILES)


def test_an_unreachable_network_fails_fast_with_the_offline_route(monkeypatch, tfds, tmp_path):
    monkeypatch.delenv(loader.MANUAL_DIR_ENV, raising=False)
    monkeypatch.setattr(loader.urllib.request, "getproxies", lambda: {})

    def no_network(address, timeout=None):
        raise OSError("[Errno -2] Name or service not known")

    def never(*args, **kwargs):
        raise AssertionError("TFDS's downloader ran after the network check failed")

    monkeypatch.setattr(loader.socket, "create_connection", no_network)
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", never)
    with pytest.raises(DataError) as error:
        load_arrays("mnist", "test", data_dir=tmp_path)
    message = str(error.value)
    assert message.startswith("could not download mnist: storage.googleapis.com:443 cannot be reached")
    assert all(f in message for f in MNIST_FILES) and "--manual-dir" in message


def test_a_download_failure_inside_tfds_becomes_a_data_error(offline, monkeypatch, tfds, tmp_path):
    import requests

    def fail(self, resource):
        raise requests.ConnectionError(f"Max retries exceeded with url: {resource.url}")

    monkeypatch.setattr(tfds.download.DownloadManager, "_download", fail)
    with pytest.raises(DataError, match="could not download mnist: Max retries exceeded") as error:
        load_arrays("mnist", "test", data_dir=tmp_path)
    assert "train-images-idx3-ubyte.gz" in str(error.value)
    assert _leftovers(tmp_path) == []


def test_a_broken_download_becomes_a_data_error(offline, monkeypatch, tfds, tmp_path):
    from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError

    def broken(self, resource):
        raise NonMatchingChecksumError(f"Artifact {resource.url}, downloaded to /tmp/x, has wrong checksum:\n* Expected: ...")

    monkeypatch.setattr(tfds.download.DownloadManager, "_download", broken)
    with pytest.raises(DataError, match="a file downloaded for mnist does not match the checksum TFDS registers"):
        load_arrays("mnist", "test", data_dir=tmp_path)
    assert _leftovers(tmp_path) == []


def test_an_unknown_config_is_a_data_error(offline, tmp_path):
    with pytest.raises(DataError, match="TFDS cannot build 'mnist/foo': BuilderConfig foo not found"):
        load_arrays("mnist/foo", "train", data_dir=tmp_path)


# --- with MNIST's original files ----------------------------------------------------------------


def test_a_truncated_file_is_named(tmp_path):
    folder = _copy_originals(_real_mnist(), tmp_path / "manual")
    with open(folder / "train-labels-idx1-ubyte.gz", "r+b") as f:
        f.truncate(10000)
    with pytest.raises(DataError, match=r"cannot prepare mnist: \S*/train-labels-idx1-ubyte.gz is truncated: it has 10000 bytes, the original has 28881"):
        load_image_classification("mnist", data_dir=tmp_path / "data", manual_dir=tmp_path / "manual")


def test_a_corrupt_file_is_named_and_nothing_is_left_half_prepared(tmp_path):
    folder = _copy_originals(_real_mnist(), tmp_path / "manual")
    _flip_byte(folder / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match=r"cannot prepare mnist: \S*/t10k-labels-idx1-ubyte.gz is corrupt \(its sha256 is ") as error:
        load_arrays("mnist", "test", data_dir=tmp_path / "data", manual_dir=tmp_path / "manual")
    assert "train-images" not in str(error.value)
    assert _leftovers(tmp_path / "data") == []


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    """``(data_dir, data)``: MNIST prepared from its original files into a fresh data dir,
    right after a failed attempt there with a corrupt file (which must not get in the way)."""
    real = _real_mnist()
    data_dir = tmp_path_factory.mktemp("tfds")
    bad = tmp_path_factory.mktemp("corrupt")
    _flip_byte(_copy_originals(real, bad) / "train-images-idx3-ubyte.gz", at=5_000_000)
    with pytest.raises(DataError, match="corrupt"):
        load_image_classification("mnist", data_dir=data_dir, manual_dir=bad)
    return data_dir, load_image_classification("mnist", data_dir=data_dir, manual_dir=real)


def test_mnist_shapes_types_and_range(mnist):
    _, data = mnist
    assert data.num_classes == 10 and data.class_names == [str(d) for d in range(10)]
    for split, n in ((data.train, 60000), (data.test, 10000)):
        assert split["x"].shape == (n, 28, 28, 1) and split["x"].dtype == np.float32
        assert split["x"].min() == 0.0 and split["x"].max() == 1.0
        assert split["y"].shape == (n,) and split["y"].dtype == np.int32
        assert set(np.unique(split["y"])) == set(range(10))


def test_mnist_matches_its_published_statistics(mnist):
    _, data = mnist
    assert np.bincount(data.test["y"]).tolist() == MNIST_TEST_LABEL_COUNTS
    # The mean and standard deviation every MNIST tutorial normalises with.
    assert data.train["x"].mean() == pytest.approx(0.1307, abs=1e-4)
    assert data.train["x"].std() == pytest.approx(0.3081, abs=1e-4)


def test_prepared_mnist_is_reused_without_the_files(mnist, monkeypatch, tfds):
    data_dir, data = mnist
    monkeypatch.delenv(loader.MANUAL_DIR_ENV, raising=False)

    def never(*args, **kwargs):
        raise AssertionError("prepared again")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", never)
    monkeypatch.setattr(loader, "_unreachable_host", never)
    arrays = load_arrays("mnist", "test", data_dir=data_dir)
    assert arrays["image"].shape == (10000, 28, 28, 1) and arrays["image"].dtype == np.uint8
    np.testing.assert_array_equal(arrays["label"], data.test["y"])
    assert load_arrays("mnist", "train[:5%]", data_dir=data_dir)["label"].shape == (3000,)
    with pytest.raises(DataError, match=r"mnist has no split 'valid'; its splits are \['train', 'test'\]"):
        load_arrays("mnist", "valid", data_dir=data_dir)
