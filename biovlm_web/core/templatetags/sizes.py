from django import template

register = template.Library()

UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB")


@register.filter
def binary_size(value) -> str:
    """Format a byte count with IEC units (1 KiB = 1024 bytes), as the uploader in the browser does.

    Django's filesizeformat also divides by 1024 but labels the result "KB" and "MB".
    """
    try:
        size = float(value)
    except (TypeError, ValueError):
        return ""
    if size < 1024:
        count = int(size)
        return "1 byte" if count == 1 else f"{count} bytes"
    unit = 0
    while size >= 1024 and unit < len(UNITS) - 1:
        size /= 1024
        unit += 1
    return f"{size:.1f} {UNITS[unit]}"
