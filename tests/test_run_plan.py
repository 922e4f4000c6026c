"""The plan of a run (the diff of a scan against the store's state), as a pure function:
every case worked out by hand, nothing decoded or written."""

from __future__ import annotations

from loupe.indexer.kinds import ItemKind, MediaKind, SkipCode
from loupe.indexer.pipeline.plan import Column, StoreState, plan_run, under, up_to_date
from loupe.indexer.scan import FileEntry, ScanProblem
from loupe.search.store import FileState

ROOT = "/archive"
PICTURES_AND_VIDEO = {MediaKind.IMAGE, MediaKind.VIDEO}


def e(name: str, size: int = 10, mtime: int = 1) -> FileEntry:
    return FileEntry(f"{ROOT}/{name}", size, mtime)


def st(size: int = 10, mtime: int = 1, fp: str | None = None, code: str | None = None,
       kind: str | None = MediaKind.IMAGE) -> FileState:
    return FileState(size, mtime, fp, code, kind)


def plan(entries, items=None, skipped=None, orphans=None, backfill=None, problems=(),
         supported=PICTURES_AND_VIDEO, retry=False, roots=(ROOT,), kept_roots=()):
    state = StoreState(dict(items or {}), dict(orphans or {}), dict(skipped or {}),
                       dict(backfill or {}))
    state.items.update(state.orphans)
    return plan_run(entries, list(problems), list(roots), state, supported, retry, kept_roots)


def test_new_files_are_done_and_unchanged_ones_left():
    p = plan([e("a.jpg"), e("b.jpg")], items={f"{ROOT}/a.jpg": st(fp="fa")})
    assert [x.path for x in p.todo] == [f"{ROOT}/b.jpg"]
    assert p.unchanged == 1 and p.need == {}
    assert p.known_fingerprints == {"fa"}


def test_a_changed_size_or_mtime_is_done_again():
    items = {f"{ROOT}/a.jpg": st(10, 1), f"{ROOT}/b.jpg": st(10, 1)}
    p = plan([e("a.jpg", size=11), e("b.jpg", mtime=2)], items=items)
    assert len(p.todo) == 2 and p.unchanged == 0


def test_a_backfill_computes_only_the_missing_columns():
    items = {f"{ROOT}/v.mp4": st(fp="fv", kind=MediaKind.VIDEO)}
    p = plan([e("v.mp4")], items=items, backfill={f"{ROOT}/v.mp4": {"col_b"}})
    assert [x.path for x in p.todo] == [f"{ROOT}/v.mp4"]
    assert p.need == {f"{ROOT}/v.mp4": frozenset({"col_b"})}
    # content lacking a column can't be copied, and isn't a reuse source yet
    assert p.known_fingerprints == frozenset() and f"{ROOT}/v.mp4" not in p.complete


def test_skipped_files_wait_unless_they_can_be_read_now():
    skipped = {f"{ROOT}/bad.jpg": st(code=SkipCode.BAD),
               f"{ROOT}/song.wav": st(code=SkipCode.UNSUPPORTED, kind=MediaKind.AUDIO),
               f"{ROOT}/notes.txt": st(code=SkipCode.NOT_MEDIA, kind=None)}
    entries = [e("bad.jpg"), e("song.wav"), e("notes.txt")]
    assert plan(entries, skipped=skipped).todo == []
    with_sound = plan(entries, skipped=skipped, supported=PICTURES_AND_VIDEO | {"audio"})
    assert [x.path for x in with_sound.todo] == [f"{ROOT}/song.wav"]
    retried = plan(entries, skipped=skipped, retry=True)
    assert [x.path for x in retried.todo] == [f"{ROOT}/bad.jpg"]
    # a skipped file that changed is looked at again whatever its code
    assert [x.path for x in plan([e("bad.jpg", size=99)], skipped=skipped).todo] == [
        f"{ROOT}/bad.jpg"]


def test_files_gone_from_disk_are_removed_but_not_outside_the_roots_or_unreadable_folders():
    items = {f"{ROOT}/gone.jpg": st(), f"{ROOT}/locked/x.jpg": st(), "/elsewhere/y.jpg": st(),
             f"{ROOT}/kept.jpg": st()}
    skipped = {f"{ROOT}/gone-bad.jpg": st(code=SkipCode.BAD)}
    p = plan([e("kept.jpg")], items=items, skipped=skipped,
             problems=[ScanProblem(f"{ROOT}/locked", "permission denied")])
    assert p.gone_items == [f"{ROOT}/gone.jpg"]
    assert p.gone_skips == [f"{ROOT}/gone-bad.jpg"]
    assert p.known_items == {f"{ROOT}/kept.jpg", f"{ROOT}/locked/x.jpg", "/elsewhere/y.jpg"}
    assert p.problems == [ScanProblem(f"{ROOT}/locked", "permission denied")]


def test_a_root_that_is_a_prefix_of_another_folder_owns_only_its_own_files():
    assert under(f"{ROOT}/a.jpg", [ROOT]) and under(ROOT, [ROOT])
    assert not under(f"{ROOT}-2/a.jpg", [ROOT])
    p = plan([], items={f"{ROOT}-2/a.jpg": st()})
    assert p.gone_items == []


def test_a_skip_record_beside_up_to_date_rows_is_stale():
    path = f"{ROOT}/a.jpg"
    p = plan([e("a.jpg")], items={path: st()}, skipped={path: st(code=SkipCode.BAD)})
    assert p.stale_skips == [path] and path not in p.known_skipped and p.todo == []


def test_orphan_photos_only_need_their_file_record():
    path = f"{ROOT}/a.jpg"
    p = plan([e("a.jpg"), e("b.jpg")], orphans={path: st(fp="fa"),
                                                f"{ROOT}/b.jpg": st(size=5, fp="fb")})
    assert p.repairs == [(path, st(fp="fa"))]  # b.jpg changed since: it is done again
    assert [x.path for x in p.todo] == [f"{ROOT}/b.jpg"]


def test_up_to_date_compares_size_and_mtime():
    assert up_to_date(e("a"), st()) and not up_to_date(e("a"), None)
    assert not up_to_date(e("a", mtime=2), st())


def test_a_column_knows_the_kinds_it_embeds():
    assert Column("c", 0, audio=False).kinds == [ItemKind.PHOTO, ItemKind.FRAME]
    assert Column("c", 0, audio=True).kinds == [ItemKind.PHOTO, ItemKind.FRAME,
                                               ItemKind.AUDIO]


def test_a_missing_or_empty_root_with_rows_is_vanished_and_its_rows_stay():
    from loupe.indexer.pipeline.plan import vanished_roots

    items = {f"{ROOT}/a.jpg": st(), "/other/b.jpg": st()}
    state = StoreState(items, {}, {})
    assert vanished_roots([ROOT], [ROOT], [], [], state) == [ROOT]  # missing
    assert vanished_roots([ROOT], [], [], [], state) == [ROOT]  # empty
    assert vanished_roots([ROOT], [], [e("a.jpg")], [], state) == []  # there
    assert vanished_roots(["/new"], ["/new"], [], [], state) == []  # never indexed
    p = plan([], items=items, kept_roots=[ROOT])
    assert p.gone_items == [] and f"{ROOT}/a.jpg" in p.known_items
    assert plan([], items=items).gone_items == [f"{ROOT}/a.jpg"]  # --prune
