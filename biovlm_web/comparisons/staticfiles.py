"""Serve plotly.min.js from the pinned plotly Python package as the static file plotly/plotly.min.js.

The result page's score plot loads it from this server, so pages never reach a CDN and the
JavaScript version always matches the plotly version in requirements.txt.
"""

from pathlib import Path

from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

PREFIX = "plotly"
FILENAME = "plotly.min.js"


def _package_data() -> Path:
    import plotly

    return Path(plotly.__file__).resolve().parent / "package_data"


class PlotlyFinder(BaseFinder):
    def find(self, path, find_all=False, **kwargs):
        if path != f"{PREFIX}/{FILENAME}":
            return [] if find_all or kwargs.get("all") else None
        found = str(_package_data() / FILENAME)
        return [found] if find_all or kwargs.get("all") else found

    def list(self, ignore_patterns):
        storage = FileSystemStorage(location=str(_package_data()))
        storage.prefix = PREFIX
        yield FILENAME, storage
