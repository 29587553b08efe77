"""timm ViT backbones: loading (pretrained, checkpoint or random), digests, blocks' CLS tokens.

A :class:`Backbone` is a loaded ViT without its head whose one pass returns the CLS token of
every block, or of the first blocks only, stopping there; loads are shared per process.
Devices, precision and seeding live in ``_runtime.py``.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import socket
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ._lru import LRUCache
from ._runtime import load_state_arrays, seeded_torch, state_arrays

__all__ = ["Backbone", "WeightsUnavailableError", "load_backbone"]


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are neither cached locally nor downloadable right now.

    Raised at the start of ``fit`` (before any long work) by
    :class:`~skfingerprint.ViTLayerFusionEmbedder` with ``pretrained=True``; the message says how
    to fix it (connect once, pass ``checkpoint=``, or use ``pretrained=False``).

    Examples
    --------
    >>> from skfingerprint import WeightsUnavailableError, make_fingerprint_pipeline
    >>> try:  # doctest: +SKIP
    ...     make_fingerprint_pipeline().fit(X_pairs, y)
    ... except WeightsUnavailableError as exc:
    ...     print(exc)
    """


class NormalisedPositionCode(nn.Module):
    """The paper's hybrid position code: ``(x/W, y/H)`` of each patch, projected to the token
    width and added to the absolute position embedding. Zero-initialised: a no-op until trained."""

    def __init__(self, grid_size: tuple[int, int], dim: int) -> None:
        super().__init__()
        gh, gw = grid_size
        ys, xs = torch.meshgrid(
            (torch.arange(gh) + 0.5) / gh, (torch.arange(gw) + 0.5) / gw, indexing="ij"
        )
        self.register_buffer("coords", torch.stack([xs, ys], -1).reshape(-1, 2), persistent=False)
        self.proj = nn.Linear(2, dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, tokens: torch.Tensor, n_prefix: int) -> torch.Tensor:
        code = self.proj(self.coords.to(tokens.dtype))
        return torch.cat([tokens[:, :n_prefix], tokens[:, n_prefix:] + code], dim=1)


class FingerprintViT(nn.Module):
    """A timm ViT (head removed) whose forward returns its blocks' CLS tokens ``(B, depth, D)``.

    The pass is timm's public ``forward_intermediates``; the position code, when there is one,
    is added to the tokens as they leave the position embedding (a forward pre-hook on
    ``patch_drop``, the step that follows it). ``forward_intermediates`` holds every block's
    output until it returns (~230 MB more than keeping only the CLS tokens for ViT-B at batch
    32 in fp32); it gives the same numbers as the hand-written pass it replaced (tested)."""

    def __init__(self, vit: nn.Module, position_code: bool) -> None:
        super().__init__()
        self.vit = vit
        self.position_code = (
            NormalisedPositionCode(vit.patch_embed.grid_size, vit.embed_dim)
            if position_code
            else None
        )
        if self.position_code is not None:
            vit.patch_drop.register_forward_pre_hook(self._add_position_code)

    def _add_position_code(self, _module: nn.Module, args: tuple) -> tuple:
        return (self.position_code(args[0], self.vit.num_prefix_tokens), *args[1:])

    def forward(self, x: torch.Tensor, blocks: int | None = None, keep_state: bool = False):
        """CLS tokens ``(B, blocks, D)`` of the first ``blocks`` blocks (None: all); the pass
        stops after the last of them, so the later blocks cost nothing. With ``keep_state``,
        also every token ``(B, L, D)`` after that block, from which :meth:`resume` goes on."""
        indices = None if blocks is None else list(range(blocks))
        outputs = self.vit.forward_intermediates(
            x,
            indices=indices,
            stop_early=blocks is not None,
            output_fmt="NLC",
            intermediates_only=True,
            return_prefix_tokens=True,
        )
        cls = torch.stack([prefix[:, 0] for _, prefix in outputs], dim=1)
        if not keep_state:
            return cls
        spatial, prefix = outputs[-1]
        return cls, torch.cat([prefix, spatial], dim=1)

    def resume(self, state: torch.Tensor, start: int, stop: int):
        """CLS tokens ``(B, stop - start, D)`` of blocks ``start + 1 .. stop`` (1-based), run
        from ``state``, the tokens after block ``start``; and the tokens after block ``stop``.
        The blocks' loop of timm's ``forward_intermediates``, so the same numbers as one pass."""
        cls = []
        for block in self.vit.blocks[start:stop]:
            state = block(state)
            cls.append(state[:, 0])
        return torch.stack(cls, dim=1), state


@dataclass
class Backbone:
    """A loaded backbone: the fp32 CPU master module, its weights digest and input geometry.

    It pickles its weights as numpy arrays beside the recipe that rebuilds the module (timm
    name, ``model_kwargs``, ``position_code``): no torch object in the state, so the safe
    model format (:mod:`skfingerprint.persistence`) can carry it, and a module fitted on a GPU
    loads on a CPU.
    """

    module: FingerprintViT
    digest: str
    depth: int
    embed_dim: int
    img_size: tuple[int, int]
    patch_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    name: str = ""
    model_kwargs: dict = field(default_factory=dict)
    position_code: bool = False
    _runtime: dict = field(default_factory=dict, repr=False, compare=False)

    def runtime(self, device: torch.device) -> FingerprintViT:
        """An inference copy on ``device`` (made once, shared). Weights stay fp32: bf16 runs
        through autocast, so the residual stream keeps full precision (see ``embed_batch``)."""
        key = str(device)
        if key not in self._runtime:
            mod = self.module if device.type == "cpu" else _copy_module(self.module).to(device)
            self._runtime[key] = mod.eval().requires_grad_(False)
        return self._runtime[key]

    def embed_batch(
        self,
        x: torch.Tensor,
        device: torch.device,
        dtype: torch.dtype,
        blocks: int | None = None,
        keep_state: bool = False,
    ):
        """The CLS tokens ``(B, blocks, D)`` of the first ``blocks`` blocks (None: every block)
        for a normalised input batch; with ``keep_state``, also the float32 tokens ``(B, L,
        D)`` after the last block run (the residual stream, float32 under autocast too), for
        :meth:`resume_batch`."""
        module = self.runtime(device)
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32),
        ):
            out = module(x.to(device), blocks, keep_state)
            if not keep_state:
                return _numpy(out)
            return _numpy(out[0]), _numpy(out[1])

    def resume_batch(
        self, state: np.ndarray, device: torch.device, dtype: torch.dtype, start: int, stop: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``embed_batch`` gone on from ``state`` (the tokens after block ``start``, as it kept
        them): the CLS tokens of blocks ``start + 1 .. stop`` and the tokens after ``stop``."""
        module = self.runtime(device)
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32),
        ):
            cls, after = module.resume(torch.from_numpy(state).to(device), start, stop)
            return _numpy(cls), _numpy(after)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_runtime"] = {}  # device copies are rebuilt where the model is loaded
        state["module"] = state_arrays(state["module"])
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        weights = state.pop("module")
        self.__dict__.update(state)
        if isinstance(weights, nn.Module):  # a format-1 pickle; load_model refuses it after
            self.module = weights
            return
        _check_model_name(self.name)
        vit = _create_vit(self.name, pretrained=False, kwargs=self.model_kwargs, seed=0)
        self.module = load_state_arrays(FingerprintViT(vit, self.position_code), weights).eval()


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.float().cpu().numpy()


def _copy_module(module: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(module)


def weights_digest(module: nn.Module) -> str:
    h = hashlib.blake2b(digest_size=16)
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


# Loaded backbones, shared by every clone of an estimator in this process (GridSearchCV clones
# many): loading a ViT-B and hashing its weights costs seconds, so it happens once.
_BACKBONES: LRUCache[tuple, Backbone] = LRUCache(2)
# Loads run one at a time, so threads that ask for the same backbone at once (GridSearchCV on
# joblib's threads or Dask workers) build it once and share it; seeding is `seeded_torch`'s job.
_BACKBONES_LOCK = threading.RLock()


def _check_model_name(name: str) -> None:
    import timm

    arch = name.split(".")[0]
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown timm model {name!r}.{hint}")


def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def check_pretrained_available(name: str) -> None:
    """Fail at once, with a fix, when pretrained weights are not cached and cannot be fetched."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None:
        raise ValueError(f"timm has no pretrained weights for {name!r}; use pretrained=False")
    if cfg.hf_hub_id:
        for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
            if isinstance(try_to_load_from_cache(cfg.hf_hub_id, filename), str):
                return
    elif cfg.url:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(cfg.url)
        if cached.is_file():
            return
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    if offline or not _hub_reachable():
        why = "HF_HUB_OFFLINE is set" if offline else "huggingface.co cannot be reached"
        cache = os.environ.get("HF_HOME", "~/.cache/huggingface")
        raise WeightsUnavailableError(
            f"Pretrained weights for {name!r} are not in the local cache and {why}. Fix: run once "
            f"with a network (timm caches them under {cache}),"
            " copy that cache from a machine that has them, or pass checkpoint='path/to/weights'"
            " (a .safetensors/.pth file) or pretrained=False."
        )


def _checkpoint_keys(path: Path) -> set[str]:
    from timm.models import load_state_dict

    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: '{path}'")
    try:
        return set(load_state_dict(str(path), weights_only=True))  # "module." stripped
    except Exception as exc:
        raise ValueError(f"Cannot read checkpoint '{path}': {exc}") from exc


def _create_vit_from_checkpoint(name: str, path: Path, kwargs: dict, seed: int) -> nn.Module:
    """timm's own loading of a local file (``pretrained_cfg_overlay=dict(file=...)``): weights
    only, ``module.`` prefixes and the classifier dropped, position embeddings resampled when
    the file was trained at another input size, every other key required (timm loads
    non-strictly once it has dropped a classifier, so the keys are checked here)."""
    in_file = _checkpoint_keys(path)
    overlay = dict(file=str(path))
    try:
        vit = _create_vit(
            name, pretrained=True, kwargs={**kwargs, "pretrained_cfg_overlay": overlay}, seed=seed
        )
    except (RuntimeError, KeyError) as exc:  # shape mismatches
        raise ValueError(f"checkpoint '{path}' does not fit this model: {exc}") from None
    head = ("head.", "fc_norm.", "head_drop.")
    missing = sorted(k for k in vit.state_dict() if k not in in_file and not k.startswith(head))
    if missing:
        raise ValueError(f"checkpoint '{path}' does not fit this model: missing {missing[:5]}")
    return vit


def load_backbone(
    name: str,
    *,
    pretrained: bool,
    checkpoint: str | os.PathLike | None,
    model_kwargs: dict | None,
    seed: int,
    position_code: bool,
) -> Backbone:
    """Load (or reuse) a timm ViT without its head, as a :class:`Backbone` (thread-safe)."""
    kwargs = dict(model_kwargs or {})
    ckpt_id = None
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint file not found: '{path}'")
        st = path.stat()
        ckpt_id = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    key = (name, bool(pretrained), ckpt_id, repr(sorted(kwargs.items())), seed, position_code)
    with _BACKBONES_LOCK:
        backbone = _BACKBONES.get(key)
        if backbone is None:
            backbone = _build_backbone(name, pretrained, checkpoint, kwargs, seed, position_code)
            _BACKBONES.put(key, backbone)
        return backbone


def _build_backbone(name, pretrained, checkpoint, kwargs, seed, position_code) -> Backbone:
    import timm.data

    _check_model_name(name)
    use_hub = pretrained and checkpoint is None
    if use_hub:
        check_pretrained_available(name)
    if checkpoint is not None:
        vit = _create_vit_from_checkpoint(name, Path(checkpoint), kwargs, seed)
    else:
        vit = _create_vit(name, pretrained=use_hub, kwargs=kwargs, seed=seed)
    with seeded_torch(seed):
        if not hasattr(vit, "blocks") or not hasattr(vit, "patch_embed"):
            raise ValueError(f"timm model {name!r} is not a Vision Transformer (no blocks)")
        if getattr(vit, "cls_token", None) is None:
            raise ValueError(
                f"timm model {name!r} has no CLS token; the embedder fuses CLS tokens, so pick "
                "a ViT with one (for example vit_base_patch16_224)"
            )
        module = FingerprintViT(vit, position_code).eval()
    data_cfg = timm.data.resolve_model_data_config(vit)
    patch = vit.patch_embed.patch_size
    return Backbone(
        module=module,
        digest=weights_digest(module),
        depth=len(vit.blocks),
        embed_dim=int(vit.embed_dim),
        img_size=tuple(int(s) for s in vit.patch_embed.img_size),
        patch_size=int(patch[0] if isinstance(patch, (tuple, list)) else patch),
        mean=tuple(float(v) for v in data_cfg["mean"]),
        std=tuple(float(v) for v in data_cfg["std"]),
        name=name,
        model_kwargs=dict(kwargs),
        position_code=position_code,
    )


def _create_vit(name: str, *, pretrained: bool, kwargs: dict, seed: int) -> nn.Module:
    """``timm.create_model`` without its head, initialised from ``seed``."""
    import timm

    with seeded_torch(seed):
        try:
            return timm.create_model(name, pretrained=pretrained, num_classes=0, **kwargs)
        except TypeError as exc:
            raise ValueError(
                f"model_kwargs {kwargs} do not fit timm model {name!r}: {exc}"
            ) from exc


def with_new_weights(backbone: Backbone, module: FingerprintViT) -> Backbone:
    """A copy of ``backbone`` around fine-tuned weights (new digest, so new cache entries)."""
    module = module.to("cpu", torch.float32).eval()
    return replace(backbone, module=module, digest=weights_digest(module), _runtime={})
