"""Add images to a comparison group: decode each file, store its normalised pixels and a thumbnail.

Files come from the browser (single images, or ZIP and tar archives) or from files already
uploaded to the project. Decoding and normalisation are those of ``analysis.setdiff.ingest``,
so a multi-page TIFF adds one image per page, and a file that cannot be decoded is named in
the comparison's ``skipped`` list with the reason, and left out.
"""

from __future__ import annotations

import hashlib
import io
import logging
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from django.core.files.base import ContentFile
from django.db import transaction
from PIL import Image

from analysis.setdiff.ingest import (
    ARCHIVE_SUFFIXES,
    ImageRecord,
    IngestError,
    IngestOptions,
    decode_failure_reason,
    decode_image_bytes,
    iter_source_files,
)
from biovlm_web.comparisons.models import Comparison, ComparisonImage

logger = logging.getLogger(__name__)

THUMBNAIL_SIZE = 160  # pixels on the longer side
# A limit against runaway uploads.
MAX_IMAGES_PER_GROUP = 2000


class ImageInputError(ValueError):
    """Input that cannot be added, with the file at fault and what to do."""


def iter_upload(uploaded) -> Iterator[tuple[str, bytes | None, str]]:
    """Yield (name, bytes, problem) for an uploaded image or each image in an uploaded archive."""
    name = Path(uploaded.name).name
    if not name.lower().endswith(ARCHIVE_SUFFIXES):
        yield name, uploaded.read(), ""
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        with path.open("wb") as handle:
            for chunk in uploaded.chunks():
                handle.write(chunk)
        try:
            for member, data, problem in iter_source_files(path):
                # Names read "archive.zip:folder/image.png", without the temporary folder.
                yield member.replace(f"{folder}/", "", 1), data, problem
        except IngestError as error:
            yield name, None, str(error).replace(f"{folder}/", "")


def iter_data_files(data_files) -> Iterator[tuple[str, bytes | None, str]]:
    """Yield (name, bytes, problem) for project files, reading each from storage."""
    for data_file in data_files:
        try:
            with data_file.file.open("rb") as handle:
                data = handle.read()
        except OSError as error:
            yield data_file.original_name, None, f"cannot be read from storage: {error}"
            continue
        if data_file.original_name.lower().endswith(ARCHIVE_SUFFIXES):
            yield from iter_upload(ContentFile(data, name=data_file.original_name))
        else:
            yield data_file.original_name, data, ""


def _thumbnail(pixels: np.ndarray) -> bytes:
    image = Image.fromarray(pixels, mode="RGB")
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def add_images(
    comparison: Comparison, group: str, files: Iterable[tuple[str, bytes | None, str]], source_files=None
) -> tuple[list[ComparisonImage], list[dict]]:
    """Decode ``files`` into ``group``; return the images added and the files left out with reasons.

    ``source_files`` maps a name to the project DataFile it came from, when it did.
    """
    if group not in ComparisonImage.Group.values:
        raise ImageInputError(f"group must be 'a' or 'b'; got {group!r}.")
    options = IngestOptions()
    count = comparison.images.filter(group=group).count()
    added: list[ComparisonImage] = []
    skipped: list[dict] = []
    for name, data, problem in files:
        if data is None:
            skipped.append({"image": name, "group": group, "reason": problem})
            continue
        try:
            decoded = decode_image_bytes(name, data, options)
        except Exception as error:  # pydicom and tifffile raise their own error types on damaged files
            reason = f"cannot be decoded: {decode_failure_reason(error)}"
            skipped.append({"image": name, "group": group, "reason": reason})
            continue
        if not decoded:
            skipped.append({"image": name, "group": group, "reason": "contains no image"})
            continue
        for label, pixels, scaling in decoded:
            if count >= MAX_IMAGES_PER_GROUP:
                raise ImageInputError(
                    f"Group {comparison.group_name(group)} already has {MAX_IMAGES_PER_GROUP} images, the maximum; "
                    f"{label} was not added."
                )
            pixels = np.ascontiguousarray(pixels)
            digest = hashlib.sha256(pixels.tobytes() + str(pixels.shape).encode()).hexdigest()
            item = ComparisonImage(
                comparison=comparison,
                group=group,
                name=label[:500],
                width=pixels.shape[1],
                height=pixels.shape[0],
                sha256=digest,
                scaling=scaling[:200],
                source_file=(source_files or {}).get(name),
            )
            item.image.save("image.png", ContentFile(_png(pixels)), save=False)
            item.thumbnail.save("thumbnail.jpg", ContentFile(_thumbnail(pixels)), save=False)
            item.save()
            added.append(item)
            count += 1
    if skipped:
        logger.warning(
            "Comparison %s group %s: left out %d file(s), first %s: %s",
            comparison.uuid, group, len(skipped), skipped[0]["image"], skipped[0]["reason"],
        )  # fmt: skip
        with transaction.atomic():
            locked = Comparison.objects.select_for_update().get(pk=comparison.pk)
            locked.skipped = [*locked.skipped, *skipped]
            locked.save(update_fields=["skipped"])
            comparison.skipped = locked.skipped
    return added, skipped


def load_record(image: ComparisonImage) -> ImageRecord:
    """Read a stored image back as the pipeline's ImageRecord, named by its UUID."""
    with image.image.open("rb") as handle:
        pixels = np.asarray(Image.open(handle).convert("RGB"))
    return ImageRecord(str(image.uuid), image.group, np.ascontiguousarray(pixels), image.sha256, image.scaling)
