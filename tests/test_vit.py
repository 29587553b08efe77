"""Checkpoint loading through timm's own file loader."""

import os

import pytest
import torch

from skfingerprint import _vit

TINY = dict(patch_size=8, embed_dim=32, depth=2, num_heads=2)


def load(path, img_size, **model_kwargs):
    """A tiny ViT backbone from the checkpoint ``path`` (None: random weights, seed 0)."""
    return _vit.load_backbone(
        "vit_tiny_patch16_224",
        pretrained=False,
        checkpoint=path,
        model_kwargs=dict(TINY, img_size=img_size, **model_kwargs),
        seed=0,
        position_code=False,
    )


def source(img_size=32, **model_kwargs):
    """The timm ViT whose weights the checkpoints hold (seed 1)."""
    import timm

    torch.manual_seed(1)
    return timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        num_classes=0,
        img_size=img_size,
        **TINY,
        **model_kwargs,
    )


def test_a_checkpoint_trained_at_another_size_is_resampled(tmp_path):
    # Catches: a checkpoint from 32 px refused (or its position embedding dropped) at 48 px.
    vit = source(32)
    path = tmp_path / "w32.pth"
    torch.save(vit.state_dict(), path)
    loaded = load(path, 48).module.vit
    assert loaded.pos_embed.shape == (1, 1 + 6 * 6, 32)
    assert torch.equal(loaded.blocks[1].mlp.fc2.weight, vit.blocks[1].mlp.fc2.weight)
    # resampled from the file's 4x4 grid, not a fresh random one: the CLS position as saved,
    # the patch grid as timm's resampling of it
    from timm.layers import resample_abs_pos_embed

    assert torch.equal(loaded.pos_embed[:, :1], vit.pos_embed[:, :1])
    expected = resample_abs_pos_embed(vit.pos_embed, (6, 6), num_prefix_tokens=1)
    torch.testing.assert_close(loaded.pos_embed, expected)


def test_module_prefixes_and_a_classifier_head_are_dropped(tmp_path):
    # Catches: a DataParallel checkpoint with its 1000-class head refused as not fitting.
    vit = source(32)
    state = {f"module.{k}": v for k, v in vit.state_dict().items()}
    state.update(
        {"module.head.weight": torch.zeros(1000, 32), "module.head.bias": torch.zeros(1000)}
    )
    path = tmp_path / "dp.pth"
    torch.save(state, path)
    loaded = load(path, 32).module.vit
    assert torch.equal(loaded.pos_embed, vit.pos_embed)


def test_a_checkpoint_missing_weights_is_refused(tmp_path):
    # Catches: a partial checkpoint loaded over random weights without a word, or more than
    # five of its missing keys listed.
    state = source(32).state_dict()
    dropped = sorted(k for k in state if k.startswith("blocks.1."))
    assert len(dropped) > 5
    path = tmp_path / "partial.pth"
    torch.save({k: v for k, v in state.items() if k not in dropped}, path)
    with pytest.raises(ValueError) as info:
        load(path, 32)
    assert str(info.value) == f"checkpoint '{path}' does not fit this model: missing {dropped[:5]}"
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="Cannot read checkpoint"):
        load(garbage, 32)


def tiny_backbone():
    return load(None, 32)


def sharp_attention():
    """A timm Attention whose logits are large, as a trained ViT's can be (a random one's are
    near 0, where any softmax looks right)."""
    from timm.layers import Attention

    torch.manual_seed(0)
    attn = Attention(64, num_heads=4, qkv_bias=True).eval()
    with torch.no_grad():
        attn.qkv.weight.mul_(4.0)
    return attn


def test_cpu_bf16_attention_is_timms_attention_and_runs_only_in_cpu_bf16_inference():
    # Catches: the bf16 path computing another attention (scale, heads, softmax axis), images
    # mixed up between its chunks, or taking over in float32, with gradients or in training.
    import functools

    attn = sharp_attention()
    x = torch.randn(5, 37, 64)
    ours = functools.partial(_vit._cpu_bf16_attention, attn)

    def timms():
        return type(attn).forward(attn, x)

    with torch.inference_mode():
        fp32 = timms()
        assert torch.equal(ours(x), fp32)  # float32: timm's forward, the same numbers
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast, fused = ours(x), timms()
    assert fast.dtype == fused.dtype and not torch.equal(fast, fused)  # the path ran
    cos = torch.nn.functional.cosine_similarity(fast.float(), fp32, dim=-1)
    cos_timm = torch.nn.functional.cosine_similarity(fused.float(), fp32, dim=-1)
    assert cos.min() > 0.999 and cos.min() > cos_timm.min() - 1e-3, (cos.min(), cos_timm.min())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(ours(x), timms())  # gradients on: timm's forward
        attn.train()
        with torch.inference_mode():
            assert torch.equal(ours(x), timms())  # training mode: timm's forward


def test_cpu_bf16_attention_leaves_masked_and_causal_calls_to_timm():
    # Catches: a mask, causal attention or a positional argument ignored by the bf16 path
    # (which computes full, unmasked attention), or its own keywords (attn_mask=None,
    # is_causal=False) sent to timm's slower path.
    import functools

    attn = sharp_attention()
    x = torch.randn(5, 37, 64)
    ours = functools.partial(_vit._cpu_bf16_attention, attn)
    mask = torch.zeros(37, 37, dtype=torch.bool).fill_diagonal_(True)  # each token itself
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        plain = type(attn).forward(attn, x)
        for given in (dict(attn_mask=mask), dict(is_causal=True)):
            timms = type(attn).forward(attn, x, **given)
            assert not torch.equal(timms, plain)  # the mask matters here
            assert torch.equal(ours(x, **given), timms), given
        assert torch.equal(ours(x, mask), type(attn).forward(attn, x, mask))
        fast, default = ours(x, attn_mask=None, is_causal=False), ours(x)
    assert torch.equal(fast, default) and not torch.equal(fast, plain)  # the bf16 path ran


def test_cpu_bf16_attention_chunks_give_the_whole_batchs_numbers(monkeypatch):
    # Catches: a chunk sliced from the wrong images (q of one, k or v of another), or the last,
    # shorter chunk dropped or repeated.
    import functools

    attn = sharp_attention()
    x = torch.randn(5, 37, 64)
    ours = functools.partial(_vit._cpu_bf16_attention, attn)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        whole = ours(x)
        one_image = 2 * attn.num_heads * 37 * 37
        monkeypatch.setattr(_vit, "_ATTENTION_SCORES_BYTES", 2 * one_image)  # 2, 2 and 1
        chunked = ours(x)
    torch.testing.assert_close(chunked, whole, atol=0, rtol=0)


def test_every_block_runs_the_bf16_attention_of_its_own_copy():
    # Catches: the path not installed, or a deep copy (fine-tuning, a GPU copy) still running
    # the original's weights through a forward bound to the original.
    import copy

    module = tiny_backbone().module
    attns = [block.attn for block in module.vit.blocks]
    assert all(vars(a)["forward"].args[0] is a for a in attns)
    clone = copy.deepcopy(module)
    for a, c in zip(attns, (block.attn for block in clone.vit.blocks), strict=True):
        assert vars(c)["forward"].args[0] is c and c is not a


def test_rows_per_pass_keeps_the_widest_activation_under_the_budget():
    # Catches: a budget counted per batch instead of per image, or without the MLP's width.
    backbone = tiny_backbone()
    per_image = 17 * 128 * 4  # 16 patches + CLS, MLP hidden 4 x 32, float32
    assert backbone.rows_per_pass(torch.device("cpu")) == _vit.CPU_PASS_BYTES // per_image
    one_block = load(None, 32, depth=1)  # the width is read off the first (and only) block
    assert one_block.rows_per_pass(torch.device("cpu")) == _vit.CPU_PASS_BYTES // per_image
    assert backbone.rows_per_pass(torch.device("meta")) >= 1 << 20  # a GPU: the whole batch
    assert [_vit._even_rows(n, 10) for n in (0, 1, 10, 11, 32)] == [1, 1, 10, 6, 8]
    # a narrow MLP: qkv (3 x 32 wide) is the widest activation
    narrow = load(None, 32, mlp_ratio=0.5)
    assert narrow.rows_per_pass(torch.device("cpu")) == _vit.CPU_PASS_BYTES // (17 * 96 * 4)


def test_rows_per_pass_is_one_image_when_one_exceeds_the_budget(monkeypatch):
    # Catches: a floor above one image per pass, past a budget one image already exceeds.
    monkeypatch.setattr(_vit, "CPU_PASS_BYTES", 1000)
    assert tiny_backbone().rows_per_pass(torch.device("cpu")) == 1


def test_a_batch_run_in_passes_gives_the_same_numbers(monkeypatch):
    # Catches: passes that drop, repeat or reorder images, or kept states joined wrongly.
    import numpy as np

    backbone = tiny_backbone()
    cpu = torch.device("cpu")
    x = torch.randn(7, 3, 32, 32)
    cls, state = backbone.embed_batch(x, cpu, torch.float32, 1, keep_state=True)
    more, after = backbone.resume_batch(state, cpu, torch.float32, 1, 2)
    monkeypatch.setattr(_vit, "CPU_PASS_BYTES", 3 * 17 * 128 * 4)
    assert backbone.rows_per_pass(cpu) == 3  # passes of 3, 2 and 2 (_even_rows)
    cls_p, state_p = backbone.embed_batch(x, cpu, torch.float32, 1, keep_state=True)
    more_p, after_p = backbone.resume_batch(state_p, cpu, torch.float32, 1, 2)
    plain = backbone.embed_batch(x, cpu, torch.float32, 2)
    for got, want in [(cls_p, cls), (state_p, state), (more_p, more), (after_p, after)]:
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(plain[:, 1], more[:, 0], atol=1e-5)
    # an empty batch is one empty pass, as a single call was (no error joining no parts)
    assert backbone.embed_batch(x[:0], cpu, torch.float32, 2).shape == (0, 2, 32)


def test_the_position_code_adds_each_patch_centre_to_the_patch_tokens_only():
    # Catches: the patch centres off by half a patch, scaled by the grid instead of divided,
    # x and y swapped or the grid read column-major; the code subtracted, or added to the CLS
    # token; its coordinates saved with the weights (checkpoints and model files carry only the
    # learned projection); the grid's indexing left to torch's default, which warns.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's meshgrid warns without its indexing
        code = _vit.NormalisedPositionCode((2, 3), 4)
    want = torch.tensor([[(c + 0.5) / 3, (r + 0.5) / 2] for r in range(2) for c in range(3)])
    torch.testing.assert_close(code.coords, want)
    assert set(code.state_dict()) == {"proj.weight", "proj.bias"}
    with torch.no_grad():
        code.proj.weight.copy_(torch.arange(8.0).reshape(4, 2))
        code.proj.bias.fill_(0.5)
    tokens = torch.randn(2, 1 + 6, 4)
    out = code(tokens, n_prefix=1)
    torch.testing.assert_close(out[:, :1], tokens[:, :1])
    torch.testing.assert_close(out[:, 1:], tokens[:, 1:] + want @ code.proj.weight.T + 0.5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_going_on_from_a_kept_state_gives_one_passs_numbers_in_its_precision(dtype):
    # Catches: the first pass or the resumed blocks run in another precision than asked
    # (autocast's dtype dropped: bf16 for fp16; enabled for float32, which torch refuses with a
    # warning, or disabled for bf16), or the resume run past the block asked to stop at.
    import warnings

    import numpy as np

    backbone = load(None, 32, depth=4)
    cpu = torch.device("cpu")
    x = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        whole = backbone.embed_batch(x, cpu, dtype, 4)
        _, state = backbone.embed_batch(x, cpu, dtype, 1, keep_state=True)
        more, after = backbone.resume_batch(state, cpu, dtype, 1, 3)
    assert more.shape == (5, 2, 32) and after.shape == state.shape
    np.testing.assert_array_equal(more, whole[:, 1:3])


def test_checkpoints_load_weights_only_and_a_missing_file_is_named(tmp_path):
    # Catches: a checkpoint unpickled with code (torch.load without weights_only): loading a
    # file must not run what it holds; a missing file named vaguely.
    marker = tmp_path / "pwned"

    class RunsCode:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pth"
    torch.save({**source(32).state_dict(), "note": RunsCode()}, evil)
    with pytest.raises(ValueError, match=rf"^Cannot read checkpoint '{evil}': "):
        load(evil, 32)
    assert not marker.exists()
    gone = tmp_path / "gone.pth"
    with pytest.raises(FileNotFoundError) as info:
        load(gone, 32)
    assert str(info.value) == f"checkpoint file not found: '{gone}'"


def test_a_checkpoint_without_the_unused_pooling_norm_loads(tmp_path):
    # Catches: fc_norm (a ViT pooled by averaging has one; the fingerprint reads CLS tokens
    # of the blocks, never the pooled output) required in the file.
    vit = source(32, global_pool="avg")
    state = {k: v for k, v in vit.state_dict().items() if not k.startswith("fc_norm.")}
    assert len(state) < len(vit.state_dict())  # it had one
    path = tmp_path / "no_fc_norm.pth"
    torch.save(state, path)
    loaded = load(path, 32, global_pool="avg")
    assert torch.equal(loaded.module.vit.blocks[1].mlp.fc2.weight, vit.blocks[1].mlp.fc2.weight)


def test_a_model_name_with_an_unknown_tag_is_refused_naming_its_tags():
    """timm's own error for a bad tag is a RuntimeError from deep in create_model that names no
    tag; an architecture timm only builds has no tag to offer. Valid tags, timm's "untrained"
    tag of such an architecture and a bare name pass."""
    with pytest.raises(ValueError) as err:
        _vit._check_model_name("vit_tiny_patch16_224.augreg_in21")
    assert str(err.value) == (
        "Unknown tag 'augreg_in21' for timm model 'vit_tiny_patch16_224' "
        "(its tags: augreg_in21k, augreg_in21k_ft_in1k)"
    )
    with pytest.raises(ValueError) as err:
        _vit._check_model_name("vit_small_patch16_18x2_224.in1k")
    assert str(err.value) == (
        "Unknown tag 'in1k' for timm model 'vit_small_patch16_18x2_224' "
        "(it has no pretrained weights)"
    )
    for name in (
        "vit_tiny_patch16_224",
        "vit_tiny_patch16_224.augreg_in21k",
        "vit_small_patch16_18x2_224.untrained",
    ):
        _vit._check_model_name(name)


@pytest.fixture
def no_weights_cached(monkeypatch, tmp_path):
    """An empty Hugging Face and torch hub cache; a hub that, if asked, must not be."""
    import huggingface_hub

    asked = []
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a: asked.append(a))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setenv("HF_HOME", "/data/hf-cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(_vit, "_hub_reachable", lambda: pytest.fail("the hub was asked"))
    return asked


def test_an_architecture_without_weights_is_refused_without_asking_for_a_network(
    no_weights_cached,
):
    """Its config (tag "untrained") points nowhere: advice to fetch them would be wrong."""
    with pytest.raises(ValueError) as err:
        _vit.check_pretrained_available("vit_small_patch16_18x2_224")
    assert str(err.value) == (
        "timm has no pretrained weights for 'vit_small_patch16_18x2_224'; use pretrained=False"
    )


@pytest.mark.parametrize(
    "filename", ["model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"]
)
def test_weights_in_the_hub_cache_need_no_network(no_weights_cached, monkeypatch, filename):
    import huggingface_hub

    def cached(repo, name):
        no_weights_cached.append((repo, name))
        return f"/cache/{repo}/{name}" if name == filename else None

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", cached)
    _vit.check_pretrained_available("vit_tiny_patch16_224.augreg_in21k")
    assert no_weights_cached[-1] == ("timm/vit_tiny_patch16_224.augreg_in21k", filename)


def test_a_cache_entry_recording_a_missing_file_is_not_weights(no_weights_cached, monkeypatch):
    """huggingface_hub answers a sentinel object, not a path, for a file known to be absent."""
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda *a: object())
    with pytest.raises(_vit.WeightsUnavailableError, match="HF_HUB_OFFLINE is set"):
        _vit.check_pretrained_available("vit_tiny_patch16_224.augreg_in21k")


def test_weights_from_a_url_are_looked_for_in_torch_hubs_checkpoints(
    no_weights_cached, monkeypatch, tmp_path
):
    import timm.models
    from timm.models import PretrainedCfg

    cfg = PretrainedCfg(url="https://example.org/weights/B_16.npz")
    monkeypatch.setattr(timm.models, "get_pretrained_cfg", lambda name: cfg)
    with pytest.raises(_vit.WeightsUnavailableError):
        _vit.check_pretrained_available("vit_base_patch16_224")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "B_16.npz").write_bytes(b"weights")
    _vit.check_pretrained_available("vit_base_patch16_224")
    assert no_weights_cached == []  # a URL's weights are not looked for on the hub


@pytest.mark.parametrize(
    ("offline", "hf_home"),
    [("1", "/data/hf-cache"), ("true", None), ("YES", "/data/hf-cache")],
)
def test_offline_without_cached_weights_says_so_with_every_fix(
    no_weights_cached, monkeypatch, offline, hf_home
):
    monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    if hf_home is None:
        monkeypatch.delenv("HF_HOME")
    with pytest.raises(_vit.WeightsUnavailableError) as err:
        _vit.check_pretrained_available("vit_tiny_patch16_224.augreg_in21k")
    assert str(err.value) == (
        "Pretrained weights for 'vit_tiny_patch16_224.augreg_in21k' are not in the local cache "
        "and HF_HUB_OFFLINE is set. Fix: run once with a network (timm caches them under "
        f"{hf_home or '~/.cache/huggingface'}), copy that cache from a machine that has them, "
        "or pass checkpoint='path/to/weights' (a .safetensors/.pth file) or pretrained=False."
    )


@pytest.mark.parametrize("offline", [None, "0", "no"])
def test_online_the_hub_is_asked_and_only_an_unreachable_one_fails(
    no_weights_cached, monkeypatch, offline
):
    if offline is None:
        monkeypatch.delenv("HF_HUB_OFFLINE")
    else:
        monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    monkeypatch.setattr(_vit, "_hub_reachable", lambda: True)
    _vit.check_pretrained_available("vit_tiny_patch16_224.augreg_in21k")  # timm will download
    monkeypatch.setattr(_vit, "_hub_reachable", lambda: False)
    with pytest.raises(
        _vit.WeightsUnavailableError, match=r"and huggingface\.co cannot be reached"
    ):
        _vit.check_pretrained_available("vit_tiny_patch16_224.augreg_in21k")


def test_the_hub_is_reachable_when_a_connection_to_its_https_port_opens(monkeypatch):
    import contextlib

    calls = []

    def connect(address, timeout):
        calls.append((address, timeout))
        return contextlib.nullcontext()

    monkeypatch.setattr(_vit.socket, "create_connection", connect)
    assert _vit._hub_reachable() is True
    assert calls == [(("huggingface.co", 443), 3.0)]

    def refuse(address, timeout):
        raise ConnectionRefusedError(address)

    monkeypatch.setattr(_vit.socket, "create_connection", refuse)
    assert _vit._hub_reachable() is False


def build(pretrained=False, seed=0, position_code=False):
    """A tiny ViT backbone built afresh (load_backbone would hand back a kept one)."""
    kwargs = dict(TINY, img_size=32)
    return _vit._build_backbone(
        "vit_tiny_patch16_224", pretrained, None, kwargs, seed, position_code
    )


def test_the_state_a_batch_keeps_is_the_size_the_state_cache_plans_for():
    # Catches: state_nbytes counting another width than float32's 4 bytes, so the token
    # cache's capacity in images (and its warning) would be wrong.
    import numpy as np

    backbone = build()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    _, state = backbone.embed_batch(x, torch.device("cpu"), torch.bfloat16, 1, keep_state=True)
    assert state.dtype == np.float32
    assert state[0].nbytes == backbone.state_nbytes() == 17 * 32 * 4


def test_building_leaves_the_callers_rng_and_a_trained_position_code_survives_pickling():
    # Catches: the wrapper (its position code's projection, drawn then zeroed) built outside
    # the seeded block, which moves the caller's torch RNG; the position code dropped from
    # the Backbone or from its unpickled copy.
    import pickle

    import numpy as np

    before = torch.random.get_rng_state()
    backbone = build(position_code=True)
    assert torch.equal(torch.random.get_rng_state(), before)
    with torch.no_grad():  # as fine-tuning leaves it: zero-initialised, it would add nothing
        weight = backbone.module.position_code.proj.weight
        weight.copy_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(1)))
    copy = pickle.loads(pickle.dumps(backbone))
    assert copy.position_code is True
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    cpu = torch.device("cpu")
    trained = backbone.embed_batch(x, cpu, torch.float32)
    np.testing.assert_array_equal(copy.embed_batch(x, cpu, torch.float32), trained)
    assert not np.allclose(build().embed_batch(x, cpu, torch.float32), trained, atol=1e-3)


@pytest.fixture
def hub_weights_offline(monkeypatch):
    """timm's "pretrained" hub weights without a network: another seed's random weights. Records
    the offline check's model names and timm's (name, pretrained) calls; a local checkpoint
    (a file overlay) still loads through timm itself."""
    import timm

    calls = []
    monkeypatch.setattr(_vit, "check_pretrained_available", lambda name: calls.append(name))
    create = timm.create_model

    def create_offline(name, pretrained, **kwargs):
        calls.append((name, pretrained))
        if "pretrained_cfg_overlay" in kwargs:
            return create(name, pretrained=pretrained, **kwargs)
        if pretrained:
            torch.manual_seed(7)
        return create(name, pretrained=False, **kwargs)

    monkeypatch.setattr(timm, "create_model", create_offline)
    return calls


def test_pretrained_weights_are_asked_of_timm_only_after_the_offline_check(hub_weights_offline):
    # Catches: pretrained=True passed to timm as a falsy value (random weights, silently).
    calls = hub_weights_offline
    build(pretrained=True)
    assert calls == ["vit_tiny_patch16_224", ("vit_tiny_patch16_224", True)]
    calls.clear()
    build(pretrained=False)
    assert calls == [("vit_tiny_patch16_224", False)]


def test_a_vit_without_any_cls_token_attribute_is_refused(monkeypatch):
    # Catches: the CLS token read without a default (AttributeError for a model that lacks the
    # attribute instead of the error with its advice).
    from torch import nn

    class NoCls(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch_embed, self.blocks = nn.Identity(), nn.ModuleList()

    monkeypatch.setattr(_vit, "_create_vit", lambda *a, **k: NoCls())
    with pytest.raises(ValueError) as err:
        build()
    assert str(err.value) == (
        "timm model 'vit_tiny_patch16_224' has no CLS token; the embedder fuses CLS tokens, "
        "so pick a ViT with one (for example vit_base_patch16_224)"
    )


def test_an_unknown_model_name_is_refused_with_at_most_five_close_names():
    # Catches: the suggestions' number, order (best first) or separator changed, a hint
    # printed with nothing in it, or the closeness cut-off loosened to any name.
    import timm

    with pytest.raises(ValueError) as err:
        _vit._check_model_name("vit_tiny_patch16_22")
    head, _, names = str(err.value).partition(" Did you mean: ")
    assert head == "Unknown timm model 'vit_tiny_patch16_22'."
    assert names.endswith("?")
    names = names[:-1].split(", ")
    assert names[0] == "vit_tiny_patch16_224" and len(names) == 5
    assert all(timm.is_model(name) for name in names)
    with pytest.raises(ValueError) as err:
        _vit._check_model_name("qqqqqqqq")
    assert str(err.value) == "Unknown timm model 'qqqqqqqq'."


def test_a_vit_whose_blocks_hold_parallel_attentions_builds_and_embeds():
    # Catches: every block assumed to hold one `attn` (timm's parallel blocks hold `attns`: an
    # AttributeError when routing attention), or their hidden width, which has no mlp.fc1 to
    # read, assumed other than 4 x the token width. A smoke test of that model beyond these.
    import numpy as np

    backbone = _vit._build_backbone(
        "vit_small_patch16_18x2_224", False, None, dict(TINY, img_size=32), 0, False
    )
    assert not hasattr(backbone.module.vit.blocks[0], "attn")
    # no mlp.fc1 to read the hidden width from: the usual 4 x width is assumed
    assert backbone.rows_per_pass(torch.device("cpu")) == _vit.CPU_PASS_BYTES // (17 * 128 * 4)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out = backbone.embed_batch(x, torch.device("cpu"), torch.bfloat16, 2)
    assert out.shape == (2, 2, 32) and np.isfinite(out).all()


def test_a_pickled_backbone_holds_weights_as_arrays_and_no_device_copies():
    # Catches: the weights pickled as the torch module (model files hold no torch objects),
    # the device copies made by a run pickled along and restored, or the skeleton the weights
    # load into built unseeded (unpickling would move the caller's torch RNG).
    import pickle

    backbone = build()
    backbone.embed_batch(torch.rand(1, 3, 32, 32), torch.device("cpu"), torch.float32)
    assert backbone._runtime  # the run made its CPU copy
    data = pickle.dumps(backbone)
    assert b"torch" not in data
    before = torch.random.get_rng_state()
    copy = pickle.loads(data)
    assert torch.equal(torch.random.get_rng_state(), before)  # the skeleton is built seeded
    assert copy._runtime == {} and copy.digest == _vit.weights_digest(copy.module)


def test_cpu_bf16_attention_leaves_float16_autocast_and_gated_attention_to_timm():
    # Catches: the conditions joined so that only both together send the call to timm (fp16
    # autocast or timm's optional output gate would then run the bf16 path).
    import functools

    attn = sharp_attention()
    x = torch.randn(5, 37, 64)
    ours = functools.partial(_vit._cpu_bf16_attention, attn)
    with torch.inference_mode():
        with torch.autocast("cpu", dtype=torch.float16):
            assert torch.equal(ours(x), type(attn).forward(attn, x))
        attn.gate = torch.nn.Identity()  # what the bf16 path does not compute
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(ours(x), type(attn).forward(attn, x))


def test_the_pass_stops_after_the_deepest_block_asked():
    # Catches: the forward run through every block (the same numbers, at the cost of the
    # blocks no fused layer reads).
    backbone = load(None, 32, depth=4)
    ran = []
    for i, block in enumerate(backbone.module.vit.blocks):
        block.register_forward_hook(lambda *_, i=i: ran.append(i))
    backbone.embed_batch(torch.rand(2, 3, 32, 32), torch.device("cpu"), torch.float32, 2)
    assert ran == [0, 1]
    ran.clear()
    backbone.embed_batch(torch.rand(2, 3, 32, 32), torch.device("cpu"), torch.float32)
    assert ran == [0, 1, 2, 3]


def test_another_device_gets_its_own_copy_and_the_cpu_module_stays():
    backbone = build()
    copy = backbone.runtime(torch.device("meta"))
    assert copy is not backbone.module and copy is backbone.runtime(torch.device("meta"))
    assert next(copy.parameters()).device.type == "meta"
    assert next(backbone.module.parameters()).device.type == "cpu"
    assert not any(p.requires_grad for p in copy.parameters())
    assert backbone.runtime(torch.device("cpu")) is backbone.module


def test_load_backbone_shares_one_backbone_per_model_weights_and_file(
    tmp_path, monkeypatch, hub_weights_offline
):
    # Catches: nothing kept (a ViT loaded per clone), kept under a key that ignores whether
    # weights are pretrained, or one that ignores which checkpoint file (two files of the same
    # size and time would share a backbone).
    built = []
    build_backbone = _vit._build_backbone
    monkeypatch.setattr(
        _vit, "_build_backbone", lambda *a: built.append(a[1:3]) or build_backbone(*a)
    )
    _vit._BACKBONES.clear()
    random = load(None, 32)
    assert load(None, 32) is random and len(built) == 1
    pretrained = _vit.load_backbone(
        "vit_tiny_patch16_224",
        pretrained=True,
        checkpoint=None,
        model_kwargs=dict(TINY, img_size=32),
        seed=0,
        position_code=False,
    )
    assert pretrained.digest != random.digest and len(built) == 2
    files = [tmp_path / "a" / "w.pth", tmp_path / "b" / "w.pth"]
    for shift, path in enumerate(files):
        path.parent.mkdir()
        weights = source(32).state_dict()
        weights["blocks.0.mlp.fc1.bias"] += shift  # the same size, other weights
        torch.save(weights, path)
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = torch.random.get_rng_state()
    first, second = load(files[0], 32), load(files[1], 32)
    assert torch.equal(torch.random.get_rng_state(), before)  # built seeded, from the files
    assert files[0].stat().st_size == files[1].stat().st_size
    assert first.digest != second.digest
    _vit._BACKBONES.clear()
