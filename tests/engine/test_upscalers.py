"""Upscaler networks: told from their headers without torch as spandrel tells them, run in tiles, pickles refused."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from app.engine import upscaling
from app.engine.upscalers import describe, find, pickles, scan
from app.engine.upscalers import upscaler_folder as folder_of
from tests.engine.conftest import REPO_ROOT
from tests.upscaler_builders import esrgan_state, realesrgan_state, save_upscaler, span_state, srvgg_state

# Not importorskip: a plain ``import spandrel`` needs torchvision, which is what upscaling._spandrel() avoids.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("spandrel") is None, reason="make install installs spandrel (--no-deps)"
)

BUILDERS: dict[str, Callable[[int], dict[str, torch.Tensor]]] = {
    "esrgan": esrgan_state,
    "realesrgan": realesrgan_state,
    "compact": srvgg_state,
    "span": span_state,
}
ARCHITECTURES = {"esrgan": "ESRGAN", "realesrgan": "ESRGAN", "compact": "Compact", "span": "SPAN"}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("upscaler-models")
    for kind, build in BUILDERS.items():
        for scale in (2, 4):
            save_upscaler(root, f"{kind}-x{scale}", build(scale))
    return root


def _picture(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


@pytest.mark.parametrize("kind", sorted(BUILDERS))
@pytest.mark.parametrize("scale", [2, 4])
def test_the_header_tells_the_architecture_and_scale_spandrel_finds(models_dir: Path, kind: str, scale: int) -> None:
    upscaler = find(models_dir, f"{kind}-x{scale}")
    assert upscaler is not None

    descriptor = upscaling.load(upscaler.path, "cpu")

    assert (upscaler.architecture, upscaler.scale) == (ARCHITECTURES[kind], scale)
    assert (descriptor.architecture.id, descriptor.scale) == (upscaler.architecture, upscaler.scale)


def test_spandrel_loads_without_leaving_a_torchvision_behind(models_dir: Path) -> None:
    upscaling.load(folder_of(models_dir) / "span-x2.safetensors", "cpu")

    assert "spandrel" in sys.modules
    if not upscaling._torchvision_works():
        assert not any(name == "torchvision" or name.startswith("torchvision.") for name in sys.modules)


def test_a_header_of_another_kind_is_told_as_unknown() -> None:
    assert describe({"__metadata__": {}, "weight": {"dtype": "F32", "shape": [3, 3], "data_offsets": [0, 36]}}) == (
        None,
        None,
    )


@pytest.mark.parametrize("kind", ["esrgan", "compact"])
def test_tiles_paint_what_the_whole_picture_paints(models_dir: Path, kind: str) -> None:
    descriptor = upscaling.load(folder_of(models_dir) / f"{kind}-x2.safetensors", "cpu")
    picture = _picture(upscaling.TILE + 40, upscaling.TILE + 8)

    tiled = upscaling.run_network(descriptor, picture)
    pixels = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    with torch.inference_mode():
        whole = (descriptor(pixels)[0].permute(1, 2, 0).numpy() * 255.0).round()

    assert tiled.size == (2 * picture.width, 2 * picture.height)
    # These tiny networks see fewer than OVERLAP pixels around each one, so the seams vanish.
    assert np.abs(np.asarray(tiled, dtype=np.float32) - whole).max() <= 1


@pytest.mark.parametrize(
    ("network", "asked", "passes"), [("compact-x2", 2, 1), ("compact-x2", 4, 2), ("span-x4", 2, 1)]
)
def test_enlarge_reaches_the_asked_size_running_the_network_as_often_as_needed(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch, network: str, asked: int, passes: int
) -> None:
    calls: list[tuple[int, int]] = []
    real = upscaling.run_network

    def counting(descriptor: object, image: Image.Image) -> Image.Image:
        calls.append(image.size)
        return real(descriptor, image)

    monkeypatch.setattr(upscaling, "run_network", counting)
    picture = _picture(40, 24)

    enlarged = upscaling.enlarge(
        picture, folder_of(models_dir) / f"{network}.safetensors", size=(40 * asked, 24 * asked), device="cpu"
    )

    assert enlarged.size == (40 * asked, 24 * asked)
    assert len(calls) == passes


def test_the_network_changes_the_picture_unlike_lanczos(models_dir: Path) -> None:
    picture = _picture(32, 32, seed=3)
    lanczos = np.asarray(picture.resize((64, 64), Image.Resampling.LANCZOS), dtype=np.int16)

    enlarged = upscaling.enlarge(picture, folder_of(models_dir) / "esrgan-x2.safetensors", size=(64, 64), device="cpu")

    assert np.abs(np.asarray(enlarged, dtype=np.int16) - lanczos).mean() > 5


def test_pickles_are_never_listed_or_loaded(tmp_path: Path) -> None:
    folder = folder_of(tmp_path)
    folder.mkdir()
    torch.save(esrgan_state(2), folder / "pickled.pth")

    assert scan(tmp_path) == []
    assert [path.name for path in pickles(tmp_path)] == ["pickled.pth"]
    with pytest.raises(upscaling.UpscalerError, match=re.escape("only .safetensors upscalers are loaded")):
        upscaling.load(folder / "pickled.pth", "cpu")


def test_a_network_that_does_not_enlarge_is_refused(tmp_path: Path) -> None:
    path = save_upscaler(tmp_path, "restorer", srvgg_state(1))

    with pytest.raises(upscaling.UpscalerError, match="enlarges RGB pictures at least twice"):
        upscaling.load(path, "cpu")


def test_weights_spandrel_does_not_know_are_refused_by_name(tmp_path: Path) -> None:
    path = folder_of(tmp_path) / "mystery.safetensors"
    path.parent.mkdir(parents=True)
    save_file({"weight": torch.zeros(3, 3)}, str(path))

    assert [(upscaler.name, upscaler.architecture, upscaler.scale) for upscaler in scan(tmp_path)] == [
        ("mystery", None, None)
    ]
    with pytest.raises(upscaling.UpscalerError, match="mystery.safetensors: spandrel knows no architecture"):
        upscaling.load(path, "cpu")


def test_a_torchvision_that_fails_to_import_is_not_needed(tmp_path: Path) -> None:
    # PyPI's torchvision beside another torch build fails as this one does; spandrel still loads.
    broken = tmp_path / "torchvision"
    broken.mkdir()
    (broken / "__init__.py").write_text('raise RuntimeError("operator torchvision::nms does not exist")\n')
    script = (
        "import sys\n"
        "from app.engine import upscaling\n"
        "spandrel = upscaling._spandrel()\n"
        "print(spandrel.__name__, 'torchvision' in sys.modules)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO_ROOT)])}

    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )

    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["spandrel", "False"]
