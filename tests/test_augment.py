"""The paper's dynamic augmentation (section 3.2): what each part does to an image.

The gate's training views and contrastive fine-tuning read these augmentations; a wrong range
or an inverted mask trains on views unlike a generator's copies, and no embedding test notices.
"""

import math

import numpy as np
import pytest
import torch

from skfingerprint.augment import _random_warp_grid, augment_batch, gabor_noise


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_gabor_noise_is_equation_2_written_out_with_its_documented_draws():
    # Catches: a sign in the rotation, the envelope's gamma or factor 2, the wavelength or
    # width ranges, the centre's range, the amplitude, the axes swapped (H != W here).
    n, h, w, amplitude = 3, 5, 7, 0.3
    noise = gabor_noise(n, h, w, gen(4), amplitude)
    u = torch.rand((5, n), generator=gen(4)).double().numpy()
    assert noise.shape == (n, 1, h, w) and noise.dtype == torch.float32
    for i in range(n):
        theta, wavelength = u[0, i] * math.pi, 0.05 + 0.25 * u[1, i]
        sigma, cx, cy = 0.3 + 0.7 * u[2, i], 2 * u[3, i] - 1, 2 * u[4, i] - 1
        for r, y in enumerate(np.linspace(-1, 1, h)):
            for c, x in enumerate(np.linspace(-1, 1, w)):
                xr = (x - cx) * math.cos(theta) + (y - cy) * math.sin(theta)
                yr = -(x - cx) * math.sin(theta) + (y - cy) * math.cos(theta)
                g = math.exp(-(xr**2 + 0.25 * yr**2) / (2 * sigma**2))
                want = amplitude * g * math.cos(2 * math.pi * xr / wavelength)
                assert noise[i, 0, r, c].item() == pytest.approx(want, abs=1e-5)


def test_gabor_noise_stays_within_its_amplitude_and_reaches_it():
    # Catches: the amplitude scaled twice or not at all (the written-out test reads 3 draws).
    noise = gabor_noise(400, 9, 9, gen(1), 0.2)
    assert noise.abs().max() <= 0.2
    # somewhere the envelope's centre lands near a pixel, where the noise reaches its amplitude
    assert noise.abs().amax(dim=(1, 2, 3)).max() > 0.18


def test_the_warp_grid_is_a_rotation_of_at_most_15_degrees_over_a_perspective_tilt():
    # Catches: the angle's range (15 degrees, both signs), the perspective's strength, the
    # rotation's direction of sin, the tilt's denominator.
    n, strength = 500, 0.2
    grid = _random_warp_grid(n, 3, 3, gen(2), strength)  # pixels at -1, 0, 1
    u = torch.rand((n, 5), generator=gen(2)) * 2 - 1
    angle, px, py = u[:, 0] * math.radians(15), u[:, 1] * strength, u[:, 2] * strength
    torch.testing.assert_close(grid[:, 1, 1], torch.zeros(n, 2))  # the centre stays
    for (row, col), (x, y) in {(1, 2): (1.0, 0.0), (2, 1): (0.0, 1.0), (0, 0): (-1, -1)}.items():
        denom = 1 + px * x + py * y
        x0, y0 = x / denom, y / denom
        want = torch.stack(
            [
                torch.cos(angle) * x0 - torch.sin(angle) * y0,
                torch.sin(angle) * x0 + torch.cos(angle) * y0,
            ],
            dim=-1,
        )
        torch.testing.assert_close(grid[:, row, col], want)
    # read back from the grid itself: the point (1, 0) is turned by the angle, scaled by 1/(1+px)
    point = grid[:, 1, 2]
    turned = torch.rad2deg(torch.atan2(point[:, 1], point[:, 0]))
    assert turned.abs().max() <= 15 + 1e-4 and turned.min() < -14 and turned.max() > 14
    tilt = 1 / point.norm(dim=1) - 1
    assert tilt.abs().max() <= strength + 1e-5 and tilt.min() < -0.19 and tilt.max() > 0.19


def test_with_nothing_asked_an_image_comes_back_unchanged_in_a_new_float_tensor():
    x = torch.rand(4, 3, 32, 32, generator=gen(0))
    before = x.clone()
    out = augment_batch(x, gen(), p=0.0, mask_ratio=0.0, gabor_amplitude=0.0)
    torch.testing.assert_close(out, x, rtol=0, atol=0)
    assert out.data_ptr() != x.data_ptr() and out.dtype == torch.float32
    torch.testing.assert_close(x, before, rtol=0, atol=0)  # the input is not modified


def test_masking_blanks_whole_patches_to_mid_grey_at_the_asked_ratio():
    # Catches: the kept/blanked test inverted (0.8 blanked), blanks to another grey, a mask
    # drawn per pixel or at another patch size, the mask shared by every image or channel.
    x = torch.rand(200, 3, 64, 64, generator=gen(0)) * 0.4  # never 0.5: blanks are visible
    out = augment_batch(x, gen(5), p=0.0, mask_ratio=0.2, patch_size=16, gabor_amplitude=0.0)
    patches = out.reshape(200, 3, 4, 16, 4, 16).permute(0, 2, 4, 1, 3, 5).reshape(200, 16, -1)
    kept = x.reshape(200, 3, 4, 16, 4, 16).permute(0, 2, 4, 1, 3, 5).reshape(200, 16, -1)
    blank = (patches == 0.5).all(-1)
    assert torch.equal(patches[~blank], kept[~blank])  # every other patch untouched
    assert 0.17 < blank.float().mean() < 0.23
    assert len({tuple(row.tolist()) for row in blank}) > 150  # each image its own mask
    everything = augment_batch(x[:2], gen(), p=0.0, mask_ratio=1.0, gabor_amplitude=0.0)
    assert torch.equal(everything, torch.full_like(everything, 0.5))
    # an image of one patch is masked whole or not at all
    one_patch = augment_batch(x[:, :, :16, :16], gen(5), p=0.0, mask_ratio=0.5, gabor_amplitude=0)
    whole = (one_patch == 0.5).flatten(1).all(1)
    assert torch.equal(one_patch[~whole], x[~whole, :, :16, :16]) and whole.any()


def test_warping_and_brightness_hit_the_asked_share_of_images_within_20_percent():
    # Catches: p's comparison inverted, brightness outside 0.8-1.2 or never reaching its ends,
    # the warp's padding (outside the image reads black).
    n = 600
    x = torch.full((n, 1, 33, 33), 0.5)
    out = augment_batch(x, gen(3), p=0.6, mask_ratio=0.0, gabor_amplitude=0.0)
    changed = (out != 0.5).flatten(1).any(1)
    assert 0.55 < changed.float().mean() < 0.65
    centre = out[changed, 0, 16, 16] / 0.5  # the centre reads the centre: its brightness
    assert centre.min() >= 0.8 - 1e-6 and centre.max() <= 1.2 + 1e-6
    assert centre.min() < 0.82 and centre.max() > 1.18
    assert (out[changed] == 0).any()  # some corner turned out of the image reads black


def test_gabor_noise_is_added_after_the_other_draws_and_the_result_stays_an_image():
    # Catches: the noise subtracted, drawn at another amplitude or before the other draws,
    # one noise per channel, or the result clamped on one side only.
    n, amplitude = 50, 0.1
    x = torch.full((n, 3, 32, 32), 0.5)
    out = augment_batch(x, gen(6), p=0.0, mask_ratio=0.0, gabor_amplitude=amplitude)
    g = gen(6)
    torch.rand(n, generator=g)  # which images to warp (none)
    want = (x + gabor_noise(n, 32, 32, g, amplitude)).clamp(0.0, 1.0)
    torch.testing.assert_close(out, want)
    for level in (0.97, 0.03):
        x = torch.full((n, 3, 32, 32), level)
        out = augment_batch(x, gen(6), p=0.0, mask_ratio=0.0, gabor_amplitude=0.05)
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert ((out == 1.0) if level > 0.5 else (out == 0.0)).any()  # clamped where pushed


def test_augmentations_repeat_for_a_seed_only():
    x = torch.rand(6, 3, 32, 32, generator=gen(0))
    a, b, c = (augment_batch(x, gen(s)) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_the_chosen_images_are_warped_at_a_perspective_strength_of_0_2(monkeypatch):
    from skfingerprint import augment

    asked = []

    def spy(n, height, width, generator, strength):
        asked.append((n, height, width, strength))
        return _random_warp_grid(n, height, width, generator, strength)

    monkeypatch.setattr(augment, "_random_warp_grid", spy)
    x = torch.full((40, 1, 8, 12), 0.5)
    out = augment_batch(x, gen(3), p=0.6, mask_ratio=0.0, gabor_amplitude=0.0)
    changed = int((out != 0.5).flatten(1).any(1).sum())
    assert asked == [(changed, 8, 12, 0.2)]


def test_a_zero_warp_is_the_identity_up_to_the_brightness(monkeypatch):
    # Catches: the grid's -1 and 1 read as the image's edges (align_corners=False) while
    # linspace puts them on the corner pixels' centres: the border pixels halved, a zoom.
    from skfingerprint import augment

    def no_warp(n, height, width, generator, strength):
        ys = torch.linspace(-1.0, 1.0, height).view(1, height, 1).expand(n, height, width)
        xs = torch.linspace(-1.0, 1.0, width).view(1, 1, width).expand(n, height, width)
        return torch.stack([xs, ys], dim=-1)

    monkeypatch.setattr(augment, "_random_warp_grid", no_warp)
    x = 0.1 + 0.7 * torch.rand(5, 3, 12, 10, generator=gen(0))
    out = augment_batch(x, gen(1), p=1.0, mask_ratio=0.0, gabor_amplitude=0.0)
    ratio = out / x
    torch.testing.assert_close(ratio, ratio[:, :1, :1, :1].expand_as(ratio))
    assert ((ratio[:, 0, 0, 0] >= 0.8) & (ratio[:, 0, 0, 0] <= 1.2)).all()


def test_the_documented_defaults_are_the_defaults():
    # Catches: a default changed in the signature but not in the docstring (or the reverse):
    # the gate's views and fine-tuning use the defaults the docs promise.
    import inspect
    import re

    for function in (augment_batch,):
        documented = dict(re.findall(r"^    (\w+) : .*default=([^\s,]+)", function.__doc__, re.M))
        actual = {
            name: repr(parameter.default)
            for name, parameter in inspect.signature(function).parameters.items()
            if parameter.default is not inspect.Parameter.empty
        }
        assert documented == actual
    noise = gabor_noise(400, 9, 9, gen(1))  # the paper's amplitude, 0.05, by default
    assert 0.045 < noise.abs().max() <= 0.05
