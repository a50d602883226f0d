from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.exceptions import ParseError
from rest_framework.views import exception_handler as drf_exception_handler


def exception_handler(exc, context):
    """DRF's handler, plus a ``detail`` sentence on field errors so clients can show one line.

    Django's own ValidationError, raised by a model field given a malformed query value such
    as ``?project=abc`` for a UUID, becomes a 400 naming the value instead of a 500.
    """
    if isinstance(exc, DjangoValidationError):
        exc = ParseError(" ".join(exc.messages))
    response = drf_exception_handler(exc, context)
    if response is None or not isinstance(response.data, dict) or "detail" in response.data:
        return response
    parts = []
    for field, errors in response.data.items():
        messages = errors if isinstance(errors, list) else [errors]
        text = " ".join(str(message) for message in messages)
        parts.append(text if field == "non_field_errors" else f"{field}: {text}")
    response.data = {"detail": " ".join(parts), "errors": response.data}
    return response
