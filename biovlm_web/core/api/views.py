from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.response import Response

from biovlm_web.core.access import is_owner, projects_for, request_can_view
from biovlm_web.core.jobs import JobError, cancel_job, reap_stale_jobs, retry_job, submit_job
from biovlm_web.core.models import Job, Membership, ShareLink
from biovlm_web.core.sharing import get_shareable

from .serializers import (
    JobCreateSerializer,
    JobSerializer,
    MembershipSerializer,
    ProjectSerializer,
    ShareLinkCreateSerializer,
    ShareLinkSerializer,
)


class ProjectViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):  # fmt: skip
    """Projects (lab groups) the requesting user belongs to."""

    serializer_class = ProjectSerializer
    lookup_field = "uuid"

    def get_queryset(self):
        return projects_for(self.request.user).select_related("owner")

    def perform_create(self, serializer):
        with transaction.atomic():
            project = serializer.save(owner=self.request.user)
            Membership.objects.create(project=project, user=self.request.user, role=Membership.Role.OWNER)

    def perform_update(self, serializer):
        if not is_owner(self.request.user, serializer.instance):
            raise PermissionDenied("Only the project owner can rename or describe the project.")
        serializer.save()

    @extend_schema(responses=MembershipSerializer(many=True))
    @action(detail=True, methods=["get"])
    def members(self, request, uuid=None):
        project = self.get_object()
        memberships = project.memberships.select_related("user").order_by("user__username")
        return Response(MembershipSerializer(memberships, many=True, context={"request": request}).data)

    @extend_schema(request=MembershipSerializer, responses={201: MembershipSerializer})
    @members.mapping.post
    def add_member(self, request, uuid=None):
        project = self.get_object()
        if not is_owner(request.user, project):
            raise PermissionDenied("Only the project owner can add members.")
        serializer = MembershipSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        membership, _ = Membership.objects.get_or_create(project=project, user=serializer.validated_data["user"])
        return Response(MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None})
    @action(detail=True, methods=["delete"], url_path="members/(?P<username>[^/]+)")
    def remove_member(self, request, uuid=None, username=None):
        project = self.get_object()
        if not is_owner(request.user, project):
            raise PermissionDenied("Only the project owner can remove members.")
        user = get_object_or_404(get_user_model(), username=username)
        if user.pk == project.owner_id:
            raise PermissionDenied("The project owner cannot be removed.")
        deleted, _ = Membership.objects.filter(project=project, user=user).delete()
        if not deleted:
            raise NotFound(f"{username} is not a member of this project.")
        return Response(status=status.HTTP_204_NO_CONTENT)


class ShareVisitorReadable(permissions.BasePermission):
    """Signed-in users may do anything the view allows; share-link visitors may only read one object."""

    def has_permission(self, request, view):
        if request.user and request.user.is_authenticated:
            return True
        return view.action == "retrieve"


@extend_schema_view(
    list=extend_schema(parameters=[OpenApiParameter("project", str, description="Project UUID to filter by.")]),
    retrieve=extend_schema(description="Readable by project members and by visitors holding a share link to the job."),
)
class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = JobSerializer
    lookup_field = "uuid"
    permission_classes = [ShareVisitorReadable]

    def get_queryset(self):
        jobs = Job.objects.select_related("project", "created_by", "retry_of")
        if self.action == "retrieve":
            return jobs
        jobs = jobs.filter(project__in=projects_for(self.request.user))
        project = self.request.query_params.get("project")
        if project:
            jobs = jobs.filter(project__uuid=project)
        return jobs

    def get_object(self):
        job = get_object_or_404(self.get_queryset(), uuid=self.kwargs["uuid"])
        if not request_can_view(self.request, job):
            raise NotFound("No job with this UUID is visible to you.")
        if self.action != "retrieve" and not projects_for(self.request.user).filter(pk=job.project_id).exists():
            raise NotFound("No job with this UUID is visible to you.")
        if job.status == Job.Status.RUNNING and reap_stale_jobs():
            job.refresh_from_db()
        return job

    @extend_schema(request=JobCreateSerializer, responses={201: JobSerializer})
    def create(self, request):
        serializer = JobCreateSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        try:
            with transaction.atomic():
                job = submit_job(
                    serializer.validated_data["project"],
                    serializer.validated_data["kind"],
                    serializer.validated_data["params"],
                    user=request.user,
                )
        except JobError as error:
            raise serializers.ValidationError({"params": [str(error)]}) from error
        return Response(JobSerializer(job, context={"request": request}).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=JobSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, uuid=None):
        job = self.get_object()
        if not cancel_job(job):
            return Response(
                {"detail": f"The job is {job.status} and cannot be cancelled."}, status=status.HTTP_409_CONFLICT
            )
        job.refresh_from_db()
        return Response(JobSerializer(job, context={"request": request}).data)

    @extend_schema(request=None, responses={201: JobSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request, uuid=None):
        job = self.get_object()
        try:
            with transaction.atomic():
                new_job = retry_job(job, user=request.user)
        except JobError as error:
            return Response({"detail": str(error)}, status=status.HTTP_409_CONFLICT)
        return Response(JobSerializer(new_job, context={"request": request}).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("target_type", str, description="Kind of shared object, such as 'job'."),
            OpenApiParameter("target_uuid", str, description="UUID of the shared object."),
        ]
    )
)
class ShareLinkViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Read-only links to one result each, for collaborators without an account."""

    serializer_class = ShareLinkSerializer
    lookup_field = "uuid"

    def get_queryset(self):
        links = ShareLink.objects.filter(project__in=projects_for(self.request.user)).select_related(
            "content_type", "created_by"
        )
        target_type = self.request.query_params.get("target_type")
        target_uuid = self.request.query_params.get("target_uuid")
        if target_type and target_uuid:
            shareable = get_shareable(target_type)
            if shareable is None:
                return links.none()
            target = shareable.model.objects.filter(uuid=target_uuid).first()
            if target is None:
                return links.none()
            links = links.filter(content_type=ContentType.objects.get_for_model(target), object_id=target.pk)
        return links

    @extend_schema(request=ShareLinkCreateSerializer, responses={201: ShareLinkSerializer})
    def create(self, request):
        serializer = ShareLinkCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        shareable = get_shareable(serializer.validated_data["target_type"])
        target = shareable.model.objects.filter(uuid=serializer.validated_data["target_uuid"]).first()
        if target is None or not projects_for(request.user).filter(pk=target.project.pk).exists():
            raise NotFound(f"No {shareable.name} with this UUID is visible to you.")
        link = ShareLink.objects.create(
            project=target.project,
            target=target,
            label=serializer.validated_data["label"],
            expires_at=serializer.expires_at(),
            created_by=request.user,
        )
        return Response(ShareLinkSerializer(link, context={"request": request}).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=ShareLinkSerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request, uuid=None):
        link = self.get_object()
        ShareLink.objects.filter(pk=link.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        link.refresh_from_db()
        return Response(ShareLinkSerializer(link, context={"request": request}).data)
