"""``ViTLayerFusionEmbedder``: CLS tokens of several ViT blocks, fused by a learned gate.

The paper (section 3.2) fuses the CLS tokens of blocks 6/12/18 with
``LayerNorm(sum_i a_i * GELU(cls_i))``, the weights ``a`` from a small gate net. Here the gate is
trained in ``fit`` on cached tokens: with labels, so that used real images sit closer to their
nearest generated image than unused ones; without, so that two augmented views of an image agree.
"""

from __future__ import annotations

import hashlib
import os
import sys
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from . import _vit
from ._contracts import check_binary_labels, derive_seed
from ._fusion import (
    GatedFusion,
    _standardise,
    parse_layers,
    train_gate_supervised,
    train_gate_views,
)
from ._lru import LRUCache, array_nbytes, seeded_fit_key
from ._runtime import (
    choose_dtype,
    describe_probe,
    dtype_name,
    flush_denormals,
    load_state_arrays,
    resolve_device,
    resolve_dtype,
    seeded_torch,
    state_arrays,
    threads_for,
)
from ._tokens import vit_tokens
from ._warnings import warn_at_caller
from .augment import augment_batch
from .images import (
    ImageSet,
    as_image_set,
    auto_pixel_size,
    intensity_peak,
    pixel_vectors,
    sampled_intensity_peak,
    to_model_input,
    warn_on_intensity_mismatch,
)
from .pairs import PairedImages, PairEmbeddings

# Trained gates of seeded fits, keyed by everything their training reads (seeded_fit_key): a
# GridSearchCV over the steps after the embedder (thresholds, k, the classifier) refits the
# embedder with the same parameters on the same fold, and seeded training repeats exactly, so the
# kept gate is the one retraining would give. Bounded by bytes, not entries: a grid's natural
# order (every layer set and fold before the next threshold) needs one gate per layer set and
# fold kept (a ViT-B gate is ~0.8 MB, so ~80 fit); ``clear_memory_cache()`` empties it.
GATES_MEMORY_LIMIT = 64 * 1024**2
_GATES: LRUCache[str, dict] = LRUCache(GATES_MEMORY_LIMIT, size=array_nbytes)

__all__ = ["GatedFusion", "ViTLayerFusionEmbedder", "parse_layers"]


class ViTLayerFusionEmbedder(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Embed images with the fused CLS tokens of several blocks of a timm Vision Transformer.

    On ``X_pairs`` (from :func:`~skfingerprint.make_pairs`) ``transform`` returns a
    :class:`~skfingerprint.pairs.PairEmbeddings` (real and library embeddings) for
    :class:`~skfingerprint.FaissCandidateSelector`; on a plain image collection, an ``(n, D)``
    float32 array.

    One ViT pass caches the CLS token of every block it ran, keyed by image content and model,
    so changing ``fusion``, any shallower ``layers`` or anything downstream never runs the ViT
    again.

    Parameters
    ----------
    model : str, default="vit_base_patch16_224"
        Any timm ViT with a CLS token; its classification head is removed.
    pretrained : bool, default=True
        Load timm's pretrained weights (downloaded once into timm's hub cache). With no
        network and no cached weights this fails at once with an error that says how to fix it.
    checkpoint : str or Path, default=None
        A local weights file (``.safetensors``, ``.pth``) loaded instead of downloading, by
        timm's own loader: a file trained at another input size has its position embedding
        resampled; one missing weights of the model is refused.
    model_kwargs : dict, default=None
        Extra arguments for ``timm.create_model`` (``depth``, ``embed_dim``, ``img_size``, ...).
    layers : sequence of int or str, default=None
        1-based block numbers whose CLS tokens are fused, or ``"L3+6+9"``; None gives
        ``depth/4, depth/2, 3*depth/4`` (the paper's best relative depths).
    stop_early : bool, default=True
        Stop the ViT after the deepest block of ``layers``: the default layers skip the last
        quarter of the blocks (about 1.33x faster), with the same tokens. The pass keeps each
        image's ViT state after that block (in memory, up to 256 MiB: ~440 ViT-B images; a
        call with more keeps none), so a later fit with deeper layers (a ``GridSearchCV`` over
        ``embed__layers``) runs only the missing blocks; without a kept state it runs the ViT
        once more, over every block, and warns. False runs and caches every block at once, so
        that such a search needs one ViT pass per image whatever its size.
    fusion : {"gated", "mean", "concat"}, default="gated"
        The learned gate of the paper, equal weights (nothing learned), or concatenation.
    gate_epochs : int, default=200
        Full-batch optimisation steps of the gate in ``fit`` (on cached tokens: cheap). With a
        single block in ``layers`` nothing is trained: its weight is 1.
    gate_lr : float, default=1e-2
    gate_temperature : float, default=0.05
        Softness of the nearest-neighbour maximum in the supervised gate objective.
    labels : {"membership", "ignore"}, default="membership"
        What ``y`` given to ``fit`` is. ``"membership"``: which real images trained the
        generator; it trains the gate and needs ``X_pairs``, so plain images with ``y`` are
        refused before any ViT work (a raw array passed to an audit pipeline). ``"ignore"``:
        ``y`` is for a later step, e.g. a classifier on the embeddings of plain images in a
        ``Pipeline``; ``fit`` ignores it and the gate learns self-supervised.
    finetune : {"none", "last", "all"}, default="none"
        Fine-tune the ViT contrastively on augmented views of the real and library images
        before embedding: its last quarter of blocks, or all of it.
    finetune_epochs : int, default=2
    finetune_lr : float, default=1e-4
        AdamW learning rate, annealed (cosine) to 5e-6; weight decay 1e-4.
    augment_p : float, default=0.6
        Probability of the warp/brightness augmentation; 20% patch masking and Gabor noise are
        applied too (paper section 3.2). Used by fine-tuning and the self-supervised gate.
    position_code : bool, default=False
        Add the paper's normalised ``(x/W, y/H)`` position code, zero-initialised (a no-op until
        fine-tuned).
    pixel_size : int, "auto" or None, default=None
        With ``X_pairs``, also hand on every image as ``pixel_size x pixel_size`` grayscale
        pixels (``PairEmbeddings.spaces["pixels"]``), for the selector's relation features.
        On the membership benchmark pixels carried more signal than an untrained ViT
        (``benchmarks/RESULTS.md``). ``"auto"``: the images' own size, the smallest side of
        any image seen in ``fit`` (no image is upsampled), at most 64 px (64 px beat 32 px on
        64 px images, ``benchmarks/RESULTS_pixel_size.md``; 128 px did not beat 64 px on
        128 px images, ``RESULTS_pixel_cap_seeds3-5.md``); the size used is ``pixel_size_``.
        None adds nothing.
    batch_size : int, default=32
    device : str, default="auto"
        ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    dtype : {"auto", "float32", "bfloat16"}, default="auto"
        ``"auto"`` measures once per process and model (fine-tuned weights are a new one): on
        the first 16 images of ``fit`` (reals, then generated) it times each precision the
        hardware runs natively (fp32; bf16 on GPUs and CPUs with AMX or AVX512-BF16; fp16 on
        GPUs) and keeps the fastest whose tokens agree with fp32's (cosine >= 0.99 on every
        image, centred on their mean: one image decides nothing, its fit runs fp32); nothing
        is timed where fp32 is the only candidate. The choice is ``dtype_``, its numbers
        ``dtype_probe_``. With ``cache_dir`` the choice is kept there too (``dtype-auto/``,
        per weights, device and machine) and every later fit sharing the folder uses it
        instead of measuring, so processes sharing a cache embed in one precision and reuse
        each other's tokens; delete that folder to measure again.
    cache_dir : str, Path or joblib.Memory, default=None
        Also keep the token cache on disk there (shared by processes, survives restarts), and
        the precision ``dtype="auto"`` chose.
    random_state : int, RandomState instance or None, default=None
        Seeds random weights (``pretrained=False``), augmentations and training. With an int,
        the trained gates of the last 8 fits are kept, so an identical refit (a grid over the
        later steps' parameters refits the embedder on each fold) reuses its gate instead of
        training it again; ``clear_memory_cache()`` forgets them.
    verbose : int, default=0
        > 0 shows the progress of every ViT pass and of fine-tuning on stderr: a bar on a
        terminal, else one line per pass when it ends
        (``ViT embedding (real images): 400 images in 12.3 s (32.5 images/s)``), and the
        precision ``dtype="auto"`` chose with the probe's numbers.

    Attributes
    ----------
    layers_ : tuple of int
        The validated block numbers.
    depth_ : int
        Number of blocks of the ViT.
    n_features_out_ : int
        Size of one embedding.
    fusion_weights_ : ndarray of shape (n_layers,)
        The mean fusion weight of each block of ``layers_`` over the images seen in ``fit``.
    dtype_ : str
        The precision the ViT runs in (``"float32"``, ``"bfloat16"`` or ``"float16"``).
    dtype_probe_ : dict or None
        What ``dtype="auto"`` measured: per precision ``{"img_s", "cosine"}`` (cosine with
        fp32's tokens, lowest over the probe's ``"n_images"``) or ``{"skipped": why}``;
        ``"device"``; ``"probe_s"``, the probe's own time; ``"settled": False`` where one
        distinct image decided nothing; ``"kept_in"``, the file in ``cache_dir`` holding the
        choice (the numbers are then those of the fit that measured it). None when ``dtype``
        was given.
    backbone_ : Backbone
        The ViT (CPU, fp32 master copy) and its weights digest.
    fusion_ : GatedFusion
        The fitted fusion module.
    learned_from_labels_ : bool
        The gate was trained on the membership labels ``y`` (``fusion="gated"`` with
        ``labels="membership"``, more than one block). The embeddings then carry it
        (``PairEmbeddings.learned_from_labels``), and a relation selector scoring the ``"vit"``
        space warns: a head fitted on the same labels learns the gate's fit, not the generator.
    pixel_size_ : int or None
        The pixel size ``transform`` hands on: ``pixel_size``, with ``"auto"`` resolved on the
        images seen in ``fit``.
    image_sizes_ : tuple of (int, int)
        The distinct ``(height, width)`` of the images seen in ``fit``. ``transform`` warns
        when it meets another size: every image is resized to the ViT's input, so images of a
        size the model was not fitted on may not score like those it was.

    Examples
    --------
    >>> from skfingerprint import ViTLayerFusionEmbedder
    >>> from skfingerprint.datasets import make_synthetic_leak
    >>> task = make_synthetic_leak(20, 20, 40, image_size=64, random_state=0)
    >>> tiny = dict(img_size=64, patch_size=16, embed_dim=64, depth=4, num_heads=2)
    >>> emb = ViTLayerFusionEmbedder("vit_tiny_patch16_224", pretrained=False,
    ...                              model_kwargs=tiny, random_state=0)
    >>> emb.fit_transform(task.X_pairs, task.y)
    PairEmbeddings(n_rows=40, library=40, dim=64)
    """

    _parameter_constraints: dict = {
        "model": [str],
        "pretrained": ["boolean"],
        "checkpoint": [str, os.PathLike, None],
        "model_kwargs": [dict, None],
        "layers": ["array-like", str, None],
        "fusion": [StrOptions({"gated", "mean", "concat"})],
        "gate_epochs": [Interval(Integral, 0, None, closed="left")],
        "gate_lr": [Interval(Real, 0, None, closed="neither")],
        "gate_temperature": [Interval(Real, 0, None, closed="neither")],
        "labels": [StrOptions({"membership", "ignore"})],
        "finetune": [StrOptions({"none", "last", "all"})],
        "finetune_epochs": [Interval(Integral, 1, None, closed="left")],
        "finetune_lr": [Interval(Real, 0, None, closed="neither")],
        "augment_p": [Interval(Real, 0, 1, closed="both")],
        "stop_early": ["boolean"],
        "position_code": ["boolean"],
        "pixel_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "device": [str],
        "dtype": [StrOptions({"auto", "float32", "bfloat16"})],
        "cache_dir": [str, os.PathLike, None, HasMethods(["cache"])],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        model: str = "vit_base_patch16_224",
        *,
        pretrained: bool = True,
        checkpoint=None,
        model_kwargs=None,
        layers=None,
        stop_early: bool = True,
        fusion: str = "gated",
        gate_epochs: int = 200,
        gate_lr: float = 1e-2,
        gate_temperature: float = 0.05,
        labels: str = "membership",
        finetune: str = "none",
        finetune_epochs: int = 2,
        finetune_lr: float = 1e-4,
        augment_p: float = 0.6,
        position_code: bool = False,
        pixel_size: int | str | None = None,
        batch_size: int = 32,
        device: str = "auto",
        dtype: str = "auto",
        cache_dir=None,
        random_state=None,
        verbose: int = 0,
    ) -> None:
        self.model = model
        self.pretrained = pretrained
        self.checkpoint = checkpoint
        self.model_kwargs = model_kwargs
        self.layers = layers
        self.stop_early = stop_early
        self.fusion = fusion
        self.gate_epochs = gate_epochs
        self.gate_lr = gate_lr
        self.gate_temperature = gate_temperature
        self.labels = labels
        self.finetune = finetune
        self.finetune_epochs = finetune_epochs
        self.finetune_lr = finetune_lr
        self.augment_p = augment_p
        self.position_code = position_code
        self.pixel_size = pixel_size
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.cache_dir = cache_dir
        self.random_state = random_state
        self.verbose = verbose

    # --- plumbing ----------------------------------------------------------------------------
    def _cache_folder(self):
        cache_dir = self.cache_dir
        if cache_dir is not None and hasattr(cache_dir, "location"):  # joblib.Memory
            cache_dir = cache_dir.location
        if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
            raise TypeError(
                "cache_dir must be a folder path or a joblib.Memory; got "
                f"{type(cache_dir).__name__}"
            )
        return cache_dir

    def _runtime(self):
        """``(device, torch dtype)``: the precision chosen in ``fit`` on this kind of device,
        else (a model fitted before the probe existed, or fitted on another kind of device) the
        static rule of :func:`~skfingerprint._runtime.resolve_dtype`."""
        device = resolve_device(self.device)
        probe = getattr(self, "dtype_probe_", None)
        if probe is not None and torch.device(probe["device"]).type == device.type:
            return device, getattr(torch, self.dtype_)
        return device, resolve_dtype(self.dtype, device)

    def _choose_dtype(self, backbone, real: ImageSet, library) -> tuple[str, dict | None]:
        """``(dtype_, dtype_probe_)``: the explicit dtype, or for "auto" the fastest precision
        whose tokens agree with fp32, probed once per process and model on <= 16 images."""
        device = resolve_device(self.device)
        if self.dtype != "auto":
            return self.dtype, None

        def sample():
            size = min(self.batch_size, 16)
            parts = [next(real.iter_batches(size))[1]]  # iter_batches stops at the end
            if library is not None and len(real) < size:  # the probe compares two or more
                parts.append(next(library.iter_batches(size - len(real)))[1])
            return torch.cat([self._model_input(batch, backbone) for batch in parts])

        choice, probe = choose_dtype(backbone, device, sample, self._cache_folder())
        if self.verbose:
            print(describe_probe(choice, probe), file=sys.stderr, flush=True)
        return dtype_name(choice), dict(probe)

    @staticmethod
    def _model_input(batch, backbone, gen=None, augment_p=0.0) -> torch.Tensor:
        """Decoded images -> the ViT's normalised input ``(B, 3, h, w)`` (augmented when
        ``gen`` is given)."""
        x = to_model_input(batch, backbone.img_size)
        if gen is not None:
            x = augment_batch(x, gen, p=augment_p, patch_size=backbone.patch_size)
        mean = torch.tensor(backbone.mean).view(1, 3, 1, 1)
        std = torch.tensor(backbone.std).view(1, 3, 1, 1)
        return (x - mean) / std

    @staticmethod
    def _split_input(X):
        """``(real ImageSet, library ImageSet or None)`` from X_pairs or plain images."""
        if isinstance(X, PairedImages):
            return X.real, X.library
        if isinstance(X, PairEmbeddings):
            raise TypeError("X is already embedded (PairEmbeddings); pass images or X_pairs")
        return as_image_set(X, name="X"), None

    def _layer_tokens(self, tokens: np.ndarray) -> torch.Tensor:
        return _standardise(
            torch.from_numpy(tokens.astype(np.float32)), self.token_mean_, self.token_std_
        )

    # --- sklearn API -------------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Load the ViT, fine-tune it if asked, cache every block's tokens, learn the fusion.

        Parameters
        ----------
        X : X_pairs or images
            ``X_pairs`` from :func:`~skfingerprint.make_pairs`, or a folder, a list of image
            paths or an image array ``(n, H, W[, C])``.
        y : array-like of 0/1, default=None
            Membership labels of the real images (1 = used); trains the gate to separate them.
            Without ``y`` the gate learns that augmented views agree. With plain images ``y``
            is refused (ValueError), unless ``labels="ignore"``.

        Returns
        -------
        self
        """
        real, library = self._split_input(X)
        if self.labels == "ignore":
            y = None
        if y is not None:
            if library is None:
                raise ValueError(_labels_need_pairs_message(X, real))
            y = check_binary_labels(y, "y")
            if len(y) != len(real):
                raise ValueError(f"y has {len(y)} labels for {len(real)} real images")
        sizes = tuple(sorted(set(_image_sizes(real, library))))  # check_files reuses the headers
        seed = derive_seed(self.random_state)
        backbone = _vit.load_backbone(
            self.model,
            pretrained=self.pretrained,
            checkpoint=self.checkpoint,
            model_kwargs=self.model_kwargs,
            seed=0 if self.pretrained or self.checkpoint is not None else seed,
            position_code=self.position_code,
        )
        self.layers_ = parse_layers(self.layers, backbone.depth)
        self.depth_ = backbone.depth
        self.dtype_, self.dtype_probe_ = self._choose_dtype(backbone, real, library)
        if self.finetune != "none":
            from ._finetune import finetune_backbone

            sets = [real] if library is None else [real, library]
            backbone = finetune_backbone(self, backbone, sets, seed)
            self.dtype_, self.dtype_probe_ = self._choose_dtype(backbone, real, library)
        self.backbone_ = backbone

        names = ("images", None) if library is None else ("real images", "generated images")
        real_tokens = vit_tokens(self, real, backbone, what=names[0])
        lib_tokens = None
        if library is not None:
            lib_tokens = vit_tokens(self, library, backbone, what=names[1])
        every = real_tokens if lib_tokens is None else np.concatenate([real_tokens, lib_tokens])
        sel = every.astype(np.float32)
        # Centre each block (raw CLS tokens share a large common component) and bring the blocks
        # to one scale. One scale per block, not per feature: per-feature scaling would blow up
        # near-constant features, and with them bf16 rounding noise.
        self.token_mean_ = torch.from_numpy(sel.mean(axis=0))
        rms = np.sqrt(((sel - sel.mean(axis=0)) ** 2).mean(axis=(0, 2)))
        self.token_std_ = torch.from_numpy(rms.astype(np.float32) + 1e-6)[:, None]

        # one block has nothing to weigh (its weight is 1 whatever the gate): no training, and
        # no augmented views for it
        trains_gate = self.fusion == "gated" and self.gate_epochs > 0 and len(self.layers_) > 1
        # the gate's training reads the parameters, the model, the precision, the tokens of the
        # fit's images (real, then library) and the labels
        context = (backbone.digest, self.dtype_)
        memo = seeded_fit_key(self, every, y, context=context) if trains_gate else None
        kept = None if memo is None else _GATES.get(memo)
        aug_tokens = None
        if trains_gate and y is None and kept is None:
            aug_tokens = vit_tokens(
                self, real, backbone, augment_seed=seed, what="augmented views for the gate"
            )
        every_t = self._layer_tokens(every)  # the gate's inputs: the reals, then the library
        with seeded_torch(seed):
            fusion = GatedFusion(len(self.layers_), backbone.embed_dim, self.fusion)
            if kept is not None:
                load_state_arrays(fusion, kept)
            elif trains_gate:
                n_tokens = len(every) * len(self.layers_)
                with threads_for(6 * n_tokens * backbone.embed_dim * 256), flush_denormals():
                    if y is not None:
                        train_gate_supervised(
                            fusion, every_t, len(real_tokens), y,
                            epochs=self.gate_epochs, lr=self.gate_lr,
                            temperature=self.gate_temperature,
                        )  # fmt: skip
                    else:
                        views = self._layer_tokens(np.concatenate([real_tokens, aug_tokens]))
                        train_gate_views(fusion, views, epochs=self.gate_epochs, lr=self.gate_lr)
                if memo is not None:
                    _GATES.put(memo, {k: v.copy() for k, v in state_arrays(fusion).items()})
        self.fusion_ = fusion.eval()
        self.learned_from_labels_ = trains_gate and y is not None
        with torch.no_grad():
            w = fusion.weights(every_t)
        self.fusion_weights_ = w.mean(dim=0).numpy()
        self.image_sizes_ = sizes
        self.pixel_size_ = auto_pixel_size(sizes) if self.pixel_size == "auto" else self.pixel_size
        self.n_features_out_ = backbone.embed_dim * (
            len(self.layers_) if self.fusion == "concat" else 1
        )
        return self

    def _embed(self, images: ImageSet, what: str = "") -> np.ndarray:
        tokens = vit_tokens(self, images, self.backbone_, what=what)
        with torch.no_grad():
            return self.fusion_(self._layer_tokens(tokens)).numpy().astype(np.float32)

    def transform(self, X):
        """Fused embeddings.

        Parameters
        ----------
        X : X_pairs or images

        Returns
        -------
        PairEmbeddings or ndarray of shape (n, D)
            For ``X_pairs``, the real rows' and the library's embeddings (and its reference
            reals', when it has some); else ``(n, D)`` with ``D = n_features_out_``.
        """
        check_is_fitted(self, "fusion_")
        real, library = self._split_input(X)
        self._warn_on_new_sizes(real, library)
        if library is None:
            return self._embed(real)
        lib = self._embed(library, "generated images")
        key = hashlib.blake2b(digest_size=16)
        key.update(repr((self.backbone_.digest, self.layers_, self.fusion)).encode())
        key.update(lib.tobytes())
        size = getattr(self, "pixel_size_", self.pixel_size)  # fitted before pixel_size_ existed
        pixels = None if size is None else pixel_vectors(library, size)

        def embeddings(images: ImageSet, what: str, reference=None) -> PairEmbeddings:
            spaces = {} if size is None else {"pixels": (pixel_vectors(images, size), pixels)}
            emb = self._embed(images, what)
            # fitted before learned_from_labels_ existed: unknown, so no warning downstream
            learned = getattr(self, "learned_from_labels_", False)
            return PairEmbeddings(emb, lib, key.hexdigest(), images.ids, spaces, reference, learned)

        reference = getattr(X, "reference", None)  # X_pairs' other reals, embedded alike
        if reference is not None:
            reference = embeddings(reference, "reference real images")
        out = embeddings(real, "real images", reference)
        if pixels is not None:  # the relation scores' pixels, exact
            peaks = intensity_peak(out.spaces["pixels"][0]), intensity_peak(pixels)
        else:  # the ViT's input alone: a sample of each set
            peaks = sampled_intensity_peak(real), sampled_intensity_peak(library)
        warn_on_intensity_mismatch(*peaks)
        return out

    def _warn_on_new_sizes(self, real: ImageSet, library: ImageSet | None) -> None:
        """One warning when images come in sizes the embedder was not fitted on."""
        fitted = getattr(self, "image_sizes_", None)
        if fitted is None:  # fitted by a version that did not record them
            return
        every = _image_sizes(real, library)
        known = set(fitted)
        n_new = sum(s not in known for s in every)
        if not n_new:
            return
        new = sorted({s for s in every if s not in known})
        which = f"all {len(every)}" if n_new == len(every) else f"{n_new} of {len(every)}"
        warn_at_caller(
            f"the embedder was fitted on {_format_sizes(fitted)} images; these are "
            f"{_format_sizes(new)} ({which} images): they are resized to the ViT's "
            f"{_format_sizes([self.backbone_.img_size])} input, and their scores may not be "
            "comparable with those of the images it was fitted on. Fit on images of the size "
            "you audit."
        )

    def get_feature_names_out(self, input_features=None):
        """Names of the embedding's features: ``vitfusion0``, ``vitfusion1``, ...

        Parameters
        ----------
        input_features : None
            Ignored; present for the scikit-learn API.

        Returns
        -------
        ndarray of str
            One name per feature (``n_features_out_`` of them).
        """
        check_is_fitted(self, "n_features_out_")
        return np.asarray([f"vitfusion{i}" for i in range(self.n_features_out_)], dtype=object)

    # --- persistence: numpy arrays only (the safe model format carries no torch objects) ------
    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        for name in ("token_mean_", "token_std_"):
            if name in state:
                state[name] = state[name].numpy()
        if "fusion_" in state:
            fusion = state.pop("fusion_")
            state["_fusion_state"] = state_arrays(fusion)
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        state.setdefault("stop_early", True)  # files saved before it existed; same tokens
        fusion = state.pop("_fusion_state", None)
        super().__setstate__(state)
        for name in ("token_mean_", "token_std_"):
            if name in state:
                setattr(self, name, torch.from_numpy(np.array(state[name], dtype=np.float32)))
        if fusion is not None:
            module = GatedFusion(len(self.layers_), self.backbone_.embed_dim, self.fusion)
            self.fusion_ = load_state_arrays(module, fusion).eval()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # images or X_pairs, not a feature matrix
        tags.input_tags.three_d_array = True
        tags.requires_fit = True
        # pretrained weights are fixed, but the gate's start and training draw from the seed
        tags.non_deterministic = self.random_state is None
        return tags


def _image_sizes(real: ImageSet, library: ImageSet | None) -> list[tuple[int, int]]:
    """``(height, width)`` of every real, then library, image (file headers read once)."""
    return real.sizes() + ([] if library is None else library.sizes())


def _format_sizes(sizes) -> str:
    """``(height, width)`` pairs as ``"64x64"``, ``"64x64 and 96x128"`` (width x height)."""
    text = [f"{w}x{h}" for h, w in sizes]
    if len(text) > 4:
        text = [*text[:3], f"{len(text) - 3} other sizes"]
    return text[0] if len(text) == 1 else ", ".join(text[:-1]) + " and " + text[-1]


def _labels_need_pairs_message(X, real: ImageSet) -> str:
    if real.paths is None:
        given = f"an image array of shape {real.array.shape}"
    elif isinstance(X, (str, os.PathLike)):
        given = f"the {len(real)} images of '{X}'"
    else:
        given = f"{len(real)} image files"
    return (
        f"fit got labels y with {given}, not X_pairs. y says which real images were used to "
        "train the generator, so the real images must come paired with the library of images "
        "it generated: X_pairs = make_pairs(real_images, generated_images) (folders, path "
        "lists or arrays), or load_imageclef_gans(folder).X_pairs, then fit(X_pairs, y). "
        "(For a later step that uses y on the embeddings of plain images, such as a "
        "classifier, set ViTLayerFusionEmbedder(labels='ignore').)"
    )
