import json as jsonlib

from django.conf import settings
from django.core.management.base import BaseCommand

from analysis.backends import ModelRegistry


class Command(BaseCommand):
    help = "Load every configured model role in this process and print its source, device and memory, or why it fails."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print the statuses as JSON.")
        parser.add_argument("--role", action="append", help="Check only this role (repeatable).")

    def handle(self, *args, json: bool = False, role=None, **options):
        registry = ModelRegistry(
            settings.MODEL_SOURCES,
            allow_downloads=settings.MODEL_ALLOW_DOWNLOADS,
            cache_dir=settings.MODEL_CACHE_DIR,
            device=settings.MODEL_DEVICE,
        )
        roles = role or list(registry.sources_text)
        statuses = [registry.status(name, load=True) for name in roles]
        if json:
            self.stdout.write(_dumps([status.as_dict() for status in statuses]))
            return
        for status in statuses:
            if status.available:
                info = status.info
                memory = f"{info['memory_bytes'] / 2**20:.0f} MiB" if info.get("memory_bytes") else "memory unknown"
                parameters = f"{info['parameters'] / 1e6:.1f} M parameters" if info.get("parameters") else ""
                detail = f"{info['device']} {info['dtype']}, {parameters}, {memory}, loaded in {info['load_seconds']} s"
                self.stdout.write(f"{status.role:18} available    {status.source}  ({detail})")
            else:
                self.stdout.write(f"{status.role:18} unavailable  {status.source}: {status.reason}")


def _dumps(value) -> str:
    return jsonlib.dumps(value, indent=2, default=str)
