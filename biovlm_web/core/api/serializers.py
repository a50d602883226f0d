from datetime import timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from biovlm_web.core.access import projects_for
from biovlm_web.core.jobs import job_kinds
from biovlm_web.core.models import Job, Membership, Project, ShareLink
from biovlm_web.core.sharing import shareable_for_content_type, shareable_names

# Share links may last at most this long; a link with no expiry lasts until revoked.
MAX_SHARE_LINK_DAYS = 366


class ProjectSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)
    role = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = ["uuid", "name", "description", "owner", "role", "created_at"]
        read_only_fields = ["uuid", "owner", "role", "created_at"]

    @extend_schema_field(serializers.ChoiceField(choices=Membership.Role.choices))
    def get_role(self, project) -> str:
        user = self.context["request"].user
        membership = project.memberships.filter(user=user).first()
        return membership.role if membership else ""


class MembershipSerializer(serializers.ModelSerializer):
    username = serializers.SlugRelatedField(
        source="user", slug_field="username", queryset=get_user_model().objects.filter(is_active=True)
    )

    class Meta:
        model = Membership
        fields = ["username", "role", "added_at"]
        read_only_fields = ["role", "added_at"]


@extend_schema_field(OpenApiTypes.UUID)
class ProjectField(serializers.SlugRelatedField):
    """A project named by UUID, limited to projects the requesting user belongs to."""

    def __init__(self, **kwargs):
        super().__init__(slug_field="uuid", **kwargs)

    def get_queryset(self):
        return projects_for(self.context["request"].user)


class JobSerializer(serializers.ModelSerializer):
    project = serializers.UUIDField(source="project.uuid", read_only=True, default=None)
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)
    retry_of = serializers.UUIDField(source="retry_of.uuid", read_only=True, default=None)
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = Job
        fields = [
            "uuid", "project", "kind", "queue", "status", "stage", "progress", "log", "error", "params",
            "result", "code_version", "model_versions", "worker_name", "cancel_requested", "retry_of",
            "created_by", "created_at", "started_at", "finished_at", "duration_seconds",
        ]  # fmt: skip
        read_only_fields = fields


class JobCreateSerializer(serializers.Serializer):
    project = ProjectField()
    kind = serializers.CharField(max_length=64, help_text="Job kind; see the kinds listed in the error for unknown ones.")
    params = serializers.DictField(required=False, default=dict)

    def validate_kind(self, value):
        if value not in job_kinds():
            known = ", ".join(sorted(job_kinds()))
            raise serializers.ValidationError(f"Unknown job kind {value!r}; use one of: {known}.")
        return value


class ShareLinkSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    target_type = serializers.SerializerMethodField()
    target_uuid = serializers.SerializerMethodField()
    is_valid = serializers.BooleanField(read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)

    class Meta:
        model = ShareLink
        fields = [
            "uuid", "token", "url", "target_type", "target_uuid", "label", "created_by", "created_at",
            "expires_at", "revoked_at", "is_valid",
        ]  # fmt: skip
        read_only_fields = fields

    def get_url(self, link) -> str:
        from django.urls import reverse

        path = reverse("share-open", args=[link.token])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    def get_target_type(self, link) -> str:
        shareable = shareable_for_content_type(link.content_type)
        return shareable.name if shareable else ""

    def get_target_uuid(self, link) -> str:
        return str(link.target.uuid) if link.target is not None else ""


class ShareLinkCreateSerializer(serializers.Serializer):
    target_type = serializers.ChoiceField(choices=[])
    target_uuid = serializers.UUIDField()
    label = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    expires_in_hours = serializers.FloatField(
        required=False, allow_null=True, default=None, min_value=0.01, max_value=MAX_SHARE_LINK_DAYS * 24,
        help_text="Hours until the link stops working; leave empty for a link that lasts until revoked.",
    )  # fmt: skip

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["target_type"].choices = [(name, name) for name in shareable_names()]

    def expires_at(self):
        hours = self.validated_data.get("expires_in_hours")
        return None if hours is None else timezone.now() + timedelta(hours=hours)
