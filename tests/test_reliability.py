"""Reliability, tried systematically: bad inputs, interruptions, shared caches, model files.

Each test is one row of the table in the reliability note (issue 7): an input or fault, tried
through the public API and, where it applies, the ``skfingerprint`` command line, with the clear
error or the documented behaviour that must follow. Narrower unit tests of the same checks live
beside the code they test (test_images.py, test_imageclef.py, test_cli.py, ...).
"""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import skops.io
from sklearn.exceptions import NotFittedError

from skfingerprint import (
    CANetClassifier,
    FaissCandidateSelector,
    MaxSimilarityClassifier,
    ViTLayerFusionEmbedder,
    __version__,
    _vit,
    clear_memory_cache,
    load_imageclef_gans,
    make_pairs,
    read_submission,
)
from skfingerprint._cache import TokenCache
from skfingerprint._io import STALE_TEMP_SECONDS, write_once
from skfingerprint._tokens import vit_tokens
from skfingerprint.cli import main
from skfingerprint.datasets import make_synthetic_leak, write_imageclef_layout
from skfingerprint.images import ImageLoadError, as_image_set
from skfingerprint.persistence import ModelFileError, load_model, save_model
from skfingerprint.pipeline import TINY_VIT, make_fingerprint_pipeline

from .conftest import write_png

# Our src first, then whatever PYTHONPATH already holds (where dependencies may live).
_PATH = [str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(filter(None, _PATH))}
# A fast CLI fit: tiny random ViT, the max-similarity classifier, 5 candidates.
CLI_FAST = ["--tiny", "--classifier", "maxsim", "--k", "5", "--seed", "0"]
# The same embedder as the CLI's --tiny (64x64 input), for the in-process rows.
GATE = dict(gate_epochs=5)  # a few gate steps: these rows test plumbing, not learning
SMALL_VIT = dict(**TINY_VIT, **GATE, random_state=0)


def fast_pipeline(**kw):
    return make_fingerprint_pipeline(
        "maxsim", **TINY_VIT, k=kw.pop("k", 5), random_state=0, embedder_params=GATE, **kw
    )


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A small ImageCLEF training layout (6 used, 6 not used, 12 generated, 32x32 PNGs)."""
    root = tmp_path_factory.mktemp("base")
    task = make_synthetic_leak(6, 6, 12, image_size=32, random_state=0)
    write_imageclef_layout(task, root / "train", split="train")
    return root / "train"


@pytest.fixture
def layout(base, tmp_path):
    """A private copy of the base layout, to damage."""
    return Path(shutil.copytree(base, tmp_path / "train"))


def first(folder: Path, sub: str) -> Path:
    return sorted((folder / sub).iterdir())[0]


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# --- bad image files and folders: public API and CLI ------------------------------------------
#
# Each case damages a copy of a good layout and says what must happen: an error of a given type
# (API) and exit status (CLI) whose message names the problem and the file, or success.


def _truncate(layout):
    bad = first(layout, "real_used")
    bad.write_bytes(bad.read_bytes()[:60])  # PNG header and part of the first chunk
    return bad


def _corrupt(layout):
    bad = first(layout, "generated")
    raw = bytearray(bad.read_bytes())
    raw[40:-20] = bytes(len(raw) - 60)  # a valid header over zeroed, CRC-failing data
    bad.write_bytes(bytes(raw))
    return bad


def _not_an_image(layout):
    bad = first(layout, "real_not_used").with_name("scan.png")
    bad.write_text("this is a text file, not a PNG")
    return bad


def _zero_bytes(layout):
    # not named "empty.png": the message names the file, so "empty" would match the name
    bad = first(layout, "real_used").with_name("blank.png")
    bad.write_bytes(b"")
    return bad


def _mixed_sizes(layout):
    return write_png(layout / "generated" / "odd.png", np.zeros((40, 32), np.uint8))


def _empty_folder(layout):
    for p in (layout / "generated").iterdir():
        p.unlink()
    return layout / "generated"


def _duplicate_ids(layout):
    dup = first(layout, "real_used")
    return write_png(dup.with_suffix(".jpg"), np.zeros((32, 32), np.uint8))


BAD_FILES = {
    # case: (damage, API error, CLI exit status, what the message says besides the file)
    "truncated PNG": (_truncate, ImageLoadError, 1, "cannot read image"),
    "corrupt PNG": (_corrupt, ImageLoadError, 1, "cannot read image"),
    "non-image file named .png": (_not_an_image, ImageLoadError, 1, "not an image"),
    "zero-byte file": (_zero_bytes, ImageLoadError, 1, "empty"),
    "mixed image sizes": (_mixed_sizes, ValueError, 2, "mixed sizes"),
    "empty folder": (_empty_folder, ValueError, 2, "no image files"),
    "duplicate ids": (_duplicate_ids, ValueError, 2, "Duplicate image ids"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_through_the_api(case, layout, vit_passes):
    damage, error, _, problem = BAD_FILES[case]
    bad = damage(layout)
    clear_memory_cache()
    before = vit_passes.images
    with pytest.raises(error) as info:
        data = load_imageclef_gans(layout)  # layout problems are found here,
        fast_pipeline().fit(data.X_pairs, data.y)  # unreadable files before the ViT runs
    message = str(info.value)
    assert problem.lower() in message.lower() and bad.name in message, message
    assert vit_passes.images == before  # failed at once, not after an embedding pass


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_through_the_cli(case, layout, capsys, tmp_path):
    damage, _, code, problem = BAD_FILES[case]
    bad = damage(layout)
    out = tmp_path / "m.skops"
    got, _, err = cli(capsys, "fit", layout, "-o", out, *CLI_FAST)
    assert got == code, err
    assert problem.lower() in err.lower() and bad.name in err and "Traceback" not in err
    assert err.count("error:") == 1
    assert not out.exists()


def test_non_image_files_beside_the_images_are_ignored(layout, capsys, tmp_path):
    (layout / "generated" / "README.txt").write_text("notes")
    (layout / "real_used" / ".DS_Store").write_bytes(b"\0\0")
    data = load_imageclef_gans(layout)
    assert len(data.X_pairs.library) == 12 and len(data.X_pairs) == 12
    assert cli(capsys, "fit", layout, "-o", tmp_path / "m.skops", *CLI_FAST)[0] == 0


def test_16_bit_and_rgba_images_are_read_and_fitted(layout, capsys, tmp_path):
    """Documented: 16-bit scales by 1/65535, RGB(A) keeps its colour and drops alpha."""
    rng = np.random.default_rng(0)
    a16 = rng.integers(0, 65536, size=(32, 32), dtype=np.uint16)
    rgba = rng.integers(0, 256, size=(32, 32, 4), dtype=np.uint8)
    p16, p_rgba = (
        write_png(first(layout, "real_used"), a16),
        write_png(first(layout, "generated"), rgba),
    )
    data = load_imageclef_gans(layout)
    real, lib = data.X_pairs.real, data.X_pairs.library
    i16, i_rgba = real.ids.index(p16.stem), lib.ids.index(p_rgba.stem)
    np.testing.assert_allclose(real.read(i16)[..., 0], a16 / 65535.0, atol=1e-6)
    np.testing.assert_allclose(lib.read(i_rgba), rgba[..., :3] / 255.0, atol=1e-6)
    assert fast_pipeline().fit(data.X_pairs, data.y).predict(data.X_pairs).shape == (12,)
    assert cli(capsys, "fit", layout, "-o", tmp_path / "m.skops", *CLI_FAST)[0] == 0


def test_unicode_and_spaces_in_paths(base, tmp_path, capsys):
    root = Path(shutil.copytree(base, tmp_path / "données d'audit 中" / "train"))
    renamed = first(root, "real_used").with_name("scan é 01.png")
    first(root, "real_used").rename(renamed)
    data = load_imageclef_gans(root)
    assert "scan é 01" in data.ids
    model, sub = root.parent / "modèle 1.skops", root.parent / "soumission ü.csv"
    assert cli(capsys, "fit", root, "-o", model, *CLI_FAST)[0] == 0
    assert cli(capsys, "predict", model, root, "-o", sub)[0] == 0
    assert sorted(read_submission(sub)[0]) == sorted(data.ids)


def test_empty_top_folder(tmp_path, capsys):
    top = tmp_path / "top"  # a name without the words the messages are checked for
    top.mkdir()
    with pytest.raises(FileNotFoundError, match="expected sub-folders"):
        load_imageclef_gans(top)
    with pytest.raises(ValueError, match="no image files"):
        make_pairs(top, top)
    code, _, err = cli(capsys, "fit", top, "-o", tmp_path / "m.skops", "--tiny")
    assert code == 2 and "expected sub-folders" in err and "Traceback" not in err


def test_duplicate_ids_given_to_make_pairs_are_refused_at_the_submission(tmp_path):
    """Documented: rows are positions, so make_pairs accepts repeated ids (two folders may hold
    the same file name); a submission names rows by id, so writing one refuses them."""
    from skfingerprint import write_submission

    task = make_synthetic_leak(3, 3, 6, image_size=32, random_state=0)
    X = make_pairs(task.real_images, task.generated_images, real_ids=list("aabbcc"))
    pred = fast_pipeline().fit(X, task.y).predict(X)
    with pytest.raises(ValueError, match=r"appear once.*'a'"):
        write_submission(X.ids, pred, tmp_path / "s.csv")
    assert not (tmp_path / "s.csv").exists()


# --- bad labels, arrays and parameters ------------------------------------------------------


@pytest.fixture(scope="module")
def task():
    return make_synthetic_leak(6, 6, 12, image_size=32, random_state=0)


@pytest.mark.parametrize(
    ("y", "match"),
    [
        (lambda y: y * 2, r"only 0 \(not used\) and 1 \(used\); found \[2\]"),
        (lambda y: np.where(y, -1, 0), r"found \[-1\]"),
        (lambda y: np.where(y, 0.5, 0.0), r"found \[0.5\]"),
        (lambda y: np.where(y, np.nan, 0.0), r"found \[nan\]"),
        (lambda y: y.astype(str), "got dtype <U"),
        (lambda y: y[:-1], "11 labels for 12 real images"),
    ],
    ids=["2", "-1", "0.5", "nan", "strings", "wrong length"],
)
def test_labels_not_in_0_1(task, y, match):
    with pytest.raises(ValueError, match=match):
        fast_pipeline().fit(task.X_pairs, y(task.y))


@pytest.mark.parametrize("clf", [MaxSimilarityClassifier(), CANetClassifier(max_epochs=1)])
@pytest.mark.parametrize("label", [0, 1])
def test_one_class_y(task, clf, label):
    pipe = fast_pipeline().set_params(clf=clf)
    with pytest.raises(ValueError, match=f"only (one )?class.*{label}.*both"):
        pipe.fit(task.X_pairs, np.full(12, label))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("side", ["real", "generated"])
def test_nan_and_inf_in_image_arrays(task, side, value):
    real = task.real_images.astype(np.float32) / 255
    gen = task.generated_images.astype(np.float32) / 255
    (real if side == "real" else gen)[3, 5, 5] = value
    with pytest.raises(ValueError, match=rf"{side}: images contain NaN or infinite.*\[3\]"):
        make_pairs(real, gen)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_nan_and_inf_in_embeddings_and_candidates(task, value):
    emb = ViTLayerFusionEmbedder(**SMALL_VIT, fusion="mean").fit(task.X_pairs)
    E = emb.transform(task.X_pairs)
    E.real[2, 0] = value
    with pytest.raises(ValueError, match="NaN|infinite"):
        FaissCandidateSelector(k=5).fit(E)
    C = FaissCandidateSelector(k=5).fit_transform(emb.transform(task.X_pairs))
    bad_cosine, bad_vector = C.copy(), C.copy()
    bad_cosine[1, 0, -1] = value
    bad_vector[1, 0, 0] = value
    for clf in (MaxSimilarityClassifier(), CANetClassifier(max_epochs=1)):
        with pytest.raises(ValueError, match="NaN|infinite"):
            clf.fit(bad_cosine, task.y)
    with pytest.raises(ValueError, match="NaN or infinity"):
        CANetClassifier(max_epochs=1).fit(bad_vector, task.y)
    # Documented: the max-similarity baseline reads only the cosines, so a bad vector is unused.
    clean = MaxSimilarityClassifier().fit(C, task.y).predict_proba(C)
    np.testing.assert_array_equal(
        MaxSimilarityClassifier().fit(bad_vector, task.y).predict_proba(bad_vector), clean
    )


def test_k_larger_than_the_library(task, capsys, base, tmp_path):
    """Documented: k is cut to the library size with one warning; predictions are unchanged."""
    with pytest.warns(UserWarning, match="k=50 is larger than the library .12 generated"):
        big = fast_pipeline(k=50).fit(task.X_pairs, task.y)
    exact = fast_pipeline(k=12).fit(task.X_pairs, task.y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.testing.assert_array_equal(
            big.predict_proba(task.X_pairs), exact.predict_proba(task.X_pairs)
        )
    code, _, err = cli(capsys, "fit", base, "-o", tmp_path / "m.skops", "--tiny",
                       "--classifier", "maxsim", "--k", "500")  # fmt: skip
    assert code == 0 and "warning: k=500 is larger than the library (12 generated" in err


def test_a_library_of_one_image_runs_smoke(task, capsys, base, tmp_path):
    """Smoke test: only checks that a one-image library fits and predicts (API and CLI) and
    returns the documented shapes (k cut to 1). Its cosines are not checked: in the default
    pixel space, centred on the library's mean, the lone library vector is zero and every
    cosine is 0."""
    X = make_pairs(task.real_images, task.generated_images[:1])
    with pytest.warns(UserWarning, match="using k=1"):
        pipe = fast_pipeline().fit(X, task.y)
        C = pipe[:-1].transform(X)
        pred = pipe.predict(X)
    assert C.shape[1] == 1 and pred.shape == (12,)
    one = Path(shutil.copytree(base, tmp_path / "one"))
    for p in sorted((one / "generated").iterdir())[1:]:
        p.unlink()
    code, _, err = cli(capsys, "fit", one, "-o", tmp_path / "m.skops", *CLI_FAST)
    assert code == 0, err
    assert "and 1 generated images" in err


@pytest.mark.parametrize("layers", [(0, 2), (1, 9), "L2+5"])
def test_layers_out_of_range(task, layers, capsys, base, tmp_path):
    with pytest.raises(ValueError, match=r"out of range: this model has 4 blocks, numbered 1\.\.4"):
        fast_pipeline(layers=layers).fit(task.X_pairs, task.y)
    if isinstance(layers, str):
        code, _, err = cli(capsys, "fit", base, "-o", tmp_path / "m", *CLI_FAST, "--layers", layers)
        assert code == 1 and "out of range" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "estimator",
    [
        fast_pipeline(),
        ViTLayerFusionEmbedder(**TINY_VIT),
        FaissCandidateSelector(),
        MaxSimilarityClassifier(),
        CANetClassifier(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_predict_before_fit(task, estimator):
    X = task.X_pairs
    if isinstance(estimator, FaissCandidateSelector):
        method = estimator.transform
        X = ViTLayerFusionEmbedder(**SMALL_VIT).fit_transform(X, task.y)
    elif isinstance(estimator, ViTLayerFusionEmbedder):
        method = estimator.transform
    else:
        method = estimator.predict
        if not hasattr(estimator, "steps"):
            X = np.zeros((12, 5, 2 * 64 + 1), np.float32)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        method(X)


# --- model files --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_file(base, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.skops"
    assert main(["fit", str(base), "-o", str(path), *CLI_FAST]) == 0
    return path


@pytest.mark.parametrize("version", [3, 1, None])
def test_model_file_from_an_incompatible_version(model_file, version, tmp_path, capsys, base):
    payload = load_model(model_file)
    payload.update(format_version=version, skfingerprint_version="9.9.0")
    path = tmp_path / "old.skops"
    skops.io.dump(payload, path)
    with pytest.raises(ModelFileError) as info:
        load_model(path)
    message = str(info.value)
    assert str(path) in message and "9.9.0" in message and __version__ in message
    assert f"format version {version!r}" in message and "reads format version 2" in message
    assert ("upgrade" if version == 3 else "refit") in message
    code, _, err = cli(capsys, "predict", path, base, "-o", tmp_path / "s.csv")
    assert code == 2 and "9.9.0" in err and "Traceback" not in err
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("fraction", [0.01, 0.3, 0.9, 0.999])
def test_truncated_model_file(model_file, fraction, tmp_path, capsys, base):
    raw = model_file.read_bytes()
    path = tmp_path / "cut.skops"
    path.write_bytes(raw[: int(len(raw) * fraction)])
    with pytest.raises(ModelFileError, match=r"cut\.skops.*truncated or corrupt"):
        load_model(path)
    code, _, err = cli(capsys, "evaluate", path, base)
    # "truncated or corrupt", not "truncated": tmp_path is named after this test
    assert code == 2 and "cut.skops" in err and "truncated or corrupt" in err
    assert "Traceback" not in err


def test_save_model_replaces_a_file_only_with_a_complete_one(model_file, tmp_path, monkeypatch):
    path = tmp_path / "m.skops"
    shutil.copy(model_file, path)
    before = path.read_bytes()

    def interrupted(obj, target, *a, **k):
        Path(target).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(skops.io, "dump", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_model(object(), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.skops"]


def test_model_fitted_on_cuda_loads_on_a_cpu_only_machine(task):
    """The embedder pickles its fp32 CPU master copy and drops its device copies (a CUDA fit
    keeps one there); CANet's CUDA case is test_canet.py::
    test_pickle_holds_cpu_tensors_only_and_a_cuda_fit_loads_without_cuda."""
    import pickle

    # fp32 on the CPU: tested is the pickling, not bf16 repeatability (an AMX CPU picks bf16)
    emb = ViTLayerFusionEmbedder(**SMALL_VIT, device="cpu", dtype="float32").fit(
        task.X_pairs, task.y
    )
    expected = emb.transform(task.X_pairs)
    emb.backbone_._runtime["cuda:0"] = "a module on the GPU"  # what a CUDA fit leaves here
    loaded = pickle.loads(pickle.dumps(emb))
    assert loaded.backbone_._runtime == {}
    tensors = [
        *loaded.backbone_.module.state_dict().values(),
        *loaded.fusion_.state_dict().values(),
    ]
    assert all(t.device.type == "cpu" for t in tensors)
    clear_memory_cache()
    got = loaded.set_params(device="cpu").transform(task.X_pairs)
    np.testing.assert_array_equal(got.real, expected.real)
    np.testing.assert_array_equal(got.library, expected.library)


# --- interrupted and concurrent embedding runs --------------------------------------------------


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """24 distinct 32x32 PNGs, files so that other processes can read them."""
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(1)
    for i in range(24):
        write_png(root / f"im_{i:02d}.png", rng.integers(0, 256, (32, 32), dtype=np.uint8))
    return root


def embedder(cache_dir, **kw):
    return ViTLayerFusionEmbedder(
        **{**SMALL_VIT, "fusion": "mean", "batch_size": 4, "cache_dir": cache_dir, **kw}
    )


def cache_entries(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.rglob("*.npy"))


def fresh_tokens(folder) -> np.ndarray:
    """Every block's tokens computed now, without any cache."""
    clear_memory_cache()
    emb = embedder(None, layers=(1, 2, 3, 4)).fit(folder)
    return vit_tokens(emb, emb._split_input(folder)[0], emb.backbone_)


def check_cache(cache_dir, folder, n_expected):
    """Every entry loads and equals a fresh computation of the blocks the embedder runs; no
    other file is an entry."""
    entries = cache_entries(cache_dir)
    assert len(entries) == n_expected
    images = as_image_set(folder)
    keys = [images.content_key(i) for i in range(len(images))]
    by_key = {p.stem: np.load(p, allow_pickle=False) for p in entries}
    expected = fresh_tokens(folder)
    for key, tokens in zip(keys, expected, strict=True):
        if key in by_key:
            stored = by_key[key].astype(np.float32)
            assert len(stored) == 3  # default layers 1, 2, 3 of 4 blocks: the pass stops at 3
            np.testing.assert_allclose(stored, tokens[:3], rtol=2e-3, atol=2e-3)


def test_ctrl_c_during_embedding_keeps_finished_batches(folder, tmp_path, monkeypatch, vit_passes):
    cache_dir = tmp_path / "cache"
    real_embed = _vit.Backbone.embed_batch
    calls = {"n": 0}

    def interrupt_third_batch(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_embed(self, *args, **kwargs)

    monkeypatch.setattr(_vit.Backbone, "embed_batch", interrupt_third_batch)
    clear_memory_cache()
    with pytest.raises(KeyboardInterrupt):
        embedder(cache_dir).fit(folder)
    monkeypatch.setattr(_vit.Backbone, "embed_batch", real_embed)
    assert len(cache_entries(cache_dir)) == 8  # the two finished batches of 4
    assert not [p for p in cache_dir.rglob("*") if p.name.endswith(".tmp")]

    clear_memory_cache()  # a new process: only the disk cache is left
    before = vit_passes.images
    embedder(cache_dir).fit(folder)
    assert vit_passes.images - before == 24 - 8  # the finished images are not recomputed
    check_cache(cache_dir, folder, 24)


SLOW_EMBED = """
    import os, sys, time
    from skfingerprint import _vit
    real = _vit.Backbone.embed_batch
    def slow(self, *a, **k):
        out = real(self, *a, **k)
        print("batch", flush=True, file=sys.stderr)
        time.sleep({delay})
        while {go!r} and not os.path.exists({go!r}):  # wait for the test's go-ahead
            time.sleep(0.05)
        return out
    _vit.Backbone.embed_batch = slow
"""


def embed_script(folder, cache_dir, delay, go=""):
    return textwrap.dedent(SLOW_EMBED.format(delay=delay, go=go)) + textwrap.dedent(
        f"""
        from skfingerprint import ViTLayerFusionEmbedder
        from skfingerprint.pipeline import TINY_VIT
        ViTLayerFusionEmbedder(**TINY_VIT, gate_epochs=5, random_state=0, fusion="mean",
                               batch_size=4, cache_dir={str(cache_dir)!r}).fit({str(folder)!r})
        print("done", flush=True)
        """
    )


def wait_for_lines(stream, proc, marker: str, n: int, timeout: float = 120) -> str:
    """Read ``stream`` until ``n`` lines hold ``marker``; return what was read."""
    deadline = time.monotonic() + timeout
    lines, seen = [], 0
    while seen < n:
        assert time.monotonic() < deadline, f"no {n} x {marker!r} within {timeout}s: {lines}"
        line = stream.readline()
        assert line or proc.poll() is None, f"the process ended early: {lines}"
        lines.append(line)
        seen += marker in line
    return "".join(lines)


@pytest.mark.slow  # a new Python process (imports torch): seconds
def test_killed_embedding_process_leaves_a_valid_cache_and_resumes(folder, tmp_path, vit_passes):
    cache_dir = tmp_path / "cache"
    proc = subprocess.Popen(
        [sys.executable, "-c", embed_script(folder, cache_dir, delay=0.3)],
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        wait_for_lines(proc.stderr, proc, "batch", 2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    n_done = len(cache_entries(cache_dir))
    assert 4 <= n_done < 24  # killed part-way, with each finished batch on disk
    check_cache(cache_dir, folder, n_done)
    # the kill may have left a half-written temporary file; make sure one is there (for an
    # entry still missing) and let every temp age past the limit
    images = as_image_set(folder)
    done = {p.stem for p in cache_entries(cache_dir)}
    missing = next(k for k in map(images.content_key, range(len(images))) if k not in done)
    model_dir = cache_entries(cache_dir)[0].parent.parent
    (model_dir / missing[:2]).mkdir(exist_ok=True)
    (model_dir / missing[:2] / f".{missing}.npy.killed.tmp").write_bytes(b"half an entry")
    for tmp in cache_dir.rglob("*.tmp"):
        os.utime(tmp, (time.time() - STALE_TEMP_SECONDS - 1,) * 2)

    clear_memory_cache()
    before = vit_passes.images
    embedder(cache_dir).fit(folder)
    assert vit_passes.images - before == 24 - n_done
    check_cache(cache_dir, folder, 24)
    assert not list(cache_dir.rglob("*.tmp"))  # the resumed run cleaned up after the kill


def test_an_entry_write_removes_only_abandoned_temp_files_of_that_entry(tmp_path):
    cache = TokenCache("model", tmp_path)
    key = "ab" + "c" * 62
    folder = tmp_path / "model" / key[:2]
    folder.mkdir(parents=True)
    old, fresh = folder / f".{key}.npy.old.tmp", folder / f".{key}.npy.fresh.tmp"
    other = folder / f".{'ab' + 'd' * 62}.npy.old.tmp"
    for tmp in (old, fresh, other):
        tmp.write_bytes(b"partial")
    for tmp in (old, other):
        os.utime(tmp, (time.time() - STALE_TEMP_SECONDS - 1,) * 2)
    tokens = np.arange(6, dtype=np.float16).reshape(2, 3)
    cache.put(key, tokens)
    assert not old.exists()  # abandoned by a killed writer
    assert fresh.exists()  # may belong to a live writer in another process
    assert other.exists()  # another entry's: removed when that entry is written
    clear_memory_cache()
    np.testing.assert_array_equal(TokenCache("model", tmp_path).get(key), tokens)


def _aged_temps(path: Path) -> tuple[Path, Path]:
    """An abandoned (older than the limit) and a fresh temporary file of ``path``."""
    old, fresh = path.parent / f".{path.name}.old.tmp", path.parent / f".{path.name}.fresh.tmp"
    for tmp in (old, fresh):
        tmp.write_bytes(b"partial")
    os.utime(old, (time.time() - STALE_TEMP_SECONDS - 1,) * 2)
    return old, fresh


@pytest.mark.parametrize("hard_links", [True, False], ids=["link", "no hard links"])
def test_write_once_keeps_the_first_data_and_cleans_up_after_killed_writers(
    tmp_path, monkeypatch, hard_links
):
    if not hard_links:  # a file system without them: os.link fails with EPERM

        def no_link(src, dst):
            raise PermissionError(1, "Operation not permitted")

        monkeypatch.setattr(os, "link", no_link)
    path = tmp_path / "choice.json"
    old, fresh = _aged_temps(path)
    assert write_once(path, b"first") is True
    assert write_once(path, b"second") is False
    assert path.read_bytes() == b"first"  # the later writer's data dropped, not written over
    assert not old.exists()  # abandoned by a killed writer
    assert fresh.exists()  # may belong to a live writer in another process
    assert sorted(p.name for p in tmp_path.iterdir()) == [fresh.name, path.name]  # no own temp


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_files_written_atomically_get_the_permissions_a_plain_write_would(
    tmp_path, monkeypatch, umask
):
    # Catches: the temporary file's 0600 kept, or the mode built from other bits than
    # 0666 minus the umask (an executable bit, or every bit the umask clears set instead).
    from skfingerprint import _io

    monkeypatch.setattr(_io, "_UMASK", umask)
    with _io.atomic_path(tmp_path / "a.json") as tmp:
        tmp.write_bytes(b"{}")
    assert write_once(tmp_path / "b.json", b"{}") is True
    for name in ("a.json", "b.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask


def test_the_umask_is_read_without_changing_it():
    from skfingerprint import _io

    before = os.umask(0o027)
    try:
        assert _io._read_umask() == 0o027
        assert os.umask(0o027) == 0o027  # left as it was
    finally:
        os.umask(before)


@pytest.mark.slow  # a new Python process (imports torch): seconds
def test_two_processes_share_one_cache_dir(folder, tmp_path, monkeypatch, vit_passes):
    """Another process and this one embed the same images into one cache_dir, in opposite
    orders, at the same time: after each one's first batch, both write all 24 entries."""
    cache_dir, go = tmp_path / "cache", tmp_path / "go"
    proc = subprocess.Popen(
        [sys.executable, "-c", embed_script(folder, cache_dir, delay=0.1, go=str(go))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        seen = wait_for_lines(proc.stderr, proc, "batch", 1)  # its first batch done; it waits
        real_embed = _vit.Backbone.embed_batch

        def slow(self, *args, **kwargs):
            out = real_embed(self, *args, **kwargs)
            go.touch()  # now both go on, batch by batch
            time.sleep(0.1)
            return out

        monkeypatch.setattr(_vit.Backbone, "embed_batch", slow)
        clear_memory_cache()
        before = vit_passes.images
        embedder(cache_dir).fit(sorted(folder.iterdir(), reverse=True))
        assert vit_passes.images - before == 24  # none was on disk when this one began
        out, err = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert out.strip() == "done" and (seen + err).count("batch") == 6  # it computed all 24 too
    assert not [p for p in cache_dir.rglob("*") if p.name.endswith(".tmp")]
    check_cache(cache_dir, folder, 24)
    clear_memory_cache()
    before = vit_passes.images
    embedder(cache_dir).fit(folder)
    assert vit_passes.images == before  # all 24 are there


# --- Ctrl-C on the command line ---------------------------------------------------------------


HOLD_SECOND_BATCH = """
    import sys, time
    from skfingerprint import _vit
    real = _vit.Backbone.embed_batch
    done = [0]
    def held(self, *a, **k):
        out = real(self, *a, **k)
        done[0] += 1
        print("batch", flush=True, file=sys.stderr)
        while done[0] >= 2:  # from the second batch on, wait here for the signal
            time.sleep(0.05)
        return out
    _vit.Backbone.embed_batch = held
"""


def cli_script(argv, hold_second_batch: bool = False) -> str:
    """The CLI as a script; with ``hold_second_batch``, the second ViT batch never returns, so
    a signal sent after it lands during embedding, with the first batch in the cache."""
    hook = textwrap.dedent(HOLD_SECOND_BATCH) if hold_second_batch else ""
    return hook + f"\nimport sys\nfrom skfingerprint.cli import main\nsys.exit(main({argv!r}))\n"


def _sigint_as_in_a_terminal():
    # A shell starts background jobs with SIGINT ignored, and Python keeps an ignored SIGINT
    # (no KeyboardInterrupt at all): give the child the default, as a terminal would.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt(argv, marker, *, hold_second_batch=False, n=1):
    """Run the CLI in a new process, send it SIGINT after ``n`` stderr/stdout lines with
    ``marker``; return (exit status, all of stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", cli_script([str(a) for a in argv], hold_second_batch)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**ENV, "PYTHONUNBUFFERED": "1"},
        preexec_fn=_sigint_as_in_a_terminal,
    )
    try:
        seen = wait_for_lines(proc.stdout, proc, marker, n)
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return proc.returncode, seen + rest


@pytest.mark.slow  # a new Python process (imports torch): seconds
def test_ctrl_c_during_embedding_on_the_command_line(base, tmp_path):
    out, cache = tmp_path / "out" / "m.skops", tmp_path / "cache"
    out.parent.mkdir()
    argv = ["fit", base, "-o", out, *CLI_FAST, "--cache-dir", cache]
    code, err = interrupt(argv, "batch", n=2, hold_second_batch=True)
    assert code == 130, err
    assert err.strip().splitlines()[-2:] == [
        "interrupted (Ctrl-C)",
        f"the ViT embeddings finished so far are kept in '{cache}': run again with the same "
        "--cache-dir to start from them",
    ]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert list(out.parent.iterdir()) == []  # no model file, no temporary file
    assert 4 <= len(cache_entries(cache)) < 24  # the finished batches, as promised


@pytest.mark.slow  # a new Python process (imports torch): seconds
def test_ctrl_c_during_training_on_the_command_line(base, tmp_path):
    """skorch alone would swallow Ctrl-C and save a half-trained model; it must stop fit."""
    out = tmp_path / "m.skops"
    argv = ["fit", base, "-o", out, "--tiny", "--classifier", "canet", "--k", "5"]
    argv += ["--epochs", "100000", "-vv"]
    argv += ["--fusion", "mean"]  # no gate to train: straight on to CANet
    code, err = interrupt(argv, "epoch", n=1)
    assert code == 130, err
    assert err.strip().splitlines()[-1] == "interrupted (Ctrl-C)"
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_canet_training_stops_fit(task, monkeypatch):
    from skfingerprint import canet

    real_step = canet._CANetNet.train_step_single
    calls = {"n": 0}

    def step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(canet._CANetNet, "train_step_single", step)
    C = np.random.default_rng(0).normal(size=(40, 5, 2 * 8 + 1)).astype(np.float32)
    C[:, :, :8] = C[:, :1, :8]  # one real image per row
    clf = CANetClassifier(max_epochs=50, batch_size=8, random_state=0)
    with pytest.raises(KeyboardInterrupt):
        clf.fit(C, np.arange(40) % 2)
    assert calls["n"] == 3
    with pytest.raises(NotFittedError):
        clf.predict(C)


def test_early_stopping_still_ends_training_quietly(capsys):
    """skorch's early stopping also raises KeyboardInterrupt; it must not look like Ctrl-C.
    Training ends ``patience`` epochs after the best validation loss, prints nothing, and the
    model is fitted (catches the stop re-raised as an interruption, or patience not passed)."""
    rng = np.random.default_rng(0)
    C = rng.normal(size=(40, 5, 2 * 8 + 1)).astype(np.float32)
    C[:, :, :8] = C[:, :1, :8]  # one real image per row
    clf = CANetClassifier(max_epochs=200, patience=2, batch_size=8, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.fit(C, rng.permutation(np.arange(40) % 2))  # noise: the validation loss stalls
    assert capsys.readouterr() == ("", "")
    losses = [epoch["valid_loss"] for epoch in clf.history_]
    assert len(losses) < 200
    assert len(losses) == int(np.argmin(losses)) + 1 + 2  # the best epoch, then 2 misses
    proba = clf.predict_proba(C)[:, 1]
    np.testing.assert_array_equal(clf.predict(C), (proba > clf.threshold).astype(int))


def _raise_interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("skfingerprint._vit.Backbone", "embed_batch"),  # ViT embedding
        ("skfingerprint._finetune", "nt_xent"),  # contrastive fine-tuning step
        ("skfingerprint.embedding", "train_gate_supervised"),
        ("skfingerprint.selection", "_build_index"),  # FAISS index build
        ("skfingerprint.canet._CANetNet", "train_step_single"),  # CANet training step
    ],
    ids=["embedding", "fine-tuning", "gate training", "index build", "CANet training"],
)
def test_ctrl_c_in_each_long_step_stops_fit(task, monkeypatch, module, name):
    """Ctrl-C anywhere in a fit reaches the caller (never swallowed); nothing counts as fitted."""
    from skfingerprint.pipeline import TINY_CANET

    monkeypatch.setattr(f"{module}.{name}", _raise_interrupt)
    clear_memory_cache()  # so that the ViT really runs
    finetune = "last" if name == "nt_xent" else "none"  # fine-tuning costs seconds: only here
    # only the paper's features build a FAISS index (relation scores search exactly) and
    # train the gate (relation scores fuse the blocks with equal weights)
    features = "paper" if name in ("_build_index", "train_gate_supervised") else "relations"
    pipe = make_fingerprint_pipeline(
        "canet", **TINY_VIT, features=features, k=5, finetune=finetune, random_state=0,
        max_epochs=2, **TINY_CANET,
    )  # fmt: skip
    pipe.set_params(embed__finetune_epochs=1, embed__gate_epochs=5)
    with pytest.raises(KeyboardInterrupt):
        pipe.fit(task.X_pairs, task.y)
    with pytest.raises(NotFittedError):
        pipe.predict(task.X_pairs)
