"""The README's Python example runs as written (with a tiny open_clip model in place of
ViT-B-32, whose weights this machine cannot download)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _python_blocks() -> list[str]:
    text = (REPO / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_readme_python_example_indexes_and_searches(tiny_clip_dir, tmp_path, monkeypatch,
                                                        capsys):
    (block,) = _python_blocks()
    assert 'load_encoder("ViT-B-32", "laion2b_s34b_b79k")' in block
    code = block.replace('load_encoder("ViT-B-32", "laion2b_s34b_b79k")',
                         f"load_encoder({tiny_clip_dir!r}, None)")
    monkeypatch.chdir(REPO)
    code = code.replace('Store("my-index"', f'Store({str(tmp_path / "my-index")!r}')
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "6 items embedded"  # datasets/sample holds six photos
    assert len(out) == 4
    for line in out[1:]:
        score, kind, path, ts = line.split()
        assert -1 <= float(score) <= 1 and kind == "photo" and ts == "None"
        assert Path(path).parent == REPO / "datasets" / "sample"
