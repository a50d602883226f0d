"""Generated image groups for comparison tests: A is rendered with 22 nuclei per image, B with 12."""

import io
import zipfile

from PIL import Image

from analysis.setdiff.synthetic import make_pair


def synthetic_groups(count: int = 6, size: int = 96, seed: int = 3):
    pair = make_pair("count", "easy", images_per_group=count, size=size, seed=seed)
    return pair.a, pair.b


def png_bytes(pixels) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def zip_bytes(named: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in named.items():
            archive.writestr(name, data)
    return buffer.getvalue()
