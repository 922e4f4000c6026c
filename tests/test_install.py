"""A non-editable install works on its own: the wheel holds every sub-package, the label
vocabularies and the UI's page scripts, found through package resources from any
folder (nothing is looked up beside the source tree)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

CHECK = r"""
import importlib.resources, os, sys
import loupe.search, loupe.indexer, loupe.ui
target = sys.argv[1]
for m in (loupe.search, loupe.indexer, loupe.ui):
    assert m.__file__.startswith(target), (m.__file__, target)
from loupe.search.explain import load_vocabulary
v = load_vocabulary("everyday")
assert len(v.labels) > 100, len(v.labels)
from loupe.search.cli.ui import ui_command
app = ui_command("/nowhere")[4]
assert app.startswith(target) and os.path.isfile(app), app
for page in ("app.py", "page_search.py", "page_atlas.py", "page_index.py",
             ".streamlit/config.toml"):
    assert os.path.isfile(os.path.join(os.path.dirname(app), page)), page
print("ok", len(v.labels))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("src")
    # Build from a copy: a build in the tree would leave build/ and *.egg-info behind.
    shutil.copytree(REPO, build / "loupe", ignore=shutil.ignore_patterns(
        ".venv", ".git", "__pycache__", "*.egg-info", "build", "tests", "bench"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out),
                    str(build / "loupe")], check=True, timeout=600)
    (found,) = out.glob("loupe_archive-*.whl")
    return found


def test_the_wheel_holds_the_packages_labels_and_pages(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for must in ("loupe/indexer/__init__.py", "loupe/indexer/encoders/registry.py",
                 "loupe/search/store/meta.py", "loupe/search/cli/__main__.py",
                 "loupe/labels/everyday.txt", "loupe/labels/imagenet-1k.txt",
                 "loupe/ui/app.py", "loupe/ui/server.py", "loupe/ui/.streamlit/config.toml",
                 "loupe/ui/page_search.py", "loupe/ui/views/search.py"):
        assert must in names, must
    assert not any(n.startswith(("indexer/", "search/", "ui/")) for n in names)


def test_an_installed_loupe_runs_from_another_folder(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run([sys.executable, "-c", CHECK, str(target)], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok")
    help_ = subprocess.run([sys.executable, "-m", "loupe.search.cli", "--help"], cwd=elsewhere,
                           env=env, capture_output=True, text=True, timeout=300)
    assert help_.returncode == 0 and "index" in help_.stdout, help_.stderr[-2000:]
