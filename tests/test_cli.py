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
from sklearn.metrics import cohen_kappa_score

from skfingerprint import (
    clear_memory_cache,
    load_imageclef_gans,
    load_model,
    membership_report,
    read_submission,
)
from skfingerprint.cli import main
from skfingerprint.datasets import make_synthetic_leak, write_imageclef_layout

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
    path = tmp_path / "maxsim.skops"
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
    split = load_imageclef_gans(root / "train")
    expected = membership_report(
        split.y, payload["estimator"].predict(split.X_pairs), output_dict=True
    )
    assert payload["train_metrics"] == pytest.approx(expected)
    for metric in ("kappa", "accuracy", "precision", "recall", "f1"):
        line = next(x for x in out.splitlines() if x.startswith(metric))
        assert line.split()[-1] == f"{expected[metric]:.3f}", metric
    assert [p.name for p in tmp_path.iterdir()] == ["maxsim.skops"]  # no temporary file left


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


def test_demo_quick(tmp_path, capsys):
    out_dir = tmp_path / "demo"
    code, out, err = run(capsys, "demo", "--quick", "--output", out_dir)
    assert code == 0, err
    for name in ("Default", "CANet+ViT", "MaxSim+ViT", "PixelNN", "kappa", "f1"):
        assert name in out
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
        match = "empty"
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
        (["--min-similarity", "0.4"], [], "select__min_similarity", 0.4),
        (["--min-similarity", "none"], PAPER, "select__min_similarity", None),
        (["--finetune", "last"], [], "embed__finetune", "last"),
        (["--fusion", "mean"], [], "embed__fusion", "mean"),
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


def test_swapped_arguments_are_named(data, model, capsys, tmp_path):
    """Before: "model file '<folder>' is not a file". After: says the two were swapped."""
    test_dir = data[0] / "test"
    err = expect_error(capsys, 2, "swapped", "predict", test_dir, model, "-o", tmp_path / "s.csv")
    assert "model file comes first" in err
    expect_error(capsys, 2, "swapped", "evaluate", data[0] / "train", model)


def test_demo_reads_its_own_table():
    from skfingerprint.cli._demo import _demo_verdict

    won = _demo_verdict({"Default": 0.8, "CANet+ViT": 0.3, "MaxSim+ViT": 0.4, "PixelNN": 0.7})
    assert won.startswith("The default pipeline beats") and "0.700 for PixelNN" in won
    lost = _demo_verdict({"Default": 0.2, "CANet+ViT": 0.3, "MaxSim+ViT": 0.4, "PixelNN": 0.7})
    assert lost.startswith("PixelNN beats the default") and "--checkpoint" in lost
