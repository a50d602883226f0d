"""Middleware of the core app: the Content-Security-Policy header, the share-token rate limit, and
503 responses while the database is unavailable."""

import logging
import secrets

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse

from biovlm_web.core import share_guard
from biovlm_web.core.access import SHARE_TOKEN_HEADER
from biovlm_web.core.models import ShareLink

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 10
MESSAGE = (
    "The database is unavailable right now, so this request was not carried out. Nothing stored before it "
    "was lost. Try again in a minute, and tell the platform administrator if it keeps happening."
)
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Database unavailable · BioVLM Web</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 36rem; margin: 3rem auto;">
  <h1>The database is unavailable</h1>
  <p>{message}</p>
  <p><a href="">Try again</a></p>
</body></html>
"""


class DatabaseUnavailableMiddleware:
    """Turn a lost or locked database connection into 503 Service Unavailable with Retry-After.

    API requests (paths under /api/) get JSON with ``detail`` and ``code``, pages get HTML.
    Other errors pass through to Django's handling.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        # NOTE: SQLite also raises OperationalError for a missing table. The traceback is logged
        # in full because the message to the user then names the wrong cause.
        logger.error(
            "%s %s failed because the database is unavailable: %s",
            request.method,
            request.path,
            exception,
            exc_info=exception,
        )
        if request.path.startswith("/api/"):
            response = JsonResponse({"detail": MESSAGE, "code": "database_unavailable"}, status=503)
        else:
            response = HttpResponse(PAGE.format(message=MESSAGE), status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response


class ContentSecurityPolicyMiddleware:
    """Send ``settings.CONTENT_SECURITY_POLICY`` on every response, with a fresh nonce per request.

    Templates read the nonce as ``{{ request.csp_nonce }}`` for any inline ``<script>`` that
    must run; the policy's ``{nonce}`` placeholder is replaced by it. A response that already
    has the header (set by a view) keeps its own.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.csp_nonce = secrets.token_urlsafe(18)
        response = self.get_response(request)
        policy = settings.CONTENT_SECURITY_POLICY
        if policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = policy.replace("{nonce}", request.csp_nonce)
        return response


class ShareTokenHeaderGuardMiddleware:
    """Count ``X-Share-Token`` headers that match no share link, and return 429 once a client has too many.

    The ``/s/<token>/`` page counts its own failures (see ``views.share_open``).
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = request.META.get(SHARE_TOKEN_HEADER, "").strip()
        if token:
            seconds = share_guard.retry_after(request)
            if seconds is not None:
                response = JsonResponse({"detail": share_guard.too_many_failures_message(seconds)}, status=429)
                response["Retry-After"] = str(seconds)
                return response
            if not ShareLink.objects.with_tokens([token]):
                share_guard.record_failure(request)
        return self.get_response(request)
