"""Model files: the safe (skops) format round-trips every estimator, and refuses files that
would run code when loaded, before running any of it."""

import json
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import skops.io
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from skfingerprint import (
    FaissCandidateSelector,
    MaxSimilarityClassifier,
    ModelFileError,
    PixelNearestNeighbor,
    UntrustedModelError,
    ViTLayerFusionEmbedder,
    clear_memory_cache,
    load_model,
    save_model,
)
from skfingerprint.cli import main
from skfingerprint.datasets import make_synthetic_leak, write_imageclef_layout
from skfingerprint.persistence import TRUSTED_TYPES
from skfingerprint.pipeline import TINY_CANET, TINY_VIT, make_fingerprint_pipeline

from .conftest import points_at

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL = dict(TINY_VIT, model_kwargs=dict(TINY_VIT["model_kwargs"], img_size=32, depth=2))


@pytest.fixture(scope="module")
def task():
    return make_synthetic_leak(16, 16, 40, image_size=32, random_state=0)


@pytest.fixture(scope="module")
def default_file(task, tmp_path_factory):
    """The default pipeline (linear head on relation scores), fitted and saved as skops."""
    pipe = make_fingerprint_pipeline(**SMALL, k=10, random_state=0).fit(task.X_pairs, task.y)
    path = save_model(pipe, tmp_path_factory.mktemp("m") / "model.skops", note="é ✓")
    return path, pipe


PIPELINES = {
    "canet on relations": lambda: make_fingerprint_pipeline(
        "canet", **SMALL, k=10, random_state=0, max_epochs=2, **TINY_CANET
    ),
    "paper: canet on vit vectors": lambda: make_fingerprint_pipeline(
        "canet", features="paper", **SMALL, k=10, random_state=0, max_epochs=2, **TINY_CANET
    ),
    "maxsim": lambda: make_fingerprint_pipeline("maxsim", **SMALL, k=10, random_state=0),
    "pixel nearest neighbour": lambda: PixelNearestNeighbor(),
}


def _torch_objects(obj, path="state", seen=None) -> list[str]:
    """Paths of every torch tensor or module reachable through pickled state (__getstate__)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, (str, bytes, int, float, np.ndarray, type(None))):
        return []
    seen.add(id(obj))
    if isinstance(obj, (torch.Tensor, nn.Module)):
        return [path]
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    elif hasattr(obj, "__dict__"):
        items = obj.__getstate__().items()
    else:
        return []
    return [p for k, v in items for p in _torch_objects(v, f"{path}.{k}", seen)]


# --- round trips --------------------------------------------------------------------------------


def test_default_pipeline_round_trips_bit_identical_in_a_fresh_process(default_file, task):
    path, pipe = default_file
    assert zipfile.is_zipfile(path)
    folder = path.parent
    np.save(folder / "real.npy", task.real_images)
    np.save(folder / "gen.npy", task.generated_images)
    # Both sides compute afresh on one BLAS and one torch thread: float32 sums depend on the
    # thread count at ~1e-7 (test_dask's cluster sets dask's OMP_NUM_THREADS=1 for new processes),
    # and the in-memory token cache may hold tokens another test computed.
    clear_memory_cache()
    with threadpool_limits(1):
        np.save(folder / "proba.npy", pipe.predict_proba(task.X_pairs))
    code = (
        "import numpy as np, torch; from skfingerprint import load_model, make_pairs;"
        "from threadpoolctl import threadpool_limits; threadpool_limits(1);"
        "torch.set_num_threads(1);"
        f"m = load_model(r'{path}');"
        f"X = make_pairs(np.load(r'{folder / 'real.npy'}'), np.load(r'{folder / 'gen.npy'}'));"
        f"np.testing.assert_array_equal(m['estimator'].predict_proba(X), "
        f"np.load(r'{folder / 'proba.npy'}'));"
        "print(m['note'], m['format_version'])"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "é ✓ 2"


@pytest.mark.parametrize("name", list(PIPELINES))
@pytest.mark.parametrize("fmt", ["skops", "joblib"])
def test_every_estimator_round_trips(name, fmt, task, tmp_path):
    model = PIPELINES[name]().fit(task.X_pairs, task.y)
    path = save_model(model, tmp_path / "m", format=fmt, options={"k": 10})
    loaded = load_model(path, allow_pickle=fmt == "joblib")
    assert loaded["options"] == {"k": 10}
    got = loaded["estimator"].predict_proba(task.X_pairs)
    np.testing.assert_array_equal(got, model.predict_proba(task.X_pairs))


def test_each_step_round_trips_on_its_own(task, tmp_path):
    """The embedder (gate, fine-tuned backbone), the paper selector's FAISS index and the
    baselines, each through skops."""
    emb = ViTLayerFusionEmbedder(**SMALL, finetune="last", finetune_epochs=1, random_state=0)
    emb.fit(task.X_pairs, task.y)
    E = emb.transform(task.X_pairs)
    sel = FaissCandidateSelector(k=5, features="paper", min_similarity=None).fit(E)
    for est, check in [
        (emb, lambda e: e.transform(task.X_pairs).real),
        (sel, lambda s: s.transform(E)),
        (
            MaxSimilarityClassifier().fit(sel.transform(E), task.y),
            lambda c: c.predict_proba(sel.transform(E)),
        ),
    ]:
        path = save_model(est, tmp_path / f"{type(est).__name__}.skops")
        np.testing.assert_array_equal(check(load_model(path)["estimator"]), check(est))
    # the fine-tuned weights travelled, not the initial ones
    loaded = load_model(tmp_path / "ViTLayerFusionEmbedder.skops")["estimator"]
    assert loaded.backbone_.digest == emb.backbone_.digest


def test_the_fitted_image_size_travels_and_still_warns(default_file, task):
    # Catches: image_sizes_ lost by the embedder's __getstate__/__setstate__ or turned into
    # lists by skops (the size check would then fail on an unhashable list, not warn).
    loaded = load_model(default_file[0])["estimator"]
    assert loaded.named_steps["embed"].image_sizes_ == ((32, 32),)
    bigger = make_synthetic_leak(8, 8, 20, image_size=48, random_state=1)
    with pytest.warns(UserWarning, match="fitted on 32x32 images; these are 48x48") as caught:
        loaded.predict(bigger.X_pairs)
    assert len(caught) == 1 and points_at(caught[0], __file__)


def test_pickled_state_holds_no_torch_objects(default_file, task):
    """Weights travel as numpy arrays: a CUDA fit cannot leave device tensors in a file, and
    skops needs no torch type (removing a conversion from a __getstate__ fails this)."""
    model = PIPELINES["canet on relations"]().fit(task.X_pairs, task.y)
    for est in (default_file[1], model):
        assert _torch_objects(est.__getstate__()) == []
        for _, step in est.steps:
            assert _torch_objects(step.__getstate__()) == [], type(step).__name__


def test_files_need_only_the_allow_listed_types(default_file, task, tmp_path):
    found = set(skops.io.get_untrusted_types(file=default_file[0]))
    model = PIPELINES["paper: canet on vit vectors"]().fit(task.X_pairs, task.y)
    found |= set(skops.io.get_untrusted_types(data=skops.io.dumps(model)))
    assert found <= set(TRUSTED_TYPES)
    assert {t for t in found if "canet" in t or "selection" in t}  # the list is in use


# --- files that would run code ------------------------------------------------------------------


class _RunsCode:
    """An object that creates a marker file when it is rebuilt (pickle or skops)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))

    def __setstate__(self, state):
        open(state["marker"], "w").close()


def _cli_predict(capsys, model_path, tmp_path, *extra):
    root = tmp_path / "layout"
    if not root.exists():
        test = make_synthetic_leak(4, 4, 10, image_size=32, random_state=1)
        write_imageclef_layout(test, root, split="test")
    code = main(["predict", str(model_path), str(root), "-o", str(tmp_path / "s.csv"), *extra])
    return code, capsys.readouterr().err


def test_a_pickle_that_runs_code_is_refused_unless_allowed(default_file, tmp_path, capsys):
    marker = tmp_path / "pwned"
    payload = load_model(default_file[0])
    payload["estimator"].steps[-1][1].note_ = _RunsCode(marker)  # hidden deep in the model
    path = tmp_path / "evil.joblib"
    with open(path, "wb") as f:
        pickle.dump(payload, f)
    with pytest.raises(ModelFileError, match=r"evil\.joblib.*runs any code it holds"):
        load_model(path)
    code, err = _cli_predict(capsys, path, tmp_path)
    assert code == 2 and "--allow-pickle" in err and "Traceback" not in err
    assert not marker.exists() and not (tmp_path / "s.csv").exists()
    # the check is real: with the user's consent the pickle runs its code
    load_model(path, allow_pickle=True)
    assert marker.exists()


def test_a_skops_file_with_an_untrusted_object_is_refused(default_file, tmp_path, capsys):
    marker = tmp_path / "pwned"
    payload = load_model(default_file[0])
    payload["estimator"].steps[-1][1].note_ = _RunsCode.__new__(_RunsCode)
    payload["estimator"].steps[-1][1].note_.marker = str(marker)
    path = tmp_path / "evil.skops"
    skops.io.dump(payload, path)
    with pytest.raises(UntrustedModelError, match=r"evil\.skops.*_RunsCode.*Nothing"):
        load_model(path)
    code, err = _cli_predict(capsys, path, tmp_path)
    assert code == 2 and "_RunsCode" in err and "Traceback" not in err
    assert not marker.exists()
    # the file is a real attack: trusting its types runs the object's code
    skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
    assert marker.exists()


def test_a_skops_file_edited_to_call_os_system_is_refused(default_file, tmp_path, capsys):
    """The attack skops guards against: a node that *calls* a function named in the file."""
    marker = tmp_path / "pwned"
    with zipfile.ZipFile(default_file[0]) as z:
        files = {n: z.read(n) for n in z.namelist()}
    schema = json.loads(files["schema.json"])
    argument = {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode",
                "content": json.dumps(f"touch {marker}"), "is_json": True}  # fmt: skip
    schema["content"]["created"] = {
        "__class__": "system",
        "__module__": "posix",
        "__loader__": "ConstructorFromReduceNode",
        "content": {
            "__class__": "tuple",
            "__module__": "builtins",
            "__loader__": "TupleNode",
            "content": [argument],
        },
    }
    files["schema.json"] = json.dumps(schema).encode()
    path = tmp_path / "edited.skops"
    with zipfile.ZipFile(path, "w") as z:
        for name, raw in files.items():
            z.writestr(name, raw)
    with pytest.raises(UntrustedModelError, match=r"posix\.system"):
        load_model(path)
    code, err = _cli_predict(capsys, path, tmp_path)
    assert code == 2 and "posix.system" in err
    assert not marker.exists()
    # the edit is a real attack: trusting posix.system runs the command
    skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
    assert marker.exists()


def test_unknown_format_is_refused_before_writing(tmp_path):
    with pytest.raises(ValueError, match="format='pickle'"):
        save_model(PixelNearestNeighbor(), tmp_path / "m", format="pickle")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("key", ["format_version", "skfingerprint_version", "created"])
def test_metadata_cannot_overwrite_what_the_file_records_about_itself(key, tmp_path):
    # Before: save_model(m, p, format_version=3) wrote a file load_model then refused, and
    # created= or skfingerprint_version= replaced the file's own record without a word.
    with pytest.raises(ValueError, match=f"metadata {key} would overwrite"):
        save_model(PixelNearestNeighbor(), tmp_path / "m.skops", **{key: "x"})
    assert list(tmp_path.iterdir()) == []
    path = save_model(PixelNearestNeighbor(), tmp_path / "m.skops", created_by="x")
    assert load_model(path)["created_by"] == "x"  # other names are kept
    other = "created" if key != "created" else "format_version"
    with pytest.raises(ValueError) as info:  # every such key named, in one message
        save_model(PixelNearestNeighbor(), tmp_path / "n.skops", **{key: "x", other: "x"})
    taken = ", ".join(sorted([other, key]))
    assert str(info.value) == (
        f"metadata {taken} would overwrite what the model file records about itself; give "
        "the value another name"
    )


def test_the_file_records_its_format_the_writing_version_and_when_in_utc(tmp_path):
    import datetime

    from skfingerprint import __version__
    from skfingerprint.persistence import MODEL_FORMAT, MODEL_FORMAT_VERSION

    before = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    payload = load_model(save_model(PixelNearestNeighbor(), tmp_path / "m.skops"))
    after = datetime.datetime.now(datetime.timezone.utc)
    assert (payload["format"], payload["format_version"]) == (MODEL_FORMAT, MODEL_FORMAT_VERSION)
    assert payload["skfingerprint_version"] == __version__
    created = datetime.datetime.fromisoformat(payload["created"])
    assert created.utcoffset() == datetime.timedelta(0)  # one clock for files from anywhere
    assert before <= created <= after


def test_files_that_hold_no_model_are_refused_saying_what_they_hold(tmp_path):
    from skfingerprint.persistence import MODEL_FORMAT, MODEL_FORMAT_VERSION, ModelFileError

    header = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION}
    cases = [
        ({"weights": [1, 2]}, r"is not a skfingerprint model file \(it holds a dict\)"),
        ([header], r"is not a skfingerprint model file \(it holds a list\)"),
        (header, "holds no estimator"),
        ({**header, "estimator": {"fit": 1}}, "holds no estimator"),  # a dict has no fit()
    ]
    for i, (payload, match) in enumerate(cases):
        path = tmp_path / f"m{i}.skops"
        skops.io.dump(payload, path)
        with pytest.raises(ModelFileError, match=rf"'{path}' {match}"):
            load_model(path)
    torn = tmp_path / "torn.skops"
    torn.write_bytes(b"PK\x03\x04" + b"\0" * 40)  # a zip's first bytes, then nothing
    with pytest.raises(ModelFileError, match=r"corrupt \(BadZipFile: File is not a zip file\)"):
        load_model(torn)


def refusal(path, **kwargs) -> str:
    """The message ``load_model(path, **kwargs)`` refuses the file with."""
    with pytest.raises(ModelFileError) as info:
        load_model(path, **kwargs)
    return str(info.value)


def test_damaged_files_are_refused_naming_the_file_and_the_error(tmp_path):
    # Catches: the file or the error left out of the message (``_corrupt(None, exc)``), at
    # either step of a skops load or in a pickle's; an error with no text shown as "Type: ".
    def expected(path, error: str) -> str:
        return (
            f"cannot read model file '{path}': it is not a skfingerprint model file, or it is "
            f"truncated or corrupt ({error}). Make one with 'skfingerprint fit'."
        )

    saved = save_model(PixelNearestNeighbor(), tmp_path / "m.skops", weights=np.arange(5.0))
    with zipfile.ZipFile(saved) as z:
        files = {n: z.read(n) for n in z.namelist()}
    (array,) = [n for n in files if n.endswith(".npy")]
    lost = tmp_path / "lost.skops"  # an array is gone: the check of its types fails
    with zipfile.ZipFile(lost, "w") as z:
        z.writestr("schema.json", files["schema.json"])
    assert refusal(lost) == expected(
        lost, f"KeyError: \"There is no item named '{array}' in the archive\""
    )
    garbled = tmp_path / "garbled.skops"  # its types check out; building its array fails
    with zipfile.ZipFile(garbled, "w") as z:
        z.writestr("schema.json", files["schema.json"])
        z.writestr(array, b"garbage")
    head, tail = expected(garbled, "ValueError: ").split("ValueError: ")
    message = refusal(garbled)
    assert message.startswith(head + "ValueError: ") and message.endswith(tail)
    torn = tmp_path / "torn.joblib"  # unpickling it raises an EOFError with no text
    torn.write_bytes(pickle.dumps({"x": list(range(100))})[:30])
    assert refusal(torn, allow_pickle=True) == expected(torn, "EOFError")


def test_untrusted_types_are_all_named_in_one_message(default_file, tmp_path):
    payload = load_model(default_file[0])
    runs_code = _RunsCode.__new__(_RunsCode)
    runs_code.marker = str(tmp_path / "pwned")
    payload["note"] = [runs_code, threadpool_limits]  # two foreign types
    path = tmp_path / "two.skops"
    skops.io.dump(payload, path)
    with pytest.raises(UntrustedModelError) as info:
        load_model(path)
    assert str(info.value) == (
        f"model file '{path}' would build types that skfingerprint does not trust: "
        "tests.test_persistence._RunsCode, threadpoolctl.threadpool_limits. Nothing from the "
        "file was loaded or run. If you made this "
        "file yourself with other estimators, load it with skops.io.load(path, trusted=[...]) "
        "after checking those types."
    )


@pytest.mark.parametrize(
    "version, writer, fix",
    [
        (3, {"skfingerprint_version": "9.9.0"}, "upgrade skfingerprint to read it"),
        (1, {"skfingerprint_version": "0.1.0"}, "refit it with 'skfingerprint fit'"),
        ("2", {}, "refit it with 'skfingerprint fit'"),  # no writer recorded: "unknown"
    ],
)
def test_other_format_versions_are_refused_saying_what_to_do(version, writer, fix, tmp_path):
    from skfingerprint import __version__
    from skfingerprint.persistence import MODEL_FORMAT

    path = tmp_path / "m.skops"
    payload = {"format": MODEL_FORMAT, "format_version": version, **writer}
    skops.io.dump({**payload, "estimator": PixelNearestNeighbor()}, path)
    assert refusal(path) == (
        f"model file '{path}' has model format version {version!r}, written by "
        f"skfingerprint {writer.get('skfingerprint_version', 'unknown')}; this is "
        f"skfingerprint {__version__}, which reads format version 2: {fix}"
    )


def test_paths_that_hold_no_model_file_are_refused_saying_why(tmp_path):
    # Catches: a message lost (ModelFileError(None)), or a 1-byte file called empty.
    (tmp_path / "empty.skops").write_bytes(b"")
    (tmp_path / "one.joblib").write_bytes(b"x")
    assert (
        refusal(tmp_path / "gone.skops") == f"model file '{tmp_path / 'gone.skops'}' does not exist"
    )
    assert refusal(tmp_path) == f"model file '{tmp_path}' is not a file"
    assert refusal(tmp_path / "empty.skops") == (
        f"model file '{tmp_path / 'empty.skops'}' is empty (0 bytes)"
    )
    assert refusal(tmp_path / "one.joblib") == (
        f"model file '{tmp_path / 'one.joblib'}' is not a skops model file; if it is a "
        "joblib/pickle file, loading it runs any code it holds. Load it only if you trust "
        "everyone who wrote it: load_model(path, allow_pickle=True), or --allow-pickle on the "
        "command line. Save models with save_model(..., format='skops') (the default) to "
        "avoid this."
    )
