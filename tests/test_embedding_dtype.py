"""dtype="auto": the precision is chosen by a timed probe, once per process and model."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from skfingerprint import (
    ViTLayerFusionEmbedder,
    _runtime,
    _vit,
    clear_memory_cache,
    make_pairs,
)
from skfingerprint._runtime import _prefetch
from skfingerprint.datasets import make_synthetic_leak

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=4, num_heads=2)
CPU = torch.device("cpu")
FP32, BF16, FP16 = torch.float32, torch.bfloat16, torch.float16


def tiny_embedder(**params):
    params = {"gate_epochs": 5, "random_state": 0, "fusion": "mean", **params}
    return ViTLayerFusionEmbedder(
        "vit_tiny_patch16_224", pretrained=False, model_kwargs=TINY, **params
    )


@pytest.fixture(scope="module")
def images():
    return make_synthetic_leak(6, 6, 4, image_size=32, random_state=0).real_images


@pytest.fixture(autouse=True)
def fresh_probe_cache(monkeypatch):
    monkeypatch.setattr(_runtime, "_DTYPE_CHOICES", {})


def fake_probe(monkeypatch, seconds: dict, noise: dict, candidates=(FP32, BF16, FP16)):
    """Candidates and timed passes replaced: ``seconds`` per dtype, tokens = fp32's + noise of
    the given size. Returns the list of dtypes probed, in order."""
    rng = np.random.default_rng(0)
    base = rng.normal(size=(8, 4, 32))
    calls = []

    def probe_pass(backbone, x, device, dtype):
        calls.append(dtype)
        return seconds[dtype], base + noise.get(dtype, 0.0) * rng.normal(size=base.shape)

    monkeypatch.setattr(_runtime, "candidate_dtypes", lambda device: (list(candidates), {}))
    monkeypatch.setattr(_runtime, "probe_pass", probe_pass)
    return calls


def backbone(digest="w1"):
    return SimpleNamespace(digest=digest)


def sample():  # eight distinct images
    return torch.arange(8.0).view(8, 1, 1, 1).expand(8, 3, 32, 32)


def test_the_fastest_precision_that_agrees_with_fp32_is_kept(monkeypatch):
    # Catches: keeping fp32 (or the first candidate) whatever the measurements say.
    fake_probe(monkeypatch, {FP32: 1.0, BF16: 0.25, FP16: 0.5}, {BF16: 0.01, FP16: 0.01})
    choice, probe = _runtime.choose_dtype(backbone(), CPU, sample)
    assert choice == BF16
    assert probe["bfloat16"]["img_s"] == pytest.approx(8 / 0.25)
    assert probe["float32"]["img_s"] == pytest.approx(8.0)
    assert probe["float32"]["cosine"] == pytest.approx(1.0)
    assert probe["bfloat16"]["cosine"] > 0.99 and probe["device"] == "cpu"


def test_a_faster_precision_that_disagrees_with_fp32_is_rejected(monkeypatch):
    # Catches: choosing by speed alone (bf16 tokens too far from fp32's for the fingerprint).
    fake_probe(monkeypatch, {FP32: 1.0, BF16: 0.25, FP16: 0.5}, {BF16: 0.5, FP16: 0.01})
    choice, probe = _runtime.choose_dtype(backbone(), CPU, sample)
    assert probe["bfloat16"]["cosine"] < 0.99
    assert choice == FP16  # the fastest of those that agree


def test_fp32_is_kept_when_nothing_faster_agrees(monkeypatch):
    # Catches: an empty set of agreeing candidates (fp32 agrees with itself) or a slower pick.
    fake_probe(monkeypatch, {FP32: 1.0, BF16: 0.25, FP16: 2.0}, {BF16: 0.5})
    assert _runtime.choose_dtype(backbone(), CPU, sample)[0] == FP32


def test_the_probe_runs_once_per_process_and_model(monkeypatch):
    # Catches: probing on every fit (a grid search would pay it for every candidate and fold).
    calls = fake_probe(monkeypatch, {FP32: 1.0, BF16: 0.5, FP16: 0.7}, {})
    first = _runtime.choose_dtype(backbone("w1"), CPU, sample)
    assert _runtime.choose_dtype(backbone("w1"), CPU, sample) == first
    assert len(calls) == 3
    _runtime.choose_dtype(backbone("w2"), CPU, sample)  # other weights: probed again
    assert len(calls) == 6


def test_threads_asking_at_once_share_one_probe(monkeypatch):
    # Catches: a threaded grid search probing once per thread.
    calls = fake_probe(monkeypatch, {FP32: 1.0, BF16: 0.5, FP16: 0.7}, {})
    threads = [
        threading.Thread(target=_runtime.choose_dtype, args=(backbone(), CPU, sample))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 3


def test_a_choice_kept_in_the_cache_dir_is_used_instead_of_measuring(monkeypatch, tmp_path):
    # Catches: each process sharing a cache_dir measuring on its own. Where two precisions run
    # about as fast their probes can disagree, and a process that picks the other precision
    # misses the tokens in the shared folder (and embeds its shard at another rounding).
    fake_probe(monkeypatch, {FP32: 1.0, BF16: 0.25, FP16: 0.5}, {})
    first, probe = _runtime.choose_dtype(backbone(), CPU, sample, tmp_path)
    assert first == BF16 and Path(probe["kept_in"]).parent == tmp_path / "dtype-auto"
    # another process (an empty memo) whose own probe would pick fp16
    monkeypatch.setattr(_runtime, "_DTYPE_CHOICES", {})
    calls = fake_probe(monkeypatch, {FP32: 1.0, BF16: 0.5, FP16: 0.25}, {})
    choice, kept = _runtime.choose_dtype(backbone(), CPU, sample, tmp_path)
    assert choice == BF16 and calls == []
    assert kept["bfloat16"]["img_s"] == probe["bfloat16"]["img_s"]  # the measuring fit's numbers
    monkeypatch.setattr(_runtime, "_DTYPE_CHOICES", {})
    assert _runtime.choose_dtype(backbone(), CPU, sample)[0] == FP16  # without the folder


def test_the_first_process_to_keep_a_choice_wins(monkeypatch, tmp_path):
    # Catches: a later writer replacing the kept choice (os.replace where the name is taken),
    # so that two processes probing at once go on in two precisions.
    fake_probe(monkeypatch, {FP32: 1.0, BF16: 0.25, FP16: 0.5}, {})
    measure = _runtime._probe

    def raced(*args):  # another process keeps fp32 while this one measures
        found = measure(*args)
        _runtime._keep_choice(path, FP32, dict(found[1]))
        return found

    path = _runtime._choice_path(tmp_path, "w1", CPU)
    monkeypatch.setattr(_runtime, "_probe", raced)
    assert _runtime.choose_dtype(backbone(), CPU, sample, tmp_path)[0] == FP32
    assert json.loads(path.read_text())["dtype"] == "float32"


def test_an_unreadable_kept_choice_is_named_and_measured_again(monkeypatch, tmp_path):
    # Catches: a torn or foreign file taken as a choice, or failing every later fit.
    calls = fake_probe(monkeypatch, {FP32: 1.0, BF16: 0.25, FP16: 0.5}, {})
    path = _runtime._choice_path(tmp_path, "w1", CPU)
    path.parent.mkdir(parents=True)
    for text in ('{"dtype": "int8", "probe": {"probe_s": 1}}', '{"dtype": "bfloat16"', "{}"):
        monkeypatch.setattr(_runtime, "_DTYPE_CHOICES", {})
        path.write_text(text)
        with pytest.warns(RuntimeWarning, match=f"unreadable dtype='auto' choice '{path}'"):
            assert _runtime.choose_dtype(backbone(), CPU, sample, tmp_path)[0] == BF16
        assert json.loads(path.read_text())["dtype"] == "bfloat16"
    assert len(calls) == 9


def test_a_kept_choice_belongs_to_its_machine(monkeypatch, tmp_path):
    # Catches: a folder shared between machines (a network drive) handing an AMX machine's
    # bf16 to an AVX2-only one, where bf16 is emulated and ~50x slower.
    fake_probe(monkeypatch, {FP32: 1.0, BF16: 0.25, FP16: 0.5}, {})
    _runtime.choose_dtype(backbone(), CPU, sample, tmp_path)
    monkeypatch.setattr(_runtime, "_DTYPE_CHOICES", {})
    monkeypatch.setattr(_runtime, "machine_signature", lambda device: "another CPU")
    calls = fake_probe(monkeypatch, {FP32: 0.5, BF16: 1.0, FP16: 1.0}, {})
    assert _runtime.choose_dtype(backbone(), CPU, sample, tmp_path)[0] == FP32
    assert len(calls) == 3 and len(list((tmp_path / "dtype-auto").glob("*.json"))) == 2


def test_embedders_sharing_a_cache_dir_embed_in_one_precision(
    monkeypatch, images, tmp_path, capsys
):
    # Catches: the embedder not passing its cache_dir to the probe.
    fake_probe(monkeypatch, {FP32: 1.0, BF16: 0.25, FP16: 0.5}, {})
    first = tiny_embedder(cache_dir=tmp_path).fit(images)
    monkeypatch.setattr(_runtime, "_DTYPE_CHOICES", {})
    fake_probe(monkeypatch, {FP32: 0.25, BF16: 1.0, FP16: 1.0}, {})
    second = tiny_embedder(cache_dir=tmp_path, verbose=1).fit(images)
    assert first.dtype_ == second.dtype_ == "bfloat16"
    assert second.dtype_probe_["kept_in"].startswith(str(tmp_path))
    line = capsys.readouterr().err.splitlines()[0]
    assert line.startswith("dtype='auto' on cpu: bfloat16 (probe ")
    assert line.endswith(f"kept in {second.dtype_probe_['kept_in']}")


def test_no_bf16_trial_on_a_cpu_without_native_bf16(monkeypatch):
    # Catches: timing emulated bf16 on an AVX2-only CPU (one ViT-B batch would take minutes).
    monkeypatch.setattr(_runtime, "cpu_has_fast_bf16", lambda: False)

    def no_pass(*args):
        raise AssertionError("nothing should be timed")

    monkeypatch.setattr(_runtime, "probe_pass", no_pass)
    choice, probe = _runtime.choose_dtype(backbone(), CPU, lambda: no_pass())
    assert choice == FP32
    assert "native bf16" in probe["bfloat16"]["skipped"]
    assert probe["float32"]["img_s"] is None


def bf16_verdict(monkeypatch, cpuinfo, seconds):
    """``cpu_bf16_verdict`` measured afresh on a CPU whose flags are ``cpuinfo`` and whose
    products take ``seconds[dtype]``; returns it and the dtypes timed."""
    timed, threads = [], []

    def matmul_seconds(dtype, n=256):
        timed.append(dtype)
        threads.append(torch.get_num_threads())
        return seconds[dtype]

    monkeypatch.setattr(_runtime, "_cpuinfo", lambda: cpuinfo)
    monkeypatch.setattr(_runtime, "_matmul_seconds", matmul_seconds)
    before = torch.get_num_threads()
    verdict = _runtime.cpu_bf16_verdict.__wrapped__()
    # timed on one thread (two threads' products wait for a busy core), the count restored
    assert set(threads) <= {1} and torch.get_num_threads() == before
    return verdict, timed


def test_bf16_is_native_only_where_the_flag_and_a_timed_product_agree(monkeypatch):
    # Catches: trusting the CPU flag alone. With ONEDNN_MAX_CPU_ISA=AVX2 on an AVX512-BF16
    # Zen 5, bf16 products ran 59x slower than fp32 (measured): dtype="auto" would have probed
    # a ViT-B batch in emulated bf16 for minutes, and CANet trained in it.
    flags = "flags : fpu avx2 avx512f avx512_bf16"
    verdict, timed = bf16_verdict(monkeypatch, flags, {FP32: 1e-3, BF16: 0.3e-3})
    assert verdict is None and timed == [FP32, BF16]
    verdict, _ = bf16_verdict(monkeypatch, flags, {FP32: 1e-3, BF16: 59e-3})
    assert "bf16 emulated in this process although the CPU has it (59x" in verdict
    verdict, _ = bf16_verdict(monkeypatch, "flags : amx_bf16", {FP32: 1e-3, BF16: 1.9e-3})
    assert verdict is None  # slower than fp32 but not emulated: left to the probe to time
    # no flag: nothing is timed (an emulated product is what the check must not pay for)
    verdict, timed = bf16_verdict(monkeypatch, "flags : fpu avx2", {})
    assert verdict.startswith("no native bf16 on this CPU") and timed == []


def test_the_bf16_check_leaves_torchs_global_random_stream_alone():
    # Catches: the check drawing its matrices from the global generator, so that a seeded fit
    # whose first bf16 question came between its seeding and its draws would get other weights.
    torch.manual_seed(0)
    _runtime._matmul_seconds(torch.float32, 8)
    after_check = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after_check, torch.rand(3))


def test_bf16_that_torch_is_kept_from_is_found_emulated():
    # The bug this check was made for, end to end: on a CPU with the bf16 flag, a process whose
    # oneDNN is capped at AVX2 must not be told its bf16 is native (it ran 59x slower).
    if not _runtime.cpu_has_bf16_flag():
        pytest.skip("no bf16 flag on this CPU: nothing to keep torch from")
    code = "from skfingerprint._runtime import cpu_bf16_verdict; print(cpu_bf16_verdict())"
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "bf16 emulated in this process although the CPU has it" in out


def test_the_real_bf16_check_agrees_with_this_machine():
    # Smoke test of the un-faked check on whatever CPU runs the suite: it must not time an
    # emulated product where the flag is absent, and where bf16 is native it must find it so
    # (unless torch is kept from it, which the suite does not do).
    if "ONEDNN_MAX_CPU_ISA" in os.environ:
        pytest.skip("torch's ISA is restricted in this process")
    assert _runtime.cpu_has_fast_bf16() == _runtime.cpu_has_bf16_flag()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_an_explicit_dtype_skips_the_probe(monkeypatch, images, dtype):
    # Catches: the probe overriding (or delaying) a precision the user asked for.
    calls = fake_probe(monkeypatch, {FP32: 1.0, BF16: 0.1, FP16: 0.1}, {})
    emb = tiny_embedder(dtype=dtype).fit(images)
    assert calls == [] and emb.dtype_ == dtype and emb.dtype_probe_ is None
    assert emb._runtime()[1] == getattr(torch, dtype)


def test_the_embedder_runs_in_the_probed_precision_and_shows_it(monkeypatch, images, capsys):
    # Catches: the choice computed but not used, or not recorded/shown.
    fake_probe(monkeypatch, {FP32: 1.0, BF16: 0.25, FP16: 0.5}, {FP16: 0.5}, (FP32, BF16, FP16))
    used = []
    real_embed = _vit.Backbone.embed_batch

    def spy(self, x, device, dtype, *args, **kwargs):
        used.append(dtype)
        return real_embed(self, x, device, dtype, *args, **kwargs)

    monkeypatch.setattr(_vit.Backbone, "embed_batch", spy)
    clear_memory_cache()
    emb = tiny_embedder(verbose=1).fit(images)
    assert emb.dtype_ == "bfloat16" and set(used) == {BF16}
    assert emb.dtype_probe_["bfloat16"]["img_s"] == pytest.approx(len(images) / 0.25)
    line = capsys.readouterr().err.splitlines()[0]
    assert line.startswith("dtype='auto' on cpu: bfloat16 (probe ")
    assert f"float32 {len(images):.1f} img/s, cosine 1.0000" in line and "float16" in line
    emb.transform(images[:2] // 2)  # new images, embedded in the fitted precision
    assert set(used) == {BF16}


def test_a_probe_of_one_image_settles_nothing(monkeypatch, tmp_path):
    # Catches: one image's tokens compared (uncentred, they agree in any precision: bf16 was
    # chosen that way for the whole process, where 16 images rejected it at cosine 0.97), or
    # that fp32 remembered in the process or the folder, so that no later fit measures.
    calls = fake_probe(monkeypatch, {FP32: 1.0, BF16: 0.25, FP16: 0.5}, {})
    choice, probe = _runtime.choose_dtype(
        backbone(), CPU, lambda: torch.zeros(1, 3, 32, 32), tmp_path
    )
    assert (choice, calls, probe["settled"]) == (FP32, [], False)
    why = "one distinct image: nothing to tell apart, so no agreement to measure"
    assert probe["bfloat16"] == probe["float16"] == {"skipped": why}
    assert probe["float32"] == {
        "img_s": None,
        "cosine": 1.0,
        "note": "one distinct image, the reference",
    }
    assert _runtime.describe_probe(choice, probe) == (
        f"dtype='auto' on cpu: float32 (probe of 1 image, {probe['probe_s']:.1f} s: float32 "
        f"(one distinct image, the reference, not timed); bfloat16 skipped ({why}); float16 "
        f"skipped ({why}))"
        ", for this fit only: the next fit with two distinct images measures"
    )
    assert _runtime._DTYPE_CHOICES == {} and not (tmp_path / "dtype-auto").exists()
    choice, probe = _runtime.choose_dtype(backbone(), CPU, sample, tmp_path)  # eight images
    assert (choice, calls, "settled" in probe) == (BF16, [FP32, BF16, FP16], False)
    assert probe["n_images"] == 8 and "(probe of 8 images, " in _runtime.describe_probe(
        choice, probe
    )
    assert _runtime.choose_dtype(backbone(), CPU, sample)[0] == BF16  # now remembered


def test_copies_of_one_image_settle_nothing_and_fp32_is_never_rejected(monkeypatch):
    # Catches: identical images counted as several (their centred tokens are zeros in every
    # precision: bf16 kept for the process on no evidence), and fp32 judged against itself:
    # zero tokens give a cosine of 0, every candidate was rejected and ``max`` of nothing
    # crashed the fit of a folder of blank images.
    calls = fake_probe(monkeypatch, {FP32: 1.0, BF16: 0.25}, {}, (FP32, BF16))
    copies = torch.ones(8, 3, 32, 32)
    choice, probe = _runtime.choose_dtype(backbone(), CPU, lambda: copies)
    assert (choice, calls, probe["settled"]) == (FP32, [], False)
    copies[7, 0, 0, 0] = 0.0  # two distinct images: measured, on all eight
    choice, probe = _runtime.choose_dtype(backbone(), CPU, lambda: copies)
    assert (choice, probe["n_images"]) == (BF16, 8)

    monkeypatch.setattr(_runtime, "_DTYPE_CHOICES", {})
    monkeypatch.setattr(_runtime, "token_agreement", lambda ref, tokens: 0.0)
    assert _runtime.choose_dtype(backbone(), CPU, sample)[0] == FP32


def test_one_real_image_is_probed_beside_the_generated_ones(monkeypatch, images):
    # Catches: the probe's sample drawn from the reals alone (one real: nothing measured), or
    # topped up past the batch size, or a fit on one image that decides for the next ones.
    fake_probe(monkeypatch, {FP32: 1.0, BF16: 0.25}, {}, (FP32, BF16))
    sizes = []
    real_pass = _runtime.probe_pass
    monkeypatch.setattr(
        _runtime, "probe_pass", lambda b, x, *a: (sizes.append(len(x)), real_pass(b, x, *a))[1]
    )
    clear_memory_cache()
    alone = tiny_embedder().fit(images[:1])
    assert (alone.dtype_, alone.dtype_probe_["settled"], sizes) == ("float32", False, [])
    paired = tiny_embedder(batch_size=4).fit(make_pairs(images[:1], images[1:]))
    assert (paired.dtype_, sizes) == ("bfloat16", [4, 4])
    for real, library, n in ((4, 1, 4), (1, 2, 3)):  # enough reals; a library too small
        monkeypatch.setattr(_runtime, "_DTYPE_CHOICES", {})
        sizes.clear()
        tiny_embedder(batch_size=4).fit(make_pairs(images[:real], images[real : real + library]))
        assert sizes == [n, n]
    assert tiny_embedder().fit(images[:1]).dtype_ == "bfloat16"  # the measured choice


def test_fine_tuned_weights_are_probed_again(monkeypatch, images):
    # Catches: the precision measured on the weights before fine-tuning kept for the tuned
    # ones (an untrained ViT-B keeps fp32 at cosine 0.98; after two epochs of finetune="all"
    # its tokens agree with bf16 at 0.994, benchmarks/RESULTS_embed.md).
    fake_probe(monkeypatch, {FP32: 1.0, BF16: 0.25}, {}, (FP32, BF16))
    digests = []
    measure = _runtime._probe

    def probe(backbone, device, sample):
        digests.append(backbone.digest)
        choice, numbers = measure(backbone, device, sample)
        return (FP32, numbers) if len(digests) == 1 else (choice, numbers)

    monkeypatch.setattr(_runtime, "_probe", probe)
    clear_memory_cache()
    emb = tiny_embedder(finetune="all", finetune_epochs=1).fit(images)
    assert len(set(digests)) == 2 and digests[1] == emb.backbone_.digest
    assert emb.dtype_ == "bfloat16"


def test_the_real_probe_times_each_candidate_and_compares_tokens(monkeypatch, images):
    # Catches: a probe pass that fails on a real model, or an fp32 reference that is not fp32.
    monkeypatch.setattr(_runtime, "cpu_has_fast_bf16", lambda: True)
    emb = tiny_embedder().fit(images)
    probe = emb.dtype_probe_
    assert probe["float32"]["cosine"] == pytest.approx(1.0, abs=1e-6)
    assert probe["float32"]["img_s"] > 0 and probe["bfloat16"]["img_s"] > 0
    assert 0.5 < probe["bfloat16"]["cosine"] < 1.0  # bf16 rounds: close, not identical
    assert emb.dtype_ in ("float32", "bfloat16")


def test_a_model_fitted_on_another_kind_of_device_falls_back_to_the_static_rule(images):
    # Catches: a GPU's fp16 choice applied on a CPU after loading the model there.
    emb = tiny_embedder().fit(images)
    emb.dtype_, emb.dtype_probe_ = "float16", {"device": "cuda:0"}
    assert emb._runtime()[1] == _runtime.resolve_dtype("auto", CPU)


def test_a_model_fitted_before_the_probe_existed_uses_the_static_rule(images):
    # Catches: a model saved without dtype_probe_ failing with AttributeError when it embeds.
    emb = tiny_embedder().fit(images)
    del emb.dtype_probe_
    assert emb._runtime()[1] == _runtime.resolve_dtype("auto", CPU)
    assert emb.transform(images[:2]).shape == (2, 32)


def test_the_probe_embeds_at_most_16_images_of_the_fit(monkeypatch):
    # Catches: a larger probe sample than the 16 images the docs promise (each costs a pass per
    # precision), or a smaller batch size not limiting it.
    monkeypatch.setattr(_runtime, "cpu_has_fast_bf16", lambda: True)
    many = make_synthetic_leak(10, 10, 20, image_size=32, random_state=1).real_images
    assert tiny_embedder().fit(many).dtype_probe_["n_images"] == 16
    monkeypatch.setattr(_runtime, "_DTYPE_CHOICES", {})
    assert tiny_embedder(batch_size=5).fit(many).dtype_probe_["n_images"] == 5


def test_token_agreement_sees_past_the_tokens_common_component():
    # Catches: comparing raw CLS tokens, whose shared component makes any two sets agree.
    rng = np.random.default_rng(0)
    common = 50 * rng.normal(size=(1, 3, 16))
    ref = common + rng.normal(size=(10, 3, 16))
    noisy = common + rng.normal(size=(10, 3, 16))  # image-specific parts unrelated
    raw = (ref * noisy).sum(-1) / np.linalg.norm(ref, axis=-1) / np.linalg.norm(noisy, axis=-1)
    assert raw.min() > 0.99
    assert _runtime.token_agreement(ref, noisy) < 0.5
    assert _runtime.token_agreement(ref, ref) == pytest.approx(1.0)
    assert _runtime.token_agreement(ref, ref + 0.01 * rng.normal(size=ref.shape)) > 0.99


def _finishes(call, seconds: float = 10.0) -> bool:
    """Run ``call`` in a thread: whether it returned within ``seconds`` (a hang fails the test
    instead of the suite)."""
    done = threading.Event()
    threading.Thread(target=lambda: (call(), done.set()), daemon=True).start()
    return done.wait(seconds)


def test_prefetch_hands_on_every_item_before_a_failure():
    # Catches: a decode error in the prefetching thread lost, or raised before earlier batches.
    def items():
        yield 0
        yield 1
        raise ValueError("bad image")

    got, raised = [], []

    def consume():
        try:
            for item in _prefetch(items()):
                got.append(item)
        except ValueError as exc:
            raised.append(str(exc))

    assert _finishes(consume)  # a lost item or error would leave it waiting for ever
    assert got == [0, 1] and raised == ["bad image"]


def test_prefetch_thread_ends_when_the_consumer_stops():
    # Catches: a thread left decoding (or blocked) after Ctrl-C or an error in the ViT pass.
    def endless():
        i = 0
        while True:
            yield i
            i += 1

    gen = _prefetch(endless())
    assert next(gen) == 0
    time.sleep(0.3)  # the thread fills the queue and waits to put the next item
    assert _finishes(gen.close)  # a put that waits without end would hang here
    assert not [t for t in threading.enumerate() if t.name == "skfingerprint-prefetch"]


def test_prefetch_hands_on_every_item_to_a_slow_consumer_none_included():
    # Catches: a full queue ending the thread (a consumer slower than decoding, as a ViT pass
    # is, would wait for ever for the next batch), or None taken for the end of the items.
    got = []

    def consume():
        for item in _prefetch(iter([1, None, 2, 3])):
            time.sleep(0.15)  # longer than the thread waits for a free slot
            got.append(item)

    assert _finishes(consume)
    assert got == [1, None, 2, 3]


def test_batches_are_made_ahead_for_a_gpu_and_in_turn_for_a_cpu(monkeypatch):
    # Catches: a prefetching thread started beside a CPU pass (whose own threads use every
    # core: 1.07-1.17x slower, RESULTS_embed.md), or none for a GPU pass.
    from skfingerprint import _tokens

    def items():
        yield threading.current_thread().name
        yield threading.current_thread().name

    assert list(_runtime.prepared_for(torch.device("cpu"), items())) == ["MainThread"] * 2
    ahead = list(_runtime.prepared_for(torch.device("cuda"), items()))
    assert ahead == ["skfingerprint-prefetch"] * 2
    # the embedder's CPU pass goes through it, on the device it runs on
    seen = []
    monkeypatch.setattr(_tokens, "prepared_for", lambda device, it: seen.append(device.type) or it)
    clear_memory_cache()
    pixels = np.random.default_rng(0).random((5, 32, 32, 3)).astype(np.float32)
    out = tiny_embedder(device="cpu", dtype="float32", batch_size=2).fit_transform(pixels)
    assert seen == ["cpu"] and out.real.shape[0] == 5


@pytest.mark.parametrize("position_code", [False, True])
def test_the_public_timm_pass_gives_the_hand_written_one(position_code):
    # Catches: forward_intermediates (or the hook adding the position code) giving other
    # numbers than the pass the token caches were made with.
    backbone = _vit.load_backbone(
        "vit_tiny_patch16_224",
        pretrained=False,
        checkpoint=None,
        model_kwargs=TINY,
        seed=3,
        position_code=position_code,
    )
    module = backbone.module
    if position_code:  # a trained (non-zero) code, so that skipping it would show
        torch.nn.init.normal_(module.position_code.proj.weight)
    m = module.vit
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        tokens = m._pos_embed(m.patch_embed(x))
        if position_code:
            tokens = module.position_code(tokens, m.num_prefix_tokens)
        tokens = m.norm_pre(m.patch_drop.forward(tokens))
        cls = []
        for block in m.blocks:
            tokens = block(tokens)
            cls.append(tokens[:, 0])
        torch.testing.assert_close(module(x), torch.stack(cls, 1), rtol=0, atol=0)
    if position_code:
        torch.nn.init.zeros_(module.position_code.proj.weight)  # the cached backbone is shared


def test_mean_and_std_come_from_timm_data_config():
    # Catches: normalising with constants that are not the model's.
    import timm

    backbone = _vit.load_backbone(
        "vit_tiny_patch16_224",
        pretrained=False,
        checkpoint=None,
        model_kwargs=TINY,
        seed=0,
        position_code=False,
    )
    cfg = timm.data.resolve_model_data_config(backbone.module.vit)
    assert backbone.mean == tuple(cfg["mean"]) and backbone.std == tuple(cfg["std"])


def test_token_agreement_weighs_every_block_alike_and_handles_one_or_two_images():
    # Catches: one scale for all blocks, or a floor on it (a quiet block's disagreement
    # drowned by a loud block that agrees: bf16 kept where a block is wrong); centring needing
    # three images (with two, the shared component hides a disagreement); centring a single
    # image on itself (its tokens become zeros: any precision would be rejected).
    rng = np.random.default_rng(1)
    loud = 100 * rng.normal(size=(6, 1, 16))
    quiet_ref, quiet_other = 1e-3 * rng.normal(size=(2, 6, 1, 16))
    ref = np.concatenate([loud, quiet_ref], axis=1)
    other = np.concatenate([loud, quiet_other], axis=1)  # block 2 unrelated
    assert _runtime.token_agreement(ref, other) < 0.8
    common = 50 * rng.normal(size=(1, 1, 16))
    two_ref = common + rng.normal(size=(2, 1, 16))
    two_other = common + rng.normal(size=(2, 1, 16))
    assert _runtime.token_agreement(two_ref, two_other) < 0.9
    one = rng.normal(size=(1, 2, 16))
    assert _runtime.token_agreement(one, one) == pytest.approx(1.0)
    assert _runtime.token_agreement(one, one + 0.01 * rng.normal(size=one.shape)) > 0.99


def test_a_precision_that_agrees_exactly_at_the_bar_is_kept(monkeypatch):
    # Catches: ">" for ">=" against MIN_PROBE_COSINE, and a probe time that is not a duration.
    fake_probe(monkeypatch, {FP32: 1.0, BF16: 0.25}, {}, (FP32, BF16))
    monkeypatch.setattr(_runtime, "token_agreement", lambda ref, tokens: _runtime.MIN_PROBE_COSINE)
    choice, probe = _runtime.choose_dtype(backbone(), CPU, sample)
    assert choice == BF16
    assert 0 <= probe["probe_s"] < 60


def test_the_only_candidate_is_recorded_as_agreeing_untimed(monkeypatch):
    # Catches: the lone fp32 row without its cosine or note (dtype_probe_ and the verbose line
    # would read as a failed probe).
    monkeypatch.setattr(_runtime, "cpu_has_fast_bf16", lambda: False)
    choice, probe = _runtime.choose_dtype(backbone(), CPU, sample)
    assert choice == FP32
    assert probe["float32"] == {"img_s": None, "cosine": 1.0, "note": "the only candidate"}
    line = _runtime.describe_probe(choice, probe)
    assert line.startswith("dtype='auto' on cpu: float32 (probe ")
    assert "float32 (the only candidate, not timed); bfloat16 skipped (" in line


def test_the_probe_line_shows_every_candidate_and_where_the_choice_is_kept():
    # Catches: a candidate's numbers, a skip reason or the kept file left out of the line.
    probe = {
        "float32": {"img_s": 4.0, "cosine": 1.0},
        "bfloat16": {"img_s": 12.345, "cosine": 0.99991},
        "float16": {"skipped": "probed on GPUs only"},
        "device": "cpu",
        "probe_s": 1.25,
        "kept_in": "/c/x.json",
    }
    assert _runtime.describe_probe(BF16, probe) == (
        "dtype='auto' on cpu: bfloat16 (probe 1.2 s: float32 4.0 img/s, cosine 1.0000; "
        "bfloat16 12.3 img/s, cosine 0.9999; float16 skipped (probed on GPUs only)), "
        "kept in /c/x.json"
    )
    del probe["kept_in"]
    assert _runtime.describe_probe(BF16, probe).endswith("skipped (probed on GPUs only))")


def test_the_choice_is_measured_per_device(monkeypatch):
    # Catches: the in-process memo keyed by the weights only, so one device's choice (a GPU's
    # bf16) is reused on another.
    calls = fake_probe(monkeypatch, {FP32: 1.0, BF16: 0.25}, {}, (FP32, BF16))
    _runtime.choose_dtype(backbone(), CPU, sample)
    _runtime.choose_dtype(backbone(), torch.device("cpu", 0), sample)
    assert len(calls) == 4


def test_the_static_rule_follows_the_hardware(monkeypatch):
    # Catches: an explicit dtype not honoured, or "auto" not asking the hardware (bf16 on an
    # AVX2-only CPU runs emulated, ~50x slower; fp32 where bf16 is native wastes 2-4x).
    for native in (True, False):
        monkeypatch.setattr(_runtime, "cpu_has_fast_bf16", lambda native=native: native)
        assert _runtime.resolve_dtype("auto", CPU) == (BF16 if native else FP32)
        assert _runtime.resolve_dtype("float32", CPU) == FP32
        assert _runtime.resolve_dtype("bfloat16", CPU) == BF16
    gpu = torch.device("cuda")
    for supported in (True, False):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda s=supported: s)
        assert _runtime.resolve_dtype("auto", gpu) == (BF16 if supported else FP32)
        assert _runtime.resolve_dtype("bfloat16", gpu) == BF16


def test_the_candidates_are_those_the_device_runs_natively(monkeypatch):
    # Catches: the capability check ignored (AMX machines would never get bf16), fp16 timed on
    # a CPU (no fast kernels), bf16 on a GPU without it, or the reason for a skipped precision
    # lost.
    gpu = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert _runtime.candidate_dtypes(gpu) == ([FP32, BF16, FP16], {})
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert _runtime.candidate_dtypes(gpu) == ([FP32, FP16], {"bfloat16": "this GPU has no bf16"})
    monkeypatch.setattr(_runtime, "cpu_has_fast_bf16", lambda: True)
    assert _runtime.candidate_dtypes(CPU) == ([FP32, BF16], {"float16": "probed on GPUs only"})
    monkeypatch.setattr(_runtime, "cpu_has_fast_bf16", lambda: False)
    monkeypatch.setattr(_runtime, "cpu_bf16_verdict", lambda: "no flag")
    assert _runtime.candidate_dtypes(CPU) == (
        [FP32],
        {"bfloat16": "no flag", "float16": "probed on GPUs only"},
    )


def test_the_machine_signature_names_the_cpu_its_bf16_and_torch(monkeypatch):
    # Catches: a signature without the CPU model or its bf16 verdict (a choice kept in a shared
    # folder handed to another machine), one that reads the wrong line or cuts the model name
    # at a later colon, no fallback where /proc/cpuinfo has no model line (or none at all), and
    # a GPU named without its device.
    info = "processor\t: 0\nmodel name\t: AMD EPYC 9R14 96-Core Processor\nflags\t: avx2\n"
    monkeypatch.setattr(_runtime, "_cpuinfo", lambda: info)
    for native, word in ((True, "native"), (False, "emulated")):
        monkeypatch.setattr(_runtime, "cpu_has_fast_bf16", lambda native=native: native)
        assert _runtime.machine_signature(CPU) == (
            f"cpu: AMD EPYC 9R14 96-Core Processor, bf16 {word}; torch {torch.__version__}"
        )
    monkeypatch.setattr(_runtime, "_cpuinfo", lambda: "model name\t: Vendor CPU: rev 2\n")
    assert _runtime.machine_signature(CPU).startswith("cpu: Vendor CPU: rev 2, bf16 emulated;")
    monkeypatch.setattr(_runtime, "_cpuinfo", lambda: "")
    monkeypatch.setattr(_runtime.platform, "processor", lambda: "")
    monkeypatch.setattr(_runtime.platform, "machine", lambda: "aarch64")
    assert _runtime.machine_signature(CPU).startswith("cpu: aarch64, bf16 emulated;")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: f"GPU {device}")
    assert _runtime.machine_signature(torch.device("cuda", 1)) == (
        f"cuda: GPU cuda:1; torch {torch.__version__}"
    )


def test_a_kept_choice_needs_its_probe_time_and_says_where_it_is(monkeypatch, tmp_path):
    # Catches: a record whose probe lacks probe_s accepted (the verbose line would fail on it),
    # the reason left out of the warning, or a kept choice that does not say where it is kept;
    # and a cache_dir whose parent folders do not exist yet.
    fake_probe(monkeypatch, {FP32: 1.0, BF16: 0.25}, {}, (FP32, BF16))
    folder = tmp_path / "new" / "cache"
    path = _runtime._choice_path(folder, "w1", CPU)
    assert _runtime.choose_dtype(backbone(), CPU, sample, folder)[0] == BF16
    record = json.loads(path.read_text())
    assert record["dtype"] == "bfloat16" and "probe_s" in record["probe"]
    monkeypatch.setattr(_runtime, "_DTYPE_CHOICES", {})
    choice, probe = _runtime.choose_dtype(backbone(), CPU, sample, folder)
    assert choice == BF16 and probe["kept_in"] == str(path)
    path.write_text(json.dumps({"dtype": "bfloat16", "probe": {"device": "cpu"}}))
    monkeypatch.setattr(_runtime, "_DTYPE_CHOICES", {})
    with pytest.warns(RuntimeWarning, match="no precision choice in it"):
        _runtime.choose_dtype(backbone(), CPU, sample, folder)


def test_each_probe_pass_runs_in_its_own_precision_and_is_timed():
    # Catches: autocast on for the fp32 reference and off for bf16 (the probe would time and
    # compare each precision as the other, and keep the wrong one), autocast without its dtype
    # (a GPU's default is fp16, not the bf16 asked for), a time that is not a duration, or a
    # warm-up of the whole sample (a full pass more per precision: the probe took 1.7x longer).
    seen, rows = [], []

    class Module(torch.nn.Module):
        def forward(self, x):
            seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
            rows.append(len(x))
            return x * 2

    model = SimpleNamespace(runtime=lambda device: Module())
    x = torch.ones(5, 3)
    for dtype in (FP32, BF16):
        seen.clear()
        seconds, out = _runtime.probe_pass(model, x, CPU, dtype)
        assert 0 <= seconds < 10 and out.dtype == np.float32
        np.testing.assert_array_equal(out, 2 * np.ones((5, 3)))
        assert rows[-2:] == [2, 5]
        if dtype == FP32:  # the warm-up and the timed pass
            assert [enabled for enabled, _ in seen] == [False, False]
        else:
            assert seen == [(True, BF16)] * 2
    seen.clear()
    _runtime.probe_pass(model, x, CPU, FP16)  # the dtype asked reaches autocast, not its default
    assert seen == [(True, FP16)] * 2


def test_a_gpu_pass_is_waited_for_before_it_is_timed(monkeypatch):
    # Catches: the GPU not synchronised (its asynchronous launches would time as free), or the
    # wrong device synchronised.
    waited = []
    monkeypatch.setattr(torch.cuda, "synchronize", waited.append)
    _runtime._synchronize(CPU)
    gpu = torch.device("cuda", 1)
    _runtime._synchronize(gpu)
    assert waited == [gpu]


def test_token_agreement_of_identical_tokens_is_one_even_near_the_mean():
    # Catches: a floor of 1 on the norms (an image whose standardised tokens are small, near
    # the images' mean, would score ~0 against identical tokens and reject every precision).
    rng = np.random.default_rng(2)
    spread = rng.normal(size=(2, 3, 16))
    ref = np.concatenate([spread, -spread, 1e-4 * rng.normal(size=(1, 3, 16))])
    assert _runtime.token_agreement(ref, ref.copy()) == pytest.approx(1.0)


def test_a_kept_choice_says_where_it_was_read(monkeypatch, tmp_path):
    # Catches: the file's path not added to a choice read back (a choice written by another
    # version, or a folder moved, would show no or an old path).
    path = _runtime._choice_path(tmp_path, "w1", CPU)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"dtype": "float32", "probe": {"device": "cpu", "probe_s": 1}}))
    choice, probe = _runtime.choose_dtype(backbone(), CPU, sample, tmp_path)
    assert choice == FP32 and probe["kept_in"] == str(path)


def test_devices_auto_and_a_missing_gpu(monkeypatch):
    # Catches: "auto" ignoring a GPU, or a request for a missing GPU let through (it would
    # fail later, mid-fit) or refused without saying what to do.
    assert _runtime.resolve_device("cpu") == CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _runtime.resolve_device("auto") == CPU
    with pytest.raises(ValueError, match=r"device='cuda:1' but CUDA is not available here; use"):
        _runtime.resolve_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _runtime.resolve_device("auto") == torch.device("cuda")
    assert _runtime.resolve_device("cuda:1") == torch.device("cuda", 1)


def test_cpuinfo_is_read_from_proc_or_empty(monkeypatch):
    # Catches: another file read (no flag ever found: bf16 never used), or a machine without
    # /proc/cpuinfo answered with anything but "" (a fake flag could be found in it).
    if Path("/proc/cpuinfo").is_file():
        assert _runtime._cpuinfo() == Path("/proc/cpuinfo").read_text()

    def unreadable(self):
        raise OSError("no /proc here")

    monkeypatch.setattr(Path, "read_text", unreadable)
    assert _runtime._cpuinfo() == ""


def test_the_bf16_check_times_square_products_in_the_precision_asked(monkeypatch):
    # Catches: both products timed in fp32 (emulated bf16 never found), vectors instead of
    # square matrices, or a time that is not a duration.
    products = []
    real_matmul = torch.Tensor.__matmul__

    def spy(a, b):
        products.append((a.dtype, tuple(a.shape), tuple(b.shape)))
        return real_matmul(a, b)

    monkeypatch.setattr(torch.Tensor, "__matmul__", spy)
    seconds = _runtime._matmul_seconds(BF16, 64)
    n = _runtime._BF16_CHECK_SIZE
    assert products == [(BF16, (64, 64), (64, 64))] * 6 and 0 < seconds < 1
    products.clear()
    _runtime._matmul_seconds(FP32)
    assert products == [(FP32, (n, n), (n, n))] * 6


def test_optimisers_are_fused_where_torch_can_and_keep_their_settings_where_it_cannot():
    # Catches: the fused update not asked for (a CANet fit 1.07-1.12x slower), AdamW built as
    # another optimiser or without its settings, and on a torch that fuses on CUDA only
    # (< 2.4) a fallback that drops the parameters (already consumed) or the settings.
    weights = [torch.nn.Parameter(torch.zeros(2))]
    opt = _runtime.adamw(iter(weights), lr=0.5, weight_decay=0.25)
    assert type(opt) is torch.optim.AdamW and opt.param_groups[0]["params"] == weights
    assert opt.defaults["lr"] == 0.5 and opt.defaults["weight_decay"] == 0.25
    assert opt.defaults["fused"] is True
    calls = []

    class CudaOnlyFused:
        def __init__(self, params, fused=False, **kwargs):
            if fused:
                raise RuntimeError("fused=True requires CUDA")
            calls.append((list(params), kwargs))

    _runtime.fused_optimizer(CudaOnlyFused, iter(weights), lr=0.5, weight_decay=0.25)
    assert calls == [(weights, {"lr": 0.5, "weight_decay": 0.25})]


def test_small_training_steps_run_on_one_thread_and_the_count_comes_back():
    # Catches: threads_for never taking one thread (small steps then spin-wait on busy cores,
    # 10x slower), or the thread count not restored.
    before = torch.get_num_threads()
    with _runtime.threads_for(1e6):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with _runtime.threads_for(1e12):
        assert torch.get_num_threads() == before


def test_denormals_are_flushed_inside_and_the_mode_comes_back():
    # Catches: flush_denormals not flushing (the gate then ran 2-4x longer on an Intel Xeon),
    # leaving the mode on for the rest of the process, or turning it off where the caller had
    # it on.
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU has no flush-to-zero mode")
    denormal = torch.tensor([1e-39])
    assert (denormal * 1.0).item() != 0.0
    with _runtime.flush_denormals():
        assert (denormal * 1.0).item() == 0.0
    assert (denormal * 1.0).item() != 0.0
    try:
        torch.set_flush_denormal(True)
        with _runtime.flush_denormals():
            assert (denormal * 1.0).item() == 0.0
        assert (denormal * 1.0).item() == 0.0  # the caller's own setting is kept
    finally:
        torch.set_flush_denormal(False)


@pytest.mark.parametrize("labels", [True, False])
def test_the_gate_trains_with_denormals_flushed(monkeypatch, labels):
    # Catches: the embedder's gate training (with labels or on augmented views) run without
    # flush_denormals, or the mode left on after the fit.
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU has no flush-to-zero mode")
    from skfingerprint import embedding

    seen = []
    for name in ("train_gate_supervised", "train_gate_views"):
        monkeypatch.setattr(
            embedding, name, lambda *a, _name=name, **k: seen.append((_name, flushed()))
        )
    flushed = _runtime._denormals_flushed
    task = make_synthetic_leak(6, 6, 8, image_size=32, random_state=0)
    clear_memory_cache()
    emb = tiny_embedder(fusion="gated", layers=(2, 4))
    emb.fit(task.X_pairs, task.y if labels else None)
    trained = "train_gate_supervised" if labels else "train_gate_views"
    assert seen == [(trained, True)]
    assert not flushed()


def test_saved_weights_load_back_into_a_fresh_module():
    # Catches: load_state_arrays loading nothing or other arrays (a model file would restore
    # another gate or CANet).
    torch.manual_seed(0)
    trained, fresh = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    _runtime.load_state_arrays(fresh, _runtime.state_arrays(trained))
    for name, value in trained.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value)
