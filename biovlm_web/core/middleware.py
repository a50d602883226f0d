"""Return 503 and a plain message for requests that fail because the database is unreachable."""

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse

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
