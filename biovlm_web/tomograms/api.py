"""REST API of tomograms, their runs, particles, query tools, questions and exports.

Tomograms and their runs are reached through the requesting user's projects. A run is also
readable by a visitor holding a share link to it (session or ``X-Share-Token``). Strangers get
404, and clients with neither an account nor a share token get 401.
"""

import re

from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response

from analysis.cryoet.classes import CLASS_NAMES
from analysis.cryoet.query import TOOLS, QueryError, run_tool
from analysis.cryoet.questions import plan_question
from biovlm_web.core.access import projects_for, request_can_view, share_tokens
from biovlm_web.core.jobs import JobError
from biovlm_web.tomograms import results
from biovlm_web.tomograms.ingest import TomogramInputError, create_tomogram, set_voxel_size, start_run
from biovlm_web.tomograms.models import Tomogram, TomogramRun
from biovlm_web.tomograms.serializers import (
    AnswerSerializer,
    ParticleColumnsSerializer,
    ParticleSerializer,
    QuestionSerializer,
    RunCreateSerializer,
    SubtomogramSerializer,
    TomogramCreateSerializer,
    TomogramErrorSerializer,
    TomogramRunSerializer,
    TomogramSerializer,
    TomogramUpdateSerializer,
)
from biovlm_web.tomograms.volumes import slice_png, subtomogram_slices
from biovlm_web.uploads.models import DataFile

ERRORS = {
    400: OpenApiResponse(
        TomogramErrorSerializer, description="Invalid request; `detail` names the parameter and the fix."
    ),
    404: OpenApiResponse(TomogramErrorSerializer, description="Not found, or not visible to you."),
}
NOT_READY = OpenApiResponse(
    TomogramErrorSerializer, description="The run has not succeeded, so it has no particles yet."
)
TOOL_PARAMETER = OpenApiParameter(
    "tool", str, OpenApiParameter.PATH, enum=list(TOOLS), description="The query tool to run."
)
Z_PARAMETER = OpenApiParameter("z", int, OpenApiParameter.PATH, description="Section index, 0 at the first section.")
PNG_RESPONSE = {(200, "image/png"): OpenApiTypes.BINARY, 400: ERRORS[400], 404: ERRORS[404]}

QUERY_EXAMPLES = [
    OpenApiExample(
        "neighbors",
        summary="neighbors: particles within 50 nm of particle 12",
        value={"radius_angstrom": 500, "particle_id": 12},
        request_only=True,
    ),
    OpenApiExample(
        "region_composition",
        summary="region_composition: classes in a box",
        value={"shape": "box", "box_min": [0, 0, 0], "box_max": [1000, 1000, 500]},
        request_only=True,
    ),
    OpenApiExample(
        "nearest_neighbor_distances",
        summary="nearest_neighbor_distances: ribosome to nearest apo-ferritin, with a CSR test",
        value={"class_a": "ribosome", "class_b": "apo-ferritin", "simulations": 99},
        request_only=True,
    ),
    OpenApiExample(
        "clusters",
        summary="clusters: polysomes, ribosomes linked within 30 nm",
        value={"class_name": "ribosome", "link_distance_angstrom": 300, "min_size": 3},
        request_only=True,
    ),
    OpenApiExample(
        "neighbors result",
        value={
            "center": [1200.0, 900.0, 300.0],
            "particle_id": 12,
            "radius_angstrom": 500.0,
            "class_name": None,
            "count": 1,
            "counts_by_class": {name: int(name == "ribosome") for name in CLASS_NAMES},
            "particles": [
                {
                    "id": 7,
                    "class": "ribosome",
                    "x": 1350.0,
                    "y": 880.0,
                    "z": 310.0,
                    "score": 0.91,
                    "distance_angstrom": 151.6,
                }
            ],
            "truncated": False,
        },
        response_only=True,
    ),
]


def query_field(tool: str, message: str) -> str | None:
    """Return the first parameter of ``tool`` that an error message names, so clients can mark that field."""
    unknown = re.match(r"Unknown parameters? '([^']+)'", message)
    if unknown:
        return unknown.group(1)
    names = list(TOOLS[tool].params_class.__dataclass_fields__) if tool in TOOLS else []
    found = []
    for name in names:
        match = re.search(rf"\b{re.escape(name)}\b", message)
        if match:
            found.append((match.start(), name))
    return min(found)[1] if found else None


def run_query(run: TomogramRun, tool: str, arguments) -> Response:
    if tool not in TOOLS:
        return Response(
            {"detail": f"Unknown tool {tool!r}; use one of {', '.join(TOOLS)}.", "field": "tool"},
            status=status.HTTP_404_NOT_FOUND,
        )
    spatial_map = ready_map(run)
    particle_id = arguments.get("particle_id") if isinstance(arguments, dict) else None
    if isinstance(particle_id, int) and not isinstance(particle_id, bool) and particle_id not in spatial_map.ids:
        # The core's message for this case does not name the parameter, so it is checked here first.
        return Response(
            {"detail": f"Invalid particle_id {particle_id}: the run has no such particle.", "field": "particle_id"},
            status=status.HTTP_400_BAD_REQUEST,
        )
    try:
        result = run_tool(spatial_map, tool, arguments)
    except QueryError as error:
        body = {"detail": str(error)}
        field = query_field(tool, str(error))
        if field:
            body["field"] = field
        return Response(body, status=status.HTTP_400_BAD_REQUEST)
    return Response({"tool": tool, "params": arguments, "result": result})


def ready_map(run: TomogramRun):
    if not run.is_ready:
        raise RunNotReady(f"The run is {run.job.status}; particles exist only after it succeeds.")
    return results.load_map(run)


class RunNotReady(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "run_not_ready"


class ShareReadable(permissions.BasePermission):
    """Signed-in users pass; visitors pass only for read actions when they present a share token.

    The object check happens in ``get_object``: a run the visitor's token does not open is 404.
    """

    READ_ACTIONS = {"retrieve", "particles", "points", "subtomogram", "query", "ask", "export", "slice"}

    def has_permission(self, request, view):
        if request.user and request.user.is_authenticated:
            return True
        return view.action in self.READ_ACTIONS and bool(share_tokens(getattr(request, "session", None), request.META))


def uuid_filter(request, name):
    import uuid as uuid_module

    value = request.query_params.get(name)
    if not value:
        return None
    try:
        return uuid_module.UUID(value)
    except ValueError:
        raise ValidationError({name: [f"{value!r} is not a UUID."]}) from None


def section_index(tomogram: Tomogram, z: str) -> int:
    shape = tomogram.shape
    index = int(z)
    if shape is None or not 0 <= index < shape[0]:
        depth = shape[0] if shape else 0
        raise ValidationError({"z": [f"Section {index} is outside the tomogram; use 0 to {depth - 1}."]})
    return index


@extend_schema_view(
    list=extend_schema(parameters=[OpenApiParameter("project", OpenApiTypes.UUID, description="Only this project.")]),
    partial_update=extend_schema(
        request=TomogramUpdateSerializer,
        responses={200: TomogramSerializer, **ERRORS},
        description="Correct the voxel size before a run. Reference picks are read again with the new size.",
        examples=[OpenApiExample("voxel size", value={"voxel_size_angstrom": 10.0}, request_only=True)],
    ),
)
class TomogramViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """MRC tomograms of the projects the requesting user belongs to."""

    serializer_class = TomogramSerializer
    lookup_field = "uuid"

    def get_queryset(self):
        tomograms = (
            Tomogram.objects.filter(project__in=projects_for(self.request.user))
            .select_related("project", "volume")
            .prefetch_related("references")
        )
        project = uuid_filter(self.request, "project") if self.action == "list" else None
        if project is not None:
            tomograms = tomograms.filter(project__uuid=project)
        return tomograms

    @extend_schema(
        request=TomogramCreateSerializer,
        responses={201: TomogramSerializer, **ERRORS},
        description=(
            "Register an uploaded MRC file (see /api/uploads/ or /api/datasets/{uuid}/files/) as a tomogram, "
            "with optional reference picks in any format the particle readers accept."
        ),
        examples=[
            OpenApiExample(
                "tomogram with references",
                value={
                    "project": "5f0c6a43-5a0b-4b9a-9a53-1d2b9c1f2e10",
                    "volume_file": "0b8e7e1e-2c55-4a43-8f5a-6b1f0d7a9c21",
                    "reference_files": ["7a1d4c2b-9e8f-4f61-a3b2-0c9d8e7f6a54"],
                    "voxel_size_angstrom": 10.0,
                },
                request_only=True,
            )
        ],
    )
    def create(self, request):
        serializer = TomogramCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        project = projects_for(request.user).filter(uuid=data["project"]).first()
        if project is None:
            raise NotFound("No project with this UUID is visible to you.")
        files = DataFile.objects.filter(dataset__project=project)
        volume = files.filter(uuid=data["volume_file"]).first()
        if volume is None:
            raise ValidationError({"volume_file": ["No file with this UUID in the project."]})
        references = list(files.filter(uuid__in=data["reference_files"]))
        if len(references) != len(set(data["reference_files"])):
            raise ValidationError({"reference_files": ["Some UUIDs are not files of the project."]})
        try:
            with transaction.atomic():
                tomogram = create_tomogram(
                    project,
                    volume,
                    request.user,
                    references,
                    data.get("voxel_size_angstrom"),
                    data.get("reference_unit"),
                    data.get("name"),
                )
        except TomogramInputError as error:
            return Response({"detail": str(error), "field": error.field}, status=status.HTTP_400_BAD_REQUEST)
        return Response(TomogramSerializer(tomogram).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, uuid=None):
        tomogram = self.get_object()
        serializer = TomogramUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        set_voxel_size(tomogram, serializer.validated_data["voxel_size_angstrom"])
        return Response(TomogramSerializer(tomogram).data)

    @extend_schema(responses=TomogramRunSerializer(many=True))
    @action(detail=True, methods=["get"])
    def runs(self, request, uuid=None):
        """List the tomogram's runs, newest first."""
        tomogram = self.get_object()
        runs = tomogram.runs.select_related("job", "tomogram")
        return Response(TomogramRunSerializer(runs, many=True).data)

    @extend_schema(
        request=RunCreateSerializer,
        responses={201: TomogramRunSerializer, **ERRORS},
        description="Start a run: a job on the gpu queue that picks, classifies and maps the particles.",
        examples=[
            OpenApiExample(
                "DoG on three classes",
                value={"picker": "dog", "classes": ["ribosome", "apo-ferritin", "thyroglobulin"], "score_threshold": 5},
                request_only=True,
            )
        ],
    )
    @runs.mapping.post
    def start_run(self, request, uuid=None):
        tomogram = self.get_object()
        serializer = RunCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            run = start_run(tomogram, dict(serializer.validated_data), request.user)
        except JobError as error:
            field = str(error).split(":", 1)[0]
            return Response({"detail": str(error), "field": field}, status=status.HTTP_400_BAD_REQUEST)
        return Response(TomogramRunSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        parameters=[
            TOOL_PARAMETER,
            OpenApiParameter(
                "run", OpenApiTypes.UUID, description="Run to query; the newest succeeded run by default."
            ),
        ],
        responses={200: OpenApiTypes.OBJECT, **ERRORS, 409: NOT_READY},
        examples=QUERY_EXAMPLES,
        description=(
            "Run one query tool on the particles of the tomogram's newest succeeded run (or `run`). "
            "The body is the tool's parameters; positions and distances are in angstroms."
        ),
    )
    @action(detail=True, methods=["post"], url_path=r"query/(?P<tool>[a-z_]+)")
    def query(self, request, uuid=None, tool=None):
        tomogram = self.get_object()
        runs = tomogram.runs.select_related("job", "tomogram").filter(job__status="succeeded")
        run_uuid = uuid_filter(request, "run")
        run = runs.filter(uuid=run_uuid).first() if run_uuid else runs.first()
        if run is None:
            raise RunNotReady("The tomogram has no succeeded run to query. Start a run first.")
        return run_query(run, tool, request.data)

    @extend_schema(parameters=[Z_PARAMETER], responses=PNG_RESPONSE, description="One section as an 8-bit PNG.")
    @action(detail=True, methods=["get"], url_path=r"slices/(?P<z>[0-9]+)")
    def slice(self, request, uuid=None, z=None):
        tomogram = self.get_object()
        return HttpResponse(slice_png(tomogram, section_index(tomogram, z)), content_type="image/png")


class ParticlePagination(LimitOffsetPagination):
    default_limit = 100
    max_limit = 5000


@extend_schema_view(
    list=extend_schema(parameters=[OpenApiParameter("tomogram", OpenApiTypes.UUID, description="Only this tomogram.")]),
    retrieve=extend_schema(description="Readable by project members and by visitors holding a share link to the run."),
)
class TomogramRunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Runs of tomograms, their particles, query tools, questions and exports."""

    serializer_class = TomogramRunSerializer
    lookup_field = "uuid"
    permission_classes = [ShareReadable]

    def get_queryset(self):
        runs = TomogramRun.objects.select_related("job", "tomogram", "tomogram__project", "tomogram__volume")
        if self.action != "list":
            return runs
        runs = runs.filter(tomogram__project__in=projects_for(self.request.user))
        tomogram = uuid_filter(self.request, "tomogram")
        if tomogram is not None:
            runs = runs.filter(tomogram__uuid=tomogram)
        return runs

    def get_object(self):
        run = get_object_or_404(self.get_queryset(), uuid=self.kwargs["uuid"])
        if not request_can_view(self.request, run):
            raise NotFound("No tomogram run with this UUID is visible to you.")
        return run

    @extend_schema(
        parameters=[
            OpenApiParameter("class", str, many=True, enum=list(CLASS_NAMES), description="Only these classes."),
            OpenApiParameter("min_score", float, description="Only particles scoring at least this."),
            OpenApiParameter("z_min", float, description="Only particles with z at least this, in angstroms."),
            OpenApiParameter("z_max", float, description="Only particles with z at most this, in angstroms."),
        ],
        responses={200: ParticleSerializer(many=True), **ERRORS, 409: NOT_READY},
        description="The run's particles in id order, paginated with `limit` (at most 5000) and `offset`.",
    )
    @action(detail=True, methods=["get"], pagination_class=ParticlePagination)
    def particles(self, request, uuid=None):
        spatial_map = ready_map(self.get_object())
        classes = request.query_params.getlist("class")
        unknown = [name for name in classes if name not in spatial_map.class_names]
        if unknown:
            raise ValidationError({"class": [f"Unknown class {unknown[0]!r}; use one of {', '.join(CLASS_NAMES)}."]})
        numbers = {}
        for name in ("min_score", "z_min", "z_max"):
            value = request.query_params.get(name)
            if value in (None, ""):
                continue
            try:
                numbers[name] = float(value)
            except ValueError:
                raise ValidationError({name: [f"{value!r} is not a number."]}) from None
        rows = results.filter_rows(spatial_map, classes, **numbers)
        page = self.paginate_queryset(rows)
        return self.get_paginated_response([results.particle_row(spatial_map, row) for row in page])

    @extend_schema(
        responses={200: ParticleColumnsSerializer, 404: ERRORS[404], 409: NOT_READY},
        description="Every particle as parallel arrays, the compact form that the 3D view loads.",
    )
    @action(detail=True, methods=["get"])
    def points(self, request, uuid=None):
        return Response(results.columns(ready_map(self.get_object())))

    @extend_schema(
        parameters=[OpenApiParameter("particle_id", int, OpenApiParameter.PATH, description="The particle's id.")],
        responses={200: SubtomogramSerializer, 404: ERRORS[404], 409: NOT_READY},
        description="The particle and the central xy, xz and yz slices of its subtomogram as PNG data URLs.",
    )
    @action(detail=True, methods=["get"], url_path=r"particles/(?P<particle_id>[0-9]+)/subtomogram")
    def subtomogram(self, request, uuid=None, particle_id=None):
        run = self.get_object()
        spatial_map = ready_map(run)
        try:
            row = spatial_map.row_of(int(particle_id))
        except KeyError:
            raise NotFound(f"The run has no particle {particle_id}.") from None
        particle = results.particle_row(spatial_map, row)
        voxel_size = float(run.summary.get("voxel_size_angstrom") or run.tomogram.voxel_size)
        position = (particle["x"], particle["y"], particle["z"])
        body = subtomogram_slices(run.tomogram, position, particle["radius_angstrom"], voxel_size)
        return Response({"particle": particle, **body})

    @extend_schema(
        request=OpenApiTypes.OBJECT,
        parameters=[TOOL_PARAMETER],
        responses={200: OpenApiTypes.OBJECT, **ERRORS, 409: NOT_READY},
        examples=QUERY_EXAMPLES,
        description="Run one query tool on the run's particles. The body is the tool's parameters.",
    )
    @action(detail=True, methods=["post"], url_path=r"query/(?P<tool>[a-z_]+)")
    def query(self, request, uuid=None, tool=None):
        return run_query(self.get_object(), tool, request.data)

    @extend_schema(
        request=QuestionSerializer,
        responses={200: AnswerSerializer, **ERRORS, 409: NOT_READY},
        description="Turn a plain-language question into one query tool call, run it and return both.",
        examples=[
            OpenApiExample("polysomes", value={"question": "are there polysomes within 30 nm?"}, request_only=True)
        ],
    )
    @action(detail=True, methods=["post"])
    def ask(self, request, uuid=None):
        run = self.get_object()
        serializer = QuestionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        spatial_map = ready_map(run)
        plan = plan_question(serializer.validated_data["question"])
        body = {**plan.to_dict(), "result": None, "error": ""}
        if plan.tool is not None:
            try:
                body["result"] = run_tool(spatial_map, plan.tool, plan.params)
            except QueryError as error:
                body["error"] = str(error)
        return Response(body)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "export_format", str, OpenApiParameter.PATH, enum=list(results.EXPORT_FORMATS), description="Format."
            )
        ],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, 404: ERRORS[404], 409: NOT_READY},
        description="Download the particles: " + "; ".join(f"`{k}` {v[0]}" for k, v in results.EXPORT_FORMATS.items()),
    )
    @action(detail=True, methods=["get"], url_path=r"export/(?P<export_format>[a-z0-9]+)")
    def export(self, request, uuid=None, export_format=None):
        run = self.get_object()
        if export_format not in results.EXPORT_FORMATS:
            raise NotFound(f"Unknown export format {export_format!r}; use one of {', '.join(results.EXPORT_FORMATS)}.")
        ready_map(run)
        content, filename, content_type = results.export_bytes(run, export_format)
        response = HttpResponse(content, content_type=content_type)
        response["Content-Disposition"] = content_disposition_header(True, filename)
        return response

    @extend_schema(parameters=[Z_PARAMETER], responses=PNG_RESPONSE, description="One section as an 8-bit PNG.")
    @action(detail=True, methods=["get"], url_path=r"slices/(?P<z>[0-9]+)")
    def slice(self, request, uuid=None, z=None):
        run = self.get_object()
        return HttpResponse(slice_png(run.tomogram, section_index(run.tomogram, z)), content_type="image/png")
