"""A small denoising-diffusion generator (DDPM training, DDIM sampling) for 32x32 grayscale
images, trained on CPU.

Kept deliberately small (a UNet of base width 32 over 32 -> 16 -> 8 pixels, one residual
block per resolution, one self-attention at 8x8) so that a few hundred images can be fitted,
and partly memorised, within minutes on two CPU threads: memorisation of the training images
is the privacy leak the benchmark's methods must detect. No data augmentation (no flips), so
what is memorised is the exact training images.

Standard recipe (Ho et al. 2020; Song et al. 2021): linear beta schedule over ``T = 1000``
steps, epsilon prediction with an MSE loss, AdamW, an exponential moving average of the
weights, and deterministic DDIM sampling (``eta = 0``) with the predicted clean image clipped
to the data range.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["T", "UNet", "sample_ddpm", "train_ddpm"]

#: Number of diffusion steps of the training schedule.
T = 1000
#: Decay of the exponential moving average of the weights (ramped up from 0 early on).
EMA_DECAY = 0.999


def _alphas_cumprod() -> torch.Tensor:
    """``alpha_bar_t`` for ``t = 0 .. T-1`` of the cosine schedule (Nichol & Dhariwal 2021),
    betas clipped at 0.999."""
    s = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2
    betas = (1.0 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1.0 - betas, 0).float()


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(c, 8), c)


class _ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, plus the projected time embedding, twice; residual skip."""

    def __init__(self, c_in: int, c_out: int, t_dim: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.t_proj = nn.Linear(t_dim, c_out)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.t_proj(t_emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class _Attention(nn.Module):
    """Single-head self-attention over the pixels of a (small) feature map; residual."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.norm, self.qkv, self.out = _norm(c), nn.Conv2d(c, 3 * c, 1), nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        a = F.scaled_dot_product_attention(q, k, v)  # (b, hw, c)
        return x + self.out(a.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """``(x_t (b, 1, 32, 32), t (b,)) -> predicted noise (b, 1, 32, 32)``.

    Parameters
    ----------
    width : int
        Channels at full resolution; the lower resolutions have ``width * mult``.
    mults : tuple of int
        Channel multiplier per resolution, the first at 32x32; each further entry halves the
        resolution (the default ``(1, 2, 2)`` is 32 -> 16 -> 8).
    attention : bool
        One self-attention block in the middle (lowest resolution).

    The constructor's keyword arguments are kept in ``config``: ``UNet(**model.config)``
    rebuilds the architecture for ``load_state_dict``.
    """

    def __init__(
        self,
        width: int = 24,
        mults: tuple[int, ...] = (1, 2, 4),
        attention: bool = True,
        patch: int = 2,
    ) -> None:
        super().__init__()
        self.config = {
            "width": width,
            "mults": tuple(mults),
            "attention": attention,
            "patch": patch,
        }
        t_dim = 4 * width
        self.t_mlp = nn.Sequential(
            nn.Linear(width, t_dim), nn.SiLU(), nn.Linear(t_dim, t_dim), nn.SiLU()
        )
        chs = [width * m for m in mults]
        self.conv_in = nn.Conv2d(patch * patch, width, 3, padding=1)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        prev = width
        for i, c in enumerate(chs):
            self.down.append(_ResBlock(prev, c, t_dim))
            if i < len(chs) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
            prev = c
        self.mid1 = _ResBlock(prev, prev, t_dim)
        self.attn = _Attention(prev) if attention else nn.Identity()
        self.mid2 = _ResBlock(prev, prev, t_dim)
        self.up = nn.ModuleList()
        for i in reversed(range(len(chs))):
            self.up.append(_ResBlock(prev + chs[i], chs[i], t_dim))
            prev = chs[i]
        self.norm_out = _norm(prev)
        self.conv_out = nn.Conv2d(prev, patch * patch, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def _time_embedding(self, t: torch.Tensor) -> torch.Tensor:
        half = self.config["width"] // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        angles = t.float()[:, None] * freqs[None]
        emb = torch.cat([angles.sin(), angles.cos()], 1)
        if emb.shape[1] < self.config["width"]:  # odd width
            emb = F.pad(emb, (0, 1))
        return self.t_mlp(emb)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t_emb = self._time_embedding(t)
        p = self.config["patch"]
        h, skips = self.conv_in(F.pixel_unshuffle(x, p) if p > 1 else x), []
        for i, block in enumerate(self.down):
            h = block(h, t_emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid2(self.attn(self.mid1(h, t_emb)), t_emb)
        for i, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], 1), t_emb)
            if i < len(self.up) - 1:
                h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        out = self.conv_out(F.silu(self.norm_out(h)))
        return F.pixel_shuffle(out, p) if p > 1 else out


def train_ddpm(
    images: np.ndarray,
    *,
    steps: int = 4000,
    batch_size: int = 32,
    width: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    log=None,
) -> UNet:
    """Train a DDPM on ``images`` (uint8, ``(n, 32, 32)``) and return the EMA model (eval mode).

    Parameters
    ----------
    images : ndarray of uint8, shape (n, 32, 32)
        The training images; pixel values are mapped to [-1, 1].
    steps : int
        Optimiser steps; each draws a random batch (with replacement across steps) and a
        uniform timestep per image.
    batch_size : int
        Images per step.
    width : int
        Base width of the UNet.
    lr : float
        Peak AdamW learning rate (linear warm-up over the first 100 steps, then constant).
    seed : int
        Seeds the initial weights, the batches, the timesteps and the noise: training is
        deterministic on CPU for a given seed.
    log : callable, optional
        Called with a progress line five times during training.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (32, 32):
        raise ValueError(
            f"images must be uint8 of shape (n, 32, 32), got {images.dtype} {images.shape}"
        )
    if len(images) == 0:
        raise ValueError("images must hold at least one image, got 0")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    data = torch.from_numpy(images).float().div(127.5).sub(1.0).unsqueeze(1)
    abar = _alphas_cumprod()
    model = UNet(width=width)
    ema = UNet(**model.config)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    warmup = min(100, max(steps // 10, 1))

    def lr_factor(s: int) -> float:  # linear warm-up, then cosine decay to 0
        if s < warmup:
            return (s + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (s - warmup) / max(steps - warmup, 1)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    params, ema_params = list(model.parameters()), list(ema.parameters())
    model.train()
    start, running = time.perf_counter(), 0.0
    for step in range(steps):
        x0 = data[torch.randint(len(data), (batch_size,), generator=gen)]
        t = torch.randint(T, (batch_size,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = abar[t][:, None, None, None]
        x_t = a.sqrt() * x0 + (1.0 - a).sqrt() * noise
        loss = F.mse_loss(model(x_t, t), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        decay = min(EMA_DECAY, (1.0 + step) / (10.0 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1.0 - decay)
        running += loss.item()
        if log is not None and (step + 1) % max(steps // 5, 1) == 0:
            log(
                f"  DDPM step {step + 1}/{steps}: loss {running / max(steps // 5, 1):.4f} "
                f"({time.perf_counter() - start:.0f}s)"
            )
            running = 0.0
    for b_ema, b in zip(ema.buffers(), model.buffers(), strict=True):  # none here; kept for safety
        b_ema.copy_(b)
    return ema.eval()


@torch.no_grad()
def sample_ddpm(
    model: UNet, n: int, *, seed: int, sampling_steps: int = 50, batch_size: int = 500
) -> np.ndarray:
    """``n`` images from the model as uint8 ``(n, 32, 32)`` by DDIM (``eta = 0``).

    Parameters
    ----------
    model : UNet
        A trained noise-prediction network (put in eval mode here).
    n : int
        Number of images.
    seed : int
        Seeds the starting noise; sampling is otherwise deterministic, so the same seed (and
        ``batch_size``) gives the same images.
    sampling_steps : int
        DDIM steps, evenly spaced over the ``T`` training timesteps.
    batch_size : int
        Images denoised together.
    """
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    abar = _alphas_cumprod()
    ts = torch.linspace(T - 1, 0, sampling_steps).round().long().tolist()
    out = []
    for i in range(0, n, batch_size):
        b = min(batch_size, n - i)
        x = torch.randn((b, 1, 32, 32), generator=gen)
        for j, t in enumerate(ts):
            a_t = abar[t]
            a_prev = abar[ts[j + 1]] if j + 1 < len(ts) else torch.tensor(1.0)
            eps = model(x, torch.full((b,), t, dtype=torch.long))
            x0 = ((x - (1.0 - a_t).sqrt() * eps) / a_t.sqrt()).clamp(-1.0, 1.0)
            eps = (x - a_t.sqrt() * x0) / (1.0 - a_t).sqrt()  # consistent with the clipped x0
            x = a_prev.sqrt() * x0 + (1.0 - a_prev).sqrt() * eps
        out.append(x.squeeze(1).add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8).numpy())
    return np.concatenate(out) if out else np.zeros((0, 32, 32), np.uint8)
