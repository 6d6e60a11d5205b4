"""How well studio-tiny follows prompts it never saw: colour, place and scene accuracy.

Prompts name colour-subject-place triples held out of the training data, in a phrasing no
training caption used. Each image is judged from its pixels by app.tiny.judge; the same judge
run on the procedural ground truth gives the ceiling of the measurement itself.

    python bench/tiny_adherence.py [--model models/studio-tiny] [--per-triple 2] [--steps 20]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from app.engine.registry import ModelRegistry  # noqa: E402
from app.engine.runner import GenerationSpec, run  # noqa: E402
from app.tiny.data import SCENES, Painting, held_out_triples, unseen_prompt  # noqa: E402
from app.tiny.judge import judge  # noqa: E402
from app.tiny.render import render  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/studio-tiny"))
    parser.add_argument("--per-triple", type=int, default=2, help="images per held-out triple (each in another scene)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--scheduler", default="dpm++-2m")
    parser.add_argument("--save", type=Path, default=None, help="folder to save a contact sheet into")
    args = parser.parse_args()

    registry = ModelRegistry(args.model.parent)
    rng = np.random.default_rng(1234)
    triples = held_out_triples()
    cases = []
    for colour, subject, place in triples:
        for _ in range(args.per_triple):
            cases.append((colour, subject, place, SCENES[int(rng.integers(len(SCENES)))].name))

    hits = {"colour": 0, "place": 0, "scene": 0}
    colour_cases: dict[str, list[bool]] = {}
    truth_hits = {"colour": 0, "place": 0, "scene": 0}
    images = []
    started = time.perf_counter()
    for number, (colour, subject, place, scene) in enumerate(cases):
        spec = GenerationSpec(
            model=args.model.name,
            prompt=unseen_prompt(colour, subject, place, scene),
            seed=number,
            steps=args.steps,
            guidance=args.guidance,
            scheduler=args.scheduler,
            preview_every=0,
        )
        image = run(registry, spec, device="cpu").images[0]
        images.append(image)
        verdict = judge(image)
        hits["colour"] += verdict.colour == colour
        colour_cases.setdefault(colour, []).append(verdict.colour == colour)
        hits["place"] += verdict.place == place
        hits["scene"] += verdict.scene == scene
        truth = judge(render(Painting(colour, subject, place, scene, "flat"), np.random.default_rng(number)))
        truth_hits["colour"] += truth.colour == colour
        truth_hits["place"] += truth.place == place
        truth_hits["scene"] += truth.scene == scene
    elapsed = time.perf_counter() - started

    total = len(cases)
    print(f"model: {args.model}  held-out triples: {len(triples)}  images: {total}  ({elapsed:.1f} s)")
    print(f"{'':8}{'model':>8}{'judge ceiling':>16}")
    for key in hits:
        print(f"{key:8}{hits[key] / total:8.1%}{truth_hits[key] / total:16.1%}")
    print("colour by colour: " + ", ".join(f"{name} {sum(v)}/{len(v)}" for name, v in colour_cases.items()))
    if args.save:
        from PIL import Image

        args.save.mkdir(parents=True, exist_ok=True)
        columns = 16
        sheet = Image.new("RGB", (columns * 64, ((total + columns - 1) // columns) * 64))
        for index, image in enumerate(images):
            sheet.paste(image, ((index % columns) * 64, (index // columns) * 64))
        sheet.save(args.save / "adherence.png")


if __name__ == "__main__":
    main()
