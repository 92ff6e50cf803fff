"""Shared fixtures: the sample images of each kernel generation (built once, cached across
runs)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bootverify.cache import cache_dir
from bootverify.samples.recipe import generations

# The generations samples.toml builds, oldest first; the newest is the main job's.
GENERATIONS = generations()
NEWEST = GENERATIONS[-1]
# The generation the tests that take `sample_images` were written for (their messages, CRCs).
FIRST = "6.1"


@pytest.fixture(scope="session")
def build_samples() -> Callable[[str], Path]:
    """`bootverify images build --kernel GENERATION` as a function, each generation built (a
    cold build takes minutes) only when a test first asks for it."""
    from bootverify import samples
    built: dict[str, Path] = {}

    def images(generation: str) -> Path:
        if generation not in built:
            built[generation] = samples.build(
                cache_dir() / "images", lambda line: print(line, file=sys.stderr),
                generation=generation)
        return built[generation]
    return images


@pytest.fixture(scope="session")
def sample_images(build_samples: Callable[[str], Path]) -> Path:
    """The 6.1 sample images."""
    return build_samples(FIRST)


@pytest.fixture(scope="module", params=GENERATIONS)
def generation_images(request: pytest.FixtureRequest,
                      build_samples: Callable[[str], Path]) -> Path:
    """The sample images of every generation in turn: a test that takes it runs once for each
    (its id names the generation)."""
    return build_samples(request.param)


@pytest.fixture(autouse=True)
def _own_cwd(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in a directory of its own: what a command writes to the current
    directory by default (`run`'s fresh bootverify-<UTC>/ output, a console log) lands there,
    never in the checkout."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
