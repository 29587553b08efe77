"""The skfingerprint command line: fit -> predict -> evaluate, the demo, and every bad input."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
import skops.io
from sklearn.base import BaseEstimator
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from skfingerprint import (
    clear_memory_cache,
    load_imageclef_gans,
    load_model,
    membership_report,
    read_submission,
    tpr_at_fpr,
)
from skfingerprint.cli import main
from skfingerprint.datasets import make_synthetic_leak, write_imageclef_layout

from .conftest import as_bits, spy_on

# A small fast fit: tiny random ViT, 10 candidates, the default (linear) classifier.
FIT_FAST = ["--tiny", "--k", "10", "--seed", "0"]  # the default classifier (linear head)
CANET = ["--classifier", "canet"]
PAPER = ["--classifier", "canet", "--features", "paper"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("clef")
    kw = dict(image_size=32, leak_fraction=0.6, distortion=0.3)
    train = make_synthetic_leak(12, 12, 36, random_state=0, **kw)
    test = make_synthetic_leak(10, 10, 30, random_state=1, **kw)
    write_imageclef_layout(train, root / "train", split="train")
    write_imageclef_layout(test, root / "test", split="test")
    return root, train, test


@pytest.fixture(scope="module")
def model(data):
    root = data[0]
    path = root / "model.skops"
    assert main(["fit", str(root / "train"), "-o", str(path), *FIT_FAST]) == 0
    return path


def run(capsys, *argv):
    """Run the CLI in-process; return (exit status, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def expect_error(capsys, code, match, *argv):
    got, out, err = run(capsys, *argv)
    assert got == code, (got, out, err)
    assert match in err, err
    assert err.count("error:") == 1
    assert "Traceback" not in err
    return err


# --- the happy path ---------------------------------------------------------------------------


def test_fit_writes_a_model_and_prints_training_metrics(data, capsys, tmp_path):
    root = data[0]
    path = tmp_path / "model.skops"  # not "maxsim.skops": out names the file and the classifier
    code, out, err = run(capsys, "fit", root / "train", "-o", path, "--classifier", "maxsim",
                         "--tiny", "--k", "10", "--layers", "L2+4")  # fmt: skip
    assert code == 0, err
    assert "kappa" in out and "maxsim" in out and str(path) in out
    assert "24 real images (12 used, 12 not used) and 36 generated images" in err
    assert path.read_bytes()[:4] == b"PK\x03\x04"  # a skops (zip) file by default
    payload = load_model(path)
    assert payload["format"] == "skfingerprint-model"
    assert payload["estimator"].named_steps["embed"].layers_ == (2, 4)
    # the stored and printed training metrics are sklearn's on the saved model's predictions
    # and scores
    split = load_imageclef_gans(root / "train")
    saved = payload["estimator"]
    expected = membership_report(
        split.y,
        saved.predict(split.X_pairs),
        y_score=saved.predict_proba(split.X_pairs)[:, 1],
        output_dict=True,
    )
    assert payload["train_metrics"] == pytest.approx(expected)
    rows = ("kappa", "accuracy", "precision", "recall", "f1", "auc", "TPR@1%FPR")
    for metric, key in zip(rows, [*rows[:-1], "tpr_at_1pct_fpr"], strict=True):
        line = next(x for x in out.splitlines() if x.startswith(metric))
        assert line.split()[-1] == f"{expected[key]:.3f}", metric
    assert [p.name for p in tmp_path.iterdir()] == ["model.skops"]  # no temporary file left


def test_predict_writes_the_submission(data, model, capsys, tmp_path):
    root, _, test = data
    out_csv = tmp_path / "submission.csv"
    code, out, err = run(capsys, "predict", model, root / "test", "-o", out_csv)
    assert code == 0, err
    ids, labels = read_submission(out_csv)
    assert ids == sorted(test.ids)  # one line per real_unknown image, by id
    assert set(labels) <= {0, 1}
    lines = out_csv.read_text().splitlines()
    assert len(lines) == 20 and all(line.count(",") == 1 for line in lines)
    assert lines[0] == f"{ids[0]},{labels[0]}"
    assert f"predicted used: {labels.sum()} of 20 real images" in out
    # the labels are the model's: not all zeros, not another row order
    split = load_imageclef_gans(root / "test")
    expected = load_model(model)["estimator"].predict(split.X_pairs)
    by_id = dict(zip(split.ids, expected, strict=True))
    np.testing.assert_array_equal(labels, [by_id[i] for i in ids])


def test_joblib_format_is_written_on_request_and_read_only_with_allow_pickle(
    data, model, capsys, tmp_path
):
    root = data[0]
    path = tmp_path / "m.joblib"
    assert run(capsys, "fit", root / "train", "-o", path, *FIT_FAST, "--format", "joblib")[0] == 0
    assert path.read_bytes()[:1] == b"\x80"  # a pickle, not the skops zip
    expect_error(capsys, 2, "--allow-pickle", "evaluate", path, root / "train")
    code, out, err = run(capsys, "evaluate", path, root / "train", "--allow-pickle")
    assert code == 0, err
    # the same fit as the skops model: the same metrics
    assert any(line.startswith("kappa") for line in out.splitlines()[2:])
    assert (
        out.splitlines()[2:] == run(capsys, "evaluate", model, root / "train")[1].splitlines()[2:]
    )


def test_predict_accepts_a_training_layout(data, model, capsys, tmp_path):
    root, train, _ = data
    out_csv = tmp_path / "sub.csv"
    code, _, err = run(capsys, "predict", model, root / "train", "-o", out_csv)
    assert code == 0, err
    assert "training layout" in err
    assert read_submission(out_csv)[0] == sorted(train.ids)


def test_evaluate_prints_the_metrics(data, model, capsys):
    code, out, err = run(capsys, "evaluate", model, data[0] / "train")
    assert code == 0, err
    for metric in ("kappa", "accuracy", "precision", "recall", "f1"):
        assert metric in out
    # the printed kappa is sklearn's on the model's own predictions of that folder
    split = load_imageclef_gans(data[0] / "train")
    payload = load_model(model)
    kappa = cohen_kappa_score(split.y, payload["estimator"].predict(split.X_pairs))
    kappa_line = next(line for line in out.splitlines() if line.startswith("kappa"))
    assert kappa_line.split()[-1] == f"{kappa:.3f}"
    assert payload["train_metrics"]["kappa"] == pytest.approx(kappa)  # what fit stored
    # the model gives P(used): AUC and the TPR at 1% FPR of those scores are printed
    proba = payload["estimator"].predict_proba(split.X_pairs)[:, 1]
    auc_line = next(line for line in out.splitlines() if line.startswith("auc"))
    assert auc_line.split()[-1] == f"{roc_auc_score(split.y, proba):.3f}"
    tpr_line = next(line for line in out.splitlines() if line.startswith("TPR@1%FPR"))
    assert tpr_line.split()[-1] == f"{tpr_at_fpr(split.y, proba, 0.01):.3f}"
    assert "LinearRelationClassifier" in out  # the default classifier
    assert "optimistic" in out  # the folder it was fitted on


def test_entry_point_in_a_fresh_process(data, model, tmp_path):
    """The installed console script (or python -m) loads the model and predicts the same."""
    root = data[0]
    script = Path(sys.executable).parent / "skfingerprint"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "skfingerprint.cli"]
    out_csv = tmp_path / "sub.csv"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run(
        [*cmd, "predict", str(model), str(root / "test"), "-o", str(out_csv)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    in_process = tmp_path / "again.csv"
    assert main(["predict", str(model), str(root / "test"), "-o", str(in_process)]) == 0
    assert out_csv.read_text() == in_process.read_text()


def test_fit_v_shows_each_vit_pass_and_canet_epochs_on_stderr(data, capsys, tmp_path):
    # Catches: -v mapped to CANet's verbose only at -vv (training silent at -v), or the epoch
    # log printed on stdout among the results.
    root = data[0]
    clear_memory_cache()  # the ViT passes run (a cached image needs none, and shows none)
    code, out, err = run(capsys, "fit", root / "train", "-o", tmp_path / "m.skops", *FIT_FAST,
                         *CANET, "--epochs", "3", "-v")  # fmt: skip
    assert code == 0, err
    assert "ViT embedding (real images): 24 images in " in err
    assert "ViT embedding (generated images): 36 images in " in err
    assert "\n      3 " in err  # skorch's row of epoch 3
    assert "CANet training: 3 epochs on " in err
    assert "epoch" not in out and "\r" not in err


@pytest.mark.parametrize(
    "verbose, expected",
    [(0, (0, 0, False)), (1, (1, 1, False)), (2, (1, 1, True)), (3, (1, 1, True))],
)
def test_verbosity_levels_reach_the_embedder_canet_and_the_pipeline(verbose, expected):
    # Catches: CANet's epoch log on without -v, the pipeline's step timings dropped or moved
    # from -vv to -vvv, the embedder's progress not following -v.
    from skfingerprint import make_fingerprint_pipeline
    from skfingerprint.cli._commands import _set_verbosity

    pipe = make_fingerprint_pipeline("canet")
    _set_verbosity(pipe, verbose)
    got = (pipe.named_steps["embed"].verbose, pipe.named_steps["clf"].verbose, pipe.verbose)
    assert got == expected
    linear = make_fingerprint_pipeline()  # its classifier has no verbose: nothing set there
    _set_verbosity(linear, verbose)
    assert (linear.named_steps["embed"].verbose, linear.verbose) == (expected[0], expected[2])


def test_demo_quick(tmp_path, capsys):
    out_dir = tmp_path / "demo"
    code, out, err = run(capsys, "demo", "--quick", "--output", out_dir)
    assert code == 0, err
    for name in ("Default", "CANet+ViT", "MaxSim+ViT", "PixelNN", "kappa", "f1"):
        assert name in out
    # every method gives P(used): its AUC and TPR at 1% FPR in the table (all four in [0, 1])
    for row in ("auc", "TPR@1%FPR"):
        values = next(x for x in out.splitlines() if x.startswith(row)).split()[1:]
        assert len(values) == 4 and all(0 <= float(v) <= 1 for v in values), row
    ids, _ = read_submission(out_dir / "submission.csv")
    assert len(ids) == 48
    assert (out_dir / "leak_candidates.png").stat().st_size > 10_000
    # the audit report of the test split, with the synthetic truth as labels
    report = (out_dir / "report.html").read_text()
    assert f"wrote {out_dir / 'report.html'}" in out
    assert report.count('data-kind="real"') == 48 and 'id="kappa"' in report
    assert (out_dir / "train" / "real_used").is_dir()
    assert (out_dir / "test" / "real_unknown").is_dir()
    # the saved model works with the other commands
    assert run(capsys, "evaluate", out_dir / "model.skops", out_dir / "train")[0] == 0
    # running it again into its own folder replaces the earlier data
    assert run(capsys, "demo", "--quick", "--output", out_dir, "--seed", "3")[0] == 0
    assert len(read_submission(out_dir / "submission.csv")[0]) == 48


def test_demo_refuses_a_folder_it_did_not_write(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    expect_error(capsys, 2, "not an earlier demo", "demo", "--quick", "--output", tmp_path)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


# --- bad inputs -------------------------------------------------------------------------------


def test_missing_folder(tmp_path, model, capsys):
    missing = tmp_path / "nope"
    expect_error(capsys, 2, "does not exist", "fit", missing, "-o", tmp_path / "m.skops")
    expect_error(capsys, 2, "does not exist", "predict", model, missing, "-o", tmp_path / "s.csv")
    expect_error(capsys, 2, "does not exist", "evaluate", model, missing)


def test_bad_layout(tmp_path, model, capsys):
    (tmp_path / "bad" / "images").mkdir(parents=True)
    err = expect_error(
        capsys, 2, "not an ImageCLEF GANs folder", "evaluate", model, tmp_path / "bad"
    )
    assert "--help" in err
    (tmp_path / "half" / "real_used").mkdir(parents=True)
    expect_error(capsys, 2, "generated", "fit", tmp_path / "half", "-o", tmp_path / "m.skops")


def test_evaluate_and_fit_refuse_a_test_layout(data, model, capsys, tmp_path):
    test_dir = data[0] / "test"
    err = expect_error(capsys, 2, "test layout", "evaluate", model, test_dir)
    assert "predict" in err  # says what to do instead
    expect_error(capsys, 2, "test layout", "fit", test_dir, "-o", tmp_path / "m.skops", "--tiny")


def test_fit_on_12_bit_reals_in_16_bit_files_warns_that_the_sets_differ(data, tmp_path, capsys):
    """Real PNGs holding 12-bit values in 16 bits beside 8-bit generated PNGs: fit still runs,
    and says on stderr that the real images read 16x darker (an audit that would otherwise
    answer near chance without a word: benchmarks/RESULTS_bitdepth.md)."""
    from PIL import Image

    folder = tmp_path / "train"
    shutil.copytree(data[0] / "train", folder)
    for sub in ("real_used", "real_not_used"):
        for png in (folder / sub).iterdir():
            Image.fromarray(as_bits(np.asarray(Image.open(png).convert("L")), 12)).save(png)
    code, _, err = run(capsys, "fit", folder, "-o", tmp_path / "m.skops", *FIT_FAST)
    assert code == 0, err
    warned = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert warned and all(
        line.startswith("warning: the real images are 16x darker than the generated ones")
        for line in warned
    ), err


def test_unreadable_image_is_a_failure(data, tmp_path, capsys):
    folder = tmp_path / "train"
    shutil.copytree(data[0] / "train", folder)
    bad = sorted((folder / "real_used").iterdir())[0]
    bad.write_bytes(b"this is not a png")
    expect_error(capsys, 1, bad.name, "fit", folder, "-o", tmp_path / "m.skops", *FIT_FAST)


@pytest.mark.parametrize("kind", ["text", "truncated", "other_pickle", "other_skops", "empty"])
def test_bad_model_file(data, model, capsys, tmp_path, kind):
    path = tmp_path / "model.skops"
    if kind == "text":
        path.write_text("hello\n")
        match = "is not a skops model file"
    elif kind == "truncated":
        raw = model.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
        match = "truncated or corrupt"
    elif kind == "other_pickle":
        joblib.dump({"weights": np.zeros(3)}, path)
        match = "loading it runs any code it holds"  # refused before unpickling
    elif kind == "other_skops":
        skops.io.dump({"weights": np.zeros(3)}, path)
        match = "is not a skfingerprint model file (it holds a dict)"
    else:
        path.write_bytes(b"")
        # not just "empty": pytest names this test's tmp_path "test_bad_model_file_empty_0",
        # so any message naming the file would have matched
        match = "is empty (0 bytes)"
    out_csv = tmp_path / "s.csv"
    expect_error(capsys, 2, match, "predict", path, data[0] / "test", "-o", out_csv)
    assert not out_csv.exists()
    expect_error(capsys, 2, match, "evaluate", path, data[0] / "train")


def test_missing_model_file(data, capsys, tmp_path):
    expect_error(capsys, 2, "does not exist", "evaluate", tmp_path / "m.skops", data[0] / "train")


def test_output_folder_is_checked_before_the_work(data, capsys, tmp_path):
    target = tmp_path / "no" / "such" / "m.skops"
    expect_error(capsys, 2, "does not exist", "fit", data[0] / "train", "-o", target, "--tiny")
    expect_error(capsys, 2, "is a folder", "fit", data[0] / "train", "-o", tmp_path, "--tiny")


def test_layers_beyond_the_model_depth(data, capsys, tmp_path):
    expect_error(capsys, 1, "out of range", "fit", data[0] / "train", "-o",
                 tmp_path / "m.skops", "--tiny", "--layers", "L2+9")  # fmt: skip


@pytest.mark.parametrize(
    "argv, match",
    [
        ([], "usage:"),
        (["frobnicate"], "invalid choice"),
        (["fit", "x"], "-o/--output"),
        (["fit", "x", "-o", "m", "--k", "0"], "must be at least 1"),
        (["fit", "x", "-o", "m", "--layers", "six"], "not a list of blocks"),
        (["fit", "x", "-o", "m", "--threshold", "2"], "must be in [0, 1]"),
        (["fit", "x", "-o", "m", "--classifier", "svm"], "invalid choice"),
        (["demo", "--seed", "-1"], "must be in [0, 2**32 - 2]"),
    ],
)
def test_usage_errors(argv, match, capsys):
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert match in err
    assert "Traceback" not in err


def test_conflicting_options(data, capsys, tmp_path):
    train, m = data[0] / "train", tmp_path / "m.skops"
    expect_error(capsys, 2, "drop --model", "fit", train, "-o", m, "--tiny", "--model", "vit_b")
    expect_error(capsys, 2, "no epochs", "fit", train, "-o", m, "--tiny",
                 "--classifier", "maxsim", "--epochs", "3")  # fmt: skip
    expect_error(
        capsys, 2, "checkpoint file", "fit", train, "-o", m, "--checkpoint", tmp_path / "w"
    )


def test_help_explains_the_layout(capsys):
    for argv in (["--help"], ["fit", "--help"], ["predict", "--help"]):
        code, out, _ = run(capsys, *argv)
        assert code == 0
        assert "real_used/" in out and "real_unknown/" in out and "exit status" in out
    code, out, _ = run(capsys, "demo", "--help")
    assert code == 0 and "--quick" in out


def test_keyboard_interrupt(monkeypatch, capsys):
    from skfingerprint.cli import _commands

    def interrupted(args, log):
        raise KeyboardInterrupt

    monkeypatch.setattr(_commands, "_cmd_evaluate", interrupted)
    code, _, err = run(capsys, "evaluate", "m", "d")
    assert code == 130
    assert "interrupted" in err and "Traceback" not in err


def test_unexpected_errors_are_reported_as_bugs(monkeypatch, capsys):
    from skfingerprint.cli import _commands

    def broken(args, log):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(_commands, "_cmd_evaluate", broken)
    code, _, err = run(capsys, "evaluate", "m", "d")
    assert code == 1
    assert "Traceback" in err and "bug" in err


@pytest.mark.parametrize(
    "option, context, param, value",
    [
        (["--threshold", "0.3"], CANET, "clf__threshold", 0.3),
        (["--used-fraction", "0.3"], [], "clf__used_fraction", 0.3),
        (["--min-similarity", "0.4"], [], "select__min_similarity", 0.4),
        (["--min-similarity", "none"], PAPER, "select__min_similarity", None),
        (["--finetune", "last"], [], "embed__finetune", "last"),
        (["--fusion", "gated"], [], "embed__fusion", "gated"),
        (["--fusion", "mean"], PAPER, "embed__fusion", "mean"),
        (["--layers", "L1+3"], [], "embed__layers", "L1+3"),
        (["--k", "7"], [], "select__k", 7),
        (["--seed", "5"], [], "select__random_state", 5),
        (["--epochs", "4"], CANET, "clf__max_epochs", 4),
        (["--features", "paper"], CANET, "select__features", "paper"),
        (["--classifier", "canet"], [], "clf__pair_features", "relations"),
    ],
)
def test_each_fit_option_reaches_the_pipeline(option, context, param, value):
    """Each option of ``fit`` sets the parameter it names in the pipeline it builds, and the
    same command without it builds something else."""
    from skfingerprint.cli import build_parser
    from skfingerprint.cli._commands import _pipeline_from_args

    def params(extra):
        argv = ["fit", "train", "-o", "m.skops", "--tiny", *context, *extra]
        return _pipeline_from_args(build_parser().parse_args(argv)).get_params()

    assert params(option)[param] == value
    assert params([]).get(param, "absent") != value


def test_model_and_checkpoint_options_reach_the_embedder(tmp_path):
    from skfingerprint.cli import build_parser
    from skfingerprint.cli._commands import _pipeline_from_args

    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    argv = ["fit", "t", "-o", "m", "--model", "vit_small_patch16_224", "--checkpoint", weights]
    params = _pipeline_from_args(build_parser().parse_args([str(a) for a in argv])).get_params()
    assert params["embed__model"] == "vit_small_patch16_224"
    assert params["embed__checkpoint"] == str(weights)
    assert params["embed__pretrained"] is False  # the checkpoint's weights replace the hub's


def test_predict_writes_ranked_scores(data, model, capsys, tmp_path):
    """--scores: every real image's P(used) from the model, ranked highest first."""
    import csv

    root = data[0]
    sub, scores = tmp_path / "sub.csv", tmp_path / "scores.csv"
    code, out, err = run(capsys, "predict", model, root / "test", "-o", sub, "--scores", scores)
    assert code == 0, err
    assert "highest P(used) first" in out
    with open(scores, newline="") as f:
        rows = list(csv.DictReader(f))
    split = load_imageclef_gans(root / "test")
    proba = load_model(model)["estimator"].predict_proba(split.X_pairs)[:, 1]
    expected = dict(zip(split.ids, proba, strict=True))
    assert [int(r["rank"]) for r in rows] == list(range(1, 21))
    assert sorted(r["id"] for r in rows) == sorted(split.ids)
    got = np.array([float(r["p_used"]) for r in rows])
    np.testing.assert_allclose(got, [expected[r["id"]] for r in rows], atol=1e-6)
    assert (np.diff(got) <= 0).all()  # ranked
    # the labels are the scores read at the model's threshold: the top is flagged first
    ids, labels = read_submission(sub)
    flagged = {i for i, v in zip(ids, labels, strict=True) if v}
    assert {r["id"] for r in rows[: len(flagged)]} == flagged
    expect_error(
        capsys, 2, "same file", "predict", model, root / "test", "-o", sub, "--scores", sub
    )


def test_predict_with_scores_selects_candidates_once(data, model, capsys, tmp_path, monkeypatch):
    """--scores reads the labels and the scores from one pass of the pipeline's steps: the
    selector's transform runs once, as without --scores (it ran twice, and warned twice, when the
    scores were a second ``predict_proba`` of the whole pipeline)."""
    from skfingerprint import FaissCandidateSelector

    calls = spy_on(monkeypatch, FaissCandidateSelector, "transform")
    root, sub = data[0], tmp_path / "sub.csv"
    assert run(capsys, "predict", model, root / "test", "-o", sub)[0] == 0
    assert [len(X) for _, X in calls] == [20]
    scores = tmp_path / "scores.csv"
    assert run(capsys, "predict", model, root / "test", "-o", sub, "--scores", scores)[0] == 0
    assert [len(X) for _, X in calls] == [20, 20]


def test_swapped_arguments_are_named(data, model, capsys, tmp_path):
    """Before: "model file '<folder>' is not a file". After: says the two were swapped."""
    test_dir = data[0] / "test"
    err = expect_error(capsys, 2, "swapped", "predict", test_dir, model, "-o", tmp_path / "s.csv")
    assert "model file comes first" in err
    expect_error(capsys, 2, "swapped", "evaluate", data[0] / "train", model)


def test_demo_reads_its_own_table():
    from skfingerprint.cli._demo import _demo_verdict

    kappa = {"Default": 0.8, "CANet+ViT": 0.3, "MaxSim+ViT": 0.4, "PixelNN": 0.7}
    auc = {"Default": 0.9, "CANet+ViT": 0.6, "MaxSim+ViT": 0.95, "PixelNN": 0.85}
    won = _demo_verdict(kappa, {**auc, "MaxSim+ViT": 0.7})
    assert won == (
        "The default pipeline beats every other method on kappa here (0.800 vs 0.700 for PixelNN)."
    )
    # another method ranks as well or better: the lead is the threshold's, and it is said
    tie = _demo_verdict(kappa, {**auc, "MaxSim+ViT": 0.9})
    assert tie.endswith(
        " MaxSim+ViT ranks the images as well (AUC 0.900 vs 0.900): there the default's lead "
        "is where it cuts, not what it sees."
    )
    assert _demo_verdict(kappa, auc).startswith(won + " MaxSim+ViT ranks the images as well")
    lost = _demo_verdict({**kappa, "Default": 0.2}, auc)
    assert lost.startswith("PixelNN beats the default") and "--checkpoint" in lost


# --- every status line, message and saved field, exactly --------------------------------------
# Mutation testing (make mutate-cli) showed that checking a word of a message lets a changed or
# lost message pass; these compare whole lines.


def log_lines(err):
    """stderr's status lines without their ``[  1.2s] `` time prefix."""
    return [line.split("] ", 1)[1] for line in err.splitlines() if line.startswith("[")]


def parse(*argv):
    from skfingerprint.cli import build_parser

    return build_parser().parse_args([str(a) for a in argv])


def test_fit_status_lines_saved_fields_and_quiet_saved_model(data, capsys, tmp_path):
    """Catches: a status line lost or changed, ``train_dir`` or ``options`` not saved (or
    saved with the command/output/verbosity), and the model saved still verbose after -v."""
    root = data[0]
    path = tmp_path / "m.skops"
    argv = ["fit", root / "train", "-o", path, *FIT_FAST, "-v"]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    lines = log_lines(err)
    assert lines[0] == f"read {root / 'train'}: 24 real images (12 used, 12 not used) and 36 " \
        "generated images"  # fmt: skip
    assert lines[1] == "fitting: vit_tiny_patch16_224 (random init) -> top-10 candidates -> linear"
    assert lines[-2:] == ["scoring the training images", f"saved the model to {path}"]
    assert out.splitlines()[0] == (
        f"Training metrics on {root / 'train'} (the images the model was fitted on: optimistic)"
    )
    assert out.splitlines()[-1] == f"model saved to {path}"
    payload = load_model(path)
    assert payload["train_dir"] == str((root / "train").resolve())
    expected = {
        k: v
        for k, v in vars(parse(*argv)).items()
        if k not in ("func", "command", "output", "verbose")
    }
    assert payload["options"] == expected and "train_dir" in expected and "k" in expected
    pipe = payload["estimator"]
    assert pipe.verbose is False and pipe.named_steps["embed"].verbose == 0


@pytest.mark.parametrize(
    "extra, expected",
    [
        (
            [],
            "fitting: vit_tiny_patch16_224 (random init) -> top-10 candidates -> linear  "
            "(add -v for progress)",
        ),
        (
            ["--finetune", "last", "-v"],
            "fitting: vit_tiny_patch16_224 (random init, fine-tuned) -> top-10 "
            "candidates -> linear",
        ),
        (
            ["--classifier", "maxsim", "--k", "3"],
            "fitting: vit_tiny_patch16_224 (random init) -> top-3 "
            "candidates -> maxsim  (add -v for progress)",
        ),
    ],
)
def test_fit_says_what_it_fits(data, capsys, tmp_path, monkeypatch, extra, expected):
    """The "fitting:" line names the model, its weights, fine-tuning, k and the classifier
    (the fit itself is stopped right after it, by a ValueError: exit 1)."""
    from sklearn.pipeline import Pipeline

    def stop(self, X, y=None, **params):
        raise ValueError("stopped by the test")

    monkeypatch.setattr(Pipeline, "fit", stop)
    code, _, err = run(capsys, "fit", data[0] / "train", "-o", tmp_path / "m.skops", *FIT_FAST,
                       *extra)  # fmt: skip
    assert code == 1 and err.endswith("error: stopped by the test\n"), err
    assert log_lines(err)[1] == expected


def test_weights_are_named_in_the_fit_line():
    from types import SimpleNamespace

    from skfingerprint.cli._commands import _weights

    assert _weights(SimpleNamespace(checkpoint="w.pth", pretrained=False)) == "weights from w.pth"
    assert _weights(SimpleNamespace(checkpoint=None, pretrained=True)) == "pretrained"
    assert _weights(SimpleNamespace(checkpoint=None, pretrained=False)) == "random init"


def test_pretrained_model_and_tiny_rules(tmp_path):
    """Without --tiny: timm's pretrained ViT-B/16 unless told otherwise; an explicit
    --pretrained wins over a checkpoint; --tiny is random init and CANet's tiny settings."""
    from skfingerprint.cli._commands import _pipeline_from_args
    from skfingerprint.pipeline import TINY_CANET

    def params(*extra):
        return _pipeline_from_args(parse("fit", "t", "-o", "m", *extra)).get_params()

    default = params()
    assert default["embed__model"] == "vit_base_patch16_224"
    assert default["embed__pretrained"] is True
    assert params("--no-pretrained")["embed__pretrained"] is False
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    assert params("--checkpoint", weights, "--pretrained")["embed__pretrained"] is True
    assert params("--tiny", "--no-pretrained")["embed__pretrained"] is False
    assert params("--cache-dir", tmp_path)["embed__cache_dir"] == str(tmp_path)
    tiny_canet = params("--tiny", *CANET)
    assert {k: tiny_canet[f"clf__{k}"] for k in TINY_CANET} == TINY_CANET
    full_canet = params(*CANET)
    assert {k: full_canet[f"clf__{k}"] for k in TINY_CANET} != TINY_CANET


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--tiny", "--model", "vit_b"], "--tiny picks the model itself; drop --model"),
        (["--tiny", "--pretrained"], "--tiny is a randomly initialised ViT; drop --pretrained"),
        (
            ["--tiny", "--classifier", "maxsim", "--epochs", "3"],
            "--epochs trains CANet; --classifier maxsim has no epochs",
        ),
        (
            ["--tiny", "--features", "paper"],
            "classifier='linear' reads relation scores; use features='relations' (or "
            "classifier='canet' / 'maxsim' with the paper's features)",
        ),
    ],
)
def test_conflicting_options_exact_messages(data, capsys, tmp_path, extra, message):
    """Each conflict is a usage error (exit 2) whose whole message is printed once."""
    err = expect_error(capsys, 2, f"error: {message}\n", "fit", data[0] / "train", "-o",
                       tmp_path / "m.skops", *extra)  # fmt: skip
    assert not (tmp_path / "m.skops").exists()
    assert err.endswith(f"error: {message}\n")


def test_output_file_messages(data, model, capsys, tmp_path, monkeypatch):
    """The file kind and path in each message; a file name without a folder is in '.'."""
    from skfingerprint.cli import _common

    missing = tmp_path / "no" / "m.skops"
    expect_error(capsys, 2, f"error: cannot write model file '{missing}': folder "
                 f"'{missing.parent}' does not exist (create it first)\n",
                 "fit", data[0] / "train", "-o", missing, "--tiny")  # fmt: skip
    expect_error(capsys, 2, f"error: submission file '{tmp_path}' is a folder; give a file "
                 "name\n", "predict", model, data[0] / "test", "-o", tmp_path)  # fmt: skip
    sub = tmp_path / "s.csv"
    expect_error(capsys, 2, f"error: cannot write scores file '{missing}': folder "
                 f"'{missing.parent}' does not exist (create it first)\n",
                 "predict", model, data[0] / "test", "-o", sub, "--scores", missing)  # fmt: skip
    expect_error(capsys, 2, "error: --scores and -o name the same file; give two\n",
                 "predict", model, data[0] / "test", "-o", sub, "--scores", sub)  # fmt: skip
    # a folder that cannot be written (root ignores permissions: simulate the refusal)
    monkeypatch.setattr(_common.os, "access", lambda path, mode: False)
    monkeypatch.chdir(tmp_path)
    expect_error(capsys, 2, "error: cannot write report file 'r.html': folder '.' is not "
                 "writable\n", "report", model, data[0] / "test", "-o", "r.html")  # fmt: skip


def test_status_line_time_is_the_time_since_the_start(monkeypatch, capsys):
    from skfingerprint.cli import _common

    clock = iter([100.0, 102.5])
    monkeypatch.setattr(_common.time, "perf_counter", lambda: next(clock))
    _common._Log()("hello")
    assert capsys.readouterr().err == "[   2.5s] hello\n"


def test_warnings_are_one_line_and_the_handler_is_restored(capsys):
    import warnings

    from skfingerprint.cli._common import _short_warnings

    before = warnings.showwarning
    with _short_warnings(), warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("careful", UserWarning, stacklevel=1)
    assert capsys.readouterr().err == "warning: careful\n"
    assert warnings.showwarning is before


def test_layout_messages_name_the_command(data, model, capsys, tmp_path):
    test_dir = data[0] / "test"
    expect_error(capsys, 2, f"error: '{test_dir}' is a test layout (real_unknown/): it has no "
                 "labels. 'evaluate' needs a training layout with real_used/ and real_not_used/ "
                 f"(use 'skfingerprint predict MODEL {test_dir} -o submission.csv' to label these "
                 "images)\n", "evaluate", model, test_dir)  # fmt: skip
    expect_error(capsys, 2, f"error: '{test_dir}' is a test layout (real_unknown/): it has no "
                 "labels. 'fit' needs a training layout with real_used/ and real_not_used/ \n",
                 "fit", test_dir, "-o", tmp_path / "m.skops", "--tiny")  # fmt: skip
    (tmp_path / "empty").mkdir()
    err = expect_error(capsys, 2, "(see 'skfingerprint predict --help' for the layout)",
                       "predict", model, tmp_path / "empty", "-o", tmp_path / "s.csv")  # fmt: skip
    expect_error(capsys, 2, f"error: folder '{tmp_path / 'nope'}' does not exist\n", "evaluate",
                 model, tmp_path / "nope")  # fmt: skip
    expect_error(capsys, 2, f"error: folder '{model}' is not a folder\n", "evaluate", model,
                 model)  # fmt: skip
    assert "Traceback" not in err


def test_predict_status_lines_and_summary(data, model, capsys, tmp_path):
    """Catches the percentage computed wrong, the "predicting" line lost, and -v not reaching
    the pipeline at predict time."""
    root = data[0]
    sub = tmp_path / "s.csv"
    clear_memory_cache()  # the ViT runs, so -v has progress to show
    code, out, err = run(capsys, "predict", model, root / "train", "-o", sub, "-v")
    assert code == 0, err
    lines = log_lines(err)
    assert lines[0] == (
        f"{root / 'train'} is a training layout: predicting all its real images and ignoring "
        "their labels (use 'skfingerprint evaluate' to score against them)"
    )
    assert lines[1] == "predicting 24 real images (12 used, 12 not used) and 36 generated images"
    assert "ViT embedding (real images): 24 images in " in err
    used = int(read_submission(sub)[1].sum())
    assert out.splitlines() == [
        f"wrote 24 predictions to {sub}",
        f"predicted used: {used} of 24 real images ({100 * used / 24:.1f}%)",
    ]


def test_a_model_folder_is_not_taken_for_swapped_arguments(data, model, capsys, tmp_path):
    """Only a folder as MODEL *and* a file as the folder argument is called swapped."""
    test_dir = data[0] / "test"
    err = expect_error(capsys, 2, f"error: MODEL '{test_dir}' is a folder and the folder "
                       f"argument '{model}' is a file: the two look swapped; the model file "
                       "comes first\n", "evaluate", test_dir, model)  # fmt: skip
    err = expect_error(capsys, 2, f"error: model file '{test_dir}' is not a file\n",
                       "evaluate", test_dir, test_dir)  # fmt: skip
    assert "swapped" not in err


class FlagFirstHalf(BaseEstimator):
    """Not a pipeline, yet predicts ``X_pairs``: the first half of the real images is "used"."""

    def fit(self, X, y=None):
        return self

    def predict(self, X):
        n = len(X)
        return (np.arange(n) < n // 2).astype(int)


def test_labels_and_scores_are_the_pipelines_own_from_one_pass():
    """``_labels_and_scores`` (predict, evaluate, fit and the demo read labels and scores with
    it) gives what ``predict`` and ``predict_proba`` give, for a pipeline of two steps (the
    first transforms), of one step, and a bare estimator; None for scores where there are
    none. Catches: the first step skipped or run on a one-step pipeline (which has nothing to
    transform), or another column of the probabilities."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from skfingerprint.cli._commands import _labels_and_scores

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = (X[:, 0] + 0.5 * rng.normal(size=40) > 0).astype(int)
    shift = FunctionTransformer(lambda a: a * 3.0 + 1.0)
    for est in (
        Pipeline([("shift", shift), ("clf", LogisticRegression())]).fit(X, y),
        Pipeline([("clf", LogisticRegression())]).fit(X, y),
        LogisticRegression().fit(X, y),
    ):
        pred, proba = _labels_and_scores(est, X)
        np.testing.assert_array_equal(pred, est.predict(X))
        np.testing.assert_array_equal(proba, est.predict_proba(X)[:, 1])
    pred, proba = _labels_and_scores(FlagFirstHalf(), X)
    assert proba is None and pred.tolist() == [1] * 20 + [0] * 20


def test_a_model_that_is_not_a_pipeline(data, capsys, tmp_path):
    """Any saved estimator that predicts ``X_pairs`` works with predict and evaluate (named by
    its type); one that does not predict is refused with its type named."""
    from sklearn.preprocessing import StandardScaler

    from skfingerprint import save_model

    root = data[0]
    path = save_model(FlagFirstHalf(), tmp_path / "m.joblib", format="joblib")
    code, out, err = run(capsys, "evaluate", path, root / "train", "--allow-pickle")
    assert code == 0, err
    split = load_imageclef_gans(root / "train")
    kappa = cohen_kappa_score(split.y, FlagFirstHalf().predict(split.X_pairs))
    assert out.splitlines()[0] == (
        f"Membership metrics on {root / 'train'} (24 real images (12 used, 12 not used) and 36 "
        "generated images)"
    )
    assert "FlagFirstHalf" in out.splitlines()[1]
    assert next(x for x in out.splitlines() if x.startswith("kappa")).split()[-1] == (
        f"{kappa:.3f}"
    )
    assert "optimistic" not in out  # no train_dir saved: nothing to compare
    sub = tmp_path / "s.csv"
    assert run(capsys, "predict", path, root / "test", "-o", sub, "--allow-pickle")[0] == 0
    assert int(read_submission(sub)[1].sum()) == 10
    scaler = save_model(StandardScaler().fit(np.zeros((2, 1))), tmp_path / "s.joblib",
                        format="joblib")  # fmt: skip
    expect_error(capsys, 2, "error: the model file holds a StandardScaler, which does not "
                 "predict; save a fitted pipeline (what 'skfingerprint fit' writes)\n",
                 "predict", scaler, root / "test", "-o", sub, "--allow-pickle")  # fmt: skip
    # labels without probabilities: --scores is refused before anything is written
    new_sub = tmp_path / "new.csv"
    expect_error(capsys, 2, "error: --scores: the model's FlagFirstHalf gives no probabilities; "
                 "leave --scores out\n", "predict", path, root / "test", "-o", new_sub,
                 "--scores", tmp_path / "p.csv", "--allow-pickle")  # fmt: skip
    assert not new_sub.exists() and not (tmp_path / "p.csv").exists()


def test_evaluate_says_optimistic_only_on_the_folder_fitted_on(data, model, capsys, tmp_path):
    root = data[0]
    code, out, _ = run(capsys, "evaluate", model, root / "train")
    assert code == 0
    assert out.splitlines()[-1] == (
        "note: this is the folder the model was fitted on; these numbers are optimistic"
    )
    other = tmp_path / "copy"
    shutil.copytree(root / "train", other)
    code, out, _ = run(capsys, "evaluate", model, other)
    assert code == 0 and "note:" not in out


def test_pool_with_judges_both_splits_against_both_libraries(data, model, capsys, tmp_path):
    """Catches: --pool-with not reaching the loader at fit, predict or evaluate time (the counts
    and the submission would be the unpooled ones), not saved with the model's options, and the
    note on a model fitted one way and used the other lost."""
    root = data[0]
    train, test = root / "train", root / "test"
    pooled = tmp_path / "pooled.skops"
    code, _, err = run(capsys, "fit", train, "-o", pooled, *FIT_FAST, "--pool-with", test)
    assert code == 0, err
    assert log_lines(err)[0] == (
        f"read {train}: 24 real images (12 used, 12 not used) and 66 generated images "
        f"(36 its own, 30 pooled from '{test.resolve()}'; their 20 real images join the "
        "scores, unlabelled)"
    )
    assert load_model(pooled)["options"]["pool_with"] == [str(test)]

    sub = tmp_path / "s.csv"
    code, _, err = run(capsys, "predict", pooled, test, "-o", sub, "--pool-with", train)
    assert code == 0, err
    assert log_lines(err) == [
        f"predicting 20 real images and 66 generated images (30 its own, 36 pooled from "
        f"'{train.resolve()}'; their 24 real images join the scores, unlabelled)"
    ]
    expected = load_model(pooled)["estimator"].predict(
        load_imageclef_gans(test, pool_with=train).X_pairs
    )
    np.testing.assert_array_equal(read_submission(sub)[1], expected)

    code, _, err = run(capsys, "predict", pooled, test, "-o", sub)
    assert code == 0, err
    assert log_lines(err)[0] == (
        "note: this model was fitted with --pool-with (one library for both splits); pool "
        "this folder too (e.g. --pool-with TRAIN_DIR) to judge it the same way"
    )
    code, out, err = run(capsys, "evaluate", model, train, "--pool-with", test)
    assert code == 0, err
    assert "note: this model was fitted without --pool-with; this folder is pooled" in err
    # and the folder is scored pooled (--pool-with reaching evaluate's loader)
    assert out.splitlines()[0] == (
        f"Membership metrics on {train} (24 real images (12 used, 12 not used) and 66 generated "
        f"images (36 its own, 30 pooled from '{test.resolve()}'; their 20 real images join the "
        "scores, unlabelled))"
    )
    expect_error(
        capsys, 2, f"--pool-with folder '{tmp_path / 'nowhere'}' does not exist",
        "predict", pooled, test, "-o", sub, "--pool-with", tmp_path / "nowhere",
    )  # fmt: skip
    expect_error(
        capsys, 2, "pool_with names", "predict", pooled, test, "-o", sub, "--pool-with", test
    )
