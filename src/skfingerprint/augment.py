"""The paper's dynamic augmentation (section 3.2), on batches of [0, 1] image tensors.

With probability ``p`` an image is warped (perspective distortion, rotation up to +-15 degrees) and
its brightness scaled by up to +-20%; independently, ``mask_ratio`` of its patches are blanked and
directional Gabor noise is added, to mimic the artefacts a generator leaves on a copied image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["augment_batch", "gabor_noise"]

#: Changes whenever the views for a seed change, so that token caches on disk (keyed by it) do
#: not hand back views of an older augmentation. 2: a zero warp is the identity (the sampling
#: grid's -1 and 1 are the corner pixels' centres; they were the image's edges, which halved
#: the border pixels and zoomed by W / (W - 1)).
VERSION = 2


def gabor_noise(
    n: int, height: int, width: int, generator: torch.Generator, amplitude: float = 0.05
) -> torch.Tensor:
    """Directional Gabor noise ``(n, 1, H, W)``.

    ``G = a exp(-(x'^2 + g^2 y'^2) / 2 s^2) cos(2 pi x' / l)`` (paper, equation 2) on pixel
    coordinates spanning [-1, 1] across the image, where ``(x', y')`` are the coordinates
    rotated by ``theta`` about the centre ``(cx, cy)`` and ``g = 0.5``. Per image, uniformly:
    ``theta`` in [0, pi), wavelength ``l`` in [0.05, 0.3], width ``s`` in [0.3, 1], centre
    anywhere in the image; ``a`` is ``amplitude``.
    """
    ys = torch.linspace(-1.0, 1.0, height).view(1, height, 1)
    xs = torch.linspace(-1.0, 1.0, width).view(1, 1, width)
    u = torch.rand((5, n, 1, 1), generator=generator)
    theta = u[0] * math.pi
    wavelength = 0.05 + 0.25 * u[1]  # in units of half the image width
    sigma = 0.3 + 0.7 * u[2]
    cx, cy = u[3] * 2 - 1, u[4] * 2 - 1
    xr = (xs - cx) * torch.cos(theta) + (ys - cy) * torch.sin(theta)
    yr = -(xs - cx) * torch.sin(theta) + (ys - cy) * torch.cos(theta)
    gamma = 0.5
    envelope = torch.exp(-(xr**2 + gamma**2 * yr**2) / (2 * sigma**2))
    return (amplitude * envelope * torch.cos(2 * math.pi * xr / wavelength)).unsqueeze(1)


def _random_warp_grid(n: int, height: int, width: int, generator: torch.Generator, strength: float):
    """Sampling grids for a random rotation (+-15 deg) combined with a perspective distortion:
    output pixel ``(x, y)`` (in [-1, 1]) reads the input at ``R (x, y) / (1 + px x + py y)``,
    ``px`` and ``py`` uniform in [-strength, strength]."""
    u = torch.rand((n, 5), generator=generator) * 2 - 1
    angle = u[:, 0] * math.radians(15)
    cos, sin = torch.cos(angle), torch.sin(angle)
    ys = torch.linspace(-1.0, 1.0, height).view(1, height, 1).expand(n, height, width)
    xs = torch.linspace(-1.0, 1.0, width).view(1, 1, width).expand(n, height, width)
    # perspective: a projective denominator tilting the image plane by up to `strength`
    px, py = (u[:, 1] * strength).view(n, 1, 1), (u[:, 2] * strength).view(n, 1, 1)
    denom = 1 + px * xs + py * ys
    x0, y0 = xs / denom, ys / denom
    gx = cos.view(n, 1, 1) * x0 - sin.view(n, 1, 1) * y0
    gy = sin.view(n, 1, 1) * x0 + cos.view(n, 1, 1) * y0
    return torch.stack([gx, gy], dim=-1)


def augment_batch(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    p: float = 0.6,
    mask_ratio: float = 0.2,
    patch_size: int = 16,
    gabor_amplitude: float = 0.05,
) -> torch.Tensor:
    """Augment a float batch ``(B, C, H, W)`` of [0, 1] images; returns a new tensor.

    Parameters
    ----------
    x : Tensor
        Images in [0, 1].
    generator : torch.Generator
        Source of randomness (CPU), so augmentations repeat for a seed.
    p : float, default=0.6
        Probability that an image is warped (rotated by up to +-15 degrees and tilted in
        perspective by up to 0.2, :func:`_random_warp_grid`) and its brightness scaled by 0.8 to
        1.2.
    mask_ratio : float, default=0.2
        Fraction of ``patch_size`` patches blanked to mid-grey.
    patch_size : int, default=16
    gabor_amplitude : float, default=0.05
        Peak amplitude of the added directional Gabor noise.
    """
    n, _, h, w = x.shape
    out = x.float().clone()
    chosen = torch.rand(n, generator=generator) < p
    if chosen.any():
        idx = chosen.nonzero().flatten()
        grid = _random_warp_grid(len(idx), h, w, generator, strength=0.2)
        # the grid's -1 and 1 are the corner pixels' centres, as linspace(-1, 1) makes them
        warped = F.grid_sample(
            out[idx], grid, mode="bilinear", padding_mode="zeros", align_corners=True
        )
        brightness = 0.8 + 0.4 * torch.rand((len(idx), 1, 1, 1), generator=generator)
        out[idx] = warped * brightness
    if mask_ratio > 0:
        gh, gw = max(1, h // patch_size), max(1, w // patch_size)
        keep = (torch.rand((n, 1, gh, gw), generator=generator) >= mask_ratio).float()
        keep = F.interpolate(keep, size=(h, w), mode="nearest")
        out = out * keep + 0.5 * (1 - keep)
    if gabor_amplitude > 0:
        out = out + gabor_noise(n, h, w, generator, gabor_amplitude)
    return out.clamp_(0.0, 1.0)
