"""Middleware of the core app: the Content-Security-Policy header and the share-token rate limit."""

import secrets

from django.conf import settings
from django.http import JsonResponse

from biovlm_web.core import share_guard
from biovlm_web.core.access import SHARE_TOKEN_HEADER
from biovlm_web.core.models import ShareLink


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
