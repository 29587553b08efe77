"""``CANetClassifier``: the paper's Hybrid CANet as a scikit-learn classifier (trained with skorch).

Input is what ``FaissCandidateSelector`` returns: for each real image its ``k`` library
candidates, one row ``[real vector, candidate vector, cosine]`` per candidate (``F = 2D + 1``),
sorted by decreasing cosine; weak candidates dropped upstream are *masked*: their candidate vector
is zeroed and their cosine set to ``-2`` (``mask = X[..., -1] < -1``).

This module owns the estimator (fitting, the cache of seeded fits, prediction, pickling); the
network, its losses and the skorch training step are in ``skfingerprint._canet_net``
(:class:`CANetModule` and :func:`supervised_contrastive_loss` are importable from here too).
"""

from __future__ import annotations

import copy
import math
import re
import sys
import time
from collections.abc import Sequence
from itertools import pairwise
from numbers import Integral, Real

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from skorch.callbacks import LRScheduler
from skorch.dataset import Dataset, ValidSplit
from skorch.helper import predefined_split
from skorch.history import History

from ._canet_net import (
    PAIR_FEATURES,
    CANetModule,
    _CANetNet,
    _EarlyStopping,
    _TrainingInterrupted,
    supervised_contrastive_loss,
)
from ._contracts import (
    MASKED_COSINE,
    candidate_mask,
    check_candidates,
    check_training_labels,
    derive_seed,
)
from ._lru import LRUCache, array_nbytes, seeded_fit_key
from ._progress import format_seconds, is_interactive
from ._runtime import (
    adamw,
    dtype_name,
    load_state_arrays,
    resolve_device,
    resolve_dtype,
    seeded_torch,
    state_arrays,
    threads_for,
)
from ._warnings import warn_at_caller
from .linear_head import _positive_logistic_regression

__all__ = ["CANetClassifier", "CANetModule", "supervised_contrastive_loss"]

# Fitted states of seeded fits, keyed by the data and every parameter but ``threshold`` (which
# only acts in ``predict``): a GridSearchCV over ``clf__threshold`` trains each fold's net once
# instead of once per threshold. Seeded fits repeat exactly, so a reused state is the state a
# retraining would give. Bounded by bytes, not entries, so that a grid over thresholds and
# other steps' parameters (every fold and layer set before the next threshold) finds its nets;
# ``clear_memory_cache()`` empties it.
FITTED_MEMORY_LIMIT = 256 * 1024**2
_FITTED: LRUCache[str, dict] = LRUCache(FITTED_MEMORY_LIMIT, size=array_nbytes)
_NOT_IN_FIT_KEY = ("threshold",)


class CANetClassifier(ClassifierMixin, BaseEstimator):
    """The paper's Hybrid CANet as a scikit-learn classifier (trained with skorch).

    Takes the candidates of each real image, ``X`` of shape ``(n, k, 2D + 1)``, and predicts
    whether the real image was used to train the generator (1 = used). See
    :class:`CANetModule` for the network, its pooling and the cosine profile.

    Parameters
    ----------
    threshold : float, default=0.6
        ``predict`` is 1 where ``predict_proba(X)[:, 1] > threshold`` (the paper's 0.6): the
        same strict rule as the baselines' ``score > threshold_``, and ``decision_function(X) >
        0`` exactly where ``predict`` says 1.
    hidden : sequence of int, default=(1024, 512)
        Widths after the first layer (whose width is the pair width ``2D``); the paper's
        1536 -> 1024 -> 512 for D = 768. The last is the attention width.
    n_heads : int, default=8
        Attention heads; must divide ``hidden[-1]``.
    pair_features : {"concat", "compare", "both", "relations"}, default="concat"
        Each candidate's pair vector: the paper's concatenation ``[real, candidate]``, the
        comparison ``[|real - candidate|, real * candidate]`` (of the standardised vectors), or
        both. An MLP on the concatenation has to learn to compare the two halves from the
        labels; with ~100 labelled images it mostly memorises instead (see Notes).
        ``"relations"``: ``X`` holds the relation scores of
        ``FaissCandidateSelector(features="relations")`` (any width ``F >= 2``, cosine last),
        and the net starts as a logistic regression on the first candidate's scores, like
        :class:`~skfingerprint.LinearRelationClassifier`'s (weights kept >= 0) but with ``C=1``
        and the best cosine as one more input.
    dropout : float, default=0.6
        Dropout after the first layer.
    lr : float, default=1e-4
        AdamW learning rate, annealed (cosine, per epoch over ``max_epochs``) to ``eta_min``.
    weight_decay : float, default=1e-4
        AdamW weight decay.
    max_epochs : int, default=50
    batch_size : int, default=32
    eta_min : float, default=5e-6
        Final learning rate of the cosine annealing.
    contrastive_weight : float, default=0.0
        Weight of the supervised contrastive term (SupCon, temperature 0.07, base 0.05) on the
        pooled candidate embeddings, added to the BCE loss. The paper's hybrid loss; 0 = off.
    adversarial_eps : float, default=0.0
        FGSM step: the loss at ``x + eps * sign(grad_x loss)`` is added to the loss, with ``x``
        the *standardised* per-candidate features (so ``eps`` is in units of a feature's standard
        deviation). 0 = off.
    calibrate : bool, default=False
        Fit a temperature ``T`` on the validation split (minimising its log loss) and divide the
        logit by it (the paper's adaptive temperature scaling), ``T`` searched in ``[e^-4,
        e^4]`` (about 0.018 to 55: separable validation logits stop at the low end). ``T``
        keeps the ranking of images but moves probabilities relative to ``threshold``. Needs a
        validation split.
    early_stopping : bool, default=True
        Stop when the validation loss has not improved for ``patience`` epochs and keep the best
        epoch's weights.
    validation_fraction : float, default=0.2
        Share of the real images held out (stratified) for early stopping and calibration.
    patience : int, default=10
    device : str, default="auto"
        ``"auto"`` is CUDA when available, else CPU.
    dtype : {"auto", "float32", "bfloat16"}, default="auto"
        Precision of the training steps' matrix products (``torch.autocast``; the weights, the
        optimiser and prediction stay in fp32). ``"auto"`` is bf16 where the hardware multiplies
        it natively (a CPU with AVX512-BF16 or AMX that torch can use, checked by timing one
        small product; a GPU with bf16), fp32 elsewhere: on a CPU without them bf16 is
        emulated and tens of times slower. At the paper's size a fit
        ran 1.45-1.72x faster in bf16 on an AVX512-BF16 CPU (``benchmarks/bench_canet.py``), and on
        a benchmark task its test answers matched fp32's on 99.8-100% of the images
        (``benchmarks/RESULTS_canet_bf16.md``). The precision used is ``dtype_``.
    random_state : int, RandomState instance or None, default=None
        Seeds the weights, the batch order, dropout and the validation split; with an int,
        results repeat exactly on CPU. The global torch RNG is left untouched.
    verbose : int, default=0
        > 0 prints skorch's epoch log (one line per epoch with the losses and its duration)
        and a last line with the number of epochs, the time and the best validation loss, on
        stderr.

    Attributes
    ----------
    net_ : skfingerprint._canet_net._CANetNet
        The fitted skorch net (``net_.module_`` is the :class:`CANetModule`).
    classes_ : ndarray of shape (2,)
        ``[0, 1]``.
    n_features_in_ : int
        Features per candidate, ``2D + 1`` (or ``F`` with ``pair_features="relations"``).
    n_candidates_ : int
        Candidates per real image seen in ``fit``.
    temperature_ : float
        The calibration temperature (1.0 when ``calibrate=False``).
    history_ : skorch.History
        Per-epoch losses.
    device_ : str
        Where the net lives.
    dtype_ : str
        The precision of the training steps' products, ``"float32"`` or ``"bfloat16"``.

    Notes
    -----
    *What carries the signal.* The net starts as the max-cosine logistic baseline (see
    :class:`CANetModule`), so with the paper's learning rate it mostly stays near it on ~200
    images. On a planted leak whose cosine column was replaced by noise (D = 8, 96 training
    images, lr 3e-3, 60 epochs), ``pair_features="concat"`` fitted the training rows but scored
    held-out kappa ~0.1, while ``"compare"`` reached ~0.9: comparing the halves has to be
    learnt from the labels in the paper's concatenation and is given outright in the comparison.

    *Small classes.* The validation split needs at least 2 images of each class and at least 2
    images on each side; when ``y`` is too small for that, ``fit`` warns and trains on everything
    without early stopping (and, with ``calibrate=True``, without calibration: ``temperature_ =
    1``).

    *Other k at predict.* Fewer candidates than in ``fit`` are padded with masked candidates
    (which is what they are); more raise an error.

    *Pickling.* The net is pickled as a CPU state dict (no CUDA tensors, no optimizer state, no
    validation data); unpickling rebuilds it on CUDA when the fit device was CUDA and CUDA is
    available, else on CPU. A model fitted on a GPU therefore loads on a CPU-only machine.

    Examples
    --------
    >>> import numpy as np
    >>> from skfingerprint.canet import CANetClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(40, 5, 17)).astype(np.float32)
    >>> X[:, :, :8] = X[:, :1, :8]  # one real image per row: its vector in every candidate
    >>> y = np.tile([0, 1], 20)
    >>> X[:, :, -1] = np.sort(rng.uniform(0.2, 0.6, size=(40, 5)), axis=1)[:, ::-1]
    >>> X[y == 1, 0, -1] = 0.95  # used images have a near-copy in the library
    >>> clf = CANetClassifier(hidden=(16, 8), n_heads=2, lr=1e-2, max_epochs=20,
    ...                       random_state=0).fit(X, y)
    >>> clf.predict_proba(X).shape
    (40, 2)
    """

    _parameter_constraints: dict = {
        "threshold": [Interval(Real, 0, 1, closed="both")],
        "hidden": ["array-like"],
        "n_heads": [Interval(Integral, 1, None, closed="left")],
        "pair_features": [StrOptions(set(PAIR_FEATURES))],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "eta_min": [Interval(Real, 0, None, closed="left")],
        "contrastive_weight": [Interval(Real, 0, None, closed="left")],
        "adversarial_eps": [Interval(Real, 0, None, closed="left")],
        "calibrate": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "patience": [Interval(Integral, 1, None, closed="left")],
        "device": [str],
        "dtype": [StrOptions({"auto", "float32", "bfloat16"})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        threshold: float = 0.6,
        *,
        hidden: Sequence[int] = (1024, 512),
        n_heads: int = 8,
        pair_features: str = "concat",
        dropout: float = 0.6,
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        max_epochs: int = 50,
        batch_size: int = 32,
        eta_min: float = 5e-6,
        contrastive_weight: float = 0.0,
        adversarial_eps: float = 0.0,
        calibrate: bool = False,
        early_stopping: bool = True,
        validation_fraction: float = 0.2,
        patience: int = 10,
        device: str = "auto",
        dtype: str = "auto",
        random_state=None,
        verbose: int = 0,
    ) -> None:
        self.threshold = threshold
        self.hidden = hidden
        self.n_heads = n_heads
        self.pair_features = pair_features
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.eta_min = eta_min
        self.contrastive_weight = contrastive_weight
        self.adversarial_eps = adversarial_eps
        self.calibrate = calibrate
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    # --- fitting -----------------------------------------------------------------------------
    def _check_hidden(self) -> tuple[int, ...]:
        hidden = np.asarray(self.hidden)
        if (
            hidden.ndim != 1
            or hidden.size == 0
            or hidden.dtype.kind not in "iu"
            or (hidden < 1).any()
        ):
            raise ValueError(
                f"hidden must be a non-empty sequence of positive ints; got {self.hidden!r}"
            )
        hidden = tuple(int(h) for h in hidden)
        if hidden[-1] % self.n_heads:
            raise ValueError(
                f"n_heads={self.n_heads} must divide the attention width hidden[-1]={hidden[-1]}"
            )
        return hidden

    def _split(self, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Stratified (train, valid) indices, or None when y cannot afford a validation split."""
        n = y.size
        n_valid = math.ceil(self.validation_fraction * n)
        smallest = int(np.bincount(y, minlength=2).min())
        if smallest < 2 or n_valid < 2 or n - n_valid < 2:
            warn_at_caller(
                f"y has too few images for a stratified validation split of "
                f"{self.validation_fraction:g} ({smallest} in the smallest class, {n} in all; "
                "needs >= 2 of each class and >= 2 on each side): training on all of them "
                "without early stopping or calibration"
            )
            return None
        splitter = ValidSplit(cv=self.validation_fraction, stratified=True, random_state=seed)
        train, valid = splitter(Dataset(np.arange(n), y), y)
        return np.asarray(train.indices), np.asarray(valid.indices)

    def _make_net(
        self, module_kwargs: dict, device: str, valid=None, dtype=torch.float32
    ) -> _CANetNet:
        # skorch prints through any sink but its default `print` whatever its verbose says
        sink = _to_stderr if self.verbose else print
        callbacks = [
            (
                "lr_scheduler",
                LRScheduler(
                    policy=torch.optim.lr_scheduler.CosineAnnealingLR,
                    T_max=self.max_epochs,
                    eta_min=self.eta_min,
                ),
            )
        ]
        if valid is not None and self.early_stopping:
            callbacks.append(
                (
                    "early_stopping",
                    _EarlyStopping(
                        monitor="valid_loss",
                        patience=self.patience,
                        load_best=True,
                        sink=sink,
                    ),
                )
            )
        return _CANetNet(
            CANetModule,
            module__n_features=module_kwargs["n_features"],
            **{f"module__{k}": v for k, v in module_kwargs.items() if k != "n_features"},
            contrastive_weight=self.contrastive_weight,
            adversarial_eps=self.adversarial_eps,
            dtype=dtype,
            optimizer=adamw,
            optimizer__weight_decay=self.weight_decay,
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            iterator_train__shuffle=True,
            train_split=None if valid is None else predefined_split(valid),
            callbacks=callbacks,
            callbacks__valid_acc=None,
            callbacks__print_log__sink=sink,
            device=device,
            verbose=self.verbose,
        )

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y) -> CANetClassifier:
        """Train the net on the candidates of labelled real images.

        Parameters
        ----------
        X : array-like of float, shape (n, k, 2D + 1)
            Per real image, its ``k`` candidates ``[real, candidate, cosine]``, the real vector
            the same in every valid candidate of a row (the net maps it once per row; a row
            where it differs is refused).
        y : array-like of 0/1, shape (n,)
            1 = used to train the generator.

        Returns
        -------
        self : CANetClassifier
        """
        relations = self.pair_features == "relations"
        X = check_candidates(X, relations=relations, dtype=np.float32)
        y = check_training_labels(y, X.shape[0], "CANetClassifier")
        if not relations:
            _check_one_real_per_row(X)
        hidden = self._check_hidden()
        device = str(resolve_device(self.device))
        dtype = resolve_dtype(self.dtype, torch.device(device))
        seed = None if self.random_state is None else derive_seed(self.random_state)

        memo = seeded_fit_key(self, X, y, context=(device, dtype), exclude=_NOT_IN_FIT_KEY)
        kept = None if memo is None else _FITTED.get(memo)
        if kept is not None:
            return self._restore_fit(kept)

        n, k, n_features = X.shape
        split = self._split(y, seed) if (self.early_stopping or self.calibrate) else None
        train_idx = np.arange(n) if split is None else split[0]
        X_train, y_train = X[train_idx], y[train_idx]

        # Standardisation from the training rows: real vectors and valid candidates alike.
        valid = candidate_mask(X_train)
        if relations:  # one standardisation per score, over the valid candidates
            vectors = X_train[..., :-1][valid]
        else:  # the same for real and candidate vectors: [r, c] stay comparable
            dim = (n_features - 1) // 2
            vectors = np.concatenate([X_train[:, 0, :dim], X_train[..., dim:-1][valid]])
        cosines = np.clip(X_train[..., -1][valid], -1.0, 1.0)
        module_kwargs = {
            "n_features": n_features,
            "n_candidates": k,
            "hidden": hidden,
            "n_heads": self.n_heads,
            "pair_features": self.pair_features,
            "dropout": float(self.dropout),
            "feature_mean": vectors.mean(0).astype(np.float32),
            "feature_scale": _scale(vectors.std(0)).astype(np.float32),
            "cosine_mean": float(cosines.mean()),
            "cosine_scale": float(_scale(cosines.std())),
        }
        skip = _skip_logistic(X_train, y_train, module_kwargs, relations)
        module_kwargs["skip_init"] = (float(skip[0][-1]), skip[1])
        if relations:
            module_kwargs["relation_skip_init"] = skip[0][:-1].astype(np.float32)
        valid_ds = None
        if split is not None:
            valid_ds = Dataset(X[split[1]], y[split[1]].astype(np.float32))
        net = self._make_net(module_kwargs, device, valid_ds, dtype=dtype)
        widths = (n_features, *hidden)
        flops = 6 * self.batch_size * k * sum(a * b for a, b in pairwise(widths))
        start = time.perf_counter()
        try:
            with seeded_torch(seed, device), threads_for(flops):
                net.fit(X_train, y_train.astype(np.float32))
        except _TrainingInterrupted:
            raise KeyboardInterrupt("CANet training interrupted") from None
        if self.verbose:
            _to_stderr(_training_summary(net.history, time.perf_counter() - start, len(X_train)))
        net.train_split = None  # do not keep the validation data inside the fitted net

        self.net_ = net
        self._module_kwargs = module_kwargs
        self.device_ = device
        self.dtype_ = dtype_name(dtype)
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = n_features
        self.n_candidates_ = k
        self.history_ = net.history
        self.temperature_ = 1.0
        if self.calibrate and split is not None:
            logits = self._logits(X[split[1]])
            self.temperature_ = _fit_temperature(logits, y[split[1]])
        if memo is not None and _FITTED.max_size > 0:
            _FITTED.put(memo, copy.deepcopy(self._fitted_state()))
        return self

    def _fitted_state(self) -> dict:
        """The fitted attributes, as pickled (numpy weights, no torch objects)."""
        return {
            k: v
            for k, v in self.__getstate__().items()
            if k.endswith("_") or k in ("_net_state", "_module_kwargs")
        }

    def _restore_fit(self, fitted: dict) -> CANetClassifier:
        params = {k: v for k, v in self.__dict__.items() if not k.endswith("_")}
        self.__setstate__({**params, **copy.deepcopy(fitted)})
        return self

    # --- prediction --------------------------------------------------------------------------
    def _check_predict_X(self, X) -> np.ndarray:
        check_is_fitted(self, "net_")
        relations = self.pair_features == "relations"
        X = check_candidates(X, relations=relations, dtype=np.float32)
        if X.shape[2] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[2]} features per candidate, but CANetClassifier was fitted "
                f"with {self.n_features_in_} (2D + 1 for D = {(self.n_features_in_ - 1) // 2})"
            )
        if not relations:
            _check_one_real_per_row(X)
        k = X.shape[1]
        if k > self.n_candidates_:
            raise ValueError(
                f"X has {k} candidates per real image, but CANetClassifier was fitted with "
                f"{self.n_candidates_}; pass at most that many (the top ones)"
            )
        if k < self.n_candidates_:
            pad = np.zeros((X.shape[0], self.n_candidates_ - k, X.shape[2]), np.float32)
            pad[..., -1] = MASKED_COSINE
            X = np.concatenate([X, pad], axis=1)
        return X

    def _logits(self, X: np.ndarray) -> np.ndarray:
        # Batched by hand rather than through skorch's DataLoader, which draws from the global
        # torch RNG even when it does not shuffle.
        module = self.net_.module_
        module.eval()
        device = next(module.parameters()).device
        step = max(self.batch_size, 256)
        with torch.inference_mode():
            out = [
                module(torch.from_numpy(X[i : i + step]).to(device)).float().cpu()
                for i in range(0, len(X), step)
            ]
        return torch.cat(out).numpy().astype(np.float64)

    def _p_used(self, X) -> np.ndarray:
        """P(used): the sigmoid of the logit divided by the calibration temperature."""
        logit = self._logits(self._check_predict_X(X)) / self.temperature_
        return 1.0 / (1.0 + np.exp(-logit))

    def decision_function(self, X) -> np.ndarray:
        """``P(used) - threshold``: positive exactly where ``predict`` says 1 (used).

        As for the baselines (``score - threshold_``), the sign is the decision; the ranks are
        those of ``predict_proba`` (hence the same ROC AUC).

        Parameters
        ----------
        X : array-like of float, shape (n, k, 2D + 1)

        Returns
        -------
        ndarray of shape (n,)
        """
        return self._p_used(X) - self.threshold

    def predict_proba(self, X) -> np.ndarray:
        """``[P(not used), P(used)]`` per real image.

        Parameters
        ----------
        X : array-like of float, shape (n, k, 2D + 1)

        Returns
        -------
        ndarray of shape (n, 2)
        """
        p = self._p_used(X)
        return np.column_stack([1.0 - p, p])

    def predict(self, X) -> np.ndarray:
        """1 (used) where ``P(used) > threshold`` (``decision_function(X) > 0``), else 0.

        Parameters
        ----------
        X : array-like of float, shape (n, k, 2D + 1)

        Returns
        -------
        ndarray of int, shape (n,)
        """
        return (self.decision_function(X) > 0).astype(np.int64)

    # --- persistence -------------------------------------------------------------------------
    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())  # a copy: object.__getstate__ returns __dict__
        net = state.pop("net_", None)
        if net is not None:
            # numpy arrays and plain lists only: no torch or skorch objects in a model file
            state["_net_state"] = {
                "module": state_arrays(net.module_),
                "history": [dict(epoch) for epoch in net.history],
            }
            state.pop("history_", None)
        return state

    def __setstate__(self, state: dict) -> None:
        saved = state.pop("_net_state", None)
        if saved is not None and "dtype_" not in state:
            # a model fitted before ``dtype`` existed: it trained in fp32
            state.setdefault("dtype", "float32")
            state["dtype_"] = "float32"
        state.setdefault("dtype", "auto")
        super().__setstate__(state)
        if saved is None:
            return
        device = "cuda" if self.device_.startswith("cuda") and torch.cuda.is_available() else "cpu"
        net = self._make_net(self._module_kwargs, device)
        with seeded_torch(0, device):  # initialise() draws weights; keep the caller's RNG untouched
            net.initialize()
        load_state_arrays(net.module_, saved["module"])
        net.history = History(saved["history"])
        self.net_, self.history_, self.device_ = net, net.history, device

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.classifier_tags.multi_class = False
        tags.non_deterministic = self.random_state is None
        return tags


def _check_one_real_per_row(X: np.ndarray) -> None:
    """Refuse rows whose valid candidates carry different real-image vectors: a row is one real
    image's candidates ``[real, candidate, cosine]``, and the net maps its real vector once
    (masked candidates are not read, whatever they hold)."""
    dim = (X.shape[2] - 1) // 2
    differs = (X[:, :, :dim] != X[:, :1, :dim]).any(axis=2) & candidate_mask(X)
    same = ~differs.any(axis=1)
    if not same.all():
        row = int(np.flatnonzero(~same)[0])
        raise ValueError(
            f"X[{row}] holds different real-image vectors in its valid candidates (its first "
            f"{dim} columns differ between them): each row of X is one real image's k candidates, "
            "[real vector, candidate vector, cosine], as FaissCandidateSelector returns them "
            "(relation scores, from features='relations', need pair_features='relations')"
        )


_ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


def _to_stderr(text: str) -> None:
    """skorch's log sink: epoch tables are progress, so stderr, where results (stdout) are not;
    without the colour codes of the best values where stderr is a log file, not a terminal."""
    if not is_interactive(sys.stderr):
        text = _ANSI_COLOUR.sub("", text)
    print(text, file=sys.stderr, flush=True)


def _training_summary(history, seconds: float, n_train: int) -> str:
    """One line at the end of training: epochs, time, and the epoch whose weights were kept."""
    epochs = len(history)
    line = (
        f"CANet training: {epochs} epoch{'s' if epochs != 1 else ''} on {n_train} real images "
        f"in {format_seconds(seconds)}, final train_loss {history[-1, 'train_loss']:.4f}"
    )
    valid = [e.get("valid_loss") for e in history]
    if all(v is not None for v in valid):
        best = int(np.argmin(valid))
        line += f", best valid_loss {valid[best]:.4f} at epoch {history[best, 'epoch']}"
    return line


def _scale(std):
    """Standard deviations with constant features left unscaled (as StandardScaler does)."""
    std = np.asarray(std, dtype=np.float64)
    return np.where(std > 1e-6, std, 1.0)


def _skip_inputs(X: np.ndarray, module_kwargs: dict, relations: bool) -> np.ndarray:
    """The standardised best cosine of each row, preceded (``relations``) by the first
    candidate's standardised scores: what the net's linear skip reads."""
    valid = candidate_mask(X)
    best = np.where(valid, np.clip(X[..., -1], -1.0, 1.0), -np.inf).max(1)
    z = ((best - module_kwargs["cosine_mean"]) / module_kwargs["cosine_scale"])[:, None]
    if relations:
        scores = (X[:, 0, :-1] - module_kwargs["feature_mean"]) / module_kwargs["feature_scale"]
        z = np.concatenate([scores, z], axis=1)
    return z


def _skip_logistic(X: np.ndarray, y: np.ndarray, module_kwargs: dict, relations: bool):
    """Weights and intercept of a logistic regression of y on :func:`_skip_inputs`: the skip
    the net starts from. On relation scores its weights are kept >= 0, as the linear head's:
    every score is built so that higher means "used", and the unconstrained start cost CANet
    0.086 [0.070, 0.102] test kappa over the benchmark's tasks on unseen draws
    (``benchmarks/RESULTS_canet_skip_seeds15-17.md``)."""
    z = _skip_inputs(X, module_kwargs, relations)
    if relations:
        lr = _positive_logistic_regression(z, y, C=1.0)
    else:
        lr = LogisticRegression(C=1.0, max_iter=1000).fit(z, y)
    return lr.coef_[0].astype(np.float64), float(lr.intercept_[0])


def _fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T > 0 minimising the log loss of ``sigmoid(logits / T)`` against y."""
    sign = 2.0 * y - 1.0

    def nll(log_t: float) -> float:
        return float(np.logaddexp(0.0, -sign * logits / np.exp(log_t)).mean())

    res = minimize_scalar(nll, bounds=(-4.0, 4.0), method="bounded")
    return float(np.exp(res.x))
