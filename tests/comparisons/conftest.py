import pytest

from biovlm_web.comparisons.models import Comparison


@pytest.fixture(autouse=True)
def _empty_queues(redis_conn):
    """Submitted jobs are also enqueued in Redis; this empties it around each test."""


@pytest.fixture
def comparison(personas):
    return Comparison.objects.create(
        project=personas["project"], name="Crowded against sparse", name_a="Crowded", name_b="Sparse"
    )
