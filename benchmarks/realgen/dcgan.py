"""A small DCGAN (Radford et al. 2016) for 32, 64 or 128 px grayscale images, trained on CPU.

Kept deliberately small (widths 16-32) so that a few hundred images can be fitted, and partly
memorised, within minutes on one CPU thread: memorisation is the privacy leak the benchmark's
methods must detect. The number of epochs sets how much it memorises.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

__all__ = ["Discriminator", "Generator", "sample", "train_dcgan"]


SIZES = (32, 64, 128)


def _check_size(image_size: int) -> None:
    if image_size not in SIZES:
        raise ValueError(f"image_size must be one of {SIZES}, got {image_size}")


class Generator(nn.Module):
    """``z (nz,) -> 1 x s x s`` in [-1, 1]: transposed convolutions 4 -> 8 -> ... -> s."""

    def __init__(self, nz: int = 64, width: int = 32, image_size: int = 64) -> None:
        super().__init__()
        _check_size(image_size)
        w = width
        self.nz = nz
        self.image_size = image_size
        self.config = dict(nz=nz, width=width, image_size=image_size)  # rebuilds it
        # 64 px: 8w -> 4w -> 2w -> w -> 1; 32 px drops the widest stage, 128 px adds 16w
        top = image_size // 8

        def up(c_in: int, c_out: int) -> list[nn.Module]:
            return [
                nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(True),
            ]

        self.net = nn.Sequential(
            nn.ConvTranspose2d(nz, w * top, 4, 1, 0, bias=False),
            nn.BatchNorm2d(w * top),
            nn.ReLU(True),
            *[m for c in (16, 8, 4, 2) if c <= top for m in up(w * c, w * c // 2)],
            nn.ConvTranspose2d(w, 1, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(len(z), self.nz, 1, 1))


class Discriminator(nn.Module):
    """``1 x s x s -> logit``: strided convolutions s -> s/2 -> ... -> 4 -> 1."""

    def __init__(self, width: int = 32, image_size: int = 64) -> None:
        super().__init__()
        _check_size(image_size)
        w = width
        top = image_size // 8

        def down(c_in: int, c_out: int) -> list[nn.Module]:
            return [
                nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.LeakyReLU(0.2, True),
            ]

        self.net = nn.Sequential(
            nn.Conv2d(1, w, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, True),
            *[m for c in (1, 2, 4, 8) if c < top for m in down(w * c, w * c * 2)],
            nn.Conv2d(w * top, 1, 4, 1, 0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def train_dcgan(
    images: np.ndarray,
    *,
    epochs: int = 300,
    batch_size: int = 32,
    nz: int = 64,
    width: int = 32,
    lr: float = 2e-4,
    seed: int = 0,
    log=None,
) -> Generator:
    """Train a DCGAN on ``images`` (uint8, ``(n, s, s)``, s in :data:`SIZES`) and return the
    generator (eval mode).

    Standard DCGAN recipe: Adam (lr 2e-4, betas 0.5/0.999), non-saturating BCE losses, real
    labels smoothed to 0.9. Deterministic on CPU for a given ``seed``.
    """
    images = np.asarray(images)
    if (
        images.dtype != np.uint8
        or images.ndim != 3
        or images.shape[1] != images.shape[2]
        or images.shape[1] not in SIZES
    ):
        raise ValueError(
            f"images must be uint8 of shape (n, s, s) with s in {SIZES}, got "
            f"{images.dtype} {images.shape}"
        )
    size = images.shape[1]
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    real = torch.from_numpy(images).float().div(127.5).sub(1.0).unsqueeze(1)
    G, D = Generator(nz, width, size), Discriminator(width, size)
    G.apply(_init_weights)
    D.apply(_init_weights)
    opt_g = torch.optim.Adam(G.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=lr, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    n = len(real)
    start = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n - batch_size + 1, batch_size):
            x = real[order[i : i + batch_size]]
            b = len(x)
            z = torch.randn(b, nz, generator=gen)
            fake = G(z)
            # discriminator: real -> 0.9 (label smoothing), fake -> 0
            opt_d.zero_grad(set_to_none=True)
            loss_d = bce(D(x), torch.full((b,), 0.9)) + bce(D(fake.detach()), torch.zeros(b))
            loss_d.backward()
            opt_d.step()
            # generator: non-saturating loss
            opt_g.zero_grad(set_to_none=True)
            loss_g = bce(D(fake), torch.ones(b))
            loss_g.backward()
            opt_g.step()
        if log is not None and (epoch + 1) % max(epochs // 5, 1) == 0:
            log(
                f"  DCGAN epoch {epoch + 1}/{epochs}: loss D {loss_d.item():.3f} "
                f"G {loss_g.item():.3f} ({time.perf_counter() - start:.0f}s)"
            )
    return G.eval()


@torch.no_grad()
def sample_latents(nz: int, n: int, *, seed: int, batch_size: int = 256) -> torch.Tensor:
    """The ``(n, nz)`` latents :func:`sample` draws from ``seed``, in its chunks of
    ``batch_size`` (``probe_inversion`` regenerates a library's latents with it)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.cat(
        [torch.randn(min(batch_size, n - i), nz, generator=gen) for i in range(0, n, batch_size)]
    )


def sample(G: Generator, n: int, *, seed: int, batch_size: int = 256) -> np.ndarray:
    """``n`` images from the generator as uint8 ``(n, s, s)``; the latents come from ``seed``."""
    out = []
    for z in sample_latents(G.nz, n, seed=seed, batch_size=batch_size).split(batch_size):
        x = G(z).squeeze(1)
        out.append(x.add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8).numpy())
    return np.concatenate(out)
