"""The torch plumbing the ViT, the embedder and CANet share: threads, device, precision, seeding.

Also the precision probe of ``dtype="auto"``, weights as numpy arrays (what model files hold),
and the prefetcher that decodes the next batch in a thread while the ViT runs on this one.
Imports no model code: the probe takes any object with a weights ``digest`` and a
``runtime(device)`` module, so the ViT module imports this one and never the reverse.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import queue
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from ._io import atomic_path, write_once
from ._warnings import warn_at_caller

__all__ = [
    "MIN_PROBE_COSINE",
    "adam",
    "choose_dtype",
    "dtype_name",
    "flush_denormals",
    "load_state_arrays",
    "resolve_device",
    "resolve_dtype",
    "seeded_torch",
    "state_arrays",
    "threads_for",
]


@contextmanager
def one_thread(when: bool = True):
    """Run the block on one torch thread (``when`` it holds), the count restored after."""
    before = torch.get_num_threads()
    if when:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def threads_for(flops_per_step: float):
    """Run small training problems on one thread. Their steps take milliseconds, and with the
    other cores busy, torch's OpenMP workers spin-wait for each other: 10x slower, measured."""
    return one_thread(flops_per_step < 2e9)


def _denormals_flushed() -> bool:
    """Whether this thread's CPU reads a float32 denormal as zero (the DAZ mode)."""
    return torch.tensor([1e-39]).mul(1.0).item() == 0.0


@contextmanager
def flush_denormals():
    """Treat float32 denormals (below ~1.2e-38) as zero on this thread while the block runs,
    the mode restored after. The gate's training made denormal gradients on real ViT tokens,
    and a CPU that takes them in its arithmetic slowly (an Intel Xeon with AMX) ran it 3x
    longer, for answers identical to the last bit (``benchmarks/bench_embed.py``)."""
    if _denormals_flushed() or not torch.set_flush_denormal(True):
        yield  # already flushed (kept as it is), or a CPU without the modes
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def fused_optimizer(optimizer: type[torch.optim.Optimizer], params, **kwargs):
    """``optimizer(params, **kwargs)`` with its update fused into one kernel where torch can (the
    same steps to rounding): the default per-parameter loop was ~20% of a gate's training, and a
    small CANet fit runs 1.07-1.12x faster fused (``benchmarks/bench_canet.py``; CPU)."""
    params = list(params)
    try:
        return optimizer(params, fused=True, **kwargs)
    except RuntimeError:  # torch < 2.4 fuses on CUDA only
        return optimizer(params, **kwargs)


def adam(params, lr: float) -> torch.optim.Adam:
    """The fusion gate's optimiser (its steps are milliseconds)."""
    return fused_optimizer(torch.optim.Adam, params, lr=lr)


def adamw(params, **kwargs) -> torch.optim.AdamW:
    """CANet's optimiser (skorch's ``optimizer``: called with the parameters and ``lr=``)."""
    return fused_optimizer(torch.optim.AdamW, params, **kwargs)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` (CUDA when there is one), or the named device, refused when CUDA is missing."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use device='auto'")
    return dev


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_has_bf16_flag() -> bool:
    """Whether the CPU says it multiplies bf16 (AMX or AVX512-BF16); torch may still not."""
    flags = _cpuinfo()
    return "amx_bf16" in flags or "avx512_bf16" in flags


# A product's size for timing bf16 against fp32 on one thread (milliseconds either way;
# emulated bf16 is ~40x slower at it than fp32, native ~4x faster: measured on a Zen 5 EPYC).
_BF16_CHECK_SIZE = 256


def _matmul_seconds(dtype: torch.dtype, n: int = _BF16_CHECK_SIZE) -> float:
    """The best of 5 timed ``n x n`` products in ``dtype`` on the CPU, after a warm-up one.
    Draws from its own generator: the global one's stream is the seeded fits' to keep."""
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=gen).to(dtype) for _ in range(2))
    a @ b
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return best


@functools.cache
def cpu_bf16_verdict() -> str | None:
    """None where this process multiplies bf16 natively on the CPU, else why not.

    The CPU must say it can (an amx_bf16 or avx512_bf16 flag) and a small bf16 product, timed
    against fp32, must confirm it: a flag alone is not enough where torch's kernels are kept
    from those instructions (``ONEDNN_MAX_CPU_ISA``, a build without them), and bf16 taken
    there on the flag's word runs emulated, tens of times slower. Measured once per process
    (~6 ms natively, ~80 ms emulated, measured on a Zen 5).
    """
    if not cpu_has_bf16_flag():
        return "no native bf16 on this CPU (no amx_bf16 or avx512_bf16 flag)"
    # on one thread: a product of two threads waits for both, and with the cores busy fp32's
    # best of 5 was once stretched to emulated bf16's time (ratio 1.05 against ~80: measured)
    with one_thread():
        fp32, bf16 = _matmul_seconds(torch.float32), _matmul_seconds(torch.bfloat16)
    if bf16 > 2 * fp32:
        return (
            f"bf16 emulated in this process although the CPU has it ({bf16 / fp32:.0f}x "
            f"fp32's time on a {_BF16_CHECK_SIZE}^3 product; ONEDNN_MAX_CPU_ISA="
            f"{os.environ.get('ONEDNN_MAX_CPU_ISA', 'unset')})"
        )
    return None


def cpu_has_fast_bf16() -> bool:
    """True where this process multiplies bf16 natively on the CPU (:func:`cpu_bf16_verdict`)."""
    return cpu_bf16_verdict() is None


def machine_signature(device: torch.device) -> str:
    """What the precision probe's speeds depend on besides the model: the GPU or the CPU
    (model name and native bf16), and torch's version."""
    if device.type == "cuda":
        hardware = torch.cuda.get_device_name(device)
    else:
        model = next(
            (
                line.split(":", 1)[1].strip()
                for line in _cpuinfo().splitlines()
                if line.startswith("model name") and ":" in line
            ),
            platform.processor() or platform.machine(),
        )
        hardware = f"{model}, bf16 {'native' if cpu_has_fast_bf16() else 'emulated'}"
    return f"{device.type}: {hardware}; torch {torch.__version__}"


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """An explicit ``dtype``, or for ``"auto"`` the static rule (bf16 where the hardware has it
    natively). Fitted embedders use the precision :func:`choose_dtype` measured instead; this
    rule is left for models fitted before it, and for a device other than the one probed."""
    if dtype == "float32":
        return torch.float32
    if dtype == "bfloat16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32


# torch's default generator is process-wide: seeded work running in threads (a threaded grid
# search) must not interleave its draws, or two fits with the same seed get different weights.
_TORCH_RNG_LOCK = threading.RLock()


@contextmanager
def seeded_torch(seed: int | None, device: str = "cpu"):
    """Run a block with torch's global RNG seeded, one thread at a time, and restore it after.

    The caller's RNG state is left as it was. ``seed=None`` runs the block unseeded.
    """
    if seed is None:
        yield
        return
    devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with _TORCH_RNG_LOCK, torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def state_arrays(module: nn.Module) -> dict[str, np.ndarray]:
    """A module's ``state_dict`` as CPU numpy arrays (what model files hold: no torch objects)."""
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def load_state_arrays(module: nn.Module, arrays: dict) -> nn.Module:
    """Load :func:`state_arrays` output into ``module`` (strict: every key, every shape)."""
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in arrays.items()})
    return module


class ProbedModel(Protocol):
    """What the precision probe reads of a model (:class:`~skfingerprint._vit.Backbone` is one):
    its weights digest, the probe's cache key, and its inference module on a device."""

    digest: str

    def runtime(self, device: torch.device) -> nn.Module: ...


# dtype="auto" keeps the fastest precision whose tokens agree with fp32 at least this well.
MIN_PROBE_COSINE = 0.99
# The probe's choice per (weights digest, device): measured once per process and model.
_DTYPE_CHOICES: dict[tuple[str, str], tuple[torch.dtype, dict]] = {}
_DTYPE_LOCK = threading.Lock()


def candidate_dtypes(device: torch.device) -> tuple[list[torch.dtype], dict[str, str]]:
    """The precisions worth timing on ``device`` (float32 first), and why the others are not.

    bf16 is tried only where it is native (CUDA, or a CPU with AMX/AVX512-BF16 that this
    process can use, :func:`cpu_bf16_verdict`): elsewhere it is emulated, ~50x slower than
    fp32, and even a one-batch trial would cost minutes."""
    candidates, skipped = [torch.float32], {}
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            candidates.append(torch.bfloat16)
        else:
            skipped["bfloat16"] = "this GPU has no bf16"
        candidates.append(torch.float16)
    else:
        if cpu_has_fast_bf16():
            candidates.append(torch.bfloat16)
        else:
            skipped["bfloat16"] = cpu_bf16_verdict() or "no native bf16 on this CPU"
        skipped["float16"] = "probed on GPUs only"
    return candidates, skipped


def probe_pass(
    backbone: ProbedModel, x: torch.Tensor, device: torch.device, dtype: torch.dtype
) -> tuple[float, np.ndarray]:
    """Seconds of one pass of ``x`` in ``dtype`` (timed after a warm-up pass of two of its
    images), and its tokens."""
    module = backbone.runtime(device)
    x = x.to(device)
    with (
        torch.inference_mode(),
        torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32),
    ):
        module(x[:2])  # warm-up (kernel selection, caches) at a fraction of a full pass
        _synchronize(device)
        start = time.perf_counter()
        out = module(x)
        _synchronize(device)
        seconds = time.perf_counter() - start
    return seconds, out.float().cpu().numpy()


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def token_agreement(reference: np.ndarray, tokens: np.ndarray) -> float:
    """The lowest cosine, over images, between two ``(n, depth, D)`` token sets, each block
    standardised as ``fit`` does (centred on the reference's mean over the images when there
    are several, scaled by its RMS): raw CLS tokens share a large common component that would
    hide disagreement."""
    ref, other = reference.astype(np.float64), tokens.astype(np.float64)
    if len(ref) > 1:
        mean = ref.mean(axis=0)
        ref, other = ref - mean, other - mean
    scale = np.sqrt((ref**2).mean(axis=(0, 2)))[:, None] + 1e-12
    ref, other = (ref / scale).reshape(len(ref), -1), (other / scale).reshape(len(ref), -1)
    norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(other, axis=1)
    return float(((ref * other).sum(axis=1) / np.maximum(norms, 1e-300)).min())


def choose_dtype(
    backbone: ProbedModel,
    device: torch.device,
    sample,
    folder: str | os.PathLike | None = None,
) -> tuple[torch.dtype, dict]:
    """``dtype="auto"``: the fastest precision whose tokens agree with fp32, by measurement.

    Each candidate (:func:`candidate_dtypes`) embeds one batch, ``sample()`` (called only when
    there is more than one candidate), after a warm-up on two of its images; the fastest whose
    tokens have a cosine >= :data:`MIN_PROBE_COSINE` with fp32's on every image
    (:func:`token_agreement`) is kept. Measured once per process, weights and device (threads
    asking at once wait for one probe). With a ``folder`` (the embedder's ``cache_dir``) the
    choice is also kept there, per weights, device and machine (:func:`machine_signature`), and
    a choice found there is used instead of measuring: every process sharing the folder then
    embeds in one precision and reuses the others' tokens (two probes can pick differently
    where two precisions run about as fast). A sample of one distinct image settles nothing
    (its tokens agree with fp32's in any precision): fp32 is returned, not remembered, with
    ``settled`` False in the probe. Returns the dtype and the probe: per precision ``img_s``
    and ``cosine``, or ``skipped`` and why; ``device``; ``probe_s``, the probe's own time;
    ``n_images``, the sample's size (where there was a choice); ``kept_in``, the file, with a
    ``folder``.
    """
    key = (backbone.digest, str(device))
    path = None if folder is None else _choice_path(folder, backbone.digest, device)
    with _DTYPE_LOCK:
        kept = None if path is None else _read_choice(path)
        if kept is None:
            kept = _DTYPE_CHOICES.get(key) or _probe(backbone, device, sample)
            if not kept[1].get("settled", True):
                return kept  # fp32 for this fit; the next fit with two images measures
            if path is not None:
                kept = _keep_choice(path, *kept)
        _DTYPE_CHOICES[key] = kept
        return kept


def _probe(backbone: ProbedModel, device: torch.device, sample) -> tuple[torch.dtype, dict]:
    start = time.perf_counter()
    candidates, skipped = candidate_dtypes(device)
    probe: dict = {}
    settled = True
    x = sample() if len(candidates) > 1 else None
    if x is None:
        probe["float32"] = {"img_s": None, "cosine": 1.0, "note": "the only candidate"}
        choice = torch.float32
    elif len(torch.unique(x.flatten(1), dim=0)) < 2:
        # Agreement is measured on what tells the images apart (token_agreement centres them
        # on their mean); one image (or copies of it) has nothing to tell apart, and its raw
        # tokens agree in any precision. So no choice is made: fp32 for this fit, not kept.
        probe["float32"] = {
            "img_s": None,
            "cosine": 1.0,
            "note": "one distinct image, the reference",
        }
        why = "one distinct image: nothing to tell apart, so no agreement to measure"
        skipped = {**{dtype_name(d): why for d in candidates[1:]}, **skipped}
        choice, settled = torch.float32, False
    else:
        reference = None
        for dtype in candidates:
            seconds, tokens = probe_pass(backbone, x, device, dtype)
            reference = tokens if reference is None else reference
            cosine = token_agreement(reference, tokens)
            probe[dtype_name(dtype)] = {"img_s": len(x) / seconds, "cosine": cosine}
        # fp32 is the reference, kept whatever its tokens' spread (a cosine of 0/0 included)
        agree = [torch.float32] + [
            d for d in candidates[1:] if probe[dtype_name(d)]["cosine"] >= MIN_PROBE_COSINE
        ]
        choice = max(agree, key=lambda d: probe[dtype_name(d)]["img_s"])
    for name, why in skipped.items():
        probe[name] = {"skipped": why}
    probe.update(device=str(device), probe_s=time.perf_counter() - start)
    if x is not None:
        probe["n_images"] = len(x)
    if not settled:
        probe["settled"] = False
    return choice, probe


_CHOICE_DTYPES = ("float32", "bfloat16", "float16")


def _choice_path(folder, digest: str, device: torch.device) -> Path:
    signature = f"{digest}|{device}|{machine_signature(device)}"
    name = hashlib.blake2b(signature.encode(), digest_size=12).hexdigest()
    return Path(folder) / "dtype-auto" / f"{name}.json"


def _read_choice(path: Path) -> tuple[torch.dtype, dict] | None:
    """The choice kept in ``path``, or None (none there; an unreadable one is warned about)."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        name, probe = record["dtype"], record["probe"]
        if name not in _CHOICE_DTYPES or not isinstance(probe, dict) or "probe_s" not in probe:
            raise ValueError(f"no precision choice in it: {record!r:.200}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        warn_at_caller(
            f"Ignoring the unreadable dtype='auto' choice '{path}' ({exc}); measuring again",
            RuntimeWarning,
        )
        return None
    return getattr(torch, name), dict(probe, kept_in=str(path))


def _keep_choice(path: Path, choice: torch.dtype, probe: dict) -> tuple[torch.dtype, dict]:
    """Keep ``choice`` in ``path`` unless another process kept one first: the kept one."""
    probe = dict(probe, kept_in=str(path))
    record = {
        "dtype": dtype_name(choice),
        "probe": probe,
        "machine": machine_signature(torch.device(probe["device"])),
    }
    data = json.dumps(record, indent=1).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    if write_once(path, data):
        return choice, probe
    first = _read_choice(path)
    if first is not None:
        return first
    with atomic_path(path) as tmp:  # an unreadable file (warned about): replaced
        tmp.write_bytes(data)
    return choice, probe


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"``: the name the estimators' ``dtype_`` holds."""
    return str(dtype).removeprefix("torch.")


def describe_probe(choice: torch.dtype, probe: dict) -> str:
    """One line for ``verbose``: the choice and each candidate's numbers."""
    parts = []
    for name, row in probe.items():
        if not isinstance(row, dict):
            continue
        if "skipped" in row:
            parts.append(f"{name} skipped ({row['skipped']})")
        elif row["img_s"] is None:
            parts.append(f"{name} ({row['note']}, not timed)")
        else:
            parts.append(f"{name} {row['img_s']:.1f} img/s, cosine {row['cosine']:.4f}")
    kept = f", kept in {probe['kept_in']}" if "kept_in" in probe else ""
    if probe.get("settled") is False:
        kept = ", for this fit only: the next fit with two distinct images measures"
    n = probe.get("n_images")
    images = "" if n is None else f" of {n} image{'s' * (n != 1)},"
    return (
        f"dtype='auto' on {probe['device']}: {dtype_name(choice)} "
        f"(probe{images} {probe['probe_s']:.1f} s: {'; '.join(parts)}){kept}"
    )


def prepared_for(device: torch.device, items):
    """``items`` (an iterator of prepared batches) as the ViT on ``device`` should take them:
    made ahead in a thread for a GPU, which then never waits for the CPU to decode and resize;
    in turn for a CPU, whose cores the ViT's own threads already use: a thread beside them
    slowed the embedder's whole pass 1.17x (images in memory) and 1.07x (PNG files), ViT-B in
    bf16 on 2 cores (``benchmarks/RESULTS_embed.md``)."""
    return items if device.type == "cpu" else _prefetch(items)


def _prefetch(items, depth: int = 1):
    """Yield ``items``' values, computing up to ``depth`` ahead in a thread (which ends when the
    generator is closed). An exception raised making an item is raised where that item would
    have been yielded, so every item before it is handed on first."""
    done = object()
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce():
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as exc:  # handed to the consumer, raised there
            put((done, exc))

    worker = threading.Thread(target=produce, name="skfingerprint-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, error = slots.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        worker.join()
