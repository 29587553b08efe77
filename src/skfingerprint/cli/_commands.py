"""The ``fit``, ``predict``, ``evaluate`` and ``report`` commands (heavy imports inside each)."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Any

from ..persistence import load_model, save_model
from ._common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    CLIError,
    _load_split,
    _Log,
    _output_file,
)


def _pipeline_from_args(args: argparse.Namespace):
    from ..pipeline import TINY_CANET, TINY_VIT, make_fingerprint_pipeline

    if args.tiny:
        if args.model is not None:
            raise CLIError("--tiny picks the model itself; drop --model", EXIT_USAGE)
        vit = dict(TINY_VIT)
        if args.pretrained is True:
            raise CLIError("--tiny is a randomly initialised ViT; drop --pretrained", EXIT_USAGE)
    else:
        pretrained = True if args.pretrained is None else args.pretrained
        if args.checkpoint is not None and args.pretrained is None:
            pretrained = False  # the checkpoint's weights replace the hub's
        vit = dict(model=args.model or "vit_base_patch16_224", pretrained=pretrained)
    if args.checkpoint is not None and not Path(args.checkpoint).is_file():
        raise CLIError(f"checkpoint file '{args.checkpoint}' does not exist", EXIT_USAGE)
    canet = {}
    if args.classifier == "canet":
        canet = dict(TINY_CANET) if args.tiny else {}
        if args.epochs is not None:
            canet["max_epochs"] = args.epochs
    elif args.epochs is not None:
        raise CLIError(
            f"--epochs trains CANet; --classifier {args.classifier} has no epochs", EXIT_USAGE
        )
    try:
        return make_fingerprint_pipeline(
            args.classifier,
            **vit,
            features=args.features,
            checkpoint=args.checkpoint,
            layers=args.layers,
            fusion=args.fusion,
            finetune=args.finetune,
            k=args.k,
            min_similarity=args.min_similarity,
            threshold=args.threshold,
            used_fraction=args.used_fraction,
            random_state=args.seed,
            cache_dir=args.cache_dir,
            **canet,
        )
    except ValueError as exc:
        raise CLIError(str(exc), EXIT_USAGE) from None


def _set_verbosity(pipe, verbose: int) -> None:
    """-v: progress of every ViT pass and CANet's epoch log; -vv: also the pipeline's step
    timings."""
    params = {"embed__verbose": int(verbose > 0)}
    if "verbose" in pipe.named_steps["clf"].get_params():
        params["clf__verbose"] = int(verbose > 0)
    pipe.set_params(**params, verbose=verbose > 1)


def _describe(data) -> str:
    n_real, n_gen = len(data.X_pairs), len(data.X_pairs.library)
    generated = f"{n_gen} generated images"
    if data.pooled_from:
        n_own = n_gen - sum("/" in i for i in data.X_pairs.library.ids)  # pooled: folder/stem
        folders = ", ".join(f"'{f}'" for f in data.pooled_from)
        generated += (
            f" ({n_own} its own, {n_gen - n_own} pooled from {folders}; their "
            f"{len(data.reference_paths)} real images join the scores, unlabelled)"
        )
    if data.y is not None:
        used = int(data.y.sum())
        return f"{n_real} real images ({used} used, {n_real - used} not used) and {generated}"
    return f"{n_real} real images and {generated}"


def _pooling_note(model: dict, args: argparse.Namespace, log: _Log) -> None:
    """Say so when the model was fitted with pooled libraries and this folder is not pooled,
    or the other way round: the scores are then read on libraries of another size."""
    fitted = bool((model.get("options") or {}).get("pool_with"))
    if fitted and not args.pool_with:
        log(
            "note: this model was fitted with --pool-with (one library for both splits); pool "
            "this folder too (e.g. --pool-with TRAIN_DIR) to judge it the same way"
        )
    elif args.pool_with and not fitted and model.get("options") is not None:
        log("note: this model was fitted without --pool-with; this folder is pooled")


def _weights(embed) -> str:
    if embed.checkpoint is not None:
        return f"weights from {embed.checkpoint}"
    return "pretrained" if embed.pretrained else "random init"


def _cmd_fit(args: argparse.Namespace, log: _Log) -> int:
    from ..metrics import format_reports, membership_report

    out = _output_file(args.output, "model file")
    pipe = _pipeline_from_args(args)
    _set_verbosity(pipe, args.verbose)
    data = _load_split(args.train_dir, want="train", command="fit", pool_with=args.pool_with)
    log(f"read {args.train_dir}: {_describe(data)}")
    embed = pipe.named_steps["embed"]
    log(
        f"fitting: {embed.model} ({_weights(embed)}"
        f"{', fine-tuned' if args.finetune != 'none' else ''}) -> top-{args.k} candidates -> "
        f"{args.classifier}" + ("" if args.verbose else "  (add -v for progress)")
    )
    with _work_errors():
        pipe.fit(data.X_pairs, data.y)
        log("scoring the training images")
        pred, proba = _labels_and_scores(pipe, data.X_pairs)
    report = membership_report(data.y, pred, y_score=proba, output_dict=True)
    options = {
        k: v for k, v in vars(args).items() if k not in ("func", "command", "output", "verbose")
    }
    _set_verbosity(pipe, 0)  # a loaded model starts quiet
    with _work_errors():
        save_model(
            pipe,
            out,
            format=args.format,
            train_dir=str(Path(args.train_dir).resolve()),
            options=options,
            train_metrics=report,
        )
    log(f"saved the model to {out}")
    print(f"Training metrics on {args.train_dir} (the images the model was fitted on: optimistic)")
    print(format_reports({args.classifier: report}))
    print(f"model saved to {out}")
    return EXIT_OK


@contextlib.contextmanager
def _work_errors():
    """Turn the expected failures of fitting / predicting into CLIError (exit 1)."""
    from .._vit import WeightsUnavailableError

    try:
        yield
    except WeightsUnavailableError as exc:
        raise CLIError(
            f"{exc}\n(on this command line: --checkpoint FILE, --no-pretrained, or --tiny for "
            "a small random ViT)",
            EXIT_FAILURE,
        ) from None
    except MemoryError as exc:
        raise CLIError(f"out of memory ({exc}); try a smaller model or --k") from exc
    except (ValueError, TypeError, OSError) as exc:
        raise CLIError(str(exc)) from exc


def _final_step(est: Any) -> Any:
    """A pipeline's classifier, or the estimator itself."""
    return est.steps[-1][1] if hasattr(est, "steps") else est


def _labels_and_scores(est: Any, X_pairs) -> tuple[Any, Any]:
    """``est.predict(X_pairs)``, and P(used) beside it where the classifier gives it (else
    None), from one pass of a pipeline's steps before the classifier: the embedding, the
    selection and their warnings are not repeated for the scores."""
    final = _final_step(est)
    if not hasattr(final, "predict_proba"):
        return est.predict(X_pairs), None
    X = est[:-1].transform(X_pairs) if hasattr(est, "steps") and len(est.steps) > 1 else X_pairs
    return final.predict(X), final.predict_proba(X)[:, 1]


def _predict(model: dict, data, log: _Log, verbose: int):
    """The labels and, where the model gives them, the scores (:func:`_labels_and_scores`)."""
    est = model["estimator"]
    if not hasattr(est, "predict"):
        raise CLIError(
            f"the model file holds a {type(est).__name__}, which does not predict; save a "
            f"fitted pipeline (what '{PROG} fit' writes)",
            EXIT_USAGE,
        )
    if hasattr(est, "named_steps") and "embed" in est.named_steps:
        _set_verbosity(est, verbose)
    log(f"predicting {_describe(data)}")
    with _work_errors():
        return _labels_and_scores(est, data.X_pairs)


def _refuse_swapped(model: str, folder: str) -> None:
    """A folder given as MODEL and a file as the folder: the two arguments were swapped."""
    if Path(model).is_dir() and Path(folder).is_file():
        raise CLIError(
            f"MODEL '{model}' is a folder and the folder argument '{folder}' is a file: the two "
            "look swapped; the model file comes first",
            EXIT_USAGE,
        )


def _cmd_predict(args: argparse.Namespace, log: _Log) -> int:
    from ..imageclef import write_scores, write_submission

    out = _output_file(args.output, "submission file")
    _refuse_swapped(args.model, args.test_dir)
    scores_out = None if args.scores is None else _output_file(args.scores, "scores file")
    if scores_out is not None and scores_out.resolve() == out.resolve():
        raise CLIError("--scores and -o name the same file; give two", EXIT_USAGE)
    model = load_model(args.model, allow_pickle=args.allow_pickle)
    final = _final_step(model["estimator"])
    if scores_out is not None and not hasattr(final, "predict_proba"):
        raise CLIError(
            f"--scores: the model's {type(final).__name__} gives no probabilities; leave "
            "--scores out",
            EXIT_USAGE,
        )
    data = _load_split(args.test_dir, command="predict", pool_with=args.pool_with)
    _pooling_note(model, args, log)
    if data.split == "train":
        log(
            f"{args.test_dir} is a training layout: predicting all its real images and ignoring "
            f"their labels (use '{PROG} evaluate' to score against them)"
        )
    pred, proba = _predict(model, data, log, args.verbose)
    with _work_errors():
        write_submission(data.ids, pred, out)
        if scores_out is not None:
            write_scores(data.ids, proba, scores_out)
    n, used = len(pred), int(pred.sum())
    print(f"wrote {n} predictions to {out}")
    if scores_out is not None:
        print(f"wrote {n} scores to {scores_out}, highest P(used) first")
    print(f"predicted used: {used} of {n} real images ({100.0 * used / n:.1f}%)")
    return EXIT_OK


def _cmd_evaluate(args: argparse.Namespace, log: _Log) -> int:
    from ..metrics import format_reports, membership_report

    _refuse_swapped(args.model, args.data_dir)
    model = load_model(args.model, allow_pickle=args.allow_pickle)
    data = _load_split(args.data_dir, want="train", command="evaluate", pool_with=args.pool_with)
    _pooling_note(model, args, log)
    pred, proba = _predict(model, data, log, args.verbose)
    report = membership_report(data.y, pred, y_score=proba, output_dict=True)
    name = type(_final_step(model["estimator"])).__name__
    print(f"Membership metrics on {args.data_dir} ({_describe(data)})")
    print(format_reports({name: report}))
    train_dir = model.get("train_dir")
    if train_dir and Path(train_dir) == Path(args.data_dir).resolve():
        print("note: this is the folder the model was fitted on; these numbers are optimistic")
    return EXIT_OK


def _cmd_report(args: argparse.Namespace, log: _Log) -> int:
    from ..plotting import _split_model

    out = _output_file(args.output, "report file")
    _refuse_swapped(args.model, args.data_dir)
    model = load_model(args.model, allow_pickle=args.allow_pickle)
    est = model["estimator"]
    try:
        _, _, clf = _split_model(est)
    except TypeError:
        clf = None
    if clf is None:
        raise CLIError(
            f"model file '{args.model}' holds a {type(est).__name__}; the report needs a "
            f"pipeline from '{PROG} fit' (an embedder, a candidate selector and a classifier), "
            "to show each real image's nearest generated images",
            EXIT_USAGE,
        )
    data = _load_split(args.data_dir, command="report", pool_with=args.pool_with)
    _pooling_note(model, args, log)
    if data.y is not None:
        log(
            f"{args.data_dir} is labelled (training layout): the report adds kappa, AUC, the "
            "confusion matrix and the ROC curve"
        )
    if {"embed", "clf"} <= set(est.named_steps):
        _set_verbosity(est, args.verbose)
    log(f"scoring {_describe(data)} and writing the report")
    source = str(args.model)
    if model.get("train_dir"):
        source += f" (fitted on {model['train_dir']}"
        source += f", {model['created']})" if model.get("created") else ")"
    with _work_errors():
        _write_report(
            est,
            data.X_pairs,
            out,
            y=data.y,
            n_candidates=args.candidates,
            max_rows=args.max_rows,
            model_source=source,
            data_source=str(args.data_dir),
            **({} if args.title is None else {"title": args.title}),
        )
    n = len(data.X_pairs)
    shown = n if args.max_rows is None else min(n, args.max_rows)
    print(
        f"wrote {out}: {shown} of {n} real images ranked by P(used), each beside its "
        f"{args.candidates} nearest generated images"
        + ("; metrics against the folder's labels" if data.y is not None else "")
    )
    print("open it in a browser: it is one self-contained file (no network needed)")
    return EXIT_OK


def _write_report(*args: Any, **kwargs: Any) -> Path:
    """:func:`~skfingerprint.write_report`, with a missing jinja2 or matplotlib said plainly."""
    try:
        from ..report import write_report

        return write_report(*args, **kwargs)
    except ImportError as exc:
        raise CLIError(
            f"the HTML report needs {exc.name or 'jinja2 and matplotlib'}, which is not "
            "installed: pip install 'jinja2>=3.1' 'matplotlib>=3.7'"
        ) from exc
