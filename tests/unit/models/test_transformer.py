"""Transformers: attention masks and the KV cache behave as the maths says."""

from __future__ import annotations

import torch

from models.transformer import DecoderLM, EncoderModel, KVCache, Seq2Seq, sinusoidal_table


def test_kv_cache_and_causality() -> None:
    torch.manual_seed(0)
    model = DecoderLM(50, 32, d_model=32, n_layers=2, n_heads=4).eval()
    ids = torch.randint(0, 50, (3, 12))
    with torch.no_grad():
        full = model(ids)  # (B, T, V)
        cache = KVCache.empty(2)
        parts = [model(ids[:, :5], cache), model(ids[:, 5:6], cache), model(ids[:, 6:], cache)]
        changed = model(torch.cat([ids[:, :8], torch.randint(0, 50, (3, 4))], 1))
        weights = model.attention(ids)
    assert cache.length == 12
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=0)
    torch.testing.assert_close(changed[:, :8], full[:, :8])  # the future never leaks into the past
    assert len(weights) == 2 and weights[0].shape == (3, 4, 12, 12)
    assert float(weights[0].triu(1).abs().max()) == 0.0
    torch.testing.assert_close(weights[1].sum(-1), torch.ones(3, 4, 12))
    with_cache = torch.stack(list(model.generate(ids[:, :4], 40)), 1)  # past max_len: the window slides
    assert torch.equal(with_cache, torch.stack(list(model.generate(ids[:, :4], 40, use_cache=False)), 1))
    assert model.head.linear.weight is model.embed.token.weight  # tied


def test_padding_is_invisible_to_the_encoder() -> None:
    torch.manual_seed(0)
    model = EncoderModel(40, 24, 3, pad_id=0, d_model=32, n_layers=2, n_heads=2, positional="sinusoidal").eval()
    ids = torch.randint(1, 40, (2, 7))
    padded = torch.cat([ids, torch.zeros(2, 5, dtype=torch.long)], 1)
    with torch.no_grad():
        torch.testing.assert_close(model(padded), model(ids), atol=1e-5, rtol=0)
        vectors = model.sentence_vectors(padded)
        torch.testing.assert_close(vectors, model.sentence_vectors(ids), atol=1e-5, rtol=0)
        assert float(model.attention(padded)[0][..., 7:].max()) == 0.0  # no weight on [PAD] keys
    assert vectors.shape == (2, 2, 32)
    table = sinusoidal_table(24, 32)
    assert torch.allclose(table[0, 1::2], torch.ones(16)) and torch.allclose(table[0, 0::2], torch.zeros(16))


def test_a_classifier_batch_costs_its_longest_text() -> None:
    """[CLS] head: the columns that are padding in every row are cut before attention (models/padding.py); the
    MLM head answers per token, so it keeps the input's length."""
    torch.manual_seed(0)
    seen: list[tuple[int, ...]] = []
    for head, width in (("cls", 6), ("mlm", 16)):
        model = EncoderModel(40, 16, 3, pad_id=0, head=head, d_model=32, n_layers=1, n_heads=2).eval()
        model.backbone["embed"].register_forward_hook(lambda _m, args, _out: seen.append(tuple(args[0].shape)))
        ids = torch.zeros(3, 16, dtype=torch.long)
        ids[0, :4], ids[1, :6], ids[2, :2] = 5, 7, 9  # real lengths 4, 6, 2 of 16
        with torch.no_grad():
            out = model(ids)
        assert seen[-1] == (3, width)
        if head == "cls":  # each row's answer is the one it gets alone, unpadded
            alone = torch.cat([model(ids[i : i + 1, :n]) for i, n in enumerate((4, 6, 2))])
            torch.testing.assert_close(out, alone, atol=1e-5, rtol=0)


def test_seq2seq_greedy_translation_matches_teacher_forcing() -> None:
    torch.manual_seed(0)
    model = Seq2Seq(30, 16, pad_id=0, d_model=32, n_heads=2, dropout=0.0).eval()
    src = torch.randint(4, 30, (2, 6))
    out = model.translate(src, bos_id=1, eos_id=2, max_new_tokens=8)  # (B, <= 8) with the KV cache
    tgt = torch.cat([torch.ones(2, 1, dtype=torch.long), out[:, :-1]], 1)
    length = max(src.shape[1], tgt.shape[1])
    x = torch.stack([torch.nn.functional.pad(t, (0, length - t.shape[1])) for t in (src, tgt)], 1)  # (B, 2, T)
    with torch.no_grad():
        forced = model(x)[:, : out.shape[1]].argmax(-1)
    assert torch.equal(forced[out != 0], out[out != 0])


def test_cpu_bf16_attention_is_computed_by_hand_and_matches_sdpa() -> None:
    """Under bf16 autocast on a CPU the attention skips SDPA (slower there) and gives SDPA's answer, causal and with
    a padding mask, forward and backward."""
    from models.transformer.layers import MultiHeadAttention

    torch.manual_seed(0)
    attn = MultiHeadAttention(32, 4, 0.0)
    x = torch.randn(3, 10, 32, requires_grad=True)
    keep = torch.ones(3, 1, 1, 10, dtype=torch.bool)
    keep[0, ..., 7:] = False  # the first row's last three keys are padding
    for kwargs in ({"causal": True}, {"mask": keep}):
        reference = attn(x, **kwargs)[0]
        (grad,) = torch.autograd.grad(reference.sum(), x)
        with torch.profiler.profile() as prof, torch.autocast("cpu", dtype=torch.bfloat16):
            out = attn(x, **kwargs)[0]
        (grad_bf16,) = torch.autograd.grad(out.float().sum(), x)
        assert not any("scaled_dot_product" in event.key for event in prof.key_averages())
        torch.testing.assert_close(out.float(), reference, atol=0.03, rtol=0.03)
        torch.testing.assert_close(grad_bf16, grad, atol=0.1, rtol=0.05)
    with torch.profiler.profile() as prof:
        attn(x, causal=True)
    assert any("scaled_dot_product" in event.key for event in prof.key_averages())  # fp32: SDPA's kernels
