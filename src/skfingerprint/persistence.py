"""Model files: a fitted pipeline saved so that loading it cannot run code.

Auditors receive models from others. A pickle (joblib) file runs whatever it holds the moment
it is loaded, so the default format is `skops <https://skops.readthedocs.io>`_
(``skops.io``): a zip of a JSON schema and numpy arrays, from which only types on an allow-list
are ever built. skfingerprint's estimators keep no torch object in their pickled state (ViT,
fusion and CANet weights travel as numpy arrays, a FAISS index as its serialised bytes), so
the same state serves both formats, and a model fitted on a GPU loads on a CPU.

:func:`load_model` lists the types a skops file would build *before* building anything and
refuses a file naming a type outside :data:`TRUSTED_TYPES`. Pickle files are refused unless
the caller says ``allow_pickle=True`` (``--allow-pickle`` on the command line).
"""

from __future__ import annotations

import datetime
import os
import warnings
from pathlib import Path
from typing import Any

from ._io import atomic_path

__all__ = [
    "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION",
    "TRUSTED_TYPES",
    "ModelFileError",
    "UntrustedModelError",
    "load_model",
    "save_model",
]

MODEL_FORMAT = "skfingerprint-model"
#: 2: estimators pickle numpy arrays, not torch tensors (version 1 held torch objects).
MODEL_FORMAT_VERSION = 2
FORMATS = ("skops", "joblib")

#: Types a skops model file may build beyond skops' own defaults (scikit-learn, numpy, builtins).
#: Each is a data holder whose ``__setstate__`` only reads arrays and plain values.
TRUSTED_TYPES = (
    "skfingerprint.baselines.MaxSimilarityClassifier",
    "skfingerprint.baselines.PixelNearestNeighbor",
    "skfingerprint.canet.CANetClassifier",
    "skfingerprint.embedding.ViTLayerFusionEmbedder",
    "skfingerprint.linear_head.LinearRelationClassifier",
    "skfingerprint.selection.FaissCandidateSelector",
    "skfingerprint._vit.Backbone",
)

_ZIP_MAGIC = b"PK\x03\x04"


class ModelFileError(ValueError):
    """A model file that cannot be used: missing, truncated, of another format or version.

    The command line prints it as ``error: <message>`` with exit status 2.
    """


class UntrustedModelError(ModelFileError):
    """A model file that would build a type outside :data:`TRUSTED_TYPES`; nothing was built."""


def save_model(
    estimator: Any, path: str | os.PathLike, *, format: str = "skops", **metadata: Any
) -> Path:
    """Save a fitted estimator as a skfingerprint model file, atomically.

    The file holds a dict ``{"format": "skfingerprint-model", "format_version",
    "estimator", "skfingerprint_version", "created", **metadata}``; it is written to a
    temporary file in the same folder and renamed, so an existing file is replaced only by a
    complete one.

    Parameters
    ----------
    estimator : fitted estimator
        Usually a fitted pipeline from :func:`~skfingerprint.pipeline.make_fingerprint_pipeline`.
    path : str or Path
        Where to write (``.skops`` by convention).
    format : {"skops", "joblib"}, default="skops"
        ``"skops"`` can be loaded without running code from the file. ``"joblib"`` is a
        pickle: **whoever loads it runs whatever it holds**; use it only for files that never
        leave your hands.
    **metadata
        Plain values to keep beside it (training folder, options, training metrics).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        ``format`` is not one of the two, or a metadata key is one the file keeps for itself
        (``format_version``, ``skfingerprint_version``, ``created``).
    OSError
        The folder is missing or not writable (nothing is left behind).

    Examples
    --------
    >>> from skfingerprint import load_model, save_model
    >>> save_model(fitted_pipeline, "model.skops", train_dir="train/")  # doctest: +SKIP
    PosixPath('model.skops')
    >>> load_model("model.skops")["train_dir"]  # doctest: +SKIP
    'train/'
    """
    from . import __version__

    if format not in FORMATS:
        raise ValueError(f"format={format!r}; use one of {FORMATS}")
    record = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "skfingerprint_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "estimator": estimator,
    }
    # metadata must not overwrite the file's record of itself (a format_version: unreadable)
    taken = sorted(metadata.keys() & record.keys())
    if taken:
        raise ValueError(
            f"metadata {', '.join(taken)} would overwrite what the model file records about "
            "itself; give the value another name"
        )
    path = Path(path)
    payload = {**record, **metadata}
    with atomic_path(path) as tmp:
        if format == "skops":
            import skops.io

            skops.io.dump(payload, tmp)
        else:
            import joblib

            joblib.dump(payload, tmp)
    return path


def load_model(path: str | os.PathLike, *, allow_pickle: bool = False) -> dict:
    """Read a model file written by :func:`save_model`.

    A skops file is checked before anything in it is built: a file naming a type outside
    :data:`TRUSTED_TYPES` (and skops' own defaults) is refused. A pickle (joblib) file is
    refused unless ``allow_pickle=True``, because loading it runs any code it holds.

    Parameters
    ----------
    path : str or Path
        The model file.
    allow_pickle : bool, default=False
        Load a joblib/pickle file. Only for files whose every writer you trust.

    Returns
    -------
    dict
        The saved payload; ``payload["estimator"]`` is the fitted estimator.

    Raises
    ------
    UntrustedModelError
        The skops file would build types skfingerprint does not trust (named in the message).
    ModelFileError
        The file is missing, truncated, corrupt, a pickle without ``allow_pickle``, not a
        skfingerprint model, or of a model format version this skfingerprint does not read.

    Examples
    --------
    >>> from skfingerprint import load_model
    >>> model = load_model("model.skops")  # doctest: +SKIP
    >>> model["estimator"].predict(X_pairs)  # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model file '{path}' does not exist")
    if not path.is_file():
        raise ModelFileError(f"model file '{path}' is not a file")
    if path.stat().st_size == 0:
        raise ModelFileError(f"model file '{path}' is empty (0 bytes)")
    with open(path, "rb") as f:
        head = f.read(4)
    if head == _ZIP_MAGIC:
        payload = _load_skops(path)
    elif not allow_pickle:
        raise ModelFileError(
            f"model file '{path}' is not a skops model file; if it is a joblib/pickle file, "
            "loading it runs any code it holds. Load it only if you trust everyone who wrote "
            "it: load_model(path, allow_pickle=True), or --allow-pickle on the command line. "
            "Save models with save_model(..., format='skops') (the default) to avoid this."
        )
    else:
        payload = _load_pickle(path)
    return _check_payload(payload, path)


def _corrupt(path: Path, exc: Exception) -> ModelFileError:
    detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
    return ModelFileError(
        f"cannot read model file '{path}': it is not a skfingerprint model file, or it is "
        f"truncated or corrupt ({type(exc).__name__}{': ' + detail if detail else ''}). "
        "Make one with 'skfingerprint fit'."
    )


def _load_skops(path: Path) -> Any:
    import skops.io

    try:
        found = skops.io.get_untrusted_types(file=path)
    except Exception as exc:  # a torn zip or schema: BadZipFile, KeyError, JSONDecodeError...
        raise _corrupt(path, exc) from None
    untrusted = sorted(set(found) - set(TRUSTED_TYPES))
    if untrusted:
        raise UntrustedModelError(
            f"model file '{path}' would build types that skfingerprint does not trust: "
            f"{', '.join(untrusted)}. Nothing from the file was loaded or run. If you made "
            "this file yourself with other estimators, load it with skops.io.load(path, "
            "trusted=[...]) after checking those types."
        )
    try:
        return skops.io.load(path, trusted=found)
    except Exception as exc:
        raise _corrupt(path, exc) from None


def _load_pickle(path: Path) -> Any:
    import joblib

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return joblib.load(path)
    except Exception as exc:  # pickle raises many types on bad input
        raise _corrupt(path, exc) from None


def _check_payload(payload: Any, path: Path) -> dict:
    if not (isinstance(payload, dict) and payload.get("format") == MODEL_FORMAT):
        raise ModelFileError(
            f"'{path}' is not a skfingerprint model file (it holds a "
            f"{type(payload).__name__}). Make one with 'skfingerprint fit' or save_model()."
        )
    version = payload.get("format_version")
    if version != MODEL_FORMAT_VERSION:
        from . import __version__

        fix = (
            "upgrade skfingerprint to read it"
            if isinstance(version, int) and version > MODEL_FORMAT_VERSION
            else "refit it with 'skfingerprint fit'"
        )
        raise ModelFileError(
            f"model file '{path}' has model format version {version!r}, written by "
            f"skfingerprint {payload.get('skfingerprint_version', 'unknown')}; this is "
            f"skfingerprint {__version__}, which reads format version {MODEL_FORMAT_VERSION}: "
            f"{fix}"
        )
    if "estimator" not in payload or not hasattr(payload["estimator"], "fit"):
        raise ModelFileError(f"model file '{path}' holds no estimator")
    return payload
