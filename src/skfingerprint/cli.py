"""``skfingerprint``: audit a generative model for training-data leaks from the command line.

::

    skfingerprint fit TRAIN_DIR -o model.skops        # learn from a labelled folder
    skfingerprint predict model.skops TEST_DIR -o submission.csv
    skfingerprint evaluate model.skops TRAIN_DIR       # score against known labels
    skfingerprint report model.skops TEST_DIR -o report.html   # an HTML report to read
    skfingerprint demo                                  # everything, on built-in synthetic data

Exit status: 0 success, 1 the work failed, 2 the command line or its inputs are wrong,
130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._contracts import LAYER_STRING
from .persistence import ModelFileError, load_model, save_model

__all__ = ["CLIError", "build_parser", "main"]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

DEMO_MARKER = ".skfingerprint-demo"

PROG = "skfingerprint"

LAYOUT_HELP = """\
ImageCLEFmed GANs folder layout (one folder per split; PNG, JPEG, TIFF or BMP files):

  training split (labelled)            test split (unlabelled)
    TRAIN_DIR/generated/*.png            TEST_DIR/generated/*.png
    TRAIN_DIR/real_used/*.png            TEST_DIR/real_unknown/*.png
    TRAIN_DIR/real_not_used/*.png

  generated/      images the generative model produced (the "library")
  real_used/      real images that WERE in the generator's training set (label 1)
  real_not_used/  real images that were NOT (label 0)
  real_unknown/   real images to decide about

An image's id is its file name without extension; ids must be unique within a split.
"""

EXIT_HELP = """\
exit status: 0 success; 1 the work failed (unreadable image, missing pretrained weights, ...);
2 wrong command line or inputs (missing folder, wrong layout, not a model file); 130 interrupted.
"""


class CLIError(Exception):
    """An expected error: printed as ``error: <message>`` without a traceback.

    Parameters
    ----------
    message : str
        What went wrong and, where possible, how to fix it.
    code : int, default=1
        Exit status: 2 for a wrong command line or input, 1 for a failure while working.
    """

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------------------------
# Output helpers
# --------------------------------------------------------------------------------------------


class _Log:
    """Status lines on stderr (results go to stdout), with the time since the start."""

    def __init__(self, verbose: int = 0) -> None:
        self.verbose = verbose
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        elapsed = time.perf_counter() - self.start
        print(f"[{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _short_warnings():
    """Show warnings as ``warning: <message>`` lines (no source line), then restore."""
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {message}", file=sys.stderr if file is None else file)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original


# --------------------------------------------------------------------------------------------
# Argument checking
# --------------------------------------------------------------------------------------------


def _layers_arg(text: str) -> str:
    if not LAYER_STRING.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of blocks like 'L3+6+9' or '3+6+9' (1-based block numbers)"
        )
    return text.strip()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return value


def _seed_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value < 2**32 - 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**32 - 2]; got {value}")
    return value


def _float_in(lo: float, hi: float, allow_none: bool = False, allow_auto: bool = False):
    def parse(text: str):
        if allow_none and text.strip().lower() == "none":
            return None
        if allow_auto and text.strip().lower() == "auto":
            return "auto"
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be in [{lo:g}, {hi:g}]; got {value:g}")
        return value

    return parse


def _existing_dir(path: str, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise CLIError(f"{what} '{p}' does not exist", EXIT_USAGE)
    if not p.is_dir():
        raise CLIError(f"{what} '{p}' is not a folder", EXIT_USAGE)
    return p


def _output_file(path: str, what: str) -> Path:
    """Check, before any long work, that ``path`` can be written."""
    p = Path(path)
    if p.is_dir():
        raise CLIError(f"{what} '{p}' is a folder; give a file name", EXIT_USAGE)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise CLIError(
            f"cannot write {what} '{p}': folder '{parent}' does not exist (create it first)",
            EXIT_USAGE,
        )
    if not os.access(parent, os.W_OK):
        raise CLIError(f"cannot write {what} '{p}': folder '{parent}' is not writable", EXIT_USAGE)
    return p


def _load_split(path: str, *, want: str | None = None, command: str = ""):
    """Read an ImageCLEF folder; layout problems are usage errors (exit 2)."""
    from .imageclef import load_imageclef_gans
    from .images import ImageLoadError

    root = _existing_dir(path, "folder")
    try:
        data = load_imageclef_gans(root)
    except ImageLoadError as exc:
        raise CLIError(str(exc), EXIT_FAILURE) from None
    except (FileNotFoundError, ValueError) as exc:
        raise CLIError(
            f"{exc}\n(see '{PROG} {command} --help' for the layout)", EXIT_USAGE
        ) from None
    if want == "train" and data.split != "train":
        raise CLIError(
            f"'{root}' is a test layout (real_unknown/): it has no labels. '{command}' needs a "
            "training layout with real_used/ and real_not_used/ "
            + (
                f"(use '{PROG} predict MODEL {root} -o submission.csv' to label these images)"
                if command == "evaluate"
                else ""
            ),
            EXIT_USAGE,
        )
    return data


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


def _pipeline_from_args(args: argparse.Namespace):
    from .pipeline import TINY_CANET, TINY_VIT, make_fingerprint_pipeline

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
    if data.y is not None:
        used = int(data.y.sum())
        return (
            f"{n_real} real images ({used} used, {n_real - used} not used) and "
            f"{n_gen} generated images"
        )
    return f"{n_real} real images and {n_gen} generated images"


def _weights(embed) -> str:
    if embed.checkpoint is not None:
        return f"weights from {embed.checkpoint}"
    return "pretrained" if embed.pretrained else "random init"


def _cmd_fit(args: argparse.Namespace, log: _Log) -> int:
    from .metrics import format_reports, membership_report

    out = _output_file(args.output, "model file")
    pipe = _pipeline_from_args(args)
    _set_verbosity(pipe, args.verbose)
    data = _load_split(args.train_dir, want="train", command="fit")
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
        pred = pipe.predict(data.X_pairs)
    report = membership_report(data.y, pred, output_dict=True)
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
    from ._vit import WeightsUnavailableError

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


def _predict(model: dict, data, log: _Log, verbose: int):
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
        return est.predict(data.X_pairs)


def _refuse_swapped(model: str, folder: str) -> None:
    """A folder given as MODEL and a file as the folder: the two arguments were swapped."""
    if Path(model).is_dir() and Path(folder).is_file():
        raise CLIError(
            f"MODEL '{model}' is a folder and the folder argument '{folder}' is a file: the two "
            "look swapped; the model file comes first",
            EXIT_USAGE,
        )


def _cmd_predict(args: argparse.Namespace, log: _Log) -> int:
    from .imageclef import write_scores, write_submission

    out = _output_file(args.output, "submission file")
    _refuse_swapped(args.model, args.test_dir)
    scores_out = None if args.scores is None else _output_file(args.scores, "scores file")
    if scores_out is not None and scores_out.resolve() == out.resolve():
        raise CLIError("--scores and -o name the same file; give two", EXIT_USAGE)
    model = load_model(args.model, allow_pickle=args.allow_pickle)
    data = _load_split(args.test_dir, command="predict")
    if data.split == "train":
        log(
            f"{args.test_dir} is a training layout: predicting all its real images and ignoring "
            f"their labels (use '{PROG} evaluate' to score against them)"
        )
    pred = _predict(model, data, log, args.verbose)
    with _work_errors():
        write_submission(data.ids, pred, out)
        if scores_out is not None:
            proba = model["estimator"].predict_proba(data.X_pairs)[:, 1]
            write_scores(data.ids, proba, scores_out)
    n, used = len(pred), int(pred.sum())
    print(f"wrote {n} predictions to {out}")
    if scores_out is not None:
        print(f"wrote {n} scores to {scores_out}, highest P(used) first")
    print(f"predicted used: {used} of {n} real images ({100.0 * used / n:.1f}%)")
    return EXIT_OK


def _cmd_evaluate(args: argparse.Namespace, log: _Log) -> int:
    from .metrics import format_reports, membership_report

    _refuse_swapped(args.model, args.data_dir)
    model = load_model(args.model, allow_pickle=args.allow_pickle)
    data = _load_split(args.data_dir, want="train", command="evaluate")
    pred = _predict(model, data, log, args.verbose)
    report = membership_report(data.y, pred, output_dict=True)
    name = type(
        model["estimator"][-1] if hasattr(model["estimator"], "steps") else model["estimator"]
    ).__name__
    print(f"Membership metrics on {args.data_dir} ({_describe(data)})")
    print(format_reports({name: report}))
    train_dir = model.get("train_dir")
    if train_dir and Path(train_dir) == Path(args.data_dir).resolve():
        print("note: this is the folder the model was fitted on; these numbers are optimistic")
    return EXIT_OK


def _cmd_report(args: argparse.Namespace, log: _Log) -> int:
    from .plotting import _split_model

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
    data = _load_split(args.data_dir, command="report")
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
        from .report import write_report

        return write_report(*args, **kwargs)
    except ImportError as exc:
        raise CLIError(
            f"the HTML report needs {exc.name or 'jinja2 and matplotlib'}, which is not "
            "installed: pip install 'jinja2>=3.1' 'matplotlib>=3.7'"
        ) from exc


# --- demo ------------------------------------------------------------------------------------

#: Sizes of the demo's synthetic task (per split; the test split brings its own library, as in
#: ImageCLEF). ``distortion`` 0.75 sits between the generator's easy (0.5) and hard (1.0) copies.
DEMO_TASK = dict(n_used=100, n_not_used=100, n_generated=400, image_size=64, distortion=0.75)
DEMO_TASK_QUICK = dict(n_used=24, n_not_used=24, n_generated=72, image_size=32, distortion=0.75)


def _prepare_demo_dir(out: Path) -> None:
    if out.exists():
        if not out.is_dir():
            raise CLIError(f"--output '{out}' exists and is not a folder", EXIT_USAGE)
        if any(out.iterdir()) and not (out / DEMO_MARKER).is_file():
            raise CLIError(
                f"--output '{out}' exists, is not empty and is not an earlier demo's folder; "
                "pick a new or empty folder",
                EXIT_USAGE,
            )
        for sub in ("train", "test"):  # an earlier demo's data: replace it
            if (out / sub).is_dir():
                shutil.rmtree(out / sub)
    out.mkdir(parents=True, exist_ok=True)
    (out / DEMO_MARKER).write_text("written by 'skfingerprint demo'; safe to delete\n")


def _cmd_demo(args: argparse.Namespace, log: _Log) -> int:
    import numpy as np
    from sklearn.pipeline import Pipeline

    from .baselines import MaxSimilarityClassifier, PixelNearestNeighbor
    from .datasets import make_synthetic_leak, write_imageclef_layout
    from .imageclef import write_submission
    from .metrics import format_reports, membership_report
    from .pipeline import TINY_CANET, TINY_VIT, make_fingerprint_pipeline

    out = Path(args.output)
    _prepare_demo_dir(out)
    sizes = DEMO_TASK_QUICK if args.quick else DEMO_TASK
    seed = args.seed
    log(
        "making a synthetic leak task: {n_used} used + {n_not_used} not-used real CT-like "
        "slices and {n_generated} generated images per split, {image_size}x{image_size}, "
        "distortion {distortion}".format(**sizes)
    )
    train_task = make_synthetic_leak(**sizes, random_state=seed)
    test_task = make_synthetic_leak(**sizes, random_state=seed + 1)
    write_imageclef_layout(train_task, out / "train", split="train")
    write_imageclef_layout(test_task, out / "test", split="test")
    log(f"wrote the ImageCLEF layout to {out / 'train'} and {out / 'test'}")
    train = _load_split(str(out / "train"), want="train", command="demo")
    test = _load_split(str(out / "test"), command="demo")
    truth = dict(zip(test_task.ids, test_task.y, strict=True))
    y_test = np.asarray([truth[i] for i in test.ids])

    canet = dict(TINY_CANET)
    embed_extra = {}
    k = 100
    if args.quick:
        canet["max_epochs"] = 5
        embed_extra["gate_epochs"] = 30
        k = 20
    embed_params = embed_extra or None
    pipe = make_fingerprint_pipeline(
        **TINY_VIT, k=k, random_state=seed, embedder_params=embed_params
    )
    paper = make_fingerprint_pipeline(
        "canet", **TINY_VIT, features="paper", k=k, random_state=seed,
        embedder_params=embed_params, **canet,
    )  # fmt: skip
    for p in (pipe, paper):
        _set_verbosity(p, args.verbose)
    log(
        "fitting the default pipeline: relation scores of each real image in pixel space -> "
        "logistic regression" + ("" if args.verbose else "  (add -v for progress)")
    )
    with _work_errors():
        pipe.fit(train.X_pairs, train.y)
        log(
            "fitting the paper's method (tiny random ViT, gated fusion, FAISS top-"
            f"{k}, CANet) and the baselines: max-similarity on its embeddings, pixel nearest "
            "neighbour"
        )
        paper.fit(train.X_pairs, train.y)
        # The baseline shares the paper's fitted embedder and selector: only the classifier
        # differs.
        candidates = paper[:-1].transform(train.X_pairs)
        maxsim = Pipeline(
            [
                ("embed", paper.named_steps["embed"]),
                ("select", paper.named_steps["select"]),
                ("clf", MaxSimilarityClassifier().fit(candidates, train.y)),
            ]
        )
        pixel = PixelNearestNeighbor(image_size=sizes["image_size"]).fit(train.X_pairs, train.y)
        log("predicting the test split")
        proba = pipe.predict_proba(test.X_pairs)[:, 1]
        preds = {
            "Default": pipe.predict(test.X_pairs),
            "CANet+ViT": paper.predict(test.X_pairs),
            "MaxSim+ViT": maxsim.predict(test.X_pairs),
            "PixelNN": pixel.predict(test.X_pairs),
        }
    reports = {name: membership_report(y_test, p, output_dict=True) for name, p in preds.items()}
    _set_verbosity(pipe, 0)
    with _work_errors():
        submission = write_submission(test.ids, preds["Default"], out / "submission.csv")
        save_model(pipe, out / "model.skops", train_dir=str((out / "train").resolve()))

    # Which real image each generated image copies: known here, never in a real audit.
    copies = {
        g: (test_task.ids[src] if src >= 0 else "")
        for g, src in zip(test_task.generated_ids, test_task.generated_source, strict=True)
    }
    source = [copies[g] for g in test.X_pairs.library.ids]
    figure = out / "leak_candidates.png"
    try:
        with _work_errors():
            _demo_figure(test.X_pairs, pipe, y_test, proba, source, figure)
    except ImportError:
        figure = None
        log("matplotlib is not installed: skipped leak_candidates.png (pip install matplotlib)")

    report = out / "report.html"
    try:
        with _work_errors():
            _write_report(
                pipe,
                test.X_pairs,
                report,
                y=y_test,
                title="skfingerprint demo: audit of the synthetic test split",
                model_source=str(out / "model.skops"),
                data_source=f"{out / 'test'} (true labels known from the synthetic generator)",
            )
    except CLIError as exc:
        if not isinstance(exc.__cause__, ImportError):
            raise
        report = None
        log(f"skipped report.html: {exc}")

    n_test, used = len(y_test), int(y_test.sum())
    print(
        f"Test split: {n_test} real images ({used} used, {n_test - used} not used) against "
        f"{len(test.X_pairs.library)} generated images; synthetic generator, "
        f"distortion {sizes['distortion']}."
    )
    print("All four were fitted on train/ only; kappa is the official metric.")
    print()
    print(format_reports(reports))
    print(_demo_verdict({name: r["kappa"] for name, r in reports.items()}))
    print()
    print("  Default     make_fingerprint_pipeline(): relation scores of each real image against")
    print(f"              the library and the other reals (pixels, top-{k} candidates), logistic")
    print("              regression, threshold learned for kappa")
    print("  CANet+ViT   the paper's method: tiny ViT (random weights, none downloaded), gated")
    print(f"              fusion, FAISS top-{k} candidates, CANet (P(used) > 0.6)")
    print("  MaxSim+ViT  one learned threshold on the best cosine, the paper's embeddings")
    print("  PixelNN     one learned threshold on the best pixel-space cosine")
    print()
    print(f"wrote {submission} ({n_test} lines: <id>,<0|1>, the default pipeline's predictions)")
    if figure is not None:
        print(f"wrote {figure}")
    if report is not None:
        print(f"wrote {report} (the audit report: open it in a browser)")
    print(
        f"wrote {out / 'model.skops'}; try: {PROG} evaluate {out / 'model.skops'} {out / 'train'}"
    )
    return EXIT_OK


def _demo_verdict(kappa: dict[str, float]) -> str:
    """One line that reads the demo's table: does the default beat the other methods?"""
    others = {name: k for name, k in kappa.items() if name != "Default"}
    best = max(others, key=others.get)
    if kappa["Default"] > others[best]:
        return (
            f"The default pipeline beats every other method here (kappa {kappa['Default']:.3f} "
            f"vs {others[best]:.3f} for {best})."
        )
    return (
        f"{best} beats the default pipeline here (kappa {others[best]:.3f} vs "
        f"{kappa['Default']:.3f}): with a random, untrained ViT the scores rest on pixels "
        "alone. Try pretrained weights (drop --tiny with a network, or --checkpoint FILE), and "
        "compare with PixelNN on your own data before trusting either."
    )


def _demo_figure(X_pairs, pipe, y, proba, source, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    from .plotting import plot_leak_candidates

    fig = Figure(figsize=(11, 10.2), layout="constrained")
    plot_leak_candidates(
        X_pairs, pipe, y=y, proba=proba, library_source=source, n_rows=4, n_candidates=4, fig=fig
    )
    fig.savefig(path, dpi=100)


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=100)


def _add_allow_pickle(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="load a joblib/pickle model file (fit --format joblib). Loading a pickle runs any "
        "code it holds: only for files whose every writer you trust",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``skfingerprint`` argument parser (sub-commands fit, predict, evaluate, report, demo).

    Returns
    -------
    argparse.ArgumentParser

    Examples
    --------
    >>> from skfingerprint.cli import build_parser
    >>> args = build_parser().parse_args(["fit", "train/", "-o", "model.skops", "--tiny"])
    >>> args.command, args.output, args.tiny
    ('fit', 'model.skops', True)
    """
    from . import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=_Formatter,
        description=(
            "Audit a generative model (GAN, diffusion model) of medical images for training-data\n"
            "leaks: given the images it generated, decide which real images it was trained on.\n"
            "Method: ViT embeddings -> FAISS nearest generated images -> CANet classifier."
        ),
        epilog=(
            "typical session:\n"
            f"  {PROG} demo                                    # try it on synthetic data\n"
            f"  {PROG} fit train/ -o model.skops              # learn from labelled images\n"
            f"  {PROG} evaluate model.skops validation/       # score on labelled images\n"
            f"  {PROG} predict model.skops test/ -o submission.csv\n"
            f"  {PROG} report model.skops test/ -o report.html   # ranked images, evidence\n\n"
            f"Run '{PROG} COMMAND --help' for a command's options.\n\n"
            + LAYOUT_HELP
            + "\n"
            + EXIT_HELP
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="show progress on stderr (-v): a bar per ViT pass on a terminal, else one line "
        "when it ends, and CANet's loss per epoch; -vv adds the pipeline's step timings",
    )

    # --- fit
    fit = sub.add_parser(
        "fit",
        parents=[common],
        formatter_class=_Formatter,
        help="learn a model from a labelled (training) folder",
        description=(
            "Fit the audit pipeline on a labelled ImageCLEF training folder and save it.\n"
            "Prints the metrics on the training images themselves (optimistic)."
        ),
        epilog=(
            "examples:\n"
            f"  {PROG} fit data/train -o model.skops                 # ViT-B/16, pretrained\n"
            f"  {PROG} fit data/train -o tiny.skops --tiny --seed 1  # small random ViT\n"
            f"  {PROG} fit data/train -o m.skops --layers L3+6+9 --k 50 --cache-dir cache/\n\n"
            "Pretrained weights come from timm's hub cache (downloaded once). Offline, pass\n"
            "--checkpoint FILE or --tiny.\n\n" + LAYOUT_HELP + "\n" + EXIT_HELP
        ),
    )
    fit.add_argument("train_dir", metavar="TRAIN_DIR", help="training folder (layout below)")
    fit.add_argument(
        "-o", "--output", required=True, metavar="MODEL", help="model file to write (.skops)"
    )
    fit.add_argument(
        "--classifier",
        choices=("linear", "canet", "maxsim"),
        default="linear",
        help="linear: a logistic regression on relation scores (default); canet: the paper's "
        "attention net over each image's candidates; maxsim: one threshold on the best cosine "
        "(baseline)",
    )
    fit.add_argument(
        "--features",
        choices=("relations", "paper"),
        default="relations",
        help="what each candidate carries: relation scores in pixels (and a trained ViT's "
        "space) (default), or the paper's [real, candidate, cosine] vectors",
    )
    fit.add_argument(
        "--model",
        metavar="NAME",
        default=None,
        help="timm ViT name (default vit_base_patch16_224)",
    )
    fit.add_argument(
        "--pretrained",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="use timm's pretrained weights (default: yes, unless --checkpoint or --tiny)",
    )
    fit.add_argument("--checkpoint", metavar="FILE", help="local ViT weights (.safetensors/.pth)")
    fit.add_argument(
        "--tiny",
        action="store_true",
        help="a small randomly initialised ViT (64x64 input, 4 blocks): no download, seconds "
        "on a CPU; for trying things out, not for real audits",
    )
    fit.add_argument(
        "--layers",
        type=_layers_arg,
        metavar="L3+6+9",
        help="ViT blocks (1-based) whose CLS tokens are fused (default: depth/4, /2, 3/4)",
    )
    fit.add_argument(
        "--fusion",
        choices=("gated", "mean", "concat"),
        default="gated",
        help="how the blocks are fused (default: gated, learned)",
    )
    fit.add_argument(
        "--finetune",
        choices=("none", "last", "all"),
        default="none",
        help="contrastively fine-tune the ViT on the images first (default: none)",
    )
    fit.add_argument(
        "--k",
        type=_positive_int,
        default=100,
        metavar="K",
        help="generated candidates per real image (default 100)",
    )
    fit.add_argument(
        "--min-similarity",
        type=_float_in(-1.0, 1.0, allow_none=True, allow_auto=True),
        default="auto",
        metavar="S",
        help="mask candidates with a lower cosine; 'none' keeps all (default auto: 0.6 with "
        "--features paper, none with relations)",
    )
    fit.add_argument(
        "--threshold",
        type=_float_in(0.0, 1.0, allow_auto=True),
        default="auto",
        metavar="P",
        help="CANet says 'used' when P(used) > P (default auto: 0.6 with --features paper, "
        "0.5 with relations); the other classifiers learn theirs",
    )
    fit.add_argument(
        "--epochs", type=_positive_int, metavar="N", help="CANet training epochs (default 50)"
    )
    fit.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="keep ViT embeddings on disk there, so later fits skip the ViT",
    )
    fit.add_argument("--seed", type=_seed_arg, default=0, help="random seed (default 0)")
    fit.add_argument(
        "--format",
        choices=("skops", "joblib"),
        default="skops",
        help="model file format: skops (default) loads without running code from the file; "
        "joblib is a pickle, which runs whatever it holds when loaded: only for files that "
        "never leave your hands",
    )
    fit.set_defaults(func=_cmd_fit)

    # --- predict
    pred = sub.add_parser(
        "predict",
        parents=[common],
        formatter_class=_Formatter,
        help="write a submission file for a test folder",
        description=(
            "Label the real images of a folder with a fitted model and write the ImageCLEF\n"
            "submission: one line '<image id>,<0|1>' per real image (1 = used in training).\n"
            "A training folder is accepted too: all its real images are labelled."
        ),
        epilog=(
            f"example:\n  {PROG} predict model.skops data/test -o submission.csv\n\n"
            "Model files are skops files: loading one cannot run code from it. A joblib model\n"
            "(fit --format joblib) needs --allow-pickle: only for files you trust.\n\n"
            + LAYOUT_HELP
            + "\n"
            + EXIT_HELP
        ),
    )
    pred.add_argument("model", metavar="MODEL", help=f"model file from '{PROG} fit'")
    pred.add_argument("test_dir", metavar="TEST_DIR", help="test (or training) folder")
    _add_allow_pickle(pred)
    pred.add_argument(
        "-o", "--output", required=True, metavar="CSV", help="submission file to write"
    )
    pred.add_argument(
        "--scores",
        metavar="CSV",
        help="also write every real image's P(used), ranked highest first (rank,id,p_used)",
    )
    pred.set_defaults(func=_cmd_predict)

    # --- evaluate
    ev = sub.add_parser(
        "evaluate",
        parents=[common],
        formatter_class=_Formatter,
        help="score a model on a labelled folder",
        description=(
            "Predict the real images of a labelled (training-layout) folder and print Cohen's\n"
            "kappa (the official metric), accuracy, precision, recall and F1."
        ),
        epilog=(
            f"example:\n  {PROG} evaluate model.skops data/validation\n\n"
            "A test folder (real_unknown/) has no labels and is refused.\n\n"
            + LAYOUT_HELP
            + "\n"
            + EXIT_HELP
        ),
    )
    ev.add_argument("model", metavar="MODEL", help=f"model file from '{PROG} fit'")
    ev.add_argument("data_dir", metavar="DIR", help="labelled folder (training layout)")
    _add_allow_pickle(ev)
    ev.set_defaults(func=_cmd_evaluate)

    # --- report
    rp = sub.add_parser(
        "report",
        parents=[common],
        formatter_class=_Formatter,
        help="write an HTML audit report for a folder",
        description=(
            "Score the real images of a folder with a fitted model and write one self-contained\n"
            "HTML file (every image inline; opens offline): the real images ranked by P(used),\n"
            "each beside its nearest generated images and their similarities, the distribution\n"
            "of P(used) with the decision threshold, and the hubs (generated images nearest to\n"
            "many real images). A labelled (training-layout) folder adds Cohen's kappa with a\n"
            "bootstrap 95% interval, ROC AUC, the confusion matrix and the ROC curve."
        ),
        epilog=(
            "examples:\n"
            f"  {PROG} report model.skops data/test -o report.html\n"
            f"  {PROG} report model.skops data/validation -o val.html --max-rows 100\n\n"
            "Model files are skops files: loading one cannot run code from it. A joblib model\n"
            "(fit --format joblib) needs --allow-pickle: only for files you trust.\n\n"
            + LAYOUT_HELP
            + "\n"
            + EXIT_HELP
        ),
    )
    rp.add_argument("model", metavar="MODEL", help=f"model file from '{PROG} fit'")
    rp.add_argument(
        "data_dir", metavar="DIR", help="test or training folder (its labels are used if any)"
    )
    rp.add_argument("-o", "--output", required=True, metavar="HTML", help="report file to write")
    _add_allow_pickle(rp)
    rp.add_argument(
        "--candidates",
        type=_positive_int,
        default=4,
        metavar="N",
        help="nearest generated images shown beside each real image (default 4)",
    )
    rp.add_argument(
        "--max-rows",
        type=_positive_int,
        default=None,
        metavar="N",
        help="show only the N real images with the highest P(used) (default: all)",
    )
    rp.add_argument("--title", metavar="TEXT", help="the report's title")
    rp.set_defaults(func=_cmd_report)

    # --- demo
    demo = sub.add_parser(
        "demo",
        parents=[common],
        formatter_class=_Formatter,
        help="run everything on built-in synthetic data",
        description=(
            "Make a synthetic leak (CT-like slices; a generator that copies some of its\n"
            "training images with distortions), write it as ImageCLEF train/ and test/ folders,\n"
            "fit the default pipeline (relation scores, logistic regression), the paper's method\n"
            "(tiny random ViT + FAISS + CANet) and two baselines on train/, and score all four\n"
            "on test/ against the known truth. Writes DIR/submission.csv,\n"
            "DIR/leak_candidates.png, DIR/report.html (the audit report) and DIR/model.skops.\n"
            "About 70 s on 2 CPU cores (AVX2); -v shows each step as it ends."
        ),
        epilog=f"example:\n  {PROG} demo --output demo_output\n\n" + EXIT_HELP,
    )
    demo.add_argument(
        "--output",
        "-o",
        default="demo_output",
        metavar="DIR",
        help="folder to write into (new, empty, or an earlier demo's; default demo_output)",
    )
    demo.add_argument("--seed", type=_seed_arg, default=0, help="random seed (default 0)")
    demo.add_argument(
        "--quick", action="store_true", help="a much smaller task (well under a minute)"
    )
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``skfingerprint`` command line.

    Parameters
    ----------
    argv : sequence of str, default=None
        Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns
    -------
    int
        Exit status: 0 success, 1 failure, 2 wrong command line or inputs, 130 interrupted.

    Examples
    --------
    >>> from skfingerprint.cli import main
    >>> main(["demo", "--quick", "--output", "demo_output"])  # doctest: +SKIP
    0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (argparse printed it)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    log = _Log(args.verbose)
    try:
        with _short_warnings():
            return args.func(args, log)
    except CLIError as exc:
        if args.verbose > 1 and exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except ModelFileError as exc:  # a model file that cannot be used: an input problem
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\ninterrupted (Ctrl-C)", file=sys.stderr)
        if getattr(args, "cache_dir", None):
            print(
                f"the ViT embeddings finished so far are kept in '{args.cache_dir}': run again "
                "with the same --cache-dir to start from them",
                file=sys.stderr,
            )
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: show where, and say so
        traceback.print_exc()
        print(
            f"error: unexpected {type(exc).__name__}: {exc} (this is likely a bug in "
            "skfingerprint; please report it with the traceback above)",
            file=sys.stderr,
        )
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
