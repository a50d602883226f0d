"""Small synthetic subtomograms for training and testing APT-ViT without the tomogram simulator.

Each particle class is a parametric density built from Gaussian blobs and shells, sized from the
class radius in ``analysis.cryoet.classes``. A sample is the density at a uniformly random
orientation on SO(3), with a small random centre offset and size change. It is filtered by a ±60°
missing wedge about the y axis and a B-factor envelope, and white noise filtered the same way is
added. The SNR is the mean over the six classes of a centred particle's variance in the box divided
by the noise variance, so every class gets the same noise level, as in one tomogram. Noise is
filtered on a larger grid and cropped so that, like noise in a crop from a tomogram, it does not
wrap around the box edges. The "background" class is filtered noise alone or a particle whose centre lies near
the box face, as a false pick is.

These shapes only resemble the real proteins in size and symmetry. Crops from
``analysis.cryoet.simulate`` tomograms can replace them once that module exists.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from analysis.cryoet.classes import CLASS_BY_NAME, CLASS_NAMES

# Part of the training-data hash: change it whenever the generator's output changes.
GENERATOR_VERSION = "aptvit-synthetic-2"
BACKGROUND = "background"
TRAINING_CLASS_NAMES = (*CLASS_NAMES, BACKGROUND)
# Tilt range of the simulated tilt series, in degrees either side of zero.
TILT_RANGE_DEGREES = 60.0
# B-factor of the resolution envelope exp(-B k² / 4), in Å², with k in 1/Å.
B_FACTOR = 2000.0

_TETRAHEDRON = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float) / np.sqrt(3)
_GOLDEN = (1 + np.sqrt(5)) / 2
_ICOSAHEDRON = np.array(
    [[0, s1, s2 * _GOLDEN] for s1 in (-1, 1) for s2 in (-1, 1)]
    + [[s1, s2 * _GOLDEN, 0] for s1 in (-1, 1) for s2 in (-1, 1)]
    + [[s2 * _GOLDEN, 0, s1] for s1 in (-1, 1) for s2 in (-1, 1)],
    dtype=float,
) / np.sqrt(1 + _GOLDEN**2)


def _blob(points: np.ndarray, centre, sigma) -> np.ndarray:
    """Evaluate a Gaussian blob with per-axis widths ``sigma`` (Å) at ``centre`` (Å) on (n, 3) points."""
    scaled = (points - np.asarray(centre, dtype=float)) / np.asarray(sigma, dtype=float)
    return np.exp(-0.5 * np.sum(scaled**2, axis=1))


def _shell(points: np.ndarray, radius: float, thickness: float) -> np.ndarray:
    distance = np.linalg.norm(points, axis=1)
    return np.exp(-0.5 * ((distance - radius) / (thickness / 2)) ** 2)


def particle_density(name: str, points: np.ndarray) -> np.ndarray:
    """Evaluate the canonical density of class ``name`` at (n, 3) points in Å, in the particle frame.

    Each shape spans about the class radius: apo-ferritin a hollow sphere, beta-amylase a
    tetrahedral tetramer of blobs, beta-galactosidase a planar tetramer of elongated blobs,
    ribosome a two-lobed body, thyroglobulin an elongated dimer, virus-like particle an
    icosahedral shell.
    """
    radius = CLASS_BY_NAME[name].radius_angstrom
    if name == "apo-ferritin":
        return _shell(points, 0.8 * radius, 0.35 * radius)
    if name == "beta-amylase":
        return sum(_blob(points, 0.55 * radius * vertex, 0.3 * radius) for vertex in _TETRAHEDRON)
    if name == "beta-galactosidase":
        corners = [(0.45 * radius * sx, 0.45 * radius * sy, 0.0) for sx in (-1, 1) for sy in (-1, 1)]
        return sum(_blob(points, corner, (0.22 * radius, 0.22 * radius, 0.4 * radius)) for corner in corners)
    if name == "ribosome":
        large = _blob(points, (0, 0, -0.2 * radius), (0.42 * radius, 0.42 * radius, 0.34 * radius))
        small = 0.8 * _blob(points, (0, 0, 0.42 * radius), (0.38 * radius, 0.24 * radius, 0.2 * radius))
        return large + small
    if name == "thyroglobulin":
        sigma = (0.33 * radius, 0.2 * radius, 0.2 * radius)
        return _blob(points, (0.38 * radius, 0, 0), sigma) + _blob(points, (-0.38 * radius, 0, 0), sigma)
    if name == "virus-like-particle":
        capsomers = sum(_blob(points, 0.85 * radius * vertex, 0.12 * radius) for vertex in _ICOSAHEDRON)
        return 0.5 * _shell(points, 0.85 * radius, 0.08 * radius) + capsomers
    raise ValueError(f"Unknown particle class {name!r}. The classes are {', '.join(CLASS_NAMES)}.")


def imaging_filter(box: int, voxel_size: float) -> np.ndarray:
    """Return the rfftn-shaped transfer function: a missing wedge about y times a B-factor envelope.

    Frequencies whose (kx, kz) direction lies more than ``TILT_RANGE_DEGREES`` from the kx axis
    were never sampled by the tilt series, so they are zero.
    """
    kz = np.fft.fftfreq(box, d=voxel_size)[:, None, None]
    ky = np.fft.fftfreq(box, d=voxel_size)[None, :, None]
    kx = np.fft.rfftfreq(box, d=voxel_size)[None, None, :]
    measured = np.abs(kz) <= np.tan(np.radians(TILT_RANGE_DEGREES)) * np.abs(kx)
    measured = measured | ((kz == 0) & (kx == 0))
    envelope = np.exp(-B_FACTOR * (kx**2 + ky**2 + kz**2) / 4)
    return measured * envelope


def _voxel_points(box: int, voxel_size: float) -> np.ndarray:
    """Voxel centres in Å relative to the box centre, as (box³, 3) in (x, y, z) order."""
    axis = (np.arange(box) - (box - 1) / 2) * voxel_size
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    return np.stack((x.ravel(), y.ravel(), z.ravel()), axis=1)


class SubtomogramGenerator:
    """Draw synthetic subtomograms of side ``box`` voxels at ``voxel_size`` Å per voxel."""

    def __init__(self, box: int = 32, voxel_size: float = 10.0) -> None:
        self.box = box
        self.voxel_size = voxel_size
        self.points = _voxel_points(box, voxel_size)
        self.transfer = imaging_filter(box, voxel_size)
        self.noise_box = box + box // 2
        self.noise_transfer = imaging_filter(self.noise_box, voxel_size)
        variances = [
            self._filter(particle_density(name, self.points).reshape((box,) * 3)).var() for name in CLASS_NAMES
        ]
        self.reference_variance = float(np.mean(variances))

    def _filter(self, volume: np.ndarray) -> np.ndarray:
        return np.fft.irfftn(np.fft.rfftn(volume) * self.transfer, s=volume.shape, axes=(0, 1, 2))

    def particle(self, rng: np.random.Generator, name: str, centre_angstrom=None) -> np.ndarray:
        """Return the filtered, noise-free density of one randomly oriented particle of class ``name``."""
        rotation = Rotation.random(random_state=rng)
        scale = rng.uniform(0.93, 1.07)
        if centre_angstrom is None:
            centre_angstrom = rng.uniform(-1.0, 1.0, size=3) * self.voxel_size
        # Points in the particle frame: undo the translation, the rotation and the size change.
        local = rotation.inv().apply(self.points - np.asarray(centre_angstrom)) / scale
        density = particle_density(name, local).reshape((self.box,) * 3)
        return self._filter(density)

    def filtered_noise(self, rng: np.random.Generator) -> np.ndarray:
        """Return white noise filtered like the particles, with unit standard deviation and no wrap-around."""
        white = rng.standard_normal((self.noise_box,) * 3)
        filtered = np.fft.irfftn(np.fft.rfftn(white) * self.noise_transfer, s=white.shape, axes=(0, 1, 2))
        start = (self.noise_box - self.box) // 2
        crop = filtered[start : start + self.box, start : start + self.box, start : start + self.box]
        return crop / float(crop.std())

    def noise_std(self, snr: float) -> float:
        """Return the noise standard deviation that gives ``snr`` against the mean class variance."""
        return float(np.sqrt(self.reference_variance / snr))

    def add_noise(self, rng: np.random.Generator, clean: np.ndarray, snr: float) -> np.ndarray:
        """Add filtered noise at ``snr``, then standardise to mean 0 and standard deviation 1."""
        return _standardise(clean + self.noise_std(snr) * self.filtered_noise(rng))

    def background(self, rng: np.random.Generator, snr: float) -> tuple[np.ndarray, np.ndarray]:
        """Return (noisy, clean) for a false pick: noise alone, or a particle centred near a box face."""
        if rng.random() < 0.5:
            clean = np.zeros((self.box,) * 3)
            noisy = _standardise(self.filtered_noise(rng))
            return noisy, clean
        name = CLASS_NAMES[rng.integers(len(CLASS_NAMES))]
        radius = CLASS_BY_NAME[name].radius_angstrom
        direction = rng.standard_normal(3)
        direction /= np.abs(direction).max()
        half_box = self.box * self.voxel_size / 2
        # The centre's largest coordinate lies within half a radius of the box face, so part of
        # the particle is cut off, as in a crop around a pick that missed it.
        centre = direction * (half_box + rng.uniform(-0.5, 0.5) * radius)
        clean = self.particle(rng, name, centre_angstrom=centre)
        return self.add_noise(rng, clean, snr), _standardise(clean)

    def sample(self, rng: np.random.Generator, label: int, snr: float) -> tuple[np.ndarray, np.ndarray]:
        """Return (noisy, clean) float32 volumes for class index ``label`` of TRAINING_CLASS_NAMES."""
        name = TRAINING_CLASS_NAMES[label]
        if name == BACKGROUND:
            noisy, clean = self.background(rng, snr)
        else:
            particle = self.particle(rng, name)
            noisy, clean = self.add_noise(rng, particle, snr), _standardise(particle)
        return noisy.astype(np.float32), clean.astype(np.float32)


def _standardise(volume: np.ndarray) -> np.ndarray:
    std = float(volume.std())
    return (volume - volume.mean()) / (std if std > 0 else 1.0)


@dataclass
class SyntheticSet:
    """Generated subtomograms: noisy and clean volumes (n, box, box, box) and labels into class_names."""

    noisy: np.ndarray
    clean: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    parameters: dict

    def sha256(self) -> str:
        """Hash the generator version, the parameters and every generated array."""
        digest = hashlib.sha256()
        digest.update(GENERATOR_VERSION.encode())
        digest.update(json.dumps(self.parameters, sort_keys=True).encode())
        for array in (self.noisy, self.clean, self.labels):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()


def make_synthetic_set(
    seed: int,
    per_class: int,
    box: int = 32,
    voxel_size: float = 10.0,
    snr: float = 0.5,
    snr_max: float | None = None,
) -> SyntheticSet:
    """Generate ``per_class`` samples of each of the 7 training classes (6 particles and background).

    With ``snr_max``, each sample's SNR is drawn log-uniformly between ``snr`` and ``snr_max``.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}.")
    if snr <= 0:
        raise ValueError(f"snr must be positive, got {snr}.")
    if snr_max is not None and snr_max < snr:
        raise ValueError(f"snr_max {snr_max} is below snr {snr}; pass snr_max >= snr or None.")
    rng = np.random.default_rng(seed)
    generator = SubtomogramGenerator(box, voxel_size)
    labels = np.repeat(np.arange(len(TRAINING_CLASS_NAMES)), per_class)
    rng.shuffle(labels)
    noisy = np.empty((len(labels), box, box, box), dtype=np.float32)
    clean = np.empty_like(noisy)
    for index, label in enumerate(labels):
        sample_snr = snr if snr_max is None else float(np.exp(rng.uniform(np.log(snr), np.log(snr_max))))
        noisy[index], clean[index] = generator.sample(rng, int(label), sample_snr)
    parameters = {"seed": seed, "per_class": per_class, "box": box, "voxel_size": voxel_size, "snr": snr}
    if snr_max is not None:
        parameters["snr_max"] = snr_max
    return SyntheticSet(noisy, clean, labels.astype(np.int64), TRAINING_CLASS_NAMES, parameters)
