"""timm ViT backbones: loading (pretrained, checkpoint or random), digests, blocks' CLS tokens.

A :class:`Backbone` is a loaded ViT without its head whose one pass returns the CLS token of
every block, or of the first blocks only, stopping there; loads are shared per process.
Devices, precision and seeding live in ``_runtime.py``.
"""

from __future__ import annotations

import difflib
import functools
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


#: The largest activation one CPU pass of the ViT may allocate. glibc hands an allocation
#: above 32 MiB (its largest mmap threshold) fresh pages every time, which the kernel faults in
#: and zeroes: at batch 32 ViT-B's MLP activations (39 MB in bf16) cost ~24,000 page faults and
#: 1.3 s of kernel time per 64 images, and the forward ran 1.4x (bf16) and 1.24x (fp32) faster
#: in passes of 8 images (``benchmarks/bench_embed.py``). Below it, freed buffers are reused.
CPU_PASS_BYTES = 24 << 20

#: Bytes of bf16 attention scores computed at once by :func:`_cpu_bf16_attention` (4 images
#: of ViT-B/16 at 224 px); 2, 4 or 8 images ran alike, the whole batch of 32 ~20% slower.
_ATTENTION_SCORES_BYTES = 4 << 20


def _cpu_bf16_attention(attn: nn.Module, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """timm's ``Attention.forward``, with CPU bf16 inference's scores and softmax kept in bf16.

    On a CPU under bf16 autocast torch's fused attention kernel ran at ~110 GFLOP/s (ViT-B,
    batch 32, Zen 5: a fifth of the forward's time while its matmuls ran at ~700), and timm's
    unfused path is no faster because autocast computes its softmax in float32. Two bf16
    matmuls around a bf16 softmax ran the attention 2-3x faster with the same cosine to fp32
    (``benchmarks/bench_embed.py``; the softmax itself accumulates in float32). Anywhere else
    (training or gradients, float32, another device, a mask, timm's optional gate) timm's own
    forward runs, unchanged.
    """
    if (
        args
        or kwargs.get("attn_mask") is not None
        or kwargs.get("is_causal", False)
        or set(kwargs) - {"attn_mask", "is_causal"}
        or attn.training
        or torch.is_grad_enabled()
        or x.device.type != "cpu"
        or not torch.is_autocast_enabled("cpu")
        or torch.get_autocast_dtype("cpu") != torch.bfloat16
        or getattr(attn, "gate", None) is not None
    ):
        return type(attn).forward(attn, x, *args, **kwargs)
    B, N, _ = x.shape
    qkv = attn.qkv(x).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    # a few images at a time, so that the scores stay in cache between the three steps
    step = max(1, _ATTENTION_SCORES_BYTES // (2 * attn.num_heads * N * N))
    with torch.autocast("cpu", enabled=False):
        q, k, v = (t.to(torch.bfloat16) for t in (q * attn.scale, k, v))
        out = torch.cat(
            [
                (q[i : i + step] @ k[i : i + step].transpose(-2, -1)).softmax(-1) @ v[i : i + step]
                for i in range(0, B, step)
            ]
        )
    out = out.transpose(1, 2).reshape(B, N, -1)
    return attn.proj_drop(attn.proj(attn.norm(out)))


def _use_cpu_bf16_attention(vit: nn.Module) -> None:
    """Route each block's timm ``Attention`` (that exact class: a subclass may compute another
    thing) through :func:`_cpu_bf16_attention`. An instance attribute, so the weights, their
    names and digest stay timm's, and a deep copy (fine-tuning, a device copy) keeps it."""
    from timm.layers import Attention

    for block in vit.blocks:
        attn = getattr(block, "attn", None)
        if type(attn) is Attention:
            attn.forward = functools.partial(_cpu_bf16_attention, attn)


class FingerprintViT(nn.Module):
    """A timm ViT (head removed) whose forward returns its blocks' CLS tokens ``(B, depth, D)``.

    The pass is timm's public ``forward_intermediates``; the position code, when there is one,
    is added to the tokens as they leave the position embedding (a forward pre-hook on
    ``patch_drop``, the step that follows it). ``forward_intermediates`` holds every block's
    output until it returns (~230 MB more than keeping only the CLS tokens for ViT-B at batch
    32 in fp32); it gives the same numbers as the hand-written pass it replaced (tested)."""

    def __init__(self, vit: nn.Module, position_code: bool) -> None:
        super().__init__()
        _use_cpu_bf16_attention(vit)
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

    @property
    def tokens_per_image(self) -> int:
        """Tokens one image becomes in the ViT: its patches and the prefix (CLS, ...)."""
        vit = self.module.vit
        return vit.patch_embed.num_patches + vit.num_prefix_tokens

    def state_nbytes(self) -> int:
        """Bytes of one image's ViT state (every token x width, float32), as ``embed_batch``
        keeps it with ``keep_state``."""
        return self.tokens_per_image * self.embed_dim * 4

    def rows_per_pass(self, device: torch.device) -> int:
        """Images per ViT pass on ``device``: every image on a GPU; on a CPU as many as keep
        the widest activation (the MLP's hidden layer, or qkv) within :data:`CPU_PASS_BYTES`
        in float32, at least one."""
        if device.type != "cpu":
            return 1 << 30
        vit = self.module.vit
        fc1 = getattr(getattr(vit.blocks[0], "mlp", None), "fc1", None)
        widest = max(getattr(fc1, "out_features", 4 * self.embed_dim), 3 * self.embed_dim)
        return max(1, CPU_PASS_BYTES // (self.tokens_per_image * widest * 4))

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
        :meth:`resume_batch`. The batch runs in passes of :meth:`rows_per_pass` images."""
        module = self.runtime(device)
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32),
        ):
            return self._in_passes(
                len(x), device, lambda rows: module(x[rows].to(device), blocks, keep_state)
            )

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
            return self._in_passes(
                len(state),
                device,
                lambda rows: module.resume(torch.from_numpy(state[rows]).to(device), start, stop),
            )

    def _in_passes(self, n: int, device: torch.device, run):
        """``run(rows)`` over ``n`` images in even passes of at most :meth:`rows_per_pass`
        (``rows`` a slice), its tensor, or tuple of tensors, joined as numpy. An empty input
        still makes one (empty) pass, as a single call did."""
        rows = _even_rows(n, self.rows_per_pass(device))
        parts = [run(slice(i, i + rows)) for i in range(0, max(n, 1), rows)]
        if isinstance(parts[0], tuple):
            return tuple(
                np.concatenate([_numpy(p[j]) for p in parts]) for j in range(len(parts[0]))
            )
        return np.concatenate([_numpy(p) for p in parts])

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


def _even_rows(n: int, most: int) -> int:
    """Rows per pass that split ``n`` into the fewest passes of at most ``most``, as evenly as
    possible (32 by at most 10: four passes of 8, not 10, 10, 10 and 2)."""
    passes = max(1, -(-n // most))
    return max(1, -(-n // passes))


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

    arch, _, tag = name.partition(".")
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown timm model {name!r}.{hint}")
    try:  # timm itself checks a tag deep in create_model, with a RuntimeError naming none
        timm.models.get_pretrained_cfg(name)
    except RuntimeError:
        tags = [n.partition(".")[2] for n in timm.list_pretrained(f"{arch}.*")]
        known = f"its tags: {', '.join(tags)}" if tags else "it has no pretrained weights"
        raise ValueError(f"Unknown tag {tag!r} for timm model {arch!r} ({known})") from None


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
    # an architecture timm only builds (tag "untrained") has a config that points nowhere
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
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

    try:  # load_backbone checked that the file exists
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
        missing = [part for part in ("patch_embed", "blocks") if not hasattr(vit, part)]
        if missing:
            raise ValueError(
                f"timm model {name!r} is not a Vision Transformer (no {' and no '.join(missing)})"
            )
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
