"""Command line of the analysis core: ``python -m analysis COMMAND ...``."""

import argparse
import json
import logging
import sys
from functools import partial
from pathlib import Path

from analysis.anomaly.cli import add_anomaly_parser, run_anomaly_command
from analysis.cryoet.cli import add_cryoet_parser, run_command
from analysis.filetypes import FileCheckError, inspect_file
from analysis.integrity import FileToVerify, verify_files
from analysis.progress import ConsoleReporter
from analysis.setdiff.cli import add_setdiff_parser
from analysis.setdiff.cli import run_command as run_setdiff_command


def _read_manifest(path: Path) -> dict[str, str]:
    """Read a ``sha256sum`` manifest: lines of ``<hex digest>  <file name>``."""
    expected = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 64:
            raise SystemExit(f"{path}:{number}: not a sha256sum line: {line!r}")
        expected[parts[1].lstrip("*").strip()] = parts[0].lower()
    return expected


def command_verify(args: argparse.Namespace) -> int:
    expected = _read_manifest(args.manifest) if args.manifest else {}
    missing = [str(path) for path in args.files if not path.is_file()]
    if missing:
        print(f"Not a file: {', '.join(missing)}", file=sys.stderr)
        return 2
    files = [
        FileToVerify(str(path), path.stat().st_size, expected.get(str(path)) or expected.get(path.name), partial(path.open, "rb"))
        for path in args.files
    ]
    result = verify_files(files, ConsoleReporter())
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        for check in result["files"]:
            print(f"{check['sha256']}  {check['name']}{'' if check['ok'] else '  FAILED: ' + check['problem']}")
    return 1 if result["failed"] else 0


# The web app's default UPLOAD_MAX_IMAGE_PIXELS, so a file passes here exactly when an upload would.
DEFAULT_MAX_IMAGE_PIXELS = 400_000_000


def command_inspect(args: argparse.Namespace) -> int:
    """Check files as the upload does and print each one's type and header metadata as JSON."""
    reports, failed = [], 0
    for path in args.files:
        if not path.is_file():
            print(f"error: {path}: not a file", file=sys.stderr)
            failed += 1
            continue
        if path.stat().st_size == 0:
            print(f"error: {path}: the file is empty (0 bytes)", file=sys.stderr)
            failed += 1
            continue
        try:
            inspection = inspect_file(path, path.name, max_image_pixels=args.max_pixels)
        except FileCheckError as error:
            print(f"error: {path}: rejected ({error.code}): {error}", file=sys.stderr)
            failed += 1
            continue
        for warning in inspection.metadata.get("warnings") or []:
            print(f"warning: {path}: {warning}", file=sys.stderr)
        file_type = inspection.file_type
        reports.append({"file": str(path), "type": file_type.name, "kind": file_type.kind, "metadata": inspection.metadata})
    json.dump(reports, sys.stdout, indent=2)
    print()
    return 2 if failed else 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m analysis", description="BioVLM analysis tools.")
    commands = parser.add_subparsers(dest="command", required=True)

    verify = commands.add_parser("verify", help="Print the sha256 of files and check them against a manifest.")
    verify.add_argument("files", nargs="+", type=Path, help="Files to hash.")
    verify.add_argument("--manifest", type=Path, help="A sha256sum manifest to check against.")
    verify.add_argument("--json", action="store_true", help="Print the result as JSON.")
    verify.set_defaults(handler=command_verify)
    inspect = commands.add_parser(
        "inspect", help="Check files as an upload does: type by content, header metadata, pixel and archive limits."
    )
    inspect.add_argument("files", nargs="+", type=Path, help="Files to check.")
    inspect.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_IMAGE_PIXELS,
        help=f"Largest width × height of an image or video frame, in pixels (default {DEFAULT_MAX_IMAGE_PIXELS}).",
    )
    inspect.set_defaults(handler=command_inspect)
    add_cryoet_parser(commands)
    add_setdiff_parser(commands)
    add_anomaly_parser(commands)

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["cryoet", "train"]:
        # The training command has its own parser, so its options and --help pass through unchanged.
        from analysis.cryoet.aptvit.train import main as train_main

        train_main(argv[2:])
        return 0
    args = parser.parse_args(argv)
    if args.command == "cryoet":
        return run_command(args)
    if args.command == "setdiff":
        return run_setdiff_command(args)
    if args.command == "anomaly":
        return run_anomaly_command(args)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
