"""The `loupe` command end to end with a tiny real open_clip model: index, search (text,
image, arithmetic), status, exit codes and one-line error messages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.media import solid

from loupe.search.cli import main
from loupe.search.store import Store, item_id

N_CORPUS = 8  # corpus photos copied into the test folder


def _loupe_cmd() -> list[str]:
    script = Path(sys.executable).parent / "loupe"
    return [str(script)] if script.exists() else [sys.executable, "-m", "loupe.search.cli"]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_clip_dir, corpus):
    """A folder of real photos (plus one broken file) indexed with the tiny model."""
    base = tmp_path_factory.mktemp("cli")
    photos = base / "photos"
    photos.mkdir()
    for p in sorted((corpus / "photos").glob("*.png"))[:N_CORPUS - 1]:
        shutil.copy(p, photos / p.name)
    shutil.copy(corpus / "photos" / "rocket.jpg", photos / "rocket.jpg")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x01" * 64)
    db = base / "db"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(base / "cache"))
        mp.delenv("LOUPE_DB", raising=False)
        assert main(["index", str(photos), "--db", str(db), "--model", tiny_clip_dir,
                     "--workers", "0", "--quiet"]) == 0
    return photos, db, tiny_clip_dir


@pytest.fixture(scope="module")
def brute(indexed):
    """Exact scores worked out here, from the stored vectors and the model itself."""
    from loupe.indexer.encoders import load_encoder
    from loupe.indexer.media.image import decode_image_file

    _, db, tiny = indexed
    store = Store(str(db))
    col = next(iter(store.meta.encoders))
    rows = store.items().to_arrow().to_pylist()
    paths = [r["path"] for r in rows]
    vecs = np.array([r[col] for r in rows], np.float64)
    enc = load_encoder(tiny, None, "cpu")

    def scores(*terms: tuple[float, str, str]) -> dict[str, float]:
        q = np.zeros(enc.dim)
        for w, kind, value in terms:
            if kind == "text":
                q += w * enc.embed_texts([value])[0]
            else:  # decoded the way indexing and queries decode
                q += w * enc.embed_pixels(decode_image_file(value, enc.preprocess).pixels[None])[0]
        q /= np.linalg.norm(q)
        return dict(zip(paths, (vecs @ q).tolist(), strict=True))

    return scores


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _search(capsys, db, *terms: str) -> list[dict]:
    rc, out, err = _run(capsys, "search", *terms, "--db", str(db), "--json")
    assert rc == 0, err
    return json.loads(out)


def _assert_one_line_error(rc: int, out: str, err: str, *needles: str) -> str:
    assert rc == 1, (rc, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("loupe: error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert out == ""
    return lines[0]


def _assert_matches_brute(hits: list[dict], expected: dict[str, float], k: int) -> None:
    assert len(hits) == min(k, len(expected))
    for h in hits:
        assert h["score"] == pytest.approx(expected[h["path"]], abs=1e-4), h["path"]
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    # nothing left out scores above the last hit returned
    left_out = [s for p, s in expected.items() if p not in {h["path"] for h in hits}]
    assert all(s <= scores[-1] + 1e-4 for s in left_out)


def test_text_search_json(indexed, brute, capsys):
    photos, db, _ = indexed
    hits = _search(capsys, db, "a cat", "-k", "5")
    assert isinstance(hits, list) and len(hits) == 5
    for h in hits:
        assert {"path", "score", "kind", "id"} <= set(h)
        assert h["kind"] == "photo" and isinstance(h["score"], float)
        assert h["id"] == item_id(h["path"], "photo")
        assert Path(h["path"]).parent == photos and Path(h["path"]).is_file()
    _assert_matches_brute(hits, brute((1.0, "text", "a cat")), 5)
    assert len(_search(capsys, db, "a cat", "-k", "1")) == 1
    everything = _search(capsys, db, "a cat", "-k", "1000")
    assert len(everything) == N_CORPUS  # all rows, and the broken file is not one


def test_image_search_finds_itself(indexed, capsys):
    photos, db, _ = indexed
    for name in ("rocket.jpg", sorted(p.name for p in photos.glob("*.png"))[0]):
        hits = _search(capsys, db, str(photos / name), "-k", "3")
        assert hits[0]["path"] == str(photos / name)
        assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
        assert hits[1]["score"] < hits[0]["score"]


def test_query_arithmetic(indexed, brute, capsys, monkeypatch):
    photos, db, _ = indexed
    img = photos / "rocket.jpg"
    hits = _search(capsys, db, "x", "+", str(img), "-", "y", "-k", "4")
    _assert_matches_brute(hits, brute((1, "text", "x"), (1, "image", str(img)),
                                      (-1, "text", "y")), 4)
    # a relative image path, weights and forced kinds
    monkeypatch.chdir(photos)
    hits = _search(capsys, db, "2:text:rocket.jpg", "-", "0.5:image:rocket.jpg", "-k", "3")
    _assert_matches_brute(hits, brute((2, "text", "rocket.jpg"), (-0.5, "image", str(img))), 3)
    hits = _search(capsys, db, "./rocket.jpg", "-k", "1")
    assert hits[0]["path"] == str(img)


def test_human_search_output(indexed, capsys):
    _, db, _ = indexed
    rc, out, err = _run(capsys, "search", "a cat", "-k", "3", "--db", str(db))
    assert rc == 0
    lines = out.strip().splitlines()
    assert len(lines) == 3 and all(line.split()[0] == str(i) for i, line in enumerate(lines, 1))
    assert "3 results" in err


def test_status_json(indexed, capsys):
    photos, db, tiny = indexed
    rc, out, err = _run(capsys, "status", "--db", str(db), "--json")
    assert rc == 0, err
    st = json.loads(out)
    assert st["counts"] == {"photo": N_CORPUS} and st["items"] == N_CORPUS
    assert len(st["encoders"]) == 1
    enc = st["encoders"][0]
    assert enc["backend"] == "open_clip" and enc["dim"] == 32
    assert enc["model"] == f"local-dir:{os.path.abspath(tiny)}"
    assert enc["faiss"]["fresh"] and enc["faiss"]["vectors"] == N_CORPUS
    assert [s["path"] for s in st["skipped"]] == [str(photos / "broken.jpg")]
    assert st["skipped"][0]["reason"]
    rc, out, _ = _run(capsys, "status", "--db", str(db))
    assert rc == 0 and f"items: {N_CORPUS}" in out and "broken.jpg" in out


@pytest.mark.parametrize("argv", [
    [],
    ["frobnicate"],
    ["search"],
    ["search", "cat", "--bogus-flag"],
    ["search", "cat", "-k", "many"],
    ["index"],
    ["index", ".", "--workers", "lots"],
    ["status", "extra-arg"],
], ids=lambda a: " ".join(a) or "no-args")
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage: loupe" in capsys.readouterr().err


def test_console_script_exit_codes(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LOUPE_DB": str(tmp_path / "nowhere")}
    p = subprocess.run([*_loupe_cmd()], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "usage: loupe" in p.stderr
    p = subprocess.run([*_loupe_cmd(), "status"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == [p.stderr.strip()]
    assert p.stderr.startswith("loupe: error: ") and str(tmp_path / "nowhere") in p.stderr


def test_missing_index(tmp_path, capsys):
    nowhere = tmp_path / "no-such-db"
    for argv in (["search", "cat", "--db", str(nowhere)], ["status", "--db", str(nowhere)]):
        _assert_one_line_error(*_run(capsys, *argv), str(nowhere), "loupe index")
    assert not nowhere.exists()  # looking does not create an index
    _assert_one_line_error(*_run(capsys, "index", str(tmp_path / "no-photos"), "--db",
                                 str(tmp_path / "db")), "no-photos")


def test_missing_query_image(indexed, capsys, monkeypatch, tmp_path):
    _, db, _ = indexed
    monkeypatch.chdir(tmp_path)
    _assert_one_line_error(*_run(capsys, "search", "./nope.jpg", "--db", str(db)), "nope.jpg")
    _assert_one_line_error(*_run(capsys, "search", "cat", "+", "image:nope.png", "--db",
                                 str(db)), "nope.png")


def test_bad_k_and_bad_queries(indexed, capsys):
    _, db, _ = indexed
    _assert_one_line_error(*_run(capsys, "search", "cat", "-k", "0", "--db", str(db)), "-k")
    _assert_one_line_error(*_run(capsys, "search", "cat", "-k", "-3", "--db", str(db)), "-k")
    _assert_one_line_error(*_run(capsys, "search", "cat", "+", "--db", str(db)), "operator")
    _assert_one_line_error(*_run(capsys, "search", "cat", "-", "cat", "--db", str(db)),
                           "cancel")


def test_query_with_another_encoder_is_refused(indexed, capsys, tmp_path):
    from helpers.tiny_models import make_tiny_clip_dir

    _, db, tiny = indexed
    other = make_tiny_clip_dir(str(tmp_path / "other-tiny"), seed=1)
    line = _assert_one_line_error(
        *_run(capsys, "search", "cat", "--db", str(db), "--model", other))
    assert "other-tiny" in line and "refusing" in line
    # and indexing into it with that encoder is refused too, leaving the rows alone
    photos = tmp_path / "more"
    solid(photos / "x.png", (1, 2, 3))
    _assert_one_line_error(*_run(capsys, "index", str(photos), "--db", str(db), "--model",
                                 other, "--workers", "0", "--quiet"))
    assert len(Store(str(db)).item_states()) == N_CORPUS


def test_missing_weights_fail_fast_offline(tmp_path, capsys, monkeypatch, tiny_clip_dir):
    import huggingface_hub.constants as hf
    import open_clip  # noqa: F401 - imported beforehand: time the attempt, not the imports

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)  # whenever huggingface_hub was imported
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hf-in-process"))  # empty cache
    photos = tmp_path / "photos"
    solid(photos / "a.png", (10, 20, 30))
    argv = ["index", str(photos), "--db", str(tmp_path / "db"), "--model", "ViT-B-32",
            "--pretrained", "laion2b_s34b_b79k", "--workers", "0", "--quiet"]
    import socket

    attempts = []

    def no_network(self, *a, **kw):
        attempts.append(a)
        raise OSError("network used in an offline test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    line = _assert_one_line_error(*_run(capsys, *argv), "ViT-B-32", "laion2b_s34b_b79k",
                                  "--pretrained /")
    assert attempts == []  # offline means no connection attempt (and so no ~45 s wait)
    assert "looked" in line and str(tmp_path / "hf-in-process") in line  # where it looked
    assert not (tmp_path / "db" / "meta.json").exists()  # a failed start leaves no index
    monkeypatch.undo()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    # the real console script, in a fresh process, with an empty hub cache
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    p = subprocess.run([*_loupe_cmd(), *argv], env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 1, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("loupe: error: "), p.stderr
    assert "ViT-B-32" in lines[0] and str(tmp_path / "hf") in lines[0]


def test_loupe_db_env_is_honoured(tmp_path, capsys, monkeypatch, tiny_clip_dir):
    env_db, flag_db = tmp_path / "env-db", tmp_path / "flag-db"
    monkeypatch.setenv("LOUPE_DB", str(env_db))
    photos = tmp_path / "photos"
    solid(photos / "a.png", (200, 10, 10))
    solid(photos / "b.png", (10, 10, 200))
    rc, _, err = _run(capsys, "index", str(photos), "--model", tiny_clip_dir, "--workers", "0",
                      "--quiet")
    assert rc == 0, err
    assert (env_db / "meta.json").is_file()
    rc, out, _ = _run(capsys, "status", "--json")
    st = json.loads(out)
    assert rc == 0 and st["db"] == str(env_db) and st["items"] == 2
    rc, out, _ = _run(capsys, "search", str(photos / "b.png"), "--json")
    assert rc == 0 and json.loads(out)[0]["path"] == str(photos / "b.png")
    # --db wins over LOUPE_DB
    _assert_one_line_error(*_run(capsys, "status", "--db", str(flag_db)), str(flag_db))
    monkeypatch.delenv("LOUPE_DB")
    monkeypatch.setenv("LOUPE_DB", str(flag_db))
    _assert_one_line_error(*_run(capsys, "search", "cat"), str(flag_db))


def test_unchanged_rerun_with_flags_loads_no_model_and_swapped_weights_are_caught(
        tmp_path, capsys, monkeypatch, tiny_clip_dir):
    from helpers.tiny_models import make_tiny_clip_dir

    import loupe.indexer.encoders.openclip as oc

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_clip_dir, model_dir)
    photos = tmp_path / "photos"
    solid(photos / "a.png", (200, 10, 10))
    argv = ["index", str(photos), "--db", str(tmp_path / "db"), "--model", str(model_dir),
            "--workers", "0", "--quiet"]
    assert _run(capsys, *argv)[0] == 0

    real_loader = oc.load_open_clip

    def no_load(*a, **kw):
        raise AssertionError("an unchanged re-run must not load the model")

    monkeypatch.setattr(oc, "load_open_clip", no_load)
    assert _run(capsys, *argv)[0] == 0
    monkeypatch.setattr(oc, "load_open_clip", real_loader)

    # other weights copied over the same folder: caught before anything is embedded
    other = make_tiny_clip_dir(str(tmp_path / "other"), seed=7)
    shutil.copy(os.path.join(other, "open_clip_model.safetensors"), model_dir)
    solid(photos / "b.png", (10, 200, 10))
    _assert_one_line_error(*_run(capsys, *argv), "no longer the same", "weights_id")
    rows = Store(str(tmp_path / "db")).item_states()
    assert sorted(os.path.basename(p) for p in rows) == ["a.png"]


def test_tables_elsewhere_than_the_index_folder(tmp_path, tiny_clip_dir, corpus, capsys):
    """--tables-uri: the LanceDB tables (store of record) live at a URI of their own (an
    object store in production; a file:// folder here), the index folder keeps only its
    local state, and every later command finds the tables through meta.json."""
    photos = tmp_path / "p"
    photos.mkdir()
    for name in ("chelsea.png", "rocket.jpg", "coffee.png"):
        shutil.copy(corpus / "photos" / name, photos / name)
    db, tables = tmp_path / "db", tmp_path / "bucket" / "loupe"
    uri = f"file://{tables}"
    assert main(["index", str(photos), "--db", str(db), "--model", tiny_clip_dir,
                 "--workers", "0", "--quiet", "--tables-uri", uri]) == 0
    assert (tables / "items.lance").is_dir() and not (db / "items.lance").exists()
    assert Store(str(db)).tables_uri == uri and Store(str(db)).counts() == {"photo": 3}
    capsys.readouterr()
    assert main(["search", "--db", str(db), str(photos / "rocket.jpg"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["path"] == str(photos / "rocket.jpg")
    assert main(["status", "--db", str(db)]) == 0
    assert f"tables: {uri}" in capsys.readouterr().out
    assert main(["index", str(photos), "--db", str(db), "--quiet",
                 "--tables-uri", f"file://{tmp_path}/elsewhere"]) != 0
    assert "--tables-uri only applies to a new index" in capsys.readouterr().err
