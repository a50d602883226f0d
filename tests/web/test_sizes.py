import pytest

from biovlm_web.core.templatetags.sizes import binary_size


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0 bytes"),
        (1, "1 byte"),
        (1023, "1023 bytes"),
        (1024, "1.0 KiB"),
        (20_000_000, "19.1 MiB"),
        (3 * 1024**3, "3.0 GiB"),
        (None, ""),
        ("many", ""),
    ],
)
def test_binary_size(value, text):
    assert binary_size(value) == text
