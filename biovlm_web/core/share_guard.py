"""Rate limit on failed share-token attempts, per client IP address, counted in Redis.

A token that matches no share link counts as a failure, whether it came in a ``/s/<token>/``
address or an ``X-Share-Token`` header. After ``SHARE_TOKEN_MAX_FAILURES`` failures within
``SHARE_TOKEN_FAILURE_WINDOW`` seconds, every share-token request from that address gets 429
with ``Retry-After`` until the window ends. Counting in Redis means every server process
shares one count. Expired and revoked tokens are real tokens, so they do not count.
"""

import logging

from django.conf import settings
from django.http import HttpRequest
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

KEY_PREFIX = "biovlm:share-token-failures:"


def _redis():
    import django_rq

    return django_rq.get_connection("default")


def client_ip(request: HttpRequest) -> str:
    """Return the client's address: REMOTE_ADDR, or behind a TLS proxy the address it appended.

    nginx's ``$proxy_add_x_forwarded_for`` appends the address it saw last, so only that entry
    is trusted; earlier entries come from the client and could be anything.
    """
    if settings.SECURE_PROXY_SSL_HEADER:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        entries = [entry.strip() for entry in forwarded.split(",") if entry.strip()]
        if entries:
            return entries[-1]
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def _key(request: HttpRequest) -> str:
    return KEY_PREFIX + client_ip(request)


def retry_after(request: HttpRequest) -> int | None:
    """Return the seconds until this client may try share tokens again, or None when it may now."""
    try:
        connection = _redis()
        failures = connection.get(_key(request))
        if failures is None or int(failures) < settings.SHARE_TOKEN_MAX_FAILURES:
            return None
        ttl = connection.ttl(_key(request))
    except RedisError as error:
        # Without Redis nothing can be counted; share links keep working rather than all failing.
        logger.warning("Share-token rate limit not checked for %s: %s", client_ip(request), error)
        return None
    return max(int(ttl), 1) if ttl and ttl > 0 else settings.SHARE_TOKEN_FAILURE_WINDOW


def record_failure(request: HttpRequest) -> None:
    """Count one token that matched no share link; the window starts at the first failure."""
    key = _key(request)
    try:
        connection = _redis()
        with connection.pipeline() as pipeline:
            # SET NX starts the window only once; EXPIRE's NX flag needs Redis 7, the embedded one is 6.2.
            pipeline.set(key, 0, ex=settings.SHARE_TOKEN_FAILURE_WINDOW, nx=True)
            pipeline.incr(key)
            _, failures = pipeline.execute()
    except RedisError as error:
        logger.warning("Share-token failure from %s not counted: %s", client_ip(request), error)
        return
    if failures == settings.SHARE_TOKEN_MAX_FAILURES:
        logger.warning(
            "Client %s presented %d unknown share tokens; blocking share tokens from it for %d s.",
            client_ip(request),
            failures,
            settings.SHARE_TOKEN_FAILURE_WINDOW,
        )


def too_many_failures_message(seconds: int) -> str:
    return f"Too many unknown share links from this address. Try again in {seconds} seconds."
