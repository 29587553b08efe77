"""The small diffusion generator of the trained-generator benchmark (benchmarks/realgen/ddpm.py)."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from realgen.ddpm import UNet, sample_ddpm, train_ddpm

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_model():
    images = np.random.default_rng(0).integers(0, 256, (16, 32, 32), dtype=np.uint8)
    return train_ddpm(images, steps=3, batch_size=4, width=8, seed=0)


def test_sampling_repeats_for_a_seed_and_differs_between_seeds(tiny_model):
    a = sample_ddpm(tiny_model, 3, seed=1, sampling_steps=4)
    b = sample_ddpm(tiny_model, 3, seed=1, sampling_steps=4)
    c = sample_ddpm(tiny_model, 3, seed=2, sampling_steps=4)
    assert a.dtype == np.uint8 and a.shape == (3, 32, 32)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not tiny_model.training


def test_model_rebuilt_from_config_and_state_dict_samples_the_same(tiny_model):
    rebuilt = UNet(**tiny_model.config)
    rebuilt.load_state_dict(tiny_model.state_dict())
    np.testing.assert_array_equal(
        sample_ddpm(tiny_model, 2, seed=5, sampling_steps=3),
        sample_ddpm(rebuilt, 2, seed=5, sampling_steps=3),
    )


@pytest.mark.parametrize(
    "images, problem",
    [
        (np.zeros((4, 32, 32), np.float32), "float32"),
        (np.zeros((4, 28, 28), np.uint8), r"\(4, 28, 28\)"),
        (np.zeros((32, 32), np.uint8), r"\(32, 32\)"),
    ],
)
def test_bad_images_are_refused(images, problem):
    with pytest.raises(ValueError, match=problem):
        train_ddpm(images, steps=1)
