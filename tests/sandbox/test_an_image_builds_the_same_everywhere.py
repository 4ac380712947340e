"""Workers on different hosts build their image from the same recipe: a second build of it, made
apart from the first, has the same digest (docs/scaling.md), so every host runs the same bytes."""

from __future__ import annotations

import sys
from pathlib import Path

from sandbox.images import Image, build_image, default_recipes, host_suite


def test_a_second_build_of_the_recipe_has_the_same_digest(image: Image, images_dir: Path, tmp_path: Path):
    recipe = default_recipes(host_suite())["python3"]
    # A build of its own from the downloaded packages (as a host rebuilding its image would).
    again = build_image(tmp_path, recipe, deb_cache=images_dir / ".debs", log=lambda msg: print(msg, file=sys.stderr))
    assert again.rootfs != image.rootfs
    assert again.digest == image.digest


def test_an_image_holds_no_day_of_its_build(image: Image) -> None:
    # /etc/shadow's third field counts days since 1970: two builds a day apart differed by it.
    changed = [line.split(":")[2] for line in (image.rootfs / "etc" / "shadow").read_text().splitlines()]
    assert changed and set(changed) == {""}, changed
