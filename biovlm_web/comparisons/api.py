"""REST API of comparisons, their images and hypotheses, and typed-hypothesis ranking.

Objects are reached through the requesting user's projects, so a stranger gets 404 and an
anonymous client 401. Share-link visitors read a comparison on its page, not through the API.
"""

import uuid
from pathlib import Path

from django.db import transaction
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response

from biovlm_web.comparisons.images import ImageInputError, add_images, iter_data_files, iter_upload
from biovlm_web.comparisons.jobs import clean_options, kind_for
from biovlm_web.comparisons.models import Comparison, Hypothesis
from biovlm_web.comparisons.ranking import TypedHypothesisError, rank_typed
from biovlm_web.comparisons.serializers import (
    AddedImagesSerializer,
    AddImagesSerializer,
    ComparisonCreateSerializer,
    ComparisonImageSerializer,
    ComparisonSerializer,
    HypothesisSerializer,
    RunSerializer,
    RunStartedSerializer,
    TypedHypothesisSerializer,
)
from biovlm_web.core.access import projects_for
from biovlm_web.core.jobs import JobError, submit_job
from biovlm_web.uploads.api import UploadErrorMixin
from biovlm_web.uploads.handlers import disk_upload_handlers
from biovlm_web.uploads.ingest import too_large
from biovlm_web.uploads.models import DataFile
from biovlm_web.uploads.serializers import ErrorSerializer

ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid request; `detail` names the value and the fix."),
    404: OpenApiResponse(ErrorSerializer, description="Not found, or in a project you are not a member of."),
}


def uuid_query_param(request, name: str) -> uuid.UUID | None:
    value = request.query_params.get(name)
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValidationError({name: [f"{value!r} is not a UUID."]}) from None


def group_counts(comparison) -> dict[str, int]:
    return {group: comparison.images.filter(group=group).count() for group in ("a", "b")}


@extend_schema_view(
    list=extend_schema(
        parameters=[OpenApiParameter("project", OpenApiTypes.UUID, description="Only comparisons of this project.")]
    ),
)
class ComparisonViewSet(
    UploadErrorMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin,
    mixins.DestroyModelMixin, viewsets.GenericViewSet,
):  # fmt: skip
    """Set-difference comparisons of the projects the requesting user belongs to."""

    serializer_class = ComparisonSerializer
    lookup_field = "uuid"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        comparisons = Comparison.objects.filter(project__in=projects_for(self.request.user)).select_related(
            "project", "job", "created_by"
        )
        project = uuid_query_param(self.request, "project") if self.action == "list" else None
        if project is not None:
            comparisons = comparisons.filter(project__uuid=project)
        return comparisons

    def initialize_request(self, request, *args, **kwargs):
        drf_request = super().initialize_request(request, *args, **kwargs)
        if self.action == "add_images" and request.content_type.startswith("multipart/"):
            # Set before authentication, because the CSRF check of session auth parses the body.
            request.upload_handlers = disk_upload_handlers(request)
            self.size_limit_handler = request.upload_handlers[0]
        return drf_request

    @extend_schema(request=ComparisonCreateSerializer, responses={201: ComparisonSerializer, **ERRORS})
    def create(self, request):
        serializer = ComparisonCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        project = projects_for(request.user).filter(uuid=data["project"]).first()
        if project is None:
            raise NotFound("No project with this UUID is visible to you.")
        comparison = Comparison.objects.create(
            project=project, name=data["name"], name_a=data["name_a"], name_b=data["name_b"], created_by=request.user
        )
        return Response(ComparisonSerializer(comparison).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=ComparisonImageSerializer(many=True))
    @action(detail=True, methods=["get"], parser_classes=[JSONParser, MultiPartParser])
    def images(self, request, uuid=None):
        """List the images of both groups."""
        comparison = self.get_object()
        page = self.paginate_queryset(comparison.images.select_related("comparison"))
        return self.get_paginated_response(ComparisonImageSerializer(page, many=True).data)

    @extend_schema(
        request={
            "multipart/form-data": {
                "type": "object",
                "properties": {
                    "group": {"type": "string", "enum": ["a", "b"]},
                    "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
                },
                "required": ["group", "file"],
            },
            "application/json": AddImagesSerializer,
        },
        responses={201: AddedImagesSerializer, **ERRORS},
        description=(
            "Add images to group a or b: image files or ZIP/tar archives in the multipart field `file` "
            "(repeated for several), or `data_files`, UUIDs of files already uploaded to the project. "
            "Files that cannot be decoded are listed in `skipped` with the reason and left out."
        ),
    )
    @images.mapping.post
    def add_images(self, request, uuid=None):
        comparison = self.get_object()
        uploaded = request.FILES.getlist("file")
        size_limit = getattr(self, "size_limit_handler", None)
        if size_limit is not None and size_limit.rejected_name is not None:
            raise too_large(Path(size_limit.rejected_name).name)
        serializer = AddImagesSerializer(data={"group": request.data.get("group"), **_data_files_field(request)})
        serializer.is_valid(raise_exception=True)
        group = serializer.validated_data["group"]
        wanted = serializer.validated_data.get("data_files") or []
        if not uploaded and not wanted:
            raise ValidationError({"file": ["Send image files or archives in the field 'file', or data_files UUIDs."]})

        data_files = list(DataFile.objects.filter(dataset__project=comparison.project, uuid__in=wanted))
        missing = sorted({str(item) for item in wanted} - {str(item.uuid) for item in data_files})
        if missing:
            raise NotFound(f"No file of project {comparison.project.name!r} has the UUID {', '.join(missing)}.")

        def sources():
            for item in uploaded:
                yield from iter_upload(item)
            yield from iter_data_files(data_files)

        try:
            added, skipped = add_images(comparison, group, sources(), {item.original_name: item for item in data_files})
        except ImageInputError as error:
            raise ValidationError({"file": [str(error)]}) from error
        body = {
            "added": ComparisonImageSerializer(added, many=True).data,
            "skipped": skipped,
            "counts": group_counts(comparison),
        }
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(
        operation_id="comparisons_images_clear",
        parameters=[OpenApiParameter("group", str, enum=["a", "b"], required=True, description="The group to empty.")],
        responses={204: None, **ERRORS},
    )
    @images.mapping.delete
    def clear_group(self, request, uuid=None):
        """Remove every image of a group, and forget the files that group left out."""
        comparison = self.get_object()
        group = request.query_params.get("group")
        if group not in ("a", "b"):
            raise ValidationError({"group": [f"Use a or b; got {group!r}."]})
        with transaction.atomic():
            for image in comparison.images.filter(group=group):
                image.delete()
            comparison.skipped = [item for item in comparison.skipped if item.get("group") != group]
            comparison.save(update_fields=["skipped"])
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(operation_id="comparisons_image_remove", responses={204: None, **ERRORS})
    @action(detail=True, methods=["delete"], url_path=r"images/(?P<image_uuid>[0-9a-f-]{36})")
    def remove_image(self, request, uuid=None, image_uuid=None):
        """Remove one image from its group."""
        comparison = self.get_object()
        image = comparison.images.filter(uuid=image_uuid).first()
        if image is None:
            raise NotFound("No image with this UUID is in this comparison.")
        image.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=RunSerializer, responses={202: RunStartedSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def run(self, request, uuid=None):
        """Start the comparison job with these options.

        The new run replaces the table, keeping renames, dismissals and typed hypotheses.
        """
        comparison = self.get_object()
        serializer = RunSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        job = start_run(comparison, dict(serializer.validated_data), request.user)
        body = {"job": job.uuid, "job_url": reverse("job-detail", args=[job.uuid])}
        return Response(body, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=TypedHypothesisSerializer, responses={201: HypothesisSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def rank(self, request, uuid=None):
        """Rank a typed description at once and add it to the table.

        It is ranked on the CLIP image embeddings of the last run when that run stored them, else
        on the measured feature it matches; `typed_ranking` in the response names the path.
        """
        comparison = self.get_object()
        serializer = TypedHypothesisSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            hypothesis = rank_typed(comparison, serializer.validated_data["description"], request.user)
        except TypedHypothesisError as error:
            raise ValidationError({"description": [str(error)]}) from error
        return Response(HypothesisSerializer(hypothesis).data, status=status.HTTP_201_CREATED)


def _data_files_field(request) -> dict:
    if hasattr(request.data, "getlist"):
        values = request.data.getlist("data_files")
        return {"data_files": values} if values else {}
    values = request.data.get("data_files")
    return {"data_files": values} if values is not None else {}


def start_run(comparison: Comparison, options: dict, user):
    """Submit the comparison job and remember it; raise ValidationError on invalid options."""
    try:
        cleaned = clean_options(options)
        with transaction.atomic():
            job = submit_job(
                comparison.project, kind_for(cleaned), {"comparison": str(comparison.uuid), "options": cleaned}, user
            )
            comparison.job = job
            comparison.options = cleaned
            comparison.save(update_fields=["job", "options"])
    except JobError as error:
        raise ValidationError({"options": [str(error)]}) from error
    return job


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("comparison", OpenApiTypes.UUID, description="Only hypotheses of this comparison."),
            OpenApiParameter("dismissed", OpenApiTypes.BOOL, description="true or false; both when absent."),
        ]
    ),
)
class HypothesisViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin, viewsets.GenericViewSet
):
    """Ranked hypotheses of comparisons; PATCH renames (`description`) or dismisses (`dismissed`) one."""

    serializer_class = HypothesisSerializer
    lookup_field = "uuid"
    http_method_names = ["get", "patch", "head", "options"]

    def get_queryset(self):
        hypotheses = Hypothesis.objects.filter(comparison__project__in=projects_for(self.request.user)).select_related(
            "comparison", "typed_by"
        )
        if self.action == "list":
            comparison = uuid_query_param(self.request, "comparison")
            if comparison is not None:
                hypotheses = hypotheses.filter(comparison__uuid=comparison)
            dismissed = self.request.query_params.get("dismissed")
            if dismissed is not None:
                if dismissed not in ("true", "false"):
                    raise ValidationError({"dismissed": [f"Use true or false; got {dismissed!r}."]})
                hypotheses = hypotheses.filter(dismissed=dismissed == "true")
        return hypotheses.order_by("comparison_id", "rank", "id")
