from django.apps import AppConfig


class TestAppConfig(AppConfig):
    """Job kinds that only the test suite uses, loaded by the test settings."""

    name = "tests.testapp"
    label = "testapp"

    def ready(self):
        from tests.testapp import jobs  # noqa: F401  registers the job kinds
