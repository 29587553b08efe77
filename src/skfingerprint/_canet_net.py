"""The Hybrid CANet network: ``CANetModule`` (nn.Module), its losses and its skorch training net.

The net (section 3.3 of the paper) maps each candidate's pair vector (and its cosine) through
``Linear(2D+1 -> 2D), LayerNorm, GELU, Dropout(0.6), Linear(2D -> 1024), GELU, Linear(1024 ->
512)``, then 8-head self-attention. In the paper the attention ran over a sequence of length 1,
which is the identity up to a linear map; here it runs **across the k candidates of one real
image**, so each candidate is judged beside the rest of that image's neighbourhood. The candidates
are then pooled and a head ``-> 256 -> GELU -> 1`` gives the logit of P(used).

The scikit-learn estimator around it is :class:`skfingerprint.canet.CANetClassifier` (the
module/net split of skorch: this file is the module and its training step, ``canet.py`` the
estimator).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from itertools import pairwise

import torch
import torch.nn.functional as F
from skorch import NeuralNetBinaryClassifier
from skorch.callbacks import EarlyStopping
from skorch.dataset import unpack_data
from skorch.utils import to_tensor
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ._contracts import candidate_mask

__all__ = ["CANetModule", "supervised_contrastive_loss"]

# SupCon temperatures from the paper (section 3.1): t = 0.07, base t0 = 0.05.
CONTRASTIVE_TEMPERATURE = 0.07
CONTRASTIVE_BASE_TEMPERATURE = 0.05

PAIR_FEATURES = ("concat", "compare", "both", "relations")

# Width of the small projection of the sorted cosine profile fed to the head.
_PROFILE_WIDTH = 32


class CANetModule(nn.Module):
    """Hybrid CANet over the ``k`` candidates of each real image.

    Parameters
    ----------
    n_features : int
        Features per candidate, ``F = 2D + 1`` (real vector, candidate vector, cosine).
    n_candidates : int
        Candidates per real image, ``k``.
    hidden : sequence of int, default=(1024, 512)
        Widths after the first layer (whose width is the pair width ``2D``); the last one is the
        attention width and must be divisible by ``n_heads``.
    n_heads : int, default=8
        Attention heads.
    dropout : float, default=0.6
        Dropout after the first layer (the paper's 0.6).
    head_hidden : int, default=256
        Width of the decision head.
    feature_mean, feature_scale : array-like of shape (D,), optional
        Per-dimension standardisation of the real and candidate vectors (the same for both halves,
        so that a candidate equal to its real image stays equal); identity when omitted.
    cosine_mean, cosine_scale : float, default=0.0, 1.0
        Standardisation of the cosines.
    attention : bool, default=True
        False replaces the attention by the identity (for ablations).
    pair_features : {"concat", "compare", "both", "relations"}, default="concat"
        What each candidate's pair vector is: the paper's ``[r, c]`` (2D), the comparison
        ``[|r - c|, r * c]`` (2D, on standardised vectors), or both (4D). The first layer maps it
        (plus the cosine) to 2D in every case. ``"relations"``: the rows are the selector's
        relation scores (``FaissCandidateSelector(features="relations")``, any width ``F >= 2``,
        last column the cosine), taken as they are; the first layer maps them to
        ``max(4 (F - 1), 16)``, and a linear skip on the first candidate's scores
        (``relation_skip_init``) reaches the logit.
    skip_init : (float, float), default=(0.0, 0.0)
        Initial ``(a, b)`` of the cosine skip ``a * z_max + b`` (``z_max`` the standardised best
        cosine); :class:`CANetClassifier` sets it to a logistic regression of y on ``z_max``.
    relation_skip_init : array-like of shape (F - 1,), optional
        With ``pair_features="relations"``, the initial weights of the linear skip on the first
        candidate's standardised scores; :class:`CANetClassifier` sets them, with
        ``skip_init``, to a logistic regression of y on those scores and ``z_max``, so the net
        starts as the linear head on relation features. Zeros when omitted.

    Notes
    -----
    ``forward(X)`` takes the raw ``(n, k, F)`` tensor and returns ``(n,)`` logits. Masked
    candidates are zeroed, excluded as attention keys (``key_padding_mask``) and from pooling, so
    their content cannot change the output.

    **Attention** is one post-norm residual block, ``LayerNorm(h + MHA(h, h, h))``: the residual
    keeps each candidate's own evidence, the attention adds what the other candidates say.

    **Pooling** is mean + max over the valid candidates (concatenated, ``2 * hidden[-1]``). Max
    keeps the single most convincing candidate (a memorised copy is one candidate, not a
    crowd); mean summarises the neighbourhood (how many library images sit that close). Both are
    parameter-free, which matters with ~200 labelled real images.

    **Cosine profile.** The cosines sorted in decreasing order (masked ones zeroed, plus a
    validity flag per slot) go through a small ``Linear(2k -> 32), GELU`` and are concatenated
    to the pooled vector, together with the raw best cosine; the best cosine also reaches the
    logit through a learned affine skip ``a * z_max + b``, and the head's last layer starts at
    zero. The max-cosine threshold is the literature's strongest simple baseline on this task;
    the pair MLP, seeing 2D-dimensional vectors of ~200 images, cannot be relied on to re-derive
    it, and at the paper's learning rate (1e-4) a scalar skip starting at 0 barely moves in 50
    epochs. So the net *starts* as that baseline (``skip_init``) and only has to learn what
    improves on it; early stopping on the validation loss keeps it from drifting far below.

    Examples
    --------
    >>> import torch
    >>> from skfingerprint.canet import CANetModule
    >>> net = CANetModule(n_features=17, n_candidates=5, hidden=(32, 16), n_heads=2)
    >>> net(torch.zeros(3, 5, 17)).shape
    torch.Size([3])
    """

    def __init__(
        self,
        n_features: int,
        n_candidates: int,
        hidden: Sequence[int] = (1024, 512),
        n_heads: int = 8,
        dropout: float = 0.6,
        head_hidden: int = 256,
        feature_mean=None,
        feature_scale=None,
        cosine_mean: float = 0.0,
        cosine_scale: float = 1.0,
        attention: bool = True,
        skip_init: tuple[float, float] = (0.0, 0.0),
        pair_features: str = "concat",
        relation_skip_init=None,
    ) -> None:
        super().__init__()
        relations = pair_features == "relations"
        if relations and n_features < 2:
            raise ValueError(f"n_features must be >= 2 (scores + cosine); got {n_features}")
        if not relations and (n_features < 3 or n_features % 2 == 0):
            raise ValueError(f"n_features must be 2D + 1 (odd, >= 3); got {n_features}")
        hidden = tuple(int(h) for h in hidden)
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden must be a non-empty sequence of positive ints; got {hidden}")
        if hidden[-1] % n_heads:
            raise ValueError(
                f"the attention width hidden[-1]={hidden[-1]} must be divisible by "
                f"n_heads={n_heads}"
            )
        if pair_features not in PAIR_FEATURES:
            raise ValueError(f"pair_features must be one of {PAIR_FEATURES}; got {pair_features!r}")
        # Per-candidate vector: the two halves [r, c] of width dim each, or F - 1 scores.
        dim = n_features - 1 if relations else (n_features - 1) // 2
        pair = max(4 * dim, 16) if relations else 2 * dim
        self.pair_features = pair_features
        n_inputs = n_features if relations else (4 * dim if pair_features == "both" else pair) + 1
        self.n_features, self.n_candidates = n_features, n_candidates
        mean = torch.zeros(dim) if feature_mean is None else torch.as_tensor(feature_mean)
        scale = torch.ones(dim) if feature_scale is None else torch.as_tensor(feature_scale)
        repeat = 1 if relations else 2  # the same standardisation for both halves
        self.register_buffer("feature_mean", mean.to(torch.float32).repeat(repeat))
        self.register_buffer("feature_scale", scale.to(torch.float32).repeat(repeat))
        self.register_buffer("cosine_stats", torch.tensor([cosine_mean, cosine_scale]).float())

        layers: list[nn.Module] = [
            nn.Linear(n_inputs, pair),
            nn.LayerNorm(pair),
            nn.GELU(),
            UniformDropout(dropout),
            nn.Linear(pair, hidden[0]),
        ]
        for a, b in pairwise(hidden):
            layers += [nn.GELU(), nn.Linear(a, b)]
        self.encoder = nn.Sequential(*layers)
        width = hidden[-1]
        self.attention = (
            nn.MultiheadAttention(width, n_heads, batch_first=True) if attention else None
        )
        self.attention_norm = nn.LayerNorm(width)
        self.profile = nn.Sequential(nn.Linear(2 * n_candidates, _PROFILE_WIDTH), nn.GELU())
        self.head = nn.Sequential(
            nn.Linear(2 * width + _PROFILE_WIDTH + 1, head_hidden),
            nn.GELU(),
            nn.Linear(head_hidden, 1),
        )
        # Zero-initialised last layer: the net starts as exactly ``a * z_max + b``, the max-cosine
        # logistic baseline (``skip_init``), and learns what improves on it.
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        self.cosine_skip = nn.Parameter(torch.tensor(skip_init, dtype=torch.float32))
        self.relation_skip = None
        if relations:
            init = torch.zeros(dim) if relation_skip_init is None else relation_skip_init
            self.relation_skip = nn.Parameter(torch.as_tensor(init, dtype=torch.float32))

    def prepare(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised per-candidate features (masked ones zeroed) and the validity mask."""
        valid = candidate_mask(X)
        vectors = (X[..., :-1] - self.feature_mean) / self.feature_scale
        if self.pair_features in ("compare", "both"):
            real, cand = vectors.chunk(2, dim=-1)
            compare = [(real - cand).abs(), real * cand]
            vectors = torch.cat(
                [vectors, *compare] if self.pair_features == "both" else compare, -1
            )
        cosine = X[..., -1:].clamp(-1.0, 1.0)
        cosine = (cosine - self.cosine_stats[0]) / self.cosine_stats[1]
        feats = torch.cat([vectors, cosine], dim=-1)
        return torch.where(valid[..., None], feats, torch.zeros_like(feats)), valid

    def forward_prepared(
        self,
        feats: torch.Tensor,
        valid: torch.Tensor,
        return_embedding: bool = False,
        shared_real: bool = True,
    ):
        """Logits ``(n,)`` (and the pooled embeddings) from :meth:`prepare`'s output.

        ``shared_real``: the real image's half of every candidate's features is the same vector,
        so the first layer maps it once per real image. False maps each copy on its own, for
        features whose copies differ (FGSM perturbs each candidate's copy)."""
        h = self.encoder[1:](self._first_layer(feats, shared_real))
        if self.attention is not None:
            # over k candidates the sequence is short: on CPU torch's flash kernel took 7 ms
            # for a backward that the plain matmuls do in well under 1 (k = 10, batch 32)
            with _short_sequence_attention(h.device):
                attended, _ = self.attention(h, h, h, key_padding_mask=~valid, need_weights=False)
            h = self.attention_norm(h + attended)
        w = valid[..., None].to(h.dtype)
        mean = (h * w).sum(1) / w.sum(1)
        peak = h.masked_fill(~valid[..., None], float("-inf")).amax(1)
        pooled = torch.cat([mean, peak], dim=-1)

        cosine = feats[..., -1].masked_fill(~valid, float("-inf"))
        ranked, _ = cosine.sort(dim=1, descending=True)
        slot_valid = torch.isfinite(ranked)
        ranked = torch.where(slot_valid, ranked, torch.zeros_like(ranked))
        best = ranked[:, :1]
        profile = self.profile(torch.cat([ranked, slot_valid.to(ranked.dtype)], dim=1))
        logit = self.head(torch.cat([pooled, profile, best], dim=1)).squeeze(1)
        logit = logit + self.cosine_skip[0] * best.squeeze(1) + self.cosine_skip[1]
        if self.relation_skip is not None:
            logit = logit + feats[:, 0, :-1] @ self.relation_skip
        return (logit, pooled) if return_embedding else logit

    def _first_layer(self, feats: torch.Tensor, shared_real: bool):
        first = self.encoder[0]
        if not shared_real or self.pair_features != "concat":
            return first(feats)
        # [r, c, cos] W^T = r W_r^T + [c, cos] W_c^T: the k copies of r cost one product per real
        # image instead of k (567 -> 473 GFLOP per paper-size epoch). The first candidate
        # always counts as valid, so it holds r; masked candidates get r's share too, but
        # attention and pooling never read them.
        dim = (feats.shape[-1] - 1) // 2
        real = F.linear(feats[:, 0, :dim], first.weight[:, :dim])
        return F.linear(feats[..., dim:], first.weight[:, dim:], first.bias) + real[:, None, :]

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.forward_prepared(*self.prepare(X))


class UniformDropout(nn.Module):
    """Inverted dropout whose mask is a threshold on uniform draws.

    The same distribution as :class:`torch.nn.Dropout` (each element kept with probability
    ``1 - p`` and scaled by ``1 / (1 - p)``), drawn about 3x faster on CPU: torch's Bernoulli
    draw was an eighth of a small CANet fit (``benchmarks/bench_canet.py``)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        # drawn in fp32 whatever x is: a bf16 uniform would keep 1 - p only to ~1%
        keep = torch.rand_like(x, dtype=torch.float32).ge_(self.p)
        return x * keep.to(x.dtype).mul_(1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _short_sequence_attention(device: torch.device):
    """The plain-matmul attention kernel on CPU, whatever torch would pick."""
    if device.type == "cpu":
        return sdpa_kernel(SDPBackend.MATH)
    return contextlib.nullcontext()


def supervised_contrastive_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = CONTRASTIVE_TEMPERATURE,
    base_temperature: float = CONTRASTIVE_BASE_TEMPERATURE,
) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al., 2020, "SupCon") of one batch.

    Each anchor is pulled toward the other samples of its class and pushed from the rest;
    anchors with no other sample of their class in the batch are skipped (zero when none has).

    Parameters
    ----------
    embeddings : tensor of shape (n, d)
        L2-normalised inside.
    labels : tensor of shape (n,)
    temperature, base_temperature : float
        The loss is scaled by ``temperature / base_temperature``, as in SupCon.

    Returns
    -------
    tensor
        A scalar.

    Examples
    --------
    >>> import torch
    >>> from skfingerprint.canet import supervised_contrastive_loss
    >>> z = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
    >>> good = supervised_contrastive_loss(z, torch.tensor([0, 0, 1, 1]))
    >>> bad = supervised_contrastive_loss(z, torch.tensor([0, 1, 0, 1]))
    >>> bool(good < bad)
    True
    """
    z = F.normalize(embeddings, dim=1)
    n = z.shape[0]
    labels = labels.reshape(-1)
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    logits = (z @ z.T) / temperature
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    n_pos = positives.sum(1)
    has_pos = n_pos > 0
    if not bool(has_pos.any()):
        return embeddings.sum() * 0.0
    log_prob = torch.where(positives, log_prob, torch.zeros_like(log_prob))
    mean_log_prob_pos = log_prob.sum(1)[has_pos] / n_pos[has_pos]
    return -(temperature / base_temperature) * mean_log_prob_pos.mean()


class _TrainingInterrupted(BaseException):
    """Ctrl-C during training, carried past skorch (which would swallow a KeyboardInterrupt)."""


class _StopTraining(KeyboardInterrupt):
    """Early stopping's end of training: skorch signals it with a KeyboardInterrupt."""


class _EarlyStopping(EarlyStopping):
    """skorch's EarlyStopping, whose stop can be told apart from Ctrl-C."""

    def on_epoch_end(self, net, **kwargs):
        try:
            super().on_epoch_end(net, **kwargs)
        except KeyboardInterrupt:
            raise _StopTraining from None


class _CANetNet(NeuralNetBinaryClassifier):
    """skorch net whose training step adds the SupCon and FGSM terms to the BCE loss."""

    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        # skorch's partial_fit catches KeyboardInterrupt and returns the half-trained net as if
        # training had ended; Ctrl-C must stop fit instead (no silently half-trained model).
        try:
            return super().fit_loop(X, y, epochs=epochs, **fit_params)
        except _StopTraining:
            raise  # skorch ends training as usual
        except KeyboardInterrupt:
            raise _TrainingInterrupted from None

    def __init__(
        self, *args, contrastive_weight=0.0, adversarial_eps=0.0, dtype=torch.float32, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.contrastive_weight = contrastive_weight
        self.adversarial_eps = adversarial_eps
        self.dtype = dtype

    def _losses(self, feats, valid, yi):
        # the products in self.dtype (bf16 where the hardware has it); the losses in fp32
        with torch.autocast(
            torch.device(self.device).type, dtype=self.dtype, enabled=self.dtype != torch.float32
        ):
            logit, pooled = self.module_.forward_prepared(
                feats, valid, return_embedding=True, shared_real=not self.adversarial_eps
            )
        logit, pooled = logit.float(), pooled.float()
        loss = self.get_loss(logit, yi, training=True)
        if self.contrastive_weight:
            loss = loss + self.contrastive_weight * supervised_contrastive_loss(pooled, yi)
        return logit, loss

    def train_step_single(self, batch, **fit_params):
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        Xi, yi = to_tensor(Xi, device=self.device), to_tensor(yi, device=self.device)
        feats, valid = self.module_.prepare(Xi)
        if self.adversarial_eps:
            feats.requires_grad_(True)
        logit, loss = self._losses(feats, valid, yi)
        if self.adversarial_eps:
            # FGSM (Goodfellow et al.): the loss again at x + eps * sign(grad_x loss), in the
            # standardised feature space; masked candidates get no gradient, so stay put.
            (grad,) = torch.autograd.grad(loss, feats, retain_graph=True)
            step = self.adversarial_eps * grad.sign() * valid[..., None]
            _, adv_loss = self._losses((feats + step).detach(), valid, yi)
            loss = loss + adv_loss
        loss.backward()
        return {"loss": loss, "y_pred": logit}
