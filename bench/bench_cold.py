"""Cold ``loupe search`` without a server: the whole command as a fresh process, and where
its time goes.

Two indexes of ``datasets/sample`` (six photos), each built with a local open_clip model
folder (open_clip_config.json + open_clip_model.safetensors, the layout ``--model DIR``
reads; no weights can be downloaded here, and random weights cost the same time):

- ``tiny``: the tests' tiny open_clip (tests/helpers/tiny_models.py);
- ``ViT-B-32``: the real ViT-B-32 architecture at full size, seeded random weights.

1. End to end: ``python -m loupe.search.cli search QUERY --db DB -k 3`` (with
   ``--no-server`` where the command has it), p50 / min / max of ``-n`` (5) runs (and the
   p50 of their CPU time, steadier on a shared machine), for a
   words query and a picture query (datasets/sample/coffee.png), page cache warm.
2. Breakdown, in one fresh process that does what the command does, step by step
   (library calls, same order): Python start, ``import torch``, importing the store and
   the searcher (LanceDB, FAISS), opening the store, ``encoder_from_spec`` (the model),
   the first text embedding, loading the FAISS index, the search; and, from
   ``python -X importtime`` of the real command, the cumulative import time of the heavy
   packages (inflated by the tracing; for the ranking, not the sum).

``--baseline REV`` runs the same commands on the code of git revision REV as well (its
tree from ``git archive``, imported first through PYTHONPATH), alternating the two run
by run so that the machine's load falls on both alike: the "before" of a change.

Run::

    source .venv/bin/activate
    python bench/bench_cold.py              # both models, 5 runs each
    python bench/bench_cold.py -n 3 --only tiny
    python bench/bench_cold.py --baseline 8b66ab1   # before (that commit) and now

Benchmarks print numbers; they assert nothing about timings.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time

from _common import DEFAULT_WORK, REPO, bench_env, machine_info, prehash_weights, tiny_model_dir

SAMPLE = REPO / "datasets" / "sample"
PICTURE = SAMPLE / "coffee.png"
WORDS = "a photo of a cat"
HEAVY = ("torch", "torchvision", "torch._dynamo", "open_clip", "transformers", "timm",
         "lancedb", "pyarrow", "faiss", "PIL.Image", "numpy", "loupe.search.cli",
         "loupe.search.engine", "loupe.search.store", "loupe.indexer.encoders.openclip")


def vit_b32_dir(work: str, seed: int = 0) -> str:
    """A full-size ViT-B-32 model folder with seeded random weights (made once)."""
    path = os.path.join(work, "models", f"vit-b-32-dir-seed{seed}")
    if os.path.exists(os.path.join(path, "open_clip_config.json")):
        return path
    import open_clip
    import torch
    from safetensors.torch import save_file

    os.makedirs(path, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.path.join(path, "open_clip_model.safetensors"))
    cfg = {"model_cfg": open_clip.get_model_config("ViT-B-32"),
           "preprocess_cfg": {"mean": list(open_clip.OPENAI_DATASET_MEAN),
                              "std": list(open_clip.OPENAI_DATASET_STD),
                              "interpolation": "bicubic", "resize_mode": "shortest"}}
    with open(os.path.join(path, "open_clip_config.json"), "w") as f:
        json.dump(cfg, f)
    return path


def build_index(work: str, name: str, model_dir: str, env: dict) -> str:
    """An index of datasets/sample made with ``model_dir`` (made once)."""
    db = os.path.join(work, f"db-cold-{name}")
    if not os.path.exists(os.path.join(db, "meta.json")):
        subprocess.run([sys.executable, "-m", "loupe.search.cli", "index", str(SAMPLE),
                        "--db", db, "--model", model_dir, "--quiet"], check=True, env=env)
    return db


def search_cmd(db: str, term: str, env: dict) -> list[str]:
    """The cold command; ``--no-server`` where that code's ``loupe search`` has it."""
    help_text = subprocess.run([sys.executable, "-m", "loupe.search.cli", "search", "--help"],
                               capture_output=True, text=True, env=env).stdout
    extra = ["--no-server"] if "--no-server" in help_text else []
    return [sys.executable, "-m", "loupe.search.cli", "search", term, "--db", db, "-k", "3",
            *extra]


def baseline_tree(work: str, rev: str) -> str:
    """A PYTHONPATH entry holding package ``loupe`` as it was at git revision ``rev``."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", rev], check=True,
                         capture_output=True, text=True).stdout.strip()
    root = os.path.join(work, f"baseline-{sha[:12]}")
    pkg = os.path.join(root, "pkg", "loupe")
    if not os.path.isdir(pkg):
        src = os.path.join(root, "src")
        os.makedirs(src, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(REPO), "archive", sha], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", src], input=archive, check=True)
        os.makedirs(pkg + ".tmp", exist_ok=True)
        for name, folder in (("indexer", "indexer"), ("search", "search"), ("ui", "ui"),
                             ("labels", "datasets/labels")):
            os.symlink(os.path.join(src, folder), os.path.join(pkg + ".tmp", name))
        os.replace(pkg + ".tmp", pkg)
    return os.path.dirname(pkg)


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def time_runs(cmds: dict[str, tuple[list[str], dict]],
              n: int) -> dict[str, tuple[list[float], list[float]]]:
    """(wall seconds, CPU seconds) of ``n`` runs of each command (each must succeed),
    taken in turns. CPU time (user + system, the process and its children) moves much
    less than wall time when other work shares the machine."""
    out: dict[str, tuple[list[float], list[float]]] = {label: ([], []) for label in cmds}
    for _ in range(n):
        for label, (cmd, env) in cmds.items():
            t0, c0 = time.perf_counter(), _children_cpu()
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            out[label][0].append(time.perf_counter() - t0)
            out[label][1].append(_children_cpu() - c0)
    return out


# What `loupe search WORDS` does, step by step, timed (run in a fresh process).
STEPS = r"""
import json, sys, time
t0 = time.perf_counter()
laps = {}
def lap(name):
    global t0
    t = time.perf_counter(); laps[name] = t - t0; t0 = t
import torch; lap("import torch")
import loupe.search.cli  # the command's own imports
from loupe.indexer import encoder_from_spec
from loupe.search import Searcher, Store, modalities, parse_query
import loupe.search.engine, loupe.search.store; lap("import loupe (store, searcher, cli)")
store = Store(sys.argv[1]); terms = parse_query([sys.argv[2]])
spec = store.meta.query_column(None, modalities(terms))[1]; lap("open the store")
enc = encoder_from_spec(spec, "auto", None); lap("encoder_from_spec (model)")
enc.embed_texts([sys.argv[2]]); lap("first text embedding")
searcher = Searcher(store, enc, device="auto")
searcher.index_of(searcher.column_for(modalities(terms))); lap("load the FAISS index")
searcher.search(terms, k=3); lap("search")
mods = [m for m in ("open_clip", "transformers", "timm", "torchvision") if m in sys.modules]
print(json.dumps({"laps": laps, "imported": mods}))
"""


def breakdown(db: str, env: dict) -> dict:
    """Per-step seconds (median of 3 fresh processes) and which heavy modules got imported."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True, env=env)
    start = time.perf_counter() - t0
    runs = [json.loads(subprocess.run([sys.executable, "-c", STEPS, db, WORDS], check=True,
                                      env=env, capture_output=True, text=True).stdout)
            for _ in range(3)]
    laps = {"python start": start}
    for name in runs[0]["laps"]:
        laps[name] = statistics.median(r["laps"][name] for r in runs)
    return {"laps": laps, "imported": runs[0]["imported"]}


def import_times(cmd: list[str], env: dict) -> dict[str, float]:
    """Cumulative import seconds of the heavy packages in one run of ``cmd`` (-X importtime)."""
    p = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], env=env, capture_output=True,
                       text=True, check=True)
    found: dict[str, float] = {}
    for line in p.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|(\s*)(\S+)$", line)
        if m and m.group(3) in HEAVY and m.group(3) not in found:
            found[m.group(3)] = int(m.group(1)) / 1e6
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=DEFAULT_WORK)
    ap.add_argument("-n", type=int, default=5, help="runs per command (5)")
    ap.add_argument("--only", choices=["tiny", "vit-b-32"], default=None)
    ap.add_argument("--baseline", default=None, metavar="REV",
                    help="also time git revision REV's code, in turns with this tree's")
    args = ap.parse_args()
    env = bench_env(args.work)
    trees = {"now": env}
    if args.baseline:
        old = dict(env)
        old["PYTHONPATH"] = os.pathsep.join(
            p for p in (baseline_tree(args.work, args.baseline), env.get("PYTHONPATH")) if p)
        trees = {f"at {args.baseline}": old, "now": env}
    print(machine_info())
    models = {"tiny": lambda: tiny_model_dir(args.work),
              "vit-b-32": lambda: vit_b32_dir(args.work)}
    for name, make in models.items():
        if args.only and name != args.only:
            continue
        model_dir = make()
        prehash_weights(args.work, ["--model", model_dir])
        db = build_index(args.work, name, model_dir, env)
        print(f"\n== {name}: {model_dir}")
        for label, term in (("words", WORDS), ("picture", str(PICTURE))):
            runs = time_runs({tree: (search_cmd(db, term, tree_env), tree_env)
                              for tree, tree_env in trees.items()}, args.n)
            for tree, (secs, cpu) in runs.items():
                print(f"cold `loupe search` {label:8s} {tree:>14s}: p50 "
                      f"{statistics.median(secs):6.2f} s  (min {min(secs):.2f}, "
                      f"max {max(secs):.2f}, n={len(secs)}); CPU p50 "
                      f"{statistics.median(cpu):6.2f} s")
        for tree, tree_env in trees.items():
            parts = breakdown(db, tree_env)
            print(f"breakdown {tree} (words query; median of 3 fresh processes):")
            for step, s in parts["laps"].items():
                print(f"  {step:38s} {s * 1000:7.0f} ms")
            print(f"  {'total':38s} {sum(parts['laps'].values()) * 1000:7.0f} ms")
            print(f"  heavy modules imported: {', '.join(parts['imported']) or 'none'}")
            print(f"cumulative import time in `loupe search WORDS`, {tree} "
                  "(-X importtime, inflated):")
            for mod, s in sorted(import_times(search_cmd(db, WORDS, tree_env), tree_env).items(),
                                 key=lambda kv: -kv[1]):
                print(f"  {mod:38s} {s * 1000:7.0f} ms")


if __name__ == "__main__":
    main()
