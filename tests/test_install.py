"""A plain, non-editable `pip install .` runs the main job: the wheel carries the sample recipe
as package data and resolves the same recipe, and so the same cached images, as the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bootverify.samples import recipe

ROOT = Path(__file__).resolve().parent.parent
# Copied, not built in place: a build writes build/ and *.egg-info next to the sources.
NOT_SOURCES = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                     "bootverify-demo")
PIP_TIMEOUT = 300


def _pip(python: Path, *args: str | Path, cwd: Path) -> None:
    proc = subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", "-q",
                           *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=PIP_TIMEOUT)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The venv's bin/ after `pip install` of a wheel built from a copy of the sources."""
    tmp = tmp_path_factory.mktemp("install")
    shutil.copytree(ROOT, tmp / "src", ignore=NOT_SOURCES, symlinks=True)
    _pip(Path(sys.executable), "wheel", "--no-deps", "-w", tmp / "dist", tmp / "src", cwd=tmp)
    (wheel,) = (tmp / "dist").glob("bootverify-*.whl")
    subprocess.run([sys.executable, "-m", "venv", tmp / "venv"], check=True, timeout=PIP_TIMEOUT)
    _pip(tmp / "venv/bin/python", "install", wheel, cwd=tmp)
    return tmp / "venv/bin"


@pytest.mark.timeout(2 * PIP_TIMEOUT + 60)
def test_the_wheel_ships_the_recipe_and_computes_the_checkouts_key(installed: Path) -> None:
    probe = ("import bootverify.samples.recipe as r; "
             "print(r.RECIPE_DIR); print(r.recipe_key(r.load_recipe(), r.RECIPE_DIR, 'v'))")
    proc = subprocess.run([installed / "python", "-c", probe], cwd=installed, text=True,
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    recipe_dir, key = proc.stdout.split()
    assert Path(recipe_dir).is_relative_to(installed.parent)      # not the checkout's
    assert key == recipe.recipe_key(recipe.load_recipe(), recipe.RECIPE_DIR, "v")


@pytest.mark.images
@pytest.mark.timeout(2 * PIP_TIMEOUT + 60)
def test_images_build_from_the_wheel_finds_the_checkouts_images(
        installed: Path, build_samples: Callable[[str], Path]) -> None:
    """The main job's images: the newest generation's."""
    proc = subprocess.run([installed / "bootverify", "images", "build"], cwd=installed,
                          capture_output=True, text=True, timeout=120, env=os.environ)
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.splitlines()[-1]) == build_samples(recipe.generations()[-1])
