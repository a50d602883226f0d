from django.urls import reverse
from rest_framework import serializers

from biovlm_web.uploads.ingest import clean_filename, normalise_sha256
from biovlm_web.uploads.models import DataFile, Dataset, UploadSession
from biovlm_web.uploads.storage import UploadError


class ErrorSerializer(serializers.Serializer):
    """The body of a 4xx response of the upload API."""

    detail = serializers.CharField(help_text="What failed and what to do next.")
    code = serializers.CharField(required=False, help_text="A short machine-readable reason.")
    offset = serializers.IntegerField(required=False, help_text="The committed offset to resume a chunked upload from.")
    file = serializers.CharField(required=False, help_text="The display name of the rejected file.")


class DatasetSerializer(serializers.ModelSerializer):
    project = serializers.UUIDField(source="project.uuid", read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    file_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Dataset
        fields = ["uuid", "project", "name", "description", "file_count", "created_by", "created_at"]
        read_only_fields = fields


class DatasetCreateSerializer(serializers.Serializer):
    project = serializers.UUIDField(help_text="UUID of a project you are a member of.")
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")


class DataFileSerializer(serializers.ModelSerializer):
    dataset = serializers.UUIDField(source="dataset.uuid", read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = DataFile
        fields = [
            "uuid", "dataset", "original_name", "size", "sha256", "kind", "content_type", "metadata",
            "created_by", "created_at", "download_url",
        ]  # fmt: skip
        read_only_fields = fields

    def get_download_url(self, data_file) -> str:
        path = reverse("api-file-download", args=[data_file.uuid])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


class UploadedFilesSerializer(serializers.Serializer):
    files = DataFileSerializer(many=True, read_only=True)


class UploadSessionSerializer(serializers.ModelSerializer):
    dataset = serializers.UUIDField(source="dataset.uuid", read_only=True)
    data_file = serializers.UUIDField(source="data_file.uuid", read_only=True, default=None, allow_null=True)

    class Meta:
        model = UploadSession
        fields = [
            "uuid", "dataset", "filename", "size", "offset", "chunk_size", "status", "sha256", "error",
            "data_file", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields


class UploadSessionCreateSerializer(serializers.Serializer):
    dataset = serializers.UUIDField(help_text="UUID of a dataset in a project you are a member of.")
    filename = serializers.CharField(max_length=1024, trim_whitespace=False, help_text="The file's name, for display.")
    size = serializers.IntegerField(min_value=0, help_text="The file's size in bytes.")
    sha256 = serializers.CharField(
        required=False, allow_blank=True, default="", help_text="Hex SHA-256 of the whole file, checked at completion."
    )

    def validate_filename(self, value):
        try:
            return clean_filename(value)
        except ValueError as error:
            raise serializers.ValidationError(str(error)) from error

    def validate_sha256(self, value):
        try:
            return normalise_sha256(value)
        except UploadError as error:
            raise serializers.ValidationError(error.detail) from error


class UploadCompleteSerializer(serializers.Serializer):
    sha256 = serializers.CharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        default="",
        help_text="Hex SHA-256 of the whole file; optional when it was given at creation.",
    )


class ChunkAcceptedSerializer(serializers.Serializer):
    offset = serializers.IntegerField(help_text="Bytes committed so far; the next chunk starts here.")
    size = serializers.IntegerField(help_text="The file's declared size in bytes.")
