"""A studio with something in it: the paintings, batch, gallery and share link the pages show."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Scene:
    """Ids of what ``furnish`` made, for the pages to visit."""

    single: dict[str, Any]
    four: dict[str, Any]
    child: dict[str, Any]
    batch: str
    gallery_id: int
    share_token: str


def furnish(artist: Any) -> Scene:
    """Paints a single image, a batch of four, a variation and a seed grid; a public gallery with a share link."""
    single = artist.paint("a red barn under a blue sky", seed=7)
    four = artist.paint("a lighthouse on a rocky cliff at dusk", seed=11, n_images=4)
    child_id = artist.api("POST", f"/api/generations/{single['id']}/vary", {}, status=202)["id"]
    child = artist.wait(child_id)
    grid = artist.api(
        "POST", "/api/generate/seeds", {"prompt": "a windmill in a tulip field", "steps": 2, "count": 4}, status=202
    )
    for generation_id in grid["ids"]:
        artist.wait(generation_id)
    gallery = artist.api("POST", "/api/galleries", {"title": "Evening light", "visibility": "public"}, status=201)
    for image in [*four["images"], *single["images"]]:
        artist.api("POST", f"/api/galleries/{gallery['id']}/items", {"image_id": image["id"]}, status=201)
    link = artist.api("POST", f"/api/galleries/{gallery['id']}/share", {}, status=201)
    return Scene(
        single=single, four=four, child=child, batch=grid["batch"], gallery_id=gallery["id"], share_token=link["token"]
    )


def artist_pages(scene: Scene) -> dict[str, str]:
    """Every page a signed-in artist sees, by a short name."""
    image_id = scene.single["images"][0]["id"]
    return {
        "studio": "/",
        "history": "/history",
        "history-empty": "/history?q=nothing+matches+this",
        "painting": f"/generations/{scene.four['id']}",
        "variation": f"/generations/{scene.child['id']}",
        "lineage": f"/generations/{scene.child['id']}/lineage",
        "compare": f"/compare?ids={scene.single['id']},{scene.child['id']}",
        "batch": f"/batches/{scene.batch}",
        "inpaint": f"/images/{image_id}/inpaint",
        "galleries": "/galleries",
        "gallery": f"/galleries/{scene.gallery_id}",
        "explore": "/explore",
        "pick": f"/pick?generation={scene.four['id']}",
        "missing": "/generations/999999",
    }


def visitor_pages(scene: Scene) -> dict[str, str]:
    """Pages someone who is not signed in sees."""
    return {"login": "/login", "register": "/register", "share": f"/s/{scene.share_token}"}
