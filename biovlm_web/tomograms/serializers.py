from rest_framework import serializers

from analysis.cryoet.classes import CLASS_NAMES
from analysis.cryoet.pipeline import DEFAULT_CHECKPOINT, PICKERS
from biovlm_web.tomograms.jobs import DEFAULT_SCORE_THRESHOLDS
from biovlm_web.tomograms.models import Tomogram, TomogramRun


class TomogramErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What failed and what to do next.")
    field = serializers.CharField(required=False, help_text="The parameter that was invalid, when one was.")


class ReferenceFileSerializer(serializers.Serializer):
    uuid = serializers.UUIDField()
    original_name = serializers.CharField()


class TomogramSerializer(serializers.ModelSerializer):
    project = serializers.UUIDField(source="project.uuid", read_only=True)
    volume_file = serializers.UUIDField(source="volume.uuid", read_only=True)
    shape_zyx = serializers.ListField(child=serializers.IntegerField(), source="shape", read_only=True, allow_null=True)
    mode = serializers.SerializerMethodField()
    header_voxel_size_angstrom = serializers.FloatField(source="header_voxel_size", read_only=True, allow_null=True)
    voxel_size_angstrom = serializers.FloatField(source="voxel_size", read_only=True, allow_null=True)
    header_warnings = serializers.SerializerMethodField()
    references = ReferenceFileSerializer(many=True, read_only=True)

    class Meta:
        model = Tomogram
        fields = [
            "uuid", "project", "name", "volume_file", "shape_zyx", "mode", "header_voxel_size_angstrom",
            "voxel_size_angstrom", "header_warnings", "references", "reference_summary", "created_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_mode(self, tomogram) -> int | None:
        return tomogram.header.get("mode")

    def get_header_warnings(self, tomogram) -> list[str]:
        return list(tomogram.header.get("warnings") or [])


class TomogramCreateSerializer(serializers.Serializer):
    project = serializers.UUIDField(help_text="UUID of a project you are a member of.")
    volume_file = serializers.UUIDField(help_text="UUID of an uploaded MRC file (kind volume) of that project.")
    reference_files = serializers.ListField(
        child=serializers.UUIDField(), required=False, default=list, help_text="Uploaded reference pick files."
    )
    reference_unit = serializers.ChoiceField(
        choices=["angstrom", "nm", "pixel"], required=False, help_text="Unit of CSV references without a unit line."
    )
    voxel_size_angstrom = serializers.FloatField(
        required=False, min_value=0.01, max_value=1000, help_text="Overrides the header's voxel size."
    )
    name = serializers.CharField(required=False, max_length=255, help_text="Defaults to the file name.")


class TomogramUpdateSerializer(serializers.Serializer):
    voxel_size_angstrom = serializers.FloatField(min_value=0.01, max_value=1000, help_text="Angstroms per voxel.")


class RunCreateSerializer(serializers.Serializer):
    picker = serializers.ChoiceField(choices=list(PICKERS), default="dog", help_text="Particle picker.")
    classes = serializers.ListField(
        child=serializers.ChoiceField(choices=list(CLASS_NAMES)),
        required=False,
        help_text="Classes to pick and keep; all six by default. Template matching takes exactly one.",
    )
    score_threshold = serializers.FloatField(
        required=False,
        min_value=0,
        max_value=1000,
        help_text=(
            f"Picker score threshold: DoG response over its noise level (default "
            f"{DEFAULT_SCORE_THRESHOLDS['dog']:g}), or the normalised cross-correlation of template matching "
            f"(default {DEFAULT_SCORE_THRESHOLDS['template']:g}, at most 1)."
        ),
    )
    checkpoint = serializers.CharField(default=DEFAULT_CHECKPOINT.name, help_text="APT-ViT checkpoint file name.")


class TomogramRunSerializer(serializers.ModelSerializer):
    tomogram = serializers.UUIDField(source="tomogram.uuid", read_only=True)
    tomogram_name = serializers.CharField(source="tomogram.name", read_only=True)
    job = serializers.UUIDField(source="job.uuid", read_only=True)
    status = serializers.CharField(source="job.status", read_only=True)
    error = serializers.CharField(source="job.error", read_only=True)
    ready = serializers.BooleanField(source="is_ready", read_only=True)

    class Meta:
        model = TomogramRun
        fields = [
            "uuid", "tomogram", "tomogram_name", "job", "status", "error", "ready", "params", "summary",
            "evaluation", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


ParticleSerializer = type(
    "ParticleSerializer",
    (serializers.Serializer,),
    {
        "__doc__": "One particle: id, class, classifier score and x, y, z in angstroms.",
        "id": serializers.IntegerField(),
        "class": serializers.CharField(),
        "score": serializers.FloatField(),
        "x": serializers.FloatField(),
        "y": serializers.FloatField(),
        "z": serializers.FloatField(),
        "radius_angstrom": serializers.FloatField(),
    },
)


class ParticleColumnsSerializer(serializers.Serializer):
    class_names = serializers.ListField(child=serializers.CharField())
    radii_angstrom = serializers.ListField(child=serializers.FloatField(), help_text="Radius of each class.")
    ids = serializers.ListField(child=serializers.IntegerField())
    class_indices = serializers.ListField(child=serializers.IntegerField(), help_text="Index into class_names.")
    positions = serializers.ListField(child=serializers.FloatField(), help_text="x, y, z of each particle in turn.")
    scores = serializers.ListField(child=serializers.FloatField())
    bounds = serializers.ListField(child=serializers.ListField(child=serializers.FloatField()))


class SubtomogramSerializer(serializers.Serializer):
    particle = ParticleSerializer()
    box_start_voxel = serializers.DictField(child=serializers.IntegerField())
    box_shape_voxels = serializers.ListField(child=serializers.IntegerField())
    slices = serializers.DictField(child=serializers.CharField(), help_text="PNG data URLs of xy, xz and yz.")


class QuestionSerializer(serializers.Serializer):
    question = serializers.CharField(max_length=1000, help_text="A question in plain language.")


class AnswerSerializer(serializers.Serializer):
    question = serializers.CharField()
    tool = serializers.CharField(allow_null=True, help_text="The query tool called, or null when none fits.")
    params = serializers.DictField(help_text="The tool call's parameters.")
    planner = serializers.CharField(help_text="'grammar' or 'llm'.")
    reply = serializers.CharField(help_text="A reply when no tool fits the question.")
    examples = serializers.ListField(child=serializers.CharField())
    result = serializers.DictField(allow_null=True, help_text="The tool's result.")
    error = serializers.CharField(allow_blank=True, help_text="Why the tool call failed, if it did.")
