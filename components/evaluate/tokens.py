"""Evaluate token-sequence tasks: held-out loss and perplexity (causal_lm) or exact match of greedy decoding
with the KV cache (seq2seq), masked-token loss and accuracy (masked_lm), a generated sample or example
translations, and attention maps of held-out examples, all logged to the task's MLflow run."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from components.core.contract import TaskMeta
from components.core.io import atomic_write
from components.core.sampling import Sampling, generate_torch
from components.core.tokens import BOS, EOS, IGNORE
from components.data.splits import load_split
from components.data.text.lm import Vocab
from components.evaluate.attention import plot_attention
from components.evaluate.plots import plot_learning_curves, read_history
from components.evaluate.report import publish
from components.train.checkpoint import load_trained

SAMPLE = Sampling(temperature=0.8, top_k=40)  # the logged sample; serving takes any setting
ATTENTION_EXAMPLES = 3
LM_MAP_TOKENS = 32  # characters shown in a decoder attention map


def evaluate_sequences(data_dir: Path, model_dir: Path, metrics_path: Path, plots_dir: Path) -> dict[str, float]:
    model, meta = load_trained(model_dir)
    x, y = (torch.as_tensor(a) for a in load_split(data_dir, "test"))
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    scores = held_out_scores(model, x, y)
    objective = meta.objective
    if objective == "causal_lm":
        vocab = Vocab(meta.vocab)
        prompt = vocab.encode("\n") if "\n" in vocab.index else x[0, :1].tolist()  # any corpus has a first token
        text = vocab.decode(list(generate_torch(model, prompt, 500, SAMPLE, seed=0)))
        atomic_write(plots_dir / "sample.txt", lambda tmp: tmp.write_text(text))
        maps = [_lm_attention(model, vocab, x[i, :LM_MAP_TOKENS], plots_dir / f"attention_{i}.png") for i in range(3)]
    elif objective == "seq2seq":
        vocab = Vocab(meta.vocab)
        scores["exact_match"], examples = exact_match(model, x, y, meta)
        atomic_write(plots_dir / "translations.txt", lambda tmp: tmp.write_text("\n".join(examples) + "\n"))
        maps = [_seq2seq_attention(model, vocab, x[i], plots_dir / f"attention_{i}.png") for i in range(3)]
    else:  # masked_lm
        from components.data.text.tokenization import load_tokenizer

        tok = load_tokenizer(data_dir)
        tokens = [tok.id_to_token(int(i)) for i in x[0, :LM_MAP_TOKENS]]
        with torch.no_grad():
            layers = model.attention(x[:1, :LM_MAP_TOKENS])
        maps_ = [(f"layer {i}", w[0].numpy(), tokens, tokens) for i, w in enumerate(layers)]
        maps = [plot_attention(maps_, plots_dir / "attention_0.png", "encoder self-attention (masked input)")]
    plot_learning_curves(read_history(Path(model_dir) / "history.csv"), plots_dir / "learning_curves.png")

    tags = {"attention_maps": ", ".join(f"plots/{p.name}" for p in maps)}
    return publish(scores, metrics_path, plots_dir, model_dir, tags)


@torch.no_grad()
def held_out_scores(model: Any, x: torch.Tensor, y: torch.Tensor, chunk: int = 64) -> dict[str, float]:
    """Mean cross-entropy over real target positions, its exp (perplexity) and next-token accuracy, in chunks:
    a split's (N, T, V) logits need not fit in memory at once."""
    model.eval()
    loss_sum, right, count = 0.0, 0, 0
    for xs, ys in zip(x.split(chunk), y.split(chunk), strict=True):
        z = model(xs)  # (b, T, V)
        real = ys != IGNORE
        loss_sum += float(F.cross_entropy(z.flatten(0, 1), ys.flatten(), ignore_index=IGNORE, reduction="sum"))
        right += int(((z.argmax(-1) == ys) & real).sum())
        count += int(real.sum())
    loss = loss_sum / count
    return {"loss": loss, "perplexity": math.exp(loss), "accuracy": right / count}


def exact_match(model: Any, x: torch.Tensor, y: torch.Tensor, meta: TaskMeta) -> tuple[float, list[str]]:
    """Share of test sources whose greedy translation (KV cache, no teacher forcing) is exactly the target;
    the first mistakes (or first examples) as text."""
    ids = meta.special_ids
    vocab = Vocab(meta.vocab)
    out = model.translate(x[:, 0], ids[BOS], ids[EOS], max_new_tokens=x.shape[-1]).numpy()  # (N, <= T)
    right, lines = 0, []
    for src, target, got in zip(x[:, 0].numpy(), y.numpy(), out, strict=True):
        want = vocab.decode(target[target >= 0], " ")
        said = vocab.decode(got, " ")
        ok = said == want and ids[EOS] in got
        right += ok
        if len(lines) < 20 and (not ok or len(lines) < 5):
            lines.append(f"{vocab.decode(src)}\t{said}\t{'ok' if ok else 'WRONG, want: ' + want}")
    return right / len(x), lines


def _lm_attention(model: Any, vocab: Vocab, ids: torch.Tensor, path: Path) -> Path:
    with torch.no_grad():
        layers = model.attention(ids[None])  # L x (1, H, T, T)
    tokens = [vocab.tokens[i] for i in ids.tolist()]
    maps = [(f"layer {i}", w[0].numpy(), tokens, tokens) for i, w in enumerate(layers)]
    return plot_attention(maps, path, f"causal self-attention: {''.join(tokens)!r}")


def _seq2seq_attention(model: Any, vocab: Vocab, x: torch.Tensor, path: Path) -> Path:
    """Encoder self-attention, then per decoder layer self- and cross-attention (target rows, source columns)."""
    n_src, n_tgt = int((x[0] != 0).sum()), int((x[1] != 0).sum())
    with torch.no_grad():
        weights = model.attention(x[None, :, : max(n_src, n_tgt)])
    src = [vocab.tokens[i] for i in x[0, :n_src].tolist()]
    tgt = [vocab.tokens[i] for i in x[1, :n_tgt].tolist()]
    n = len(model.encoder.blocks)
    maps = [(f"encoder {i}", w[0, :, :n_src, :n_src].numpy(), src, src) for i, w in enumerate(weights[:n])]
    for i, w in enumerate(weights[n:]):
        if i % 2 == 0:
            maps.append((f"decoder {i // 2} self", w[0, :, :n_tgt, :n_tgt].numpy(), tgt, tgt))
        else:
            maps.append((f"decoder {i // 2} cross", w[0, :, :n_tgt, :n_src].numpy(), tgt, src))
    return plot_attention(maps, path, f"{''.join(src)} -> {' '.join(tgt[1:])}")
