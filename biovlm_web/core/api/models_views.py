from django.conf import settings
from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from biovlm_web.core.api.serializers import JobSerializer
from biovlm_web.core.jobs import submit_job
from biovlm_web.core.models_status import CHECK_KIND, latest_check, role_rows


class ModelRoleSerializer(serializers.Serializer):
    role = serializers.CharField()
    title = serializers.CharField()
    source = serializers.CharField(help_text="Configured source, such as local:/models/blip or none.")
    state = serializers.ChoiceField(choices=["available", "unavailable", "invalid", "off", "unchecked"])
    reason = serializers.CharField(help_text="Why the role is not available, empty when it is.")
    info = serializers.DictField(help_text="Device, dtype, parameters, memory and weights hash from the last check.")


class ModelsSerializer(serializers.Serializer):
    roles = ModelRoleSerializer(many=True)
    checked_at = serializers.DateTimeField(allow_null=True)
    check_job = serializers.UUIDField(allow_null=True, help_text="The last finished model check job.")
    pending_job = serializers.UUIDField(allow_null=True, help_text="A model check still queued or running.")


class ModelsView(APIView):
    """Each model role, its configured source, and what the last model check found."""

    @extend_schema(responses=ModelsSerializer)
    def get(self, request):
        check, pending = latest_check()
        body = {
            "roles": role_rows(settings, check),
            "checked_at": check.finished_at if check else None,
            "check_job": check.uuid if check else None,
            "pending_job": pending.uuid if pending else None,
        }
        return Response(ModelsSerializer(body).data)


class ModelsCheckView(APIView):
    """Start a model check on a worker, or return the one already queued or running."""

    @extend_schema(request=None, responses={201: JobSerializer, 200: JobSerializer})
    def post(self, request):
        _, pending = latest_check()
        if pending is not None:
            return Response(JobSerializer(pending, context={"request": request}).data, status=status.HTTP_200_OK)
        with transaction.atomic():
            job = submit_job(None, CHECK_KIND, {}, user=request.user)
        return Response(JobSerializer(job, context={"request": request}).data, status=status.HTTP_201_CREATED)
