"""Indexing on a Ray cluster: decode -> embed (an actor pool, one GPU each where the
cluster has GPUs) -> write Lance fragments, with Ray Data and lance-ray.

The driver (the machine running ``loupe index --ray``) scans, diffs with the store and
keeps the books exactly as a local run does (search/pipeline.py): file records, skip
records, reuse of known content, deletions, the FAISS index and tags. What Ray does is
the heavy part, in waves of ``WAVE_FILES`` files:

1. *decode* tasks (one CPU each) run the local worker's ``process_file_with`` on each
   file and turn each decoded item into its store row (the same ``item_row`` a local
   run writes) plus its model inputs; a file also yields one record of what it was;
2. *embed* actors load the index's models once (``encoder_from_spec``: the model, not
   its weights, travels) and add each item's vectors;
3. the wave's rows are appended to the items table by ``lance_ray.write_lance``: each
   Ray task writes its own Lance fragments, the driver commits them in one version;
   their place names (what the camera knew) are given on the driver first, from the
   wave's file records, as a local run's writer gives them (the town table is loaded
   once, on the driver, not in every task).

The driver then commits the wave's file records (after their rows, as a local run
does), so a run stopped at any point is resumed by the next run. Rows equal a local
run's (tests/test_ray_index.py compares them).

Lance is not fork-safe and Ray starts its workers as fresh processes, so nothing here
forks a process that has opened the store.
"""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from loupe.indexer.decode.results import DecodeSettings, FileResult
from loupe.indexer.decode.worker import process_file_with
from loupe.indexer.encoders import EncoderSpec, encoder_from_spec
from loupe.indexer.errors import LoupeError
from loupe.indexer.media.capture import NOTHING
from loupe.indexer.pipeline.options import IndexOptions, IndexReport
from loupe.indexer.pipeline.plan import Column, RunPlan
from loupe.indexer.pipeline.records import item_row, name_places
from loupe.indexer.scan import FileEntry

WAVE_FILES = 20_000  # files per wave: one items commit, then their file records
DECODE_BATCH = 4  # files per decode task call


def _ray():
    try:
        import lance_ray  # noqa: F401  (checked here: the writes need it)
        import ray
    except ImportError as e:  # the "ray" extra is not installed
        raise LoupeError(f"--ray needs Ray Data and lance-ray ({e.name} is missing): "
                         "pip install -e '.[ray]' in Loupe's folder") from e
    return ray


def _local_only(ray) -> None:
    """Make a local cluster listen on 127.0.0.1 only: it has no authentication.

    Ray takes a node's address to be the machine's outward one unless told it is not a
    cluster (its macOS/Windows default, which binds every server to loopback); the
    variable reaches the processes Ray starts, the constant this one.
    """
    from ray._private import ray_constants

    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def connect(address: str | None, workers: int, progress: bool) -> None:
    """Join the Ray cluster at ``address`` ("auto": the one this machine belongs to),
    or start a local one when ``address`` is empty: ``workers`` CPUs for the decode
    tasks and half of one more for the embedding actor (with ``workers`` CPUs alone, one
    worker left no room for the actor and the run waited forever). A local cluster
    listens on 127.0.0.1 only; a cluster at ``address`` must be on a trusted network
    (Ray has no authentication of its own)."""
    ray = _ray()
    if ray.is_initialized():
        return
    kwargs: dict = {"include_dashboard": False, "log_to_driver": False,
                    "logging_level": "ERROR", "configure_logging": True}
    if address:
        kwargs["address"] = address
    else:
        kwargs["num_cpus"] = max(1, workers) + 1
        _local_only(ray)
    try:
        with warnings.catch_warnings():
            # lancedb warns on any fork; Ray's is fork + exec (a new process, no Lance state)
            warnings.filterwarnings("ignore", message="lancedb fork support")
            ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise LoupeError(f"cannot join the Ray cluster at {address or '(a local one)'}: "
                         f"{e}") from e
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    ctx.print_on_execution_start = False
    # Ray Data logs each execution at INFO on the console; the run has its own report
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.WARNING if progress else logging.ERROR)


def _decode_files(batch: pa.Table, settings: DecodeSettings, known: frozenset[str],
                  run_time: float) -> pa.Table:
    """Decode task: files -> one "file" row each (the result without its inputs) and one
    "item" row per item (its store row and its model inputs as raw bytes)."""
    out: dict[str, list] = {"role": [], "path": [], "file": [], "row": [], "inputs": []}
    spill = tempfile.mkdtemp(prefix="loupe-ray-spill-")
    try:
        for path, size, mtime in zip(batch["path"].to_pylist(), batch["size"].to_pylist(),
                                     batch["mtime_ns"].to_pylist(), strict=True):
            r = process_file_with(path, size, mtime, replace(settings, spill_dir=spill), known)
            arrays = r.spill.arrays() if r.spill is not None else {}
            for item in r.items:
                if r.pixels is not None:
                    inputs = {f"img{i}": p for i, p in enumerate(r.pixels)}
                else:
                    inputs = {k: a[item.src] for k, a in arrays.items()
                              if (k == "audio") == (item.kind == "audio")}
                out["role"].append("item")
                out["path"].append(path)
                out["file"].append(None)
                out["row"].append(pickle.dumps(item_row(r, item, run_time)))
                out["inputs"].append(pickle.dumps({k: np.ascontiguousarray(v)
                                                   for k, v in inputs.items()}))
            if r.spill is not None:
                r.spill.remove()
            r.pixels, r.spill = None, None
            out["role"].append("file")
            out["path"].append(path)
            out["file"].append(pickle.dumps(r))
            out["row"].append(None)
            out["inputs"].append(None)
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    return pa.table({"role": pa.array(out["role"], pa.string()),
                     "path": pa.array(out["path"], pa.string()),
                     "file": pa.array(out["file"], pa.binary()),
                     "row": pa.array(out["row"], pa.binary()),
                     "inputs": pa.array(out["inputs"], pa.large_binary())})


class _Embed:
    """Embed actor: the index's models, loaded once per actor."""

    def __init__(self, specs: list[dict], image_inputs: list[int], audio: list[bool],
                 device: str, precision: str | None = None):
        self.columns = [(EncoderSpec.from_dict(s).column, encoder_from_spec(
            EncoderSpec.from_dict(s), device, precision), i, a)
            for s, i, a in zip(specs, image_inputs, audio, strict=True)]

    def __call__(self, batch: pa.Table) -> pa.Table:
        roles = batch["role"].to_pylist()
        rows = [pickle.loads(r) if r is not None else None for r in batch["row"].to_pylist()]
        inputs = [pickle.loads(b) if b is not None else None
                  for b in batch["inputs"].to_pylist()]
        for name, encoder, image_input, audio in self.columns:
            for key, is_audio in ((f"img{image_input}", False), ("audio", True)):
                if is_audio and not audio:
                    continue
                at = [i for i, r in enumerate(roles)
                      if r == "item" and inputs[i] is not None and key in inputs[i]]
                if not at:
                    continue
                stacked = np.stack([inputs[i][key] for i in at])
                vecs = encoder.embed_audio(stacked) if is_audio else \
                    encoder.embed_pixels(stacked)
                for i, v in zip(at, vecs, strict=True):
                    rows[i][name] = np.asarray(v, np.float32).tolist()
        return pa.table({"role": batch["role"], "path": batch["path"], "file": batch["file"],
                         "row": pa.array([pickle.dumps(r) if r is not None else None
                                          for r in rows], pa.binary())})


def _to_items(batch: pa.Table, schema: pa.Schema, places: dict[str, str]) -> pa.Table:
    """Embedded item rows as a table of the items schema, with the place names the
    driver gave their files (``places``: {path: name})."""
    rows = [pickle.loads(r) for r in batch["row"].to_pylist()]
    for r in rows:
        r["place"] = places.get(r["path"])
    return pa.Table.from_pylist(rows, schema=schema)


def _places_of(results: list[FileResult]) -> dict[str, str]:
    """{path: place name} of the files whose capture has a point (named here, on the
    driver, as a local run's writer names them)."""
    rows = [{"path": r.path, **(r.capture or NOTHING).to_row()} for r in results]
    name_places(rows)
    return {r["path"]: r["place"] for r in rows if r["place"] is not None}


def _only(role: str):
    def keep(batch: pa.Table) -> pa.Table:
        return batch.filter(pc.equal(batch["role"], role))

    return keep


def embed_on_ray(todo: Sequence[FileEntry], settings: DecodeSettings, known: frozenset[str],
                 columns: list, items_uri: str, items_schema: pa.Schema, run_time: float,
                 batch_size: int, device: str = "auto",
                 precision: str | None = None) -> Iterator[list[FileResult]]:
    """Decode, embed and append the rows of ``todo`` on the Ray cluster joined by
    :func:`connect`, a wave at a time; after each wave's rows are committed, yields the
    wave's file results (without inputs) for the driver to record."""
    ray = _ray()
    import lance_ray

    gpus = int(ray.cluster_resources().get("GPU", 0))
    cpus = int(ray.cluster_resources().get("CPU", 1))
    specs = [c.encoder.spec.to_dict() for c in columns]
    for start in range(0, len(todo), WAVE_FILES):
        wave = todo[start:start + WAVE_FILES]
        ds = ray.data.from_items(
            [{"path": e.path, "size": e.size, "mtime_ns": e.mtime_ns} for e in wave],
            override_num_blocks=max(1, min(len(wave), 4 * cpus)))
        ds = ds.map_batches(_decode_files, batch_size=DECODE_BATCH, batch_format="pyarrow",
                            fn_kwargs={"settings": settings, "known": known,
                                       "run_time": run_time}, num_cpus=1)
        # On a cluster without GPUs one CPU actor embeds, holding half a CPU: a whole one
        # would make Ray fuse decoding into the actor, so files would decode one by one
        pool = ray.data.ActorPoolStrategy(size=gpus or 1)
        embed_args = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": 0.5}
        ds = ds.map_batches(
            _Embed, batch_size=batch_size, batch_format="pyarrow",
            fn_constructor_kwargs={"specs": specs,
                                   "image_inputs": [c.image_input for c in columns],
                                   "audio": [c.audio for c in columns],
                                   "device": "cuda" if gpus else device,
                                   "precision": precision},
            compute=pool, **embed_args)
        done = ds.materialize()  # vectors and records only: the inputs are gone
        files = done.map_batches(_only("file"), batch_format="pyarrow").take_all()
        results = [pickle.loads(f["file"]) for f in files]
        items = done.map_batches(_only("item"), batch_format="pyarrow").map_batches(
            _to_items, batch_format="pyarrow",
            fn_kwargs={"schema": items_schema, "places": _places_of(results)})
        if items.count():
            lance_ray.write_lance(items, items_uri, mode="append", schema=items_schema)
        yield results


def items_uri(store) -> str:
    """Where the store's items table lies (a Lance dataset inside the LanceDB folder)."""
    uri = getattr(store.items(), "uri", None)
    return str(uri or store.tables_uri.rstrip("/") + "/items.lance")


def index_on_ray(plan: RunPlan, settings: DecodeSettings, options: IndexOptions, store,
                 columns: list[Column], writer, report: IndexReport, run_time: float,
                 handled: Callable[[FileResult], None]) -> list[FileEntry]:
    """Decode, embed and write the plan's new rows on Ray, recording each wave's files
    after its rows; returns the files left for this machine (those that only lack a
    model added to the index: a partial row update)."""
    all_columns = frozenset(c.name for c in columns)
    missing = sorted(set(store.meta.encoders) - all_columns)
    if missing:
        raise LoupeError("--ray indexes with every model of the index, and this index also "
                         f"has {', '.join(missing)}: name all of its models, or leave out "
                         "--ray")
    need = plan.need
    remote = [e for e in plan.todo if need.get(e.path, all_columns) == all_columns]
    local = [e for e in plan.todo if need.get(e.path, all_columns) != all_columns]
    if not remote:
        return local
    connect(options.ray or None, options.workers, options.progress)
    writer.commit()  # file-level bookkeeping so far lands before the Ray waves
    schema = store.items().schema
    # spill_dir is per task on the cluster: each decode task makes its own
    remote_settings = replace(settings, spill_dir=None)
    for results in embed_on_ray(remote, remote_settings, plan.known_fingerprints, columns,
                                items_uri(store), schema, run_time, options.batch_size,
                                precision=options.precision):
        for r in results:
            if r.code is not None:
                writer.add_skip(r)
            elif r.reused:
                writer.book.waiting.append(r)
            else:  # its rows are in the store already
                report.embedded += len(r.items)
                report.count_items([i.kind for i in r.items])
                writer.add_file(r, len(r.items))
            handled(r)
        writer.commit()
    return local
