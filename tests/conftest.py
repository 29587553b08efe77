from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def pytest_addoption(parser):
    parser.addoption(
        "--fresh-fixtures",
        action="store_true",
        help="build the fixtures scoped by `module_unless_fresh` once per test (mutation testing)",
    )


def module_unless_fresh(fixture_name, config):
    """Module scope, or function scope under ``--fresh-fixtures``.

    For fixtures whose value is computed by the code under test. mutmut tries a mutant only
    against the tests that ran its function in its first pass, and a module-scoped fixture runs
    it for the first test that asks for it only: every other test of the module would go
    unasked (``benchmarks/mutmut_report.toml``, ``make mutate-report``, passes the option).
    """
    return "function" if config.getoption("fresh_fixtures") else "module"


def points_at(warning, path) -> bool:
    """Whether a recorded ``warning`` names ``path`` (a test's own file: the user's line).

    Under mutation testing mutmut's trampoline (``mutmut/mutation/trampoline.py``, present only
    then) runs between the library's frames, so the first frame outside the library, the one a
    warning names, is the trampoline's: accepted too.
    """
    trampoline = Path(warning.filename).parts[-3:] == ("mutmut", "mutation", "trampoline.py")
    return warning.filename == str(path) or trampoline


def write_png(path, array):
    """Write a uint8/uint16 (H, W[, C]) array as a PNG and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def as_bits(images, bits: int) -> np.ndarray:
    """8-bit images as the same intensities in ``bits`` bits, in uint8 (8 bits) or uint16
    (more): ``as_bits(x, 12)`` is what a 12-bit export into 16-bit files holds."""
    assert images.dtype == np.uint8
    dtype = np.uint8 if bits == 8 else np.uint16
    return np.round(images / 255.0 * (2**bits - 1)).astype(dtype)


def spy_on(monkeypatch, owner, name: str) -> list[tuple]:
    """Record the positional arguments of every call to ``owner.name`` (a method: ``self``
    first), which still runs; returns the list the calls are appended to."""
    calls = []
    original = getattr(owner, name)

    def spy(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)
    return calls


@pytest.fixture
def second_neighbour_missing(monkeypatch):
    """Every real image's second nearest generated image comes back missing (index -1), as an
    approximate index can return it, for the figure and the report."""
    from skfingerprint.plotting import _AppliedModel

    exact = _AppliedModel.nearest

    def with_a_gap(self, rows=None, k=1):
        sims, idx = exact(self, rows, k)
        idx = idx.copy()
        idx[:, 1] = -1
        return sims, idx

    monkeypatch.setattr(_AppliedModel, "nearest", with_a_gap)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def png_folder(tmp_path, rng):
    """A folder of five 8-bit grayscale 32x32 PNGs and their arrays."""
    arrays = rng.integers(0, 256, size=(5, 32, 32), dtype=np.uint8)
    for i, a in enumerate(arrays):
        write_png(tmp_path / "imgs" / f"img_{i}.png", a)
    return tmp_path / "imgs", arrays


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module: two threads on two shared, busy cores are several times
    slower than one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class ViTPasses:
    """How many images and batches went through the ViT (``Backbone.embed_batch``)."""

    def __init__(self) -> None:
        self.images = 0
        self.batches = 0

    def wrap(self, embed_batch):
        def counting(backbone, x, *args, **kwargs):
            out = embed_batch(backbone, x, *args, **kwargs)
            self.images += len(x)
            self.batches += 1
            return out

        counting.vit_passes = self
        return counting


@pytest.fixture
def vit_passes(monkeypatch):
    """Count the images embedded by the ViT during a test (library code keeps no counter)."""
    from skfingerprint import _vit

    counter = ViTPasses()
    monkeypatch.setattr(_vit.Backbone, "embed_batch", counter.wrap(_vit.Backbone.embed_batch))
    return counter


def install_vit_counter() -> ViTPasses:
    """Count ViT passes for the rest of this process (for worker processes, where a fixture
    cannot reach); installing twice returns the same counter."""
    from skfingerprint import _vit

    current = getattr(_vit.Backbone.embed_batch, "vit_passes", None)
    if current is None:
        current = ViTPasses()
        _vit.Backbone.embed_batch = current.wrap(_vit.Backbone.embed_batch)
    return current
