import hashlib
import hmac
import secrets
import uuid

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils import timezone


class Project(models.Model):
    """A lab group: the unit that owns datasets, files, jobs and results."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="owned_projects")
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="projects")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self):
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        MEMBER = "member", "Member"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="unique_membership")]


class Job(models.Model):
    """One unit of queued work; its UUID is also the RQ job id."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Jobs without a project are platform jobs, such as model checks, that any signed-in user may read.
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.CASCADE, related_name="jobs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    kind = models.CharField(max_length=64)
    queue = models.CharField(max_length=32, default="default")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    stage = models.CharField(max_length=200, blank=True)
    progress = models.FloatField(default=0.0)
    log = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    code_version = models.CharField(max_length=64, blank=True)
    model_versions = models.JSONField(default=dict, blank=True)
    worker_name = models.CharField(max_length=200, blank=True)
    cancel_requested = models.BooleanField(default=False)
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.kind} {self.uuid}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def duration_seconds(self) -> float | None:
        if not self.started_at:
            return None
        end = self.finished_at or timezone.now()
        return (end - self.started_at).total_seconds()

    def snapshot(self) -> dict:
        """Return the state that the progress websocket and the API send to a browser."""
        return {
            "uuid": str(self.uuid),
            "kind": self.kind,
            "status": self.status,
            "stage": self.stage,
            "progress": self.progress,
            "log": self.log[-50:],
            "log_total": len(self.log),
            "error": self.error,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


def new_share_token() -> str:
    # 32 random bytes from the operating system's CSPRNG: 256 bits, far beyond guessing.
    return secrets.token_urlsafe(32)


def hash_share_token(token: str) -> str:
    """Return the hex SHA-256 of a share token, the only form of it that lookups compare.

    Looking rows up by this digest means the database never compares a presented token with a
    stored one, so response times cannot reveal how much of a guess was right.
    """
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class ShareLinkQuerySet(models.QuerySet):
    def for_object(self, obj):
        return self.filter(content_type=ContentType.objects.get_for_model(obj), object_id=obj.pk)

    def with_tokens(self, tokens):
        """Return the links whose token is one of ``tokens``, matched by digest and then in constant time."""
        digests = {hash_share_token(token): token for token in tokens if token}
        links = list(self.filter(token_hash__in=digests))
        return [link for link in links if hmac.compare_digest(link.token, digests[link.token_hash])]


class ShareLink(models.Model):
    """A read-only link that opens one result to anyone who has its token."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # The token stays readable so members can copy the link again; lookups use token_hash.
    token = models.CharField(max_length=64, unique=True, default=new_share_token, editable=False)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="share_links")
    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE)
    object_id = models.PositiveBigIntegerField()
    target = GenericForeignKey("content_type", "object_id")
    label = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ShareLinkQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["content_type", "object_id"])]

    def save(self, *args, **kwargs):
        self.token_hash = hash_share_token(self.token)
        super().save(*args, **kwargs)

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_valid(self) -> bool:
        return not self.is_revoked and not self.is_expired

    def grants(self, obj) -> bool:
        """Return whether this link, while valid, opens ``obj``."""
        return (
            self.is_valid
            and self.object_id == obj.pk
            and self.content_type_id == ContentType.objects.get_for_model(obj).pk
        )
