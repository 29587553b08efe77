"""The ``skfingerprint`` argument parser: sub-commands, their options and argument types.

Imports no torch, timm or FAISS: ``skfingerprint --help`` stays fast.
"""

from __future__ import annotations

import argparse

from .._contracts import LAYER_STRING
from . import _commands, _demo
from ._common import PROG

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
    from .. import __version__

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

    # the other split's generated images, for the commands that read a folder
    pooled = argparse.ArgumentParser(add_help=False)
    pooled.add_argument(
        "--pool-with",
        action="append",
        metavar="DIR",
        help="also judge the real images against DIR/generated/ and among DIR's real images "
        "(its labels unread; repeatable): another ImageCLEF folder of the SAME generative "
        "model, e.g. the test folder when fitting and the training folder when predicting "
        "(ImageCLEFmed GANs 2025's test images come from the same model); pays on the "
        "benchmark, misleads with another model's folder",
    )

    # --- fit
    fit = sub.add_parser(
        "fit",
        parents=[common, pooled],
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
            f"  {PROG} fit data/train -o m.skops --layers L3+6+9 --k 50 --cache-dir cache/\n"
            f"  {PROG} fit data/train -o m.skops --pool-with data/test  # one generator's\n"
            "                                   # samples in both folders: judge against all\n\n"
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
        choices=("auto", "gated", "mean", "concat"),
        default="auto",
        help="how the blocks are fused (default: auto, the learned gate with the paper's "
        "features, equal weights with relation scores, whose head the gate would overfit)",
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
        "--used-fraction",
        type=_float_in(0.0, 1.0),
        default=None,
        metavar="F",
        help="the share of the images to judge that you know to be used, where it differs "
        "from the training split's: the linear head marks that share (default: the training "
        "split's)",
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
    fit.set_defaults(func=_commands._cmd_fit)

    # --- predict
    pred = sub.add_parser(
        "predict",
        parents=[common, pooled],
        formatter_class=_Formatter,
        help="write a submission file for a test folder",
        description=(
            "Label the real images of a folder with a fitted model and write the ImageCLEF\n"
            "submission: one line '<image id>,<0|1>' per real image (1 = used in training).\n"
            "A training folder is accepted too: all its real images are labelled."
        ),
        epilog=(
            f"examples:\n  {PROG} predict model.skops data/test -o submission.csv\n"
            f"  {PROG} predict m.skops data/test -o submission.csv --pool-with data/train\n\n"
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
    pred.set_defaults(func=_commands._cmd_predict)

    # --- evaluate
    ev = sub.add_parser(
        "evaluate",
        parents=[common, pooled],
        formatter_class=_Formatter,
        help="score a model on a labelled folder",
        description=(
            "Predict the real images of a labelled (training-layout) folder and print Cohen's\n"
            "kappa (the official metric), accuracy, precision, recall and F1; with a model that\n"
            "gives P(used), also ROC AUC and the true-positive rate at 1% false positives."
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
    ev.set_defaults(func=_commands._cmd_evaluate)

    # --- report
    rp = sub.add_parser(
        "report",
        parents=[common, pooled],
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
    rp.set_defaults(func=_commands._cmd_report)

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
    demo.set_defaults(func=_demo._cmd_demo)
    return parser
