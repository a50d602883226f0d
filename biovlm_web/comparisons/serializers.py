from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from biovlm_web.comparisons.models import Comparison, ComparisonImage, Hypothesis


class ComparisonImageSerializer(serializers.ModelSerializer):
    thumbnail_url = serializers.SerializerMethodField()
    image_url = serializers.SerializerMethodField()

    class Meta:
        model = ComparisonImage
        fields = ["uuid", "group", "name", "width", "height", "scaling", "thumbnail_url", "image_url"]
        read_only_fields = fields

    def get_thumbnail_url(self, image) -> str:
        return reverse("comparison-image", args=[image.comparison.uuid, image.uuid, "thumbnail"])

    def get_image_url(self, image) -> str:
        return reverse("comparison-image", args=[image.comparison.uuid, image.uuid, "image"])


class ComparisonSerializer(serializers.ModelSerializer):
    project = serializers.UUIDField(source="project.uuid", read_only=True)
    job = serializers.UUIDField(source="job.uuid", read_only=True, default=None)
    job_status = serializers.CharField(source="job.status", read_only=True, default=None)
    counts = serializers.SerializerMethodField()
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    page_url = serializers.SerializerMethodField()

    class Meta:
        model = Comparison
        fields = [
            "uuid", "project", "name", "name_a", "name_b", "options", "counts", "skipped", "summary", "job",
            "job_status", "created_by", "created_at", "page_url",
        ]  # fmt: skip
        read_only_fields = ["uuid", "project", "options", "counts", "skipped", "summary", "job", "job_status"]

    def get_counts(self, comparison) -> dict[str, int]:
        return {group: comparison.images.filter(group=group).count() for group in ("a", "b")}

    def get_page_url(self, comparison) -> str:
        return reverse("comparison-detail", args=[comparison.uuid])


class ComparisonCreateSerializer(serializers.Serializer):
    project = serializers.UUIDField(help_text="UUID of a project you are a member of.")
    name = serializers.CharField(max_length=200)
    name_a = serializers.CharField(max_length=100, default="A")
    name_b = serializers.CharField(max_length=100, default="B")


class AddImagesSerializer(serializers.Serializer):
    group = serializers.ChoiceField(choices=["a", "b"], help_text="The group to add to: a or b.")
    data_files = serializers.ListField(
        child=serializers.UUIDField(), required=False, help_text="UUIDs of image or archive files of the project."
    )


class SkippedImageSerializer(serializers.Serializer):
    image = serializers.CharField(help_text="The file, archive member, page or frame that was left out.")
    group = serializers.CharField()
    reason = serializers.CharField()


class AddedImagesSerializer(serializers.Serializer):
    added = ComparisonImageSerializer(many=True)
    skipped = SkippedImageSerializer(many=True)
    counts = serializers.DictField(child=serializers.IntegerField())


class RunSerializer(serializers.Serializer):
    proposers = serializers.ListField(child=serializers.CharField(), required=False)
    text_ranker = serializers.CharField(required=False)
    hypotheses = serializers.IntegerField(required=False, help_text="How many ranked hypotheses to keep.")
    resamples = serializers.IntegerField(required=False, help_text="Bootstrap resamples for the AUROC interval.")
    permutations = serializers.IntegerField(required=False, help_text="Permutations for the p-value.")
    segmentation = serializers.CharField(required=False, help_text="watershed or otsu.")


class RunStartedSerializer(serializers.Serializer):
    job = serializers.UUIDField()
    job_url = serializers.CharField()


class TypedHypothesisSerializer(serializers.Serializer):
    description = serializers.CharField(max_length=500, help_text="A description to rank, such as 'more cells'.")


def typed_ranking(hypothesis) -> dict | None:
    """Describe how a typed hypothesis was ranked; None for a proposed one.

    ``path`` is clip, sentence_embedder or word_overlap. The feature fields name the measured
    property a feature path matched, and ``note`` gives the reason a better path was not taken.
    """
    if hypothesis.proposer != "user":
        return None
    source = hypothesis.source or {}
    # Typed rows stored before the path was recorded were all matched by words.
    path = source.get("path") or "word_overlap"
    return {
        "path": path,
        "model": source.get("ranker_model") if path == "clip" else source.get("matcher_model"),
        "feature": source.get("feature"),
        "phrase": source.get("phrase"),
        "sign": source.get("sign"),
        "similarity": source.get("similarity"),
        "note": source.get("path_note", ""),
    }


class TypedRankingSerializer(serializers.Serializer):
    path = serializers.ChoiceField(
        choices=["clip", "sentence_embedder", "word_overlap"],
        help_text="clip: CLIP text embedding against the stored image embeddings; sentence_embedder or "
        "word_overlap: the measured feature matched by sentence embeddings or shared words.",
    )
    model = serializers.CharField(allow_null=True, help_text="The CLIP or sentence-embedder model version.")
    feature = serializers.CharField(allow_null=True, help_text="The matched measured feature, such as object_count.")
    phrase = serializers.CharField(allow_null=True, help_text="The matched feature description.")
    sign = serializers.IntegerField(allow_null=True, help_text="1 when the text describes higher values, else -1.")
    similarity = serializers.FloatField(allow_null=True, help_text="Cosine similarity of the text and the phrase.")
    note = serializers.CharField(help_text="Why a better path was not taken; empty when none was skipped.")


def direction_text(hypothesis) -> str:
    """Name the group the description fits better: A when the AUROC is at least 0.5."""
    comparison = hypothesis.comparison
    if hypothesis.auroc >= 0.5:
        return f"more true of {comparison.name_a} than of {comparison.name_b}"
    return f"more true of {comparison.name_b} than of {comparison.name_a}"


class HypothesisSerializer(serializers.ModelSerializer):
    comparison = serializers.UUIDField(source="comparison.uuid", read_only=True)
    typed_by = serializers.CharField(source="typed_by.username", read_only=True, default=None)

    class Meta:
        model = Hypothesis
        fields = [
            "uuid", "comparison", "rank", "description", "original_description", "direction", "proposer", "ranker",
            "auroc", "auroc_low", "auroc_high", "permutation_p", "q", "welch_p", "effect_size", "mean_a", "mean_b",
            "source", "typed_ranking", "evidence", "scores", "dismissed", "typed_by", "created_at",
        ]  # fmt: skip
        read_only_fields = [name for name in fields if name not in ("description", "dismissed")]

    direction = serializers.SerializerMethodField()
    typed_ranking = serializers.SerializerMethodField()

    @extend_schema_field(TypedRankingSerializer(allow_null=True))
    def get_typed_ranking(self, hypothesis) -> dict | None:
        return typed_ranking(hypothesis)

    def get_direction(self, hypothesis) -> str:
        return direction_text(hypothesis)

    def validate_description(self, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise serializers.ValidationError("A hypothesis needs a description; dismiss it to hide it instead.")
        return value
