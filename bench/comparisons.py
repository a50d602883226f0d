"""Comparison timings through the web layer: adding images, the job, a typed hypothesis, exports.

Runs in one process against a fresh SQLite database and media folder in a temporary
directory, with the test settings (embedded Redis). Groups are synthetic microscopy images
(A with more nuclei than B). It prints the seconds to decode and store the images, to run the
comparison job (measured proposer only), the median latency of ranking a typed hypothesis
from the stored measurements, and the time and size of the HTML report.

    .venv/bin/python bench/comparisons.py [--images 100] [--size 128] [--typed 20]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_django(folder: Path) -> None:
    os.environ["BIOVLM_VAR_DIR"] = str(folder / "var")
    os.environ["DATABASE_URL"] = f"sqlite:///{folder / 'bench.sqlite3'}"
    os.environ["MEDIA_ROOT"] = str(folder / "media")
    os.environ.pop("REDIS_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def png(pixels) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100, help="Images per group (default 100).")
    parser.add_argument("--size", type=int, default=128, help="Image side in pixels (default 128).")
    parser.add_argument("--typed", type=int, default=20, help="Typed hypotheses to time (default 20).")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="biovlm-bench-") as folder:
        setup_django(Path(folder))
        from django.contrib.auth import get_user_model

        from analysis.setdiff.synthetic import make_pair
        from biovlm_web.comparisons.exports import export_html
        from biovlm_web.comparisons.images import add_images
        from biovlm_web.comparisons.jobs import KIND, clean_options
        from biovlm_web.comparisons.models import Comparison
        from biovlm_web.comparisons.ranking import rank_typed
        from biovlm_web.core.jobs import execute_job
        from biovlm_web.core.models import Job, Project

        user = get_user_model().objects.create_user("bench", password="bench-password-1")
        project = Project.objects.create(name="Bench", owner=user)
        comparison = Comparison.objects.create(project=project, name="Bench", name_a="Crowded", name_b="Sparse")
        pair = make_pair("count", "easy", images_per_group=args.images, size=args.size, seed=0)

        started = time.perf_counter()
        for group, images in (("a", pair.a), ("b", pair.b)):
            add_images(comparison, group, ((f"{group}{i}.png", png(p), "") for i, p in enumerate(images)))
        add_seconds = time.perf_counter() - started

        options = clean_options({})
        job = Job.objects.create(
            project=project, kind=KIND, params={"comparison": str(comparison.uuid), "options": options}
        )
        started = time.perf_counter()
        outcome = execute_job(str(job.uuid))
        job_seconds = time.perf_counter() - started
        if outcome != "succeeded":
            job.refresh_from_db()
            sys.exit(f"The comparison job {outcome}: {job.error}")

        comparison.refresh_from_db()
        latencies = []
        for index in range(args.typed):
            text = ("more cells per image", "larger nuclei", "more elongated nuclei", "brighter nuclei")[index % 4]
            started = time.perf_counter()
            rank_typed(comparison, text)
            latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        report = export_html(comparison)
        report_seconds = time.perf_counter() - started

        total = 2 * args.images
        print(
            f"{args.images} images of {args.size}x{args.size} per group, measured proposer, default options "
            f"({options['resamples']} resamples, {options['permutations']} permutations)."
        )
        print(f"{'step':<32} {'seconds':>8}  notes")
        print(f"{'decode and store images':<32} {add_seconds:>8.2f}  {total / add_seconds:.0f} images/s")
        print(
            f"{'comparison job':<32} {job_seconds:>8.2f}  {comparison.hypotheses.count() - args.typed} hypotheses kept"
        )
        print(
            f"{'typed hypothesis (median)':<32} {statistics.median(latencies):>8.3f}  "
            f"max {max(latencies):.3f} s over {args.typed}, table grows to {comparison.hypotheses.count()} rows"
        )
        print(f"{'HTML report':<32} {report_seconds:>8.2f}  {len(report.content) / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
