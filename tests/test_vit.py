"""Checkpoint loading through timm's own file loader."""

import pytest
import torch

from skfingerprint import _vit

TINY = dict(patch_size=8, embed_dim=32, depth=2, num_heads=2)


def load(path, img_size):
    return _vit.load_backbone(
        "vit_tiny_patch16_224",
        pretrained=False,
        checkpoint=path,
        model_kwargs=dict(TINY, img_size=img_size),
        seed=0,
        position_code=False,
    )


def source(img_size=32):
    import timm

    torch.manual_seed(1)
    return timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=img_size, **TINY
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
    # Catches: a partial checkpoint loaded over random weights without a word.
    state = source(32).state_dict()
    del state["blocks.1.mlp.fc2.weight"]
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match="does not fit this model"):
        load(path, 32)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="Cannot read checkpoint"):
        load(garbage, 32)
