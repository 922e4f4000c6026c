"""The GPU copy of an index (faiss-gpu): unfiltered searches, dead slots dropped after.

FAISS GPU indexes take no selector, so only searches without a filter go there. Slots
of rows gone since the last full build cannot be excluded up front: the copy is searched
deep enough that k live ones are among the results (k, plus the re-scoring depth of a
coded index, plus the number of dead slots), and the dead ones are dropped.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import faiss
import numpy as np

from loupe.search.ann.plan import depth_for, rescore
from loupe.search.ann.strategies import Hits, VectorsAt

GPU_MAX_K = 2048  # FAISS GPU indexes return at most this many neighbours per query


def gpu_count() -> int:
    """GPUs FAISS can search on: 0 with the default faiss-cpu install, or when
    ``LOUPE_FAISS_GPU=0``."""
    if os.environ.get("LOUPE_FAISS_GPU", "auto") == "0":
        return 0
    if not hasattr(faiss, "StandardGpuResources"):
        return 0
    try:
        return int(faiss.get_num_gpus())
    except (AttributeError, RuntimeError):
        return 0


def gpu_copy(index: faiss.Index,
             whole: Callable[[], np.ndarray] | None = None) -> faiss.Index | None:
    """``index`` copied to every GPU, or None when FAISS cannot place this kind there
    (e.g. an HNSW coarse quantizer: it stays on the CPU). ``whole``: the index's whole
    vectors, copied instead as a flat index (exact fp16 codes: no re-scoring there)."""
    try:
        src = index
        if whole is not None:
            src = faiss.IndexFlatIP(index.d)
            src.add(whole())
        return faiss.index_cpu_to_all_gpus(src)
    except (RuntimeError, AttributeError):
        return None


def gpu_depth(n: int, k: int, rerank: int, alive: np.ndarray | None) -> int:
    """How deep to search the GPU copy of an index of ``n`` slots for k live results:
    the re-scoring depth, plus the number of dead slots."""
    dead = 0 if alive is None else len(alive) - int(alive.sum())
    return min(n, depth_for(k, rerank) + dead)


def search_gpu(gpu: faiss.Index, q: np.ndarray, k: int, depth: int, alive: np.ndarray | None,
               vectors: VectorsAt | None = None) -> Hits:
    """Search the GPU copy ``depth`` deep, drop dead slots (``alive`` False), and
    re-score the candidates with ``vectors`` when given (a coded index), else keep the
    first k."""
    scores, pos = gpu.search(q, depth)
    if alive is not None:
        dead = (pos >= 0) & ~alive[np.maximum(pos, 0)]
        scores = np.where(dead, -np.inf, scores).astype(np.float32)
        pos = np.where(dead, -1, pos)
        order = np.argsort(pos < 0, axis=1, kind="stable")  # live first, in rank order
        scores, pos = np.take_along_axis(scores, order, 1), np.take_along_axis(pos, order, 1)
    if vectors is not None:
        return rescore(q, pos, k, vectors)
    return scores[:, :k], pos[:, :k]
