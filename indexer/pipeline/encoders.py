"""Which encoders an indexing run uses: the index's own models, plus the ones asked for.

Shared by ``loupe index`` and any other front end that starts a run (the web UI): the
recorded models come back as :class:`LazyEncoder` (an unchanged archive never loads
them), a model named again is recognised by its source, and a model new to an index
that already holds vectors is only taken when the caller says ``add``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from loupe.indexer.encoders import (
    DEFAULT_MODEL,
    DEFAULT_PRETRAINED,
    Encoder,
    EncoderSpec,
    LazyEncoder,
    load_encoder,
    same_source,
)
from loupe.indexer.errors import LoupeError


def encoders_for_run(recorded: Iterable[EncoderSpec], models: Sequence[str] = (),
                     pretrained: Sequence[str] = (), *, add: bool = False,
                     device: str = "auto", precision: str | None = None,
                     default_model: str = DEFAULT_MODEL,
                     default_pretrained: str | None = DEFAULT_PRETRAINED) -> list[Encoder]:
    """The encoders a run uses: the index's models, plus ``models`` new to it (with ``add``).

    ``recorded``: the specs the index holds (none for a new index). ``models`` and
    ``pretrained`` are the ``--model`` / ``--pretrained`` lists (the n-th weights go with
    the n-th model; weights alone go with ``default_model``). A new index uses
    ``models``, else ``default_model``. Models new to an index that holds vectors are
    refused unless ``add``. Returns the recorded models first (lazily loaded), then the
    new ones (loaded now, so a bad name fails before anything is written).
    """
    recorded = list(recorded)
    models, pretrained = list(models), list(pretrained)
    if len(pretrained) > max(1, len(models)):
        raise LoupeError("more --pretrained than --model: give one --model per --pretrained")
    if pretrained and not models:
        models = [default_model]
    if not models and not recorded:
        models = [default_model]
    new: list[Encoder] = []
    for i, model in enumerate(models):
        weights = pretrained[i] if i < len(pretrained) else None
        if weights is None and model == default_model:
            weights = default_pretrained
        if any(same_source(s, model, weights) for s in recorded):
            continue  # recorded: loaded only if something needs embedding
        enc = load_encoder(model, weights, device, precision)
        if enc.spec.column in {s.column for s in recorded}:
            continue
        new.append(enc)
    if new and recorded and not add:
        have = "; ".join(s.describe() for s in recorded)
        adding = "; ".join(e.spec.describe() for e in new)
        raise LoupeError(
            f"this index holds vectors of {have}. To add {adding} (computed for every file "
            "already indexed), run again with --add; or use another --db"
        )
    return [LazyEncoder(s, device, precision) for s in recorded] + new
