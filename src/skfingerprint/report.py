"""An audit report: one self-contained HTML file an auditor can read and act on.

:func:`write_report` applies a fitted pipeline to ``X_pairs`` and writes, in one file with every
image inline (base64 PNG ``data:`` URIs; no network, no server, no external CSS or JS):

- what was audited (model, data, decision threshold, numbers of images), and what the pipeline
  warned while scoring the images (real and generated images on different intensity scales,
  sizes it was not fitted on, ...);
- the real images ranked by P(used), each beside its nearest generated images and their
  similarities (the candidates the pipeline scored, as :func:`~skfingerprint.plot_leak_candidates`
  finds them);
- the distribution of P(used) with the threshold;
- the "hubs": generated images that are the nearest generated image of many real images;
- the library's diversity: how close each generated image is to its nearest other one, with a
  warning when the generator repeats itself (collapsed onto few modes);
- with true labels: Cohen's kappa with a bootstrap 95% interval, ROC AUC and the TPR at 1% FPR,
  the confusion matrix and the ROC curve.

The page is rendered from the Jinja2 template ``templates/report.html.j2`` with autoescaping on
(image ids come from file names) and written atomically.
"""

from __future__ import annotations

import base64
import datetime
import io
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._contracts import check_binary_labels
from ._io import atomic_path
from .metrics import membership_report
from .pairs import PairedImages, check_pairs

__all__ = ["write_report"]

#: Bootstrap resamples of the kappa interval, and their seed (fixed: one report, one interval).
N_BOOTSTRAP = 2000
BOOTSTRAP_SEED = 0

#: Longest side, in pixels, of the thumbnails stored in the page (smaller images stay as they
#: are; the page shows them at 96 CSS pixels).
THUMBNAIL_SIZE = 128

#: Two generated images whose pixel cosine (centred on the library's mean) is above this are
#: near-copies of each other.
NEAR_COPY = 0.98
#: A library with more than this share of near-copies repeats itself: in the benchmark, the one
#: generator that collapsed onto few modes (the 64 px CT phantom under the long DCGAN, where no
#: method found a signal) had 37-63% of its test samples above ``NEAR_COPY`` (seeds 0 and 1),
#: the seven other tasks' generators at most 1.4% (two seeds each; measured 2026-12-03).
REPEATING_SHARE = 0.10

HUB_SENTENCE = (
    "A hub is weak evidence: a typical, average-looking generated image lies close to many real "
    "images at once, so being the nearest generated image of a real image says little about "
    "that image, whereas a copy of a training image is close to that one image only."
)


def write_report(
    pipeline: Any,
    X_pairs: PairedImages,
    path: str | os.PathLike,
    *,
    y: Any = None,
    ids: Sequence[str] | None = None,
    n_candidates: int = 4,
    max_rows: int | None = None,
    n_hubs: int = 10,
    title: str = "skfingerprint audit report",
    model_source: str | os.PathLike | None = None,
    data_source: str | os.PathLike | None = None,
) -> Path:
    """Write a self-contained HTML audit report: real images ranked by P(used), with evidence.

    The pipeline embeds ``X_pairs`` once; P(used) and the predicted labels are those of
    ``pipeline.predict_proba`` and ``pipeline.predict``, and each real image is shown beside
    its ``n_candidates`` nearest generated images in the space where the pipeline's selector
    chose its candidates (``FaissCandidateSelector.kneighbors``), with their cosines. Every
    image and figure is embedded as a base64 PNG, so the file opens offline in any browser and
    can be archived or mailed as it is.

    Parameters
    ----------
    pipeline : fitted Pipeline
        A fitted pipeline with a :class:`~skfingerprint.ViTLayerFusionEmbedder`, a
        :class:`~skfingerprint.FaissCandidateSelector` and a classifier with ``predict_proba``
        as its last step, e.g. from :func:`~skfingerprint.make_fingerprint_pipeline`.
    X_pairs : PairedImages
        The real images to audit and the library of generated images.
    path : str or Path
        The HTML file to write (replaced atomically: a reader never sees half a file). Its
        folder must exist.
    y : array-like of 0/1, shape (n,), default=None
        True labels (1 = used to train the generator), when known. They add a column to the
        ranking, Cohen's kappa with a bootstrap 95% interval (2000 paired resamples, fixed
        seed), ROC AUC, the confusion matrix and the ROC curve.
    ids : sequence of str, default=None
        Names of the real images; ``X_pairs.ids`` (file names without extension) when None.
    n_candidates : int, default=4
        Nearest generated images shown beside each real image.
    max_rows : int, default=None
        Show only this many real images, the highest P(used) first; None shows all. The
        summary, histogram, hubs and metrics always use every real image.
    n_hubs : int, default=10
        At most this many hubs are listed (0: no hub section).
    title : str, default="skfingerprint audit report"
        The page's title.
    model_source, data_source : str or Path, default=None
        Where the model and the images came from (a model file, a folder), shown in the header.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        ``pipeline`` is not fitted.
    TypeError
        ``pipeline`` is not a Pipeline with an embedder, a selector and a probabilistic
        classifier, or ``X_pairs`` is not ``X_pairs``.
    ValueError
        ``y`` is not one 0/1 label per real image, ``ids`` has the wrong length, or a count
        parameter is out of range.
    FileNotFoundError
        The folder of ``path`` does not exist.

    See Also
    --------
    plot_leak_candidates : The same evidence as a matplotlib figure, for a few real images.

    Examples
    --------
    >>> from skfingerprint import make_fingerprint_pipeline, write_report
    >>> from skfingerprint.datasets import make_synthetic_leak
    >>> from skfingerprint.pipeline import TINY_VIT
    >>> task = make_synthetic_leak(10, 10, 30, image_size=32, random_state=0)
    >>> pipe = make_fingerprint_pipeline(**TINY_VIT, k=5, random_state=0)
    >>> pipe = pipe.fit(task.X_pairs, task.y)
    >>> write_report(pipe, task.X_pairs, "report.html", y=task.y)  # doctest: +SKIP
    PosixPath('report.html')
    """
    from sklearn.utils.validation import check_is_fitted

    from .plotting import _AppliedModel, _split_model

    X_pairs = check_pairs(X_pairs, name="X_pairs")
    _check_pipeline(pipeline)
    _, _, clf = _split_model(pipeline)
    if clf is None:
        raise TypeError(
            "write_report needs a pipeline whose last step is a classifier with predict_proba "
            f"(it gives P(used)); the last step is {type(pipeline.steps[-1][1]).__name__}"
        )
    check_is_fitted(
        pipeline,
        msg=(
            "This pipeline is not fitted yet: call pipeline.fit(X_pairs, y) first, or load a "
            "fitted one with skfingerprint.load_model"
        ),
    )
    n, m = len(X_pairs), len(X_pairs.library)
    if y is not None:
        y = np.asarray(y)
        if y.ndim == 1 and y.shape != (n,):
            raise ValueError(f"y has {y.shape[0]} labels for {n} real images; give one per row")
        y = check_binary_labels(y, "y")
    ids = list(X_pairs.ids if ids is None else ids)
    if len(ids) != n:
        raise ValueError(f"ids has {len(ids)} names for {n} real images; give one per row")
    ids = [str(i) for i in ids]
    n_candidates = _check_count(n_candidates, "n_candidates", minimum=1)
    n_hubs = _check_count(n_hubs, "n_hubs", minimum=0)
    if max_rows is not None:
        max_rows = _check_count(max_rows, "max_rows", minimum=1)
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"report path '{path}' is a folder; give a file name")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(
            f"cannot write the report '{path}': folder '{folder}' does not exist"
        )

    # what the pipeline warns while scoring these images (intensity scales, image sizes, k)
    # belongs in the report an auditor reads; each warning is still shown as usual after
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        applied = _AppliedModel(pipeline, X_pairs)
        proba = applied.proba()
        pred = applied.predict()
        sims, idx = applied.nearest(k=n_candidates)
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    scoring_warnings = list(dict.fromkeys(str(w.message) for w in caught))
    threshold, rule = _decision_rule(applied.clf)
    order = np.argsort(-proba, kind="stable")
    shown = order if max_rows is None else order[:max_rows]
    hubs = _hubs(idx[:, 0], m, n_hubs)
    diversity = _library_diversity(applied)
    hub_counts = {h.index: h.count for h in hubs}

    thumbs = _Thumbnails(X_pairs)
    rows = []
    for rank, i in enumerate(shown, start=1):
        candidates = []
        for c in range(idx.shape[1]):
            j = int(idx[i, c])
            if j < 0:  # an approximate index returned no neighbour here
                candidates.append(None)
                continue
            candidates.append(
                dict(
                    id=X_pairs.library.ids[j],
                    similarity=f"{sims[i, c]:.3f}",
                    image=thumbs.library(j),
                    hub_count=hub_counts.get(j),
                )
            )
        rows.append(
            dict(
                rank=rank,
                id=ids[i],
                p=repr(float(proba[i])),
                p_text=f"{proba[i]:.3f}",
                p_percent=f"{100.0 * proba[i]:.1f}",
                pred=int(pred[i]),
                true=None if y is None else int(y[i]),
                image=thumbs.real(int(i)),
                candidates=candidates,
            )
        )
    hub_rows = [
        dict(
            id=X_pairs.library.ids[h.index],
            count=h.count,
            share=f"{100.0 * h.count / n:.1f}",
            image=thumbs.library(h.index),
            reals=[ids[i] for i in h.reals[:8]],
            more=max(0, len(h.reals) - 8),
            mean_p=f"{proba[h.reals].mean():.3f}",
        )
        for h in hubs
    ]

    context = dict(
        title=title,
        created=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        version=_version(),
        model_source=None if model_source is None else str(model_source),
        data_source=None if data_source is None else str(data_source),
        steps=_describe_steps(pipeline),
        n_real=n,
        n_generated=m,
        threshold=f"{threshold:g}",
        rule=rule,
        n_pred_used=int(pred.sum()),
        n_shown=len(rows),
        n_candidates=int(idx.shape[1]),
        space=_space_name(applied.selector),
        rows=rows,
        histogram=_histogram_png(proba, y, threshold),
        hubs=hub_rows,
        list_hubs=n_hubs > 0,
        hub_sentence=HUB_SENTENCE,
        expected_per_generated=f"{n / m:.2f}",
        diversity=diversity,
        scoring_warnings=scoring_warnings,
        labels=None if y is None else _label_section(y, pred, proba),
    )
    html = _render(context)
    with atomic_path(path) as tmp:
        tmp.write_text(html, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# Checks and descriptions
# --------------------------------------------------------------------------------------------


def _check_pipeline(pipeline: Any) -> None:
    from sklearn.pipeline import Pipeline

    if not isinstance(pipeline, Pipeline):
        raise TypeError(
            "pipeline must be a fitted sklearn Pipeline with a ViTLayerFusionEmbedder, a "
            "FaissCandidateSelector and a classifier (e.g. from make_fingerprint_pipeline); "
            f"got {type(pipeline).__name__}"
        )


def _check_count(value: Any, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def _decision_rule(clf: Any) -> tuple[float, str]:
    """The P(used) threshold at which ``clf`` says "used", and the rule in words."""
    from .baselines import _ThresholdMixin
    from .canet import CANetClassifier

    if isinstance(clf, CANetClassifier):
        t = float(clf.threshold)
        return t, f"used when P(used) \u2265 {t:g}"
    if isinstance(clf, _ThresholdMixin):
        return 0.5, (
            f"used when P(used) > 0.5, i.e. when the classifier's score exceeds the threshold "
            f"it learned in fit ({clf.threshold_:.4g})"
        )
    return 0.5, "used when P(used) > 0.5"


def _describe_steps(pipeline: Any) -> list[str]:
    out = []
    for name, step in pipeline.steps:
        if step in (None, "passthrough"):
            continue
        text = f"{name}: {type(step).__name__}"
        if hasattr(step, "model") and hasattr(step, "pretrained"):  # the ViT embedder
            weights = (
                f"weights from {step.checkpoint}"
                if getattr(step, "checkpoint", None) is not None
                else "pretrained"
                if step.pretrained
                else "random init"
            )
            text += f" ({step.model}, {weights})"
        elif hasattr(step, "k") and hasattr(step, "min_similarity"):  # the selector
            text += f" (top-{step.k} candidates)"
        out.append(text)
    return out


def _space_name(selector: Any) -> str:
    space = getattr(selector, "spaces_", ("vit",))[0]
    return "ViT embedding" if space == "vit" else space


def _version() -> str:
    from . import __version__

    return __version__


# --------------------------------------------------------------------------------------------
# Hubs
# --------------------------------------------------------------------------------------------


@dataclass
class _Hub:
    index: int  # row of the library
    count: int  # real images whose nearest generated image it is
    reals: list[int]  # those real images, in row order


def _hubs(nearest: np.ndarray, n_library: int, limit: int) -> list[_Hub]:
    """Generated images that are the nearest generated image of at least two real images, most
    such real images first (ties: library order), at most ``limit``."""
    valid = nearest >= 0
    counts = np.bincount(nearest[valid], minlength=n_library)
    order = np.argsort(-counts, kind="stable")
    hubs = []
    for j in order[:limit]:
        if counts[j] < 2:
            break
        hubs.append(_Hub(int(j), int(counts[j]), np.flatnonzero(nearest == j).tolist()))
    return hubs


def _library_diversity(applied: Any) -> dict | None:
    """How close each generated image is to its nearest *other* generated image, in pixels: a
    generator that collapsed onto few modes repeats itself, and membership evidence is weak on
    its library. The pixel space of the embedder's output when it has one, else the library's
    pixels at :func:`~skfingerprint.images.auto_pixel_size`. None for a library of one image."""
    from .images import auto_pixel_size, pixel_vectors
    from .pairs import _l2_normalize
    from .relations import top_k

    library = applied.X_pairs.library
    if len(library) < 2:
        return None
    spaces = applied.embeddings.spaces
    if "pixels" in spaces:
        lib, size = spaces["pixels"][1], applied.embedder.pixel_size_
    else:
        size = auto_pixel_size(library.sizes())
        lib = pixel_vectors(library, size)
    lib = _l2_normalize(lib - lib.mean(0, keepdims=True))
    # the best match of an image is itself (cosine 1), the second its nearest other one
    nearest_other = top_k(lib, lib, 2)[0][:, 1]
    share = float(np.mean(nearest_other > NEAR_COPY))
    return dict(
        size=int(size),
        median=f"{float(np.median(nearest_other)):.3f}",
        near_copy=f"{NEAR_COPY:g}",
        share=share,
        percent=f"{100.0 * share:.1f}",
        repeats=share > REPEATING_SHARE,
        repeating_percent=f"{100.0 * REPEATING_SHARE:g}",
    )


# --------------------------------------------------------------------------------------------
# Metrics with labels
# --------------------------------------------------------------------------------------------


def _bootstrap_kappa(
    y: np.ndarray, pred: np.ndarray, n_resamples: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float] | None:
    """Paired percentile bootstrap 95% interval of Cohen's kappa (rows resampled with
    replacement, labels and predictions together). Resamples where kappa is undefined (one
    class in both) are dropped; None when all are."""
    rng = np.random.default_rng(seed)
    n = len(y)
    code = (2 * y + pred).astype(np.int64)  # 0 tn, 1 fp, 2 fn, 3 tp
    kappas = []
    chunk = max(1, 2_000_000 // max(n, 1))
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        sample = code[rng.integers(0, n, size=(b, n))]
        tn, fp, fn, tp = ((sample == c).sum(axis=1).astype(float) for c in range(4))
        po = (tp + tn) / n
        pe = ((tp + fp) * (tp + fn) + (tn + fn) * (tn + fp)) / float(n) ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            kappas.append(np.where(pe < 1.0, (po - pe) / (1.0 - pe), np.nan))
    kappas = np.concatenate(kappas)
    if np.all(np.isnan(kappas)):
        return None
    lo, hi = np.nanpercentile(kappas, [2.5, 97.5])
    return float(lo), float(hi)


def _label_section(y: np.ndarray, pred: np.ndarray, proba: np.ndarray) -> dict:
    from sklearn.metrics import confusion_matrix

    report = membership_report(y, pred, y_score=proba, output_dict=True)
    interval = _bootstrap_kappa(y, pred)
    both = np.unique(y).size == 2
    auc = report["auc"] if both else None
    tpr = report["tpr_at_1pct_fpr"]
    (tn, fp), (fn, tp) = confusion_matrix(y, pred, labels=[0, 1])
    return dict(
        n_used=int(y.sum()),
        n_not_used=int(y.size - y.sum()),
        kappa=repr(report["kappa"]),
        kappa_text=f"{report['kappa']:.3f}",
        kappa_low=None if interval is None else f"{interval[0]:.3f}",
        kappa_high=None if interval is None else f"{interval[1]:.3f}",
        n_bootstrap=N_BOOTSTRAP,
        auc=None if auc is None else repr(auc),
        auc_text=None if auc is None else f"{auc:.3f}",
        tpr_1pct=repr(tpr),
        tpr_1pct_text=f"{tpr:.3f}",
        accuracy=f"{report['accuracy']:.3f}",
        precision=f"{report['precision']:.3f}",
        recall=f"{report['recall']:.3f}",
        f1=f"{report['f1']:.3f}",
        tn=int(tn),
        fp=int(fp),
        fn=int(fn),
        tp=int(tp),
        roc=_roc_png(y, proba, pred, auc) if both else None,
    )


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _image_png(img: np.ndarray, size: int = THUMBNAIL_SIZE) -> str:
    """A float ``(H, W, C)`` image in [0, 1] as a PNG data URI, its longest side at most
    ``size`` pixels."""
    from PIL import Image

    a = (np.clip(np.nan_to_num(img), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    pil = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
    if max(pil.size) > size:
        pil.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    return _png_uri(buf.getvalue())


class _Thumbnails:
    """PNG data URIs of the real and library images, each encoded once."""

    def __init__(self, X_pairs: PairedImages) -> None:
        self.X_pairs = X_pairs
        self._library: dict[int, str] = {}

    def real(self, i: int) -> str:
        return _image_png(self.X_pairs.real.read(i))

    def library(self, j: int) -> str:
        if j not in self._library:
            self._library[j] = _image_png(self.X_pairs.library.read(j))
        return self._library[j]


def _figure_png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return _png_uri(buf.getvalue())


def _histogram_png(proba: np.ndarray, y: np.ndarray | None, threshold: float) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 3.0), layout="constrained")
    ax = fig.subplots()
    bins = np.linspace(0.0, 1.0, 26)
    if y is None:
        ax.hist(proba, bins=bins, color="tab:blue", alpha=0.8, label="real images")
    else:
        ax.hist(proba[y == 0], bins=bins, color="tab:blue", alpha=0.6, label="not used (true)")
        ax.hist(proba[y == 1], bins=bins, color="tab:red", alpha=0.6, label="used (true)")
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:g}")
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("P(used)")
    ax.set_ylabel("real images")
    ax.legend(frameon=False, fontsize=9)
    return _figure_png(fig)


def _roc_png(y: np.ndarray, proba: np.ndarray, pred: np.ndarray, auc: float) -> str:
    from matplotlib.figure import Figure
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, proba)
    fig = Figure(figsize=(4.0, 3.8), layout="constrained")
    ax = fig.subplots()
    ax.plot(fpr, tpr, color="tab:red", label=f"ROC (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", label="chance")
    op_fpr = float(pred[y == 0].mean())
    op_tpr = float(pred[y == 1].mean())
    ax.plot([op_fpr], [op_tpr], "ko", label="decision threshold")
    ax.set_xlim(-0.01, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate (not used, flagged)")
    ax.set_ylabel("true positive rate (used, flagged)")
    ax.legend(loc="lower right", frameon=False, fontsize=9)
    return _figure_png(fig)


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


def _render(context: dict) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("skfingerprint", "templates"),
        autoescape=True,  # ids and paths come from file names
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html.j2").render(**context)
