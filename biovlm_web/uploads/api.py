"""REST API of datasets, their files and resumable chunked uploads.

Every object is reached through the requesting user's projects, so a stranger gets 404
for objects of other projects and an anonymous client gets 403.
"""

import logging
import shutil
import uuid
from pathlib import Path

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db.models import Count
from django.http import FileResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.response import Response

from biovlm_web.core.access import projects_for
from biovlm_web.uploads.handlers import disk_upload_handlers
from biovlm_web.uploads.ingest import (
    abort_upload,
    clean_filename,
    complete_upload,
    normalise_sha256,
    receive_uploaded_file,
    reject_empty,
    store_files,
    too_large,
)
from biovlm_web.uploads.models import DataFile, Dataset, UploadSession
from biovlm_web.uploads.serializers import (
    ChunkAcceptedSerializer,
    DataFileSerializer,
    DatasetCreateSerializer,
    DatasetSerializer,
    ErrorSerializer,
    UploadCompleteSerializer,
    UploadedFilesSerializer,
    UploadSessionCreateSerializer,
    UploadSessionSerializer,
)
from biovlm_web.uploads.storage import (
    UploadError,
    format_size,
    insufficient_storage,
    is_no_space,
    receive_chunk,
    temp_dir,
)

logger = logging.getLogger(__name__)

DOWNLOAD_BLOCK_SIZE = 1024 * 1024
ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid request; `detail` names the value and the fix."),
    404: OpenApiResponse(ErrorSerializer, description="Not found, or in a project you are not a member of."),
}


class UploadErrorMixin:
    """Return UploadError as a JSON body with ``detail``, ``code`` and any extra fields.

    A write that found the disk full becomes 507 Insufficient Storage. The paths that store
    files clean up what they wrote before the error reaches this handler.
    """

    def handle_exception(self, exc):
        if is_no_space(exc):
            logger.warning("%s %s failed because the disk is full: %s", self.request.method, self.request.path, exc)
            discard_temporary_uploads(self.request)
            exc = insufficient_storage("storing the uploaded files", Path(settings.MEDIA_ROOT))
        if isinstance(exc, UploadError):
            return Response(exc.body(), status=exc.status)
        return super().handle_exception(exc)


def discard_temporary_uploads(request) -> None:
    """Close and so delete the temporary files of a multipart parse that stopped with an error.

    Otherwise each file stays on the full disk until garbage collection closes it.
    """
    django_request = getattr(request, "_request", request)
    for handler in getattr(django_request, "upload_handlers", []):
        temporary = getattr(handler, "file", None)
        if temporary is None:
            continue
        try:
            temporary.close()
        except OSError:  # Flushing to the full disk fails again, but the file is deleted all the same.
            pass


def uuid_query_param(request, name: str) -> uuid.UUID | None:
    value = request.query_params.get(name)
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValidationError({name: [f"{value!r} is not a UUID."]}) from None


def visible_dataset(user, dataset_uuid) -> Dataset:
    dataset = (
        Dataset.objects.filter(project__in=projects_for(user), uuid=dataset_uuid).select_related("project").first()
    )
    if dataset is None:
        raise NotFound("No dataset with this UUID is visible to you.")
    return dataset


# --- Datasets ---------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        parameters=[OpenApiParameter("project", OpenApiTypes.UUID, description="Only datasets of this project.")]
    ),
)
class DatasetViewSet(UploadErrorMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Datasets of the projects the requesting user belongs to."""

    serializer_class = DatasetSerializer
    lookup_field = "uuid"

    def get_queryset(self):
        datasets = (
            Dataset.objects.filter(project__in=projects_for(self.request.user))
            .select_related("project", "created_by")
            .annotate(file_count=Count("files"))
        )
        project = uuid_query_param(self.request, "project") if self.action == "list" else None
        if project is not None:
            datasets = datasets.filter(project__uuid=project)
        return datasets

    def initialize_request(self, request, *args, **kwargs):
        drf_request = super().initialize_request(request, *args, **kwargs)
        if self.action == "upload_files":
            # Set before authentication, because the CSRF check of session auth parses the body.
            request.upload_handlers = disk_upload_handlers(request)
            self.size_limit_handler = request.upload_handlers[0]
        return drf_request

    @extend_schema(request=DatasetCreateSerializer, responses={201: DatasetSerializer, **ERRORS})
    def create(self, request):
        serializer = DatasetCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = projects_for(request.user).filter(uuid=serializer.validated_data["project"]).first()
        if project is None:
            raise NotFound("No project with this UUID is visible to you.")
        dataset = Dataset.objects.create(
            project=project,
            name=serializer.validated_data["name"],
            description=serializer.validated_data["description"],
            created_by=request.user,
        )
        dataset.file_count = 0
        return Response(DatasetSerializer(dataset).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=DataFileSerializer(many=True))
    @action(detail=True, methods=["get"], parser_classes=[MultiPartParser])
    def files(self, request, uuid=None):
        """List the dataset's files."""
        dataset = self.get_object()
        files = dataset.files.select_related("dataset", "created_by")
        page = self.paginate_queryset(files)
        serializer = DataFileSerializer(page, many=True, context={"request": request})
        return self.get_paginated_response(serializer.data)

    @extend_schema(
        request={
            "multipart/form-data": {
                "type": "object",
                "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                "required": ["file"],
            }
        },
        responses={
            201: UploadedFilesSerializer,
            **ERRORS,
            413: OpenApiResponse(ErrorSerializer, description="A file is over UPLOAD_MAX_FILE_SIZE."),
        },
        description=(
            "Upload small files in one multipart request (field `file`, repeated for several files). "
            "Every file is checked before any is stored: when one is rejected, nothing is stored and "
            "`errors` lists each rejected file. Use /api/uploads/ for large files."
        ),
    )
    @files.mapping.post
    def upload_files(self, request, uuid=None):
        # NOTE: under Daphne 4.2, Twisted parses every multipart/form-data body in memory before
        # the app sees it, at about 13 times the body size (bench/upload.py, Twisted 26.10).
        # Django's handlers below stream to disk, so under Uvicorn this path stays flat.
        dataset = self.get_object()
        uploaded = request.FILES.getlist("file")
        rejected_name = self.size_limit_handler.rejected_name
        if rejected_name is not None:
            raise too_large(_display_name(rejected_name))
        if not uploaded:
            raise UploadError("The request has no file. Send one or more files in the multipart field 'file'.")

        received, errors = [], []
        for uploaded_file in uploaded:
            try:
                received.append(receive_uploaded_file(uploaded_file))
            except UploadError as error:
                errors.append(error)
        if errors:
            return _rejected_files_response(errors, len(uploaded))

        stored = store_files(dataset, received, request.user)
        body = {"files": DataFileSerializer(stored, many=True, context={"request": request}).data}
        return Response(body, status=status.HTTP_201_CREATED)


def _display_name(raw: str) -> str:
    try:
        return clean_filename(raw)
    except ValueError:
        return repr(raw)


def _rejected_files_response(errors: list[UploadError], file_count: int) -> Response:
    if len(errors) == 1:
        detail = errors[0].detail
    else:
        detail = f"{len(errors)} of {file_count} files were rejected. " + " ".join(error.detail for error in errors)
    detail += " Nothing was stored: fix or remove the rejected files, then upload again."
    statuses = {error.status for error in errors}
    body = {"detail": detail, "code": errors[0].code, "errors": [error.body() for error in errors]}
    if len(errors) == 1:
        body["file"] = errors[0].extra.get("file")
    return Response(body, status=statuses.pop() if len(statuses) == 1 else status.HTTP_400_BAD_REQUEST)


# --- Files ------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        parameters=[OpenApiParameter("dataset", OpenApiTypes.UUID, description="Only files of this dataset.")]
    ),
    destroy=extend_schema(description="Delete the file from storage; project members only."),
)
class DataFileViewSet(
    UploadErrorMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Stored files of datasets in the requesting user's projects."""

    serializer_class = DataFileSerializer
    lookup_field = "uuid"

    def get_queryset(self):
        files = DataFile.objects.filter(dataset__project__in=projects_for(self.request.user)).select_related(
            "dataset", "created_by"
        )
        dataset = uuid_query_param(self.request, "dataset") if self.action == "list" else None
        if dataset is not None:
            files = files.filter(dataset__uuid=dataset)
        return files

    def perform_destroy(self, instance):
        storage, name = instance.file.storage, instance.file.name
        instance.delete()
        try:
            storage.delete(name)
        except Exception:  # Storage backends raise their own types (botocore for S3); the row is gone either way.
            logger.exception("File %s was deleted, but removing %s from storage failed", instance.uuid, name)
        logger.info("File %s (%s) deleted by %s", instance.uuid, instance.original_name, self.request.user)

    @extend_schema(
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, 404: ERRORS[404]},
        description="The file's bytes as an attachment named after the original file name.",
    )
    @action(detail=True, methods=["get"])
    def download(self, request, uuid=None):
        return file_response(request, self.get_object())


def file_response(request, data_file: DataFile):
    """Stream a stored file as an attachment, block by block under ASGI as well as WSGI."""
    handle = data_file.file.open("rb")
    content_type = data_file.content_type or "application/octet-stream"
    django_request = getattr(request, "_request", request)
    if not isinstance(django_request, ASGIRequest):
        return FileResponse(handle, as_attachment=True, filename=data_file.original_name, content_type=content_type)
    # Under ASGI Django collects a synchronous iterator into a list before sending it,
    # which would hold the whole file in memory, so the blocks are read asynchronously.
    # NOTE: Daphne 4.2 writes response bodies without flow control. When the client reads
    # slower than the disk, Daphne buffers the difference in memory, up to the whole file.
    # Uvicorn pauses the sender instead, and nginx with proxy buffering drains Daphne quickly.
    response = StreamingHttpResponse(_read_blocks(handle), content_type=content_type)
    response["Content-Length"] = str(data_file.size)
    response["Content-Disposition"] = content_disposition_header(True, data_file.original_name)
    return response


async def _read_blocks(handle):
    read = sync_to_async(handle.read, thread_sensitive=False)
    try:
        while block := await read(DOWNLOAD_BLOCK_SIZE):
            yield block
    finally:
        await sync_to_async(handle.close, thread_sensitive=False)()


# --- Chunked uploads --------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("dataset", OpenApiTypes.UUID, description="Only uploads into this dataset."),
            OpenApiParameter(
                "status", str, enum=UploadSession.Status.values, description="Only uploads in this status."
            ),
        ]
    ),
    destroy=extend_schema(
        description="Abort an unfinished upload and delete its partial file.",
        responses={204: None, 404: ERRORS[404], 409: OpenApiResponse(ErrorSerializer, description="Already complete.")},
    ),
)
class UploadSessionViewSet(
    UploadErrorMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Resumable chunked uploads into datasets of the requesting user's projects.

    Create an upload, PUT its chunks in order to ``chunk/``, then POST ``complete/``.
    After a network failure or a server restart, GET the upload and resume from ``offset``.
    """

    serializer_class = UploadSessionSerializer
    lookup_field = "uuid"
    parser_classes = [JSONParser]

    def get_queryset(self):
        uploads = UploadSession.objects.filter(dataset__project__in=projects_for(self.request.user)).select_related(
            "dataset__project", "data_file"
        )
        if self.action == "list":
            dataset = uuid_query_param(self.request, "dataset")
            if dataset is not None:
                uploads = uploads.filter(dataset__uuid=dataset)
            if self.request.query_params.get("status"):
                uploads = uploads.filter(status=self.request.query_params["status"])
        return uploads

    @extend_schema(
        request=UploadSessionCreateSerializer,
        responses={
            201: UploadSessionSerializer,
            **ERRORS,
            413: OpenApiResponse(ErrorSerializer, description="The file is over UPLOAD_MAX_FILE_SIZE."),
            507: OpenApiResponse(ErrorSerializer, description="Not enough free disk space on the server."),
        },
    )
    def create(self, request):
        serializer = UploadSessionCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        dataset = visible_dataset(request.user, data["dataset"])
        filename, size = data["filename"], data["size"]
        if size == 0:
            raise reject_empty(filename)
        if size > settings.UPLOAD_MAX_FILE_SIZE:
            raise too_large(filename, size)
        free = shutil.disk_usage(temp_dir()).free
        if size > free:
            raise UploadError(
                f"The server has {format_size(free)} free for partial uploads, less than the {format_size(size)} "
                f"of {filename}. Ask an administrator to free disk space, then upload again.",
                status=507,
                code="insufficient_storage",
                file=filename,
            )
        upload = UploadSession.objects.create(
            dataset=dataset,
            filename=filename,
            size=size,
            sha256=data["sha256"],
            chunk_size=settings.UPLOAD_CHUNK_SIZE,
            created_by=request.user,
        )
        logger.info("Upload %s of %s (%d bytes) into dataset %s started", upload.uuid, filename, size, dataset.uuid)
        return Response(UploadSessionSerializer(upload).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        abort_upload(instance)

    @extend_schema(
        request={"application/octet-stream": OpenApiTypes.BINARY},
        parameters=[
            OpenApiParameter(
                "Upload-Offset",
                int,
                OpenApiParameter.HEADER,
                required=True,
                description="Byte offset where this chunk starts; must equal the upload's committed offset.",
            ),
            OpenApiParameter(
                "Chunk-Sha256",
                str,
                OpenApiParameter.HEADER,
                required=True,
                description="Hex SHA-256 of this chunk's bytes.",
            ),
        ],
        responses={
            200: ChunkAcceptedSerializer,
            **ERRORS,
            409: OpenApiResponse(
                ErrorSerializer, description="Out of order, or the upload is no longer active; `offset` is committed."
            ),
            411: OpenApiResponse(ErrorSerializer, description="Content-Length is missing."),
            413: OpenApiResponse(ErrorSerializer, description="The chunk is over UPLOAD_MAX_CHUNK_SIZE."),
        },
        description="Append one chunk. The body is the raw bytes; nothing is appended unless its SHA-256 matches.",
    )
    @action(detail=True, methods=["put"])
    def chunk(self, request, uuid=None):
        upload = self.get_object()
        offset = _offset_header(request, upload)
        chunk_sha256 = normalise_sha256(request.headers.get("Chunk-Sha256"), field="Chunk-Sha256")
        if not chunk_sha256:
            raise UploadError(
                "The Chunk-Sha256 header is missing. Send the hex SHA-256 of the chunk's bytes.",
                code="missing_chunk_sha256",
                offset=upload.offset,
            )
        length = _content_length(request, upload)
        upload = receive_chunk(upload, request.read, offset, length, chunk_sha256)
        return Response({"offset": upload.offset, "size": upload.size})

    @extend_schema(
        request=UploadCompleteSerializer,
        responses={
            200: OpenApiResponse(DataFileSerializer, description="The upload was already complete: its file."),
            201: DataFileSerializer,
            **ERRORS,
            409: OpenApiResponse(ErrorSerializer, description="Incomplete, failed or aborted."),
        },
        description=(
            "Verify the whole file's SHA-256 and its type, then store it. Calling it again on a complete "
            "upload returns the same file."
        ),
    )
    @action(detail=True, methods=["post"])
    def complete(self, request, uuid=None):
        upload = self.get_object()
        serializer = UploadCompleteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            data_file, created = complete_upload(upload, serializer.validated_data.get("sha256"), request.user)
        except OSError as error:
            if not is_no_space(error):
                raise
            # The upload stays active with its partial file, so completing it again after space is freed works.
            logger.warning("Completing upload %s failed because the disk is full: %s", upload.uuid, error)
            action = f"storing {upload.filename}"
            raise insufficient_storage(action, Path(settings.MEDIA_ROOT), file=upload.filename) from error
        body = DataFileSerializer(data_file, context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


def _offset_header(request, upload: UploadSession) -> int:
    value = request.headers.get("Upload-Offset", "").strip()
    if value.isdigit():
        return int(value)
    problem = f"header {value[:40]!r} is not a non-negative integer" if value else "header is missing"
    raise UploadError(
        f"The Upload-Offset {problem}. Send the byte offset where the chunk starts, which is the committed "
        f"offset {upload.offset} for the next chunk.",
        code="invalid_offset",
        offset=upload.offset,
    )


def _content_length(request, upload: UploadSession) -> int:
    value = request.META.get("CONTENT_LENGTH", "").strip()
    if not value.isdigit():
        raise UploadError(
            "The chunk request needs a Content-Length header; chunked transfer encoding is not supported.",
            status=411,
            code="length_required",
            offset=upload.offset,
        )
    return int(value)
