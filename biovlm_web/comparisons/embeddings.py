"""The CLIP image embeddings of a comparison's last run, stored beside its images.

The job writes them to ``image-embeddings-<model hash>.npz`` in the comparison's storage folder,
one row per image keyed by the image's sha256, and records the file and model in
``Comparison.summary["image_embeddings"]``. A typed description is then ranked with one CLIP
text embedding, and a re-run with the same model embeds only the images that changed.
"""

from __future__ import annotations

import hashlib
import io
import logging

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from analysis.setdiff.rankers import EmbeddingIndex
from biovlm_web.comparisons.models import Comparison

logger = logging.getLogger(__name__)

SUMMARY_KEY = "image_embeddings"


def embeddings_name(comparison: Comparison, model: str) -> str:
    digest = hashlib.sha256(model.encode()).hexdigest()[:16]
    return f"projects/{comparison.project.uuid}/comparisons/{comparison.uuid}/image-embeddings-{digest}.npz"


def stored_entry(comparison: Comparison) -> dict | None:
    """Return the summary entry of the stored embeddings: file, model, ranker and image count."""
    entry = (comparison.summary or {}).get(SUMMARY_KEY)
    return entry if isinstance(entry, dict) and entry.get("file") else None


def load_index(comparison: Comparison) -> EmbeddingIndex | None:
    """Read the comparison's stored embeddings; None when it has none or the file cannot be read."""
    entry = stored_entry(comparison)
    if entry is None:
        return None
    try:
        with default_storage.open(entry["file"], "rb") as handle:
            return EmbeddingIndex.load(io.BytesIO(handle.read()))
    except (OSError, ValueError, KeyError) as error:
        logger.warning(
            "Reading the image embeddings %s of comparison %s failed: %s", entry["file"], comparison.uuid, error
        )
        return None


def save_index(comparison: Comparison, index: EmbeddingIndex) -> dict:
    """Write ``index`` to storage, replacing an older file of the same model; return its summary entry."""
    buffer = io.BytesIO()
    index.save(buffer)
    name = embeddings_name(comparison, index.model)
    if default_storage.exists(name):
        default_storage.delete(name)
    saved = default_storage.save(name, ContentFile(buffer.getvalue()))
    return {"file": saved, "model": index.model, "ranker": index.ranker, "images": len(index.embeddings)}


def delete_file(entry: dict | None) -> None:
    """Remove a stored embeddings file named by a summary entry, if it exists."""
    if entry and entry.get("file") and default_storage.exists(entry["file"]):
        default_storage.delete(entry["file"])
