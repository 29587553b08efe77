"""``make_fingerprint_pipeline``: the audit as one scikit-learn ``Pipeline``.

::

    X_pairs -> ViTLayerFusionEmbedder -> FaissCandidateSelector -> CANetClassifier
       (embed)                 (select)                  (clf)

By default the selector hands the classifier identity-free relation scores
(``features="relations"``, :mod:`skfingerprint.relations`), computed in pixels (and in the ViT's
space when the ViT is trained), and the classifier is a logistic regression on them, its
weights kept >= 0 (:class:`~skfingerprint.LinearRelationClassifier`). ``classifier="canet"``
puts the paper's CANet there instead, and ``features="paper"`` gives it the paper's ``[real,
candidate, cosine]`` input; ``classifier="maxsim"`` is the max-cosine baseline
(:class:`~skfingerprint.MaxSimilarityClassifier`).
"""

from __future__ import annotations

from numbers import Real
from typing import Any

from sklearn.pipeline import Pipeline

from .baselines import MaxSimilarityClassifier
from .canet import CANetClassifier
from .embedding import ViTLayerFusionEmbedder
from .linear_head import LinearRelationClassifier
from .selection import FaissCandidateSelector

__all__ = ["CLASSIFIERS", "TINY_VIT", "make_fingerprint_pipeline"]

#: Names accepted by ``make_fingerprint_pipeline(classifier=...)``.
CLASSIFIERS = ("canet", "linear", "maxsim")

#: Names accepted by ``make_fingerprint_pipeline(features=...)``.
FEATURES = ("relations", "paper")

# What "auto" means for each kind of candidate features: the paper's settings for its input; for
# relation scores no cosine floor (the scores are relative, a low cosine is evidence too), the
# pixel space at the images' own size up to 64 px (coarser lost: 16 px on the 32 px suite,
# benchmarks/RESULTS_variants.md, 32 px on 64 px images, RESULTS_pixel_size*.md; 64 px on
# upsampled 32 px images lost too, RESULTS_head.md) and P(used) > 0.5 (CANet starts as a
# logistic regression).
_AUTO = {
    "paper": dict(min_similarity=0.6, threshold=0.6, pixel_size=None, fusion="gated"),
    "relations": dict(min_similarity=None, threshold=0.5, pixel_size="auto", fusion="mean"),
}

#: A small randomly initialised ViT (no download): 64x64 input, 16x16 patches, 4 blocks of
#: width 64. It embeds a few hundred images in a second or two on 2 CPU cores, for demos, tests
#: and dry runs. ``make_fingerprint_pipeline(**TINY_VIT)`` uses it. Untrained, its embeddings
#: carry little membership signal: fine-tune it (``finetune="all"``) or use real weights for
#: anything but plumbing.
TINY_VIT: dict[str, Any] = dict(
    model="vit_tiny_patch16_224",
    pretrained=False,
    model_kwargs=dict(img_size=64, patch_size=16, embed_dim=64, depth=4, num_heads=2),
)

#: CANet widths that suit the 64-wide embeddings of :data:`TINY_VIT` (the paper's widths,
#: 1024 -> 512 with 8 heads, are sized for ViT-B's 768).
TINY_CANET: dict[str, Any] = dict(hidden=(256, 128), n_heads=4)


def make_fingerprint_pipeline(
    classifier: str = "linear",
    *,
    features: str = "relations",
    model: str = "vit_base_patch16_224",
    pretrained: bool = True,
    checkpoint=None,
    model_kwargs: dict | None = None,
    layers=None,
    fusion: str = "auto",
    finetune: str = "none",
    k: int = 100,
    min_similarity: float | str | None = "auto",
    threshold: float | str = "auto",
    used_fraction: float | None = None,
    pixel_size: int | str | None = "auto",
    relation_spaces: tuple[str, ...] | str = "auto",
    random_state=None,
    verbose: int = 0,
    cache_dir=None,
    embedder_params: dict | None = None,
    **canet_params: Any,
) -> Pipeline:
    """Build the training-data-leak audit pipeline: embed, select candidates, classify.

    The pipeline takes ``X_pairs`` (from :func:`~skfingerprint.make_pairs` or
    :func:`~skfingerprint.load_imageclef_gans`) and labels ``y`` (1 = the real image was used to
    train the generator)::

        ("embed",  ViTLayerFusionEmbedder)   real + library embeddings, fused CLS tokens
        ("select", FaissCandidateSelector)   top-k library candidates of each real image
        ("clf",    CANetClassifier | MaxSimilarityClassifier)

    Parameters
    ----------
    classifier : {"linear", "canet", "maxsim"}, default="linear"
        ``"linear"``: :class:`~skfingerprint.LinearRelationClassifier`, a logistic regression
        with weights >= 0 on the relation scores (``features="relations"`` only).
        ``"canet"``: the paper's Hybrid CANet, attending over each real image's candidates.
        ``"maxsim"``: the max-cosine baseline with a kappa-maximising threshold learned in
        ``fit``. The linear head is the default because on the membership benchmark CANet on
        the same relation scores never beat it: over twelve seeds (33-44) its AUC was
        0.009-0.046 lower on all 5 tasks and its kappa 0.012-0.101 lower, at four to six times
        the fit time (``benchmarks/RESULTS.md``).
    features : {"relations", "paper"}, default="relations"
        What the selector hands the classifier per candidate: identity-free relation scores
        in the ViT and pixel spaces (CANet with ``pair_features="relations"``), or the paper's
        ``[real, candidate, cosine]`` (CANet with its own ``pair_features``).
    model : str, default="vit_base_patch16_224"
        The timm ViT of the embedder.
    pretrained : bool, default=True
        Use timm's pretrained weights (downloaded once into its cache). Offline with no cached
        weights, ``fit`` fails at once with
        :class:`~skfingerprint.WeightsUnavailableError`.
    checkpoint : str or Path, default=None
        A local weights file loaded instead of downloading.
    model_kwargs : dict, default=None
        Extra arguments for ``timm.create_model`` (``img_size``, ``depth``, ...).
    layers : sequence of int or str, default=None
        1-based blocks whose CLS tokens are fused, e.g. ``(3, 6, 9)`` or ``"L3+6+9"``; None is
        ``depth/4, depth/2, 3*depth/4``.
    fusion : {"auto", "gated", "mean", "concat"}, default="auto"
        How the blocks' CLS tokens are fused. ``"gated"``: the paper's gate, learned in ``fit``
        from the membership labels; ``"mean"``: equal weights, nothing learned. ``"auto"``:
        ``"gated"`` with the paper's features, ``"mean"`` with relation scores, because a gate
        trained on the labels the linear head is then fitted on makes the ViT's relation
        scores separate the *training* reals (it weighs each image's blocks by its own tokens)
        and not the test ones: adding the ViT's space to the pixel ones cost -0.121 [-0.140,
        -0.101] kappa over all tasks of the membership benchmark with the gate (every task
        below 0), -0.017 [-0.027, -0.008] with equal weights (seeds 45-47); on unseen seeds
        48-53 equal weights beat the gate by +0.126 [+0.113, +0.139]
        (``benchmarks/RESULTS_vit_space*.md``).
    finetune : {"none", "last", "all"}, default="none"
        Contrastively fine-tune the ViT (its last quarter of blocks, or all of it) on augmented
        views of the real and generated images before embedding.
    k : int, default=100
        Library candidates per real image.
    min_similarity : float, None or "auto", default="auto"
        Candidates with a lower cosine are masked (the best one always stays). ``"auto"``: 0.6
        (the paper's) with ``features="paper"``, None with ``"relations"``.
    threshold : float or "auto", default="auto"
        CANet decision threshold on P(used): ``"auto"`` is the paper's 0.6 with its features,
        0.5 with relation scores. Ignored by ``"linear"`` (which cuts where its training scores
        mark the training split's used fraction) and ``"maxsim"`` (the kappa-maximising
        threshold); both learn theirs in ``fit``.
    used_fraction : float in (0, 1) or None, default=None
        The linear head's ``used_fraction``: the share of a test split expected to be used,
        where it is known and differs from the training split's (None: mark the training
        split's share). Only with ``classifier="linear"``.
    pixel_size : int, None or "auto", default="auto"
        Side of the grayscale pixel space the embedder adds for the relation scores
        (``ViTLayerFusionEmbedder(pixel_size=...)``): ``"auto"`` is, with relation features,
        the images' own size (their smallest side) up to 64 px; None with the paper's.
    relation_spaces : tuple of str or "auto", default="auto"
        The spaces of the relation scores, the first choosing the candidates
        (``FaissCandidateSelector(relation_spaces=...)``). ``"auto"``: ``("pixels",
        "pixels_whitened", "vit")`` when the ViT is trained (``pretrained``, ``checkpoint`` or
        ``finetune``), else ``("pixels", "pixels_whitened")``: an untrained ViT's
        similarities are noise (cosine ~0.9998 between any two images, DESIGN.md section 7),
        and on the membership benchmark its 8 scores beside the pixel ones cost the linear
        head 0.02 to 0.13 kappa on every task (``benchmarks/RESULTS_variants.md``). Whether a
        pretrained ViT's scores pay could not be measured offline. ``"pixels_whitened"``
        scores the pixels again after discounting how the generator varies the samples of
        one mode (:func:`~skfingerprint.relations.within_mode_whiten`): +0.028 [+0.013,
        +0.042] kappa over all tasks on its development seeds and +0.032 [+0.019, +0.044] on
        three unseen ones, no task below 0 (``benchmarks/RESULTS_whiten.md``).
    random_state : int, RandomState instance or None, default=None
        Passed to every step that draws random numbers; an int makes the fit repeatable.
    verbose : int, default=0
        > 0 shows, on stderr, the progress of every ViT pass and of fine-tuning (a bar on a
        terminal, else one line per pass when it ends), CANet's epoch log and the pipeline's
        step timings.
    cache_dir : str, Path or joblib.Memory, default=None
        Keep the embedder's per-block token cache on disk there as well as in memory.
    embedder_params : dict, default=None
        Further :class:`~skfingerprint.ViTLayerFusionEmbedder` parameters (``batch_size``,
        ``device``, ``dtype``, ``gate_epochs``, ``finetune_epochs``, ...).
    **canet_params
        Further :class:`~skfingerprint.CANetClassifier` parameters (``hidden``, ``max_epochs``,
        ``lr``, ...). Only with ``classifier="canet"``.

    Returns
    -------
    sklearn.pipeline.Pipeline
        Unfitted, with steps ``"embed"``, ``"select"`` and ``"clf"``. Tune it like any
        pipeline, e.g. ``set_params(select__k=50, embed__layers="L2+4")``.

    Raises
    ------
    ValueError
        An unknown ``classifier`` or ``features``, ``classifier="linear"`` with the paper's
        features, CANet parameters given with another classifier, or an ``embedder_params`` key
        the factory already sets.

    See Also
    --------
    TINY_VIT : A small random ViT configuration for demos and tests.

    Examples
    --------
    >>> from skfingerprint.pipeline import TINY_VIT, TINY_CANET, make_fingerprint_pipeline
    >>> from skfingerprint.datasets import make_synthetic_leak
    >>> task = make_synthetic_leak(20, 20, 60, image_size=64, random_state=0)
    >>> pipe = make_fingerprint_pipeline("canet", **TINY_VIT, k=10, random_state=0,
    ...                                  max_epochs=3, **TINY_CANET)
    >>> [name for name, _ in pipe.steps]
    ['embed', 'select', 'clf']
    >>> pipe.fit(task.X_pairs, task.y).predict_proba(task.X_pairs).shape
    (40, 2)
    """
    if classifier not in CLASSIFIERS:
        raise ValueError(f"classifier must be one of {CLASSIFIERS}; got {classifier!r}")
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}; got {features!r}")
    if used_fraction is not None:
        if classifier != "linear":
            raise ValueError(
                f"used_fraction sets where the linear head cuts; classifier={classifier!r} "
                "has no such cut. Use classifier='linear'"
            )
        if isinstance(used_fraction, bool) or not (
            isinstance(used_fraction, Real) and 0 < used_fraction < 1
        ):
            raise ValueError(f"used_fraction must be a number in (0, 1); got {used_fraction!r}")
    if classifier == "linear" and features != "relations":
        raise ValueError(
            "classifier='linear' reads relation scores; use features='relations' (or "
            "classifier='canet' / 'maxsim' with the paper's features)"
        )
    auto = _AUTO[features]
    min_similarity = auto["min_similarity"] if min_similarity == "auto" else min_similarity
    threshold = auto["threshold"] if threshold == "auto" else threshold
    pixel_size = auto["pixel_size"] if pixel_size == "auto" else pixel_size
    fusion = auto["fusion"] if fusion == "auto" else fusion
    if relation_spaces == "auto":
        trained = pretrained or checkpoint is not None or finetune != "none"
        relation_spaces = ("pixels", "pixels_whitened", *(("vit",) if trained else ()))
    if features == "relations" and "pixels" in relation_spaces and pixel_size is None:
        raise ValueError("relation_spaces names 'pixels' but pixel_size is None; give a size")
    embedder_params = dict(embedder_params or {})
    fixed = {
        "model": model,
        "pretrained": pretrained,
        "checkpoint": checkpoint,
        "model_kwargs": None if model_kwargs is None else dict(model_kwargs),
        "layers": layers,
        "fusion": fusion,
        "finetune": finetune,
        "pixel_size": pixel_size,
        "cache_dir": cache_dir,
        "random_state": random_state,
        "verbose": verbose,
    }
    clash = sorted(set(embedder_params) & set(fixed))
    if clash:
        raise ValueError(
            f"embedder_params sets {clash}, which make_fingerprint_pipeline takes as its own "
            "arguments; pass them directly"
        )
    embed = ViTLayerFusionEmbedder(**fixed, **embedder_params)
    select = FaissCandidateSelector(
        k=k,
        min_similarity=min_similarity,
        features=features,
        relation_spaces=tuple(relation_spaces) if features == "relations" else None,
        random_state=random_state,
    )
    if classifier == "canet":
        if features == "relations":
            canet_params = {"pair_features": "relations", **canet_params}
        clf = CANetClassifier(
            threshold=threshold, random_state=random_state, verbose=verbose, **canet_params
        )
    else:
        if canet_params:
            raise ValueError(
                f"CANet parameters {sorted(canet_params)} were given with "
                f"classifier={classifier!r}, which takes none (it learns its threshold in fit)"
            )
        if classifier == "linear":
            clf = LinearRelationClassifier(used_fraction=used_fraction)
        else:
            clf = MaxSimilarityClassifier()
    return Pipeline([("embed", embed), ("select", select), ("clf", clf)], verbose=bool(verbose))
