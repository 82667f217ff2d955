"""The decode-step fast paths give the same numbers as the plain formulas they replace: rotary
positions as complex products, RMSNorm in one call, q and k rotated together, cache writes in
place and no mask for one unpadded column. Expected values are computed here from the formulas
written out (the pre-change code), and whole greedy decodes of a Huginn-format checkpoint are
compared with the uncached forward pass token for token."""

from __future__ import annotations

import pytest
import torch

from recurlab.model import RMSNorm, apply_rotary, rotary_tables


def rotary_by_pairs(x, cos, sin):
    """Adjacent channel pairs rotated with real arithmetic; x (B, T, H, D), cos/sin (T, D/2) or (B, T, D/2)."""
    if cos.dim() == 2:
        cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    else:
        cos, sin = cos[:, :, None, :], sin[:, :, None, :]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x0 * cos - x1 * sin
    out[..., 1::2] = x0 * sin + x1 * cos
    return out


def test_rotary_equals_the_pairwise_formula_for_q_and_k_together():
    g = torch.Generator().manual_seed(0)
    qkv = torch.randn(2, 5, 3, 4, 16, generator=g)
    cos, sin = rotary_tables(torch.arange(3, 8), 16, 10_000.0)
    together = apply_rotary(qkv[:, :, :2], (cos, sin))  # a strided view, as attention passes it
    for i in range(2):
        assert torch.allclose(together[:, :, i], rotary_by_pairs(qkv[:, :, i], cos, sin), atol=1e-6, rtol=0)
    # per-row positions (left padding): tables of shape (B, T, D/2)
    pos = torch.tensor([[0, 0, 1, 2, 3], [0, 1, 2, 3, 4]])
    cos_b, sin_b = rotary_tables(pos, 16, 10_000.0)
    assert torch.allclose(apply_rotary(qkv[:, :, 0], (cos_b, sin_b)), rotary_by_pairs(qkv[:, :, 0], cos_b, sin_b),
                          atol=1e-6, rtol=0)
    # bf16 goes through fp32 and back, as before
    xb = qkv[:, :, 0].bfloat16()
    assert apply_rotary(xb, (cos, sin)).dtype == torch.bfloat16


def test_rmsnorm_equals_the_written_out_formula():
    norm = RMSNorm(32, 1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 1.5, 32))
    x = torch.randn(3, 7, 32, generator=torch.Generator().manual_seed(1)) * 5
    expected = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    assert torch.allclose(norm(x), expected, atol=1e-6, rtol=1e-6)
    y = norm(x.requires_grad_())
    y.sum().backward()  # training still differentiates through it
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_one_unpadded_column_attends_to_every_cached_column_without_a_mask():
    from recurlab.config import ModelConfig
    from recurlab.engine import KVCache

    cfg = ModelConfig(vocab_size=16, n_embd=32, n_head=2, n_prelude=1, n_core=1, n_coda=1)
    g = torch.Generator().manual_seed(2)
    cache = KVCache(cfg, 1, 8, 1)
    k_all, v_all = torch.randn(1, 6, 2, 16, generator=g), torch.randn(1, 6, 2, 16, generator=g)
    cache.begin(5)
    cache.attend(("prelude", 0), k_all[:, :5], k_all[:, :5], v_all[:, :5])
    cache.commit()
    cache.begin(1)
    assert cache._pass_mask is None
    q = torch.randn(1, 1, 2, 16, generator=g)
    y = cache.attend(("prelude", 0), q, k_all[:, 5:], v_all[:, 5:])
    scores = torch.einsum("bthd,bshd->bhts", q, k_all) / 16 ** 0.5
    expected = torch.einsum("bhts,bshd->bhtd", scores.softmax(-1), v_all)
    assert torch.allclose(y, expected, atol=1e-5)


@pytest.mark.parametrize("r", [1, 4])
def test_greedy_decode_of_a_huginn_checkpoint_equals_the_uncached_forward(tmp_path, r):
    from recurlab.engine import Engine, GenerateOptions
    from recurlab.engine import open_model
    from recurlab.families.writers import write_random_huginn

    folder = write_random_huginn(tmp_path / "h", n_embd=32, n_heads=2, n_layers_in_prelude=2,
                                 n_layers_in_recurrent_block=2, n_layers_in_coda=2, vocab_size=256,
                                 tokenizer_vocab=256, block_size=64, seed=3)
    opened = open_model(folder, device="cpu")
    model, tok = opened.model, opened.tokenizer
    engine = Engine(model, tok)
    res = engine.generate("hello there", GenerateOptions(r=r, max_new_tokens=12, init_scale=0.0, stop_ids=()))
    ids = engine.encode("hello there")
    with torch.no_grad():
        for want in res.token_ids:
            logits = model(torch.tensor([ids]), n_no_grad=0, n_grad=r, init_scale=0.0).logits[0, -1]
            assert int(logits.argmax()) == want
            ids.append(want)
    assert len(res.token_ids) == 12
