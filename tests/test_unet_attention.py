"""Self-attention at the U-Net's lowest resolution (``UNetConfig.attention_heads``), a lever of issue 32."""

import pytest
import torch

from minicfg.checkpoint import load_model, save_weights
from minicfg.nets import UNet, UNetConfig

SMALL = dict(channels=(8, 16), emb_dim=16, prediction="v")


def _inputs(b=3):
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, 1, 28, 28, generator=g), torch.linspace(-8, 8, b), torch.tensor([0, 4, 10])[:b]


def test_attention_starts_as_the_identity_and_then_mixes_all_pixels():
    torch.manual_seed(0)
    with_attention = UNet(UNetConfig(attention_heads=4, **SMALL))
    plain = UNet(UNetConfig(**SMALL))
    missing, unexpected = plain.load_state_dict(with_attention.state_dict(), strict=False)
    assert not missing and all(k.startswith("mid_attention.") for k in unexpected)
    z, lam, y = _inputs()
    torch.nn.init.normal_(with_attention.out.weight)  # a non-zero output layer, so the body's output is seen
    plain.out.weight.data.copy_(with_attention.out.weight)
    torch.testing.assert_close(with_attention.raw(z, lam, y), plain.raw(z, lam, y))
    torch.nn.init.normal_(with_attention.mid_attention.attn.out_proj.weight)
    assert not torch.allclose(with_attention.raw(z, lam, y), plain.raw(z, lam, y))
    # at 7x7 every token attends to every other: the attention block's output at one pixel depends on a far one
    block = with_attention.mid_attention
    h = torch.randn(1, 16, 7, 7)
    h2 = h.clone()
    h2[0, :, 6, 6] += 1.0
    assert not torch.allclose(block(h)[0, :, 0, 0], block(h2)[0, :, 0, 0])


@pytest.mark.parametrize("heads", [-1, 3])
def test_heads_must_divide_the_lowest_levels_channels(heads):
    with pytest.raises(ValueError, match="attention_heads must be 0"):
        UNetConfig(attention_heads=heads, **SMALL)


def test_attention_weights_round_trip(tmp_path):
    torch.manual_seed(0)
    model = UNet(UNetConfig(attention_heads=2, **SMALL))
    torch.nn.init.normal_(model.mid_attention.attn.out_proj.weight)
    save_weights(tmp_path / "m.safetensors", model, {"step": 0})
    loaded, _ = load_model(tmp_path / "m.safetensors")
    z, lam, y = _inputs()
    torch.testing.assert_close(loaded.raw(z, lam, y), model.raw(z, lam, y))
