"""The comparison's result as page data and as CSV, JSON and a self-contained HTML report.

Exports leave out dismissed hypotheses and show renamed ones under their new description,
as the result table does.
"""

import base64
import csv
import io
import json

from django.http import HttpResponse
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.text import slugify

from analysis.setdiff.hypotheses import RANK_ORDER
from biovlm_web.comparisons.serializers import direction_text, typed_ranking

CSV_COLUMNS = [
    "rank", "description", "original_description", "direction", "auroc", "auroc_low", "auroc_high",
    "permutation_p", "q", "welch_p", "effect_size", "mean_a", "mean_b", "proposer", "ranker", "typed_path",
    "matched_feature",
]  # fmt: skip


def hypothesis_row(hypothesis) -> dict:
    return {
        "uuid": str(hypothesis.uuid),
        "rank": hypothesis.rank,
        "description": hypothesis.description,
        "original_description": hypothesis.original_description,
        "direction": direction_text(hypothesis),
        "auroc": hypothesis.auroc,
        "auroc_low": hypothesis.auroc_low,
        "auroc_high": hypothesis.auroc_high,
        "permutation_p": hypothesis.permutation_p,
        "q": hypothesis.q,
        "welch_p": hypothesis.welch_p,
        "effect_size": hypothesis.effect_size,
        "mean_a": hypothesis.mean_a,
        "mean_b": hypothesis.mean_b,
        "proposer": hypothesis.proposer,
        "ranker": hypothesis.ranker,
        "source": hypothesis.source,
        "typed_ranking": typed_ranking(hypothesis),
        "evidence": hypothesis.evidence,
        "scores": hypothesis.scores,
        "dismissed": hypothesis.dismissed,
        "typed": hypothesis.typed_by_id is not None,
    }


def result_payload(comparison, include_dismissed: bool) -> dict:
    """Build the data the result page shows: groups, images with thumbnail URLs, and hypotheses."""
    hypotheses = comparison.hypotheses.all()
    if not include_dismissed:
        hypotheses = hypotheses.filter(dismissed=False)
    images = [
        {
            "uuid": str(image.uuid),
            "group": image.group,
            "name": image.name,
            "thumbnail_url": reverse("comparison-image", args=[comparison.uuid, image.uuid, "thumbnail"]),
        }
        for image in comparison.images.all()
    ]
    return {
        "uuid": str(comparison.uuid),
        "name": comparison.name,
        "names": {"a": comparison.name_a, "b": comparison.name_b},
        "options": comparison.options,
        "summary": comparison.summary,
        "skipped": comparison.skipped,
        "images": images,
        "hypotheses": [hypothesis_row(item) for item in hypotheses],
        "rank_order": RANK_ORDER,
    }


def _filename(comparison, suffix: str) -> str:
    return f"{slugify(comparison.name) or 'comparison'}-{str(comparison.uuid)[:8]}.{suffix}"


def _attachment(response, comparison, suffix: str):
    response["Content-Disposition"] = f'attachment; filename="{_filename(comparison, suffix)}"'
    return response


def export_csv(comparison):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for hypothesis in comparison.hypotheses.filter(dismissed=False):
        row = hypothesis_row(hypothesis)
        ranking = row["typed_ranking"] or {}
        row["typed_path"] = ranking.get("path", "")
        row["matched_feature"] = ranking.get("feature") or ""
        writer.writerow(row)
    return _attachment(HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8"), comparison, "csv")


def export_json(comparison):
    payload = result_payload(comparison, include_dismissed=False)
    names = {image["uuid"]: image["name"] for image in payload["images"]}
    for image in payload["images"]:
        del image["thumbnail_url"]
    for row in payload["hypotheses"]:
        # Evidence entries name images by UUID, so each also gets the image name for readers of the file.
        for entries in row["evidence"].values():
            for entry in entries:
                entry["name"] = names.get(entry["image"], entry["image"])
    body = json.dumps(payload, indent=2)
    return _attachment(HttpResponse(body, content_type="application/json"), comparison, "json")


def _data_uri(image) -> str:
    with image.thumbnail.open("rb") as handle:
        encoded = base64.b64encode(handle.read()).decode("ascii")
    return f"data:image/jpeg;base64,{encoded}"


def export_html(comparison):
    """Render one HTML file with the table and each hypothesis's evidence thumbnails inlined."""
    images = {str(image.uuid): image for image in comparison.images.all()}
    thumbnails: dict[str, str] = {}
    rows = []
    for hypothesis in comparison.hypotheses.filter(dismissed=False):
        row = hypothesis_row(hypothesis)
        evidence = []
        for key, title in (
            ("a_best", f"{comparison.name_a}: best matches"),
            ("b_best", f"{comparison.name_b}: best matches"),
            ("b_worst", f"{comparison.name_b}: worst matches"),
        ):
            entries = []
            for entry in hypothesis.evidence.get(key, []):
                image = images.get(entry["image"])
                if image is None:
                    continue
                if entry["image"] not in thumbnails:
                    thumbnails[entry["image"]] = _data_uri(image)
                entries.append(
                    {
                        "name": image.name,
                        "score": entry.get("score"),
                        "value": entry.get("value"),
                        "src": thumbnails[entry["image"]],
                    }
                )
            evidence.append({"title": title, "entries": entries})
        row["evidence_groups"] = evidence
        rows.append(row)
    counts = {group: sum(1 for image in images.values() if image.group == group) for group in ("a", "b")}
    context = {"comparison": comparison, "rows": rows, "counts": counts, "rank_order": RANK_ORDER}
    html = render_to_string("comparisons/report.html", context)
    return _attachment(HttpResponse(html, content_type="text/html; charset=utf-8"), comparison, "html")
