"""Shared fixtures: the sample images (built once, cached across runs)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bootverify.cache import cache_dir


@pytest.fixture(scope="session")
def sample_images() -> Path:
    """The built-in sample images (`bootverify images build`); a cold build takes minutes."""
    from bootverify import samples
    return samples.build(cache_dir() / "images", lambda line: print(line, file=sys.stderr))


@pytest.fixture(autouse=True)
def _own_cwd(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in a directory of its own: what a command writes to the current
    directory by default (`run`'s fresh bootverify-<UTC>/ output, a console log) lands there,
    never in the checkout."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
