"""The README's Python example runs as written (with a tiny open_clip model in place of
ViT-B-32, whose weights this machine cannot download, and a copy of datasets/sample in
which rocket.jpg carries a camera's EXIF and a short video was added), and prints what
it says: words hits, the picture's own photo first with what the camera knew, and the
video with its moments."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from helpers.exif import EXIF_IFD, GPS_IFD, MAKE, MODEL, OFFSET, TAKEN, gps, tagged_video
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "datasets" / "sample"


def _python_blocks() -> list[str]:
    text = (REPO / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _sample_with_camera_and_video(folder: Path) -> Path:
    """datasets/sample, with rocket.jpg's EXIF saying Lisbon and a video beside it."""
    shutil.copytree(SAMPLE, folder)
    ex = Image.Exif()
    ex.update({MAKE: "Canon", MODEL: "Canon EOS R5"})
    ex.get_ifd(EXIF_IFD).update({TAKEN: "2021:06:01 14:03:22", OFFSET: "+01:00"})
    ex.get_ifd(GPS_IFD).update(gps((38, 42, 36), "N", (9, 8, 24), "W"))
    with Image.open(SAMPLE / "rocket.jpg") as im:
        im.convert("RGB").save(folder / "rocket.jpg", "JPEG", exif=ex, quality=95)
    tagged_video(folder / "night.mp4", {}, color=(10, 10, 30), frames=30, rate=10)  # 3 s
    return folder


def test_the_readme_python_example_indexes_and_searches(tiny_clip_dir, tmp_path, monkeypatch,
                                                        capsys):
    (block,) = _python_blocks()
    model = 'load_encoder("ViT-B-32", "laion2b_s34b_b79k")'
    assert model in block and block.count("datasets/sample") == 2
    folder = _sample_with_camera_and_video(tmp_path / "sample")
    code = block.replace(model, f"load_encoder({tiny_clip_dir!r}, None)")
    code = code.replace('Store("my-index"', f'Store({str(tmp_path / "my-index")!r}')
    code = code.replace("datasets/sample", str(folder))
    monkeypatch.chdir(REPO)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "9 items embedded"  # six photos and the video's three frames (0, 1, 2 s)
    words, picture, video = out[1:4], out[4:6], out[6:]
    for line in words:
        score, kind, path = line.split()
        assert -1 <= float(score) <= 1 and kind in ("photo", "frame")
        assert Path(path).parent == folder
    score, path = picture[0].split()
    assert float(score) > 0.999 and path == str(folder / "rocket.jpg")  # the picture itself
    assert picture[1] == ("  taken 2021-06-01T14:03:22 (UTC 1622552602.0) near Baixa, "
                          "Lisbon, PT (38.7100, -9.1400) with a Canon Canon EOS R5")
    (line,) = video
    assert re.fullmatch(rf"-?\d\.\d{{3}}  {re.escape(str(folder / 'night.mp4'))}  "
                        r"at 0:0\d \(-?\d\.\d{3}\)(, at 0:0\d \(-?\d\.\d{3}\)){2}", line), line
