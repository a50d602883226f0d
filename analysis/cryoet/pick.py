"""Classical particle pickers that need no trained weights.

``pick`` is the one entry point. Method "dog" finds blobs with a difference of Gaussians at each
class's size, and method "template" matches a template volume over a set of rotations by
normalised cross-correlation. Volumes are NumPy arrays indexed (z, y, x); picks come back as
x, y, z positions in angstroms, with a score and, for "dog", a class name per pick.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy import ndimage
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from analysis.cryoet.classes import CLASS_BY_NAME, CLASS_NAMES
from analysis.cryoet.io.coordinates import indices_to_angstrom
from analysis.progress import NullReporter, ProgressReporter

# Ratio of the two Gaussian widths of the difference of Gaussians.
DOG_SIGMA_RATIO = 1.6
# Gaussian kernels are cut at this many standard deviations, which also sets the slab margins.
GAUSSIAN_TRUNCATE = 3.0
CONTRASTS = ("bright", "dark")
FEATURES = ("density", "energy")
# Widths in Å of the difference of Gaussians whose square is the "energy" feature. The band
# (about 1/60 to 1/25 per Å) is where a tomogram filtered by a CTF at a few micrometres of
# defocus keeps most particle signal, whatever the sign the CTF gave it.
ENERGY_BAND_ANGSTROM = (10.0, 25.0)


@dataclass
class Picks:
    """Picked particles: (n, 3) x, y, z positions in angstroms, scores, and class names when known."""

    positions: np.ndarray
    scores: np.ndarray
    class_names: list[str] | None = None
    # Template matching only: the (n, 3, 3) rotation of the best-matching template, acting on (z, y, x).
    rotations: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def by_class(self) -> dict[str, np.ndarray]:
        """Return the positions of each class, the input that ``metrics.score_picks`` takes."""
        if self.class_names is None:
            raise ValueError("These picks have no class names; pick with classes to group them.")
        names = np.array(self.class_names)
        return {name: self.positions[names == name] for name in dict.fromkeys(self.class_names)}


def pick(
    volume: np.ndarray,
    voxel_size: float,
    classes: Sequence[str] | None = None,
    method: str = "dog",
    reporter: ProgressReporter | None = None,
    **options,
) -> Picks:
    """Pick particles in ``volume`` with method "dog" or "template"; ``options`` go to that method.

    ``classes`` names the particle classes searched for. Method "dog" uses their radii and defaults
    to all six. Method "template" labels its picks with the single class given, if any.
    """
    if method == "dog":
        return pick_blobs(volume, voxel_size, classes=classes or CLASS_NAMES, reporter=reporter, **options)
    if method == "template":
        class_name = None
        if classes:
            if len(classes) != 1:
                raise ValueError(f"Template matching picks one class at a time, got {list(classes)}.")
            class_name = classes[0]
        return match_template(volume, voxel_size, class_name=class_name, reporter=reporter, **options)
    raise ValueError(f"Unknown picking method {method!r}; expected 'dog' or 'template'.")


def _check_volume(volume: np.ndarray, voxel_size: float) -> np.ndarray:
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"Expected a 3D volume indexed (z, y, x), got shape {volume.shape}.")
    if not (math.isfinite(voxel_size) and voxel_size > 0):
        raise ValueError(f"Invalid voxel_size {voxel_size!r}; expected a positive number of angstroms.")
    return volume


def suppress_non_maxima(positions: np.ndarray, scores: np.ndarray, radius: float | np.ndarray) -> np.ndarray:
    """Return the indices kept by greedy non-maximum suppression, highest score first.

    A point is dropped when a kept point with a higher score lies within ``radius`` of it, where
    ``radius`` may be one value or one per point (the kept point's radius applies).
    """
    if len(scores) == 0:
        return np.empty(0, dtype=np.int64)
    radii = np.broadcast_to(np.asarray(radius, dtype=float), scores.shape)
    tree = cKDTree(positions)
    order = np.argsort(-scores, kind="stable")
    suppressed = np.zeros(len(scores), dtype=bool)
    kept = []
    for index in order:
        if suppressed[index]:
            continue
        kept.append(index)
        suppressed[tree.query_ball_point(positions[index], radii[index])] = True
    return np.asarray(kept, dtype=np.int64)


# ---------------------------------------------------------------- difference of Gaussians


def _robust_sigma(values: np.ndarray) -> float:
    """Return the noise standard deviation estimated from the median absolute deviation."""
    deviation = np.median(np.abs(values - np.median(values)))
    return float(deviation * 1.4826) or float(values.std()) or 1.0


def _refine_peaks(response: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Return peak indices moved to the vertex of a parabola through each peak and its two neighbours, per axis.

    The shift is at most half a voxel, and an axis where the peak sits on a face is left as it is.
    """
    refined = indices.astype(np.float64)
    for axis in range(3):
        inner = (indices[:, axis] > 0) & (indices[:, axis] < response.shape[axis] - 1)
        if not np.any(inner):
            continue
        centre = indices[inner]
        before, after = centre.copy(), centre.copy()
        before[:, axis] -= 1
        after[:, axis] += 1
        low = response[tuple(before.T)].astype(np.float64)
        middle = response[tuple(centre.T)].astype(np.float64)
        high = response[tuple(after.T)].astype(np.float64)
        curvature = low - 2 * middle + high
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.where(curvature < 0, 0.5 * (low - high) / curvature, 0.0)
        refined[inner, axis] += np.clip(np.nan_to_num(shift), -0.5, 0.5)
    return refined


def _dog_maxima_in_slab(
    volume: np.ndarray, start: int, stop: int, sigma: float, radius_voxels: float, sign: float, sample_stride: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the DoG maxima whose z lies in ``[start, stop)`` and a sample of the slab's response.

    The maxima come as fractional (z, y, x) indices, refined below one voxel, and raw responses.
    The sample takes every ``sample_stride``-th voxel of the whole volume in C order, so it does
    not depend on the slabs.
    """
    margin = int(math.ceil(GAUSSIAN_TRUNCATE * DOG_SIGMA_RATIO * sigma + radius_voxels)) + 1
    low = max(0, start - margin)
    high = min(volume.shape[0], stop + margin)
    slab = volume[low:high].astype(np.float32)

    response = ndimage.gaussian_filter(slab, sigma, truncate=GAUSSIAN_TRUNCATE)
    response -= ndimage.gaussian_filter(slab, sigma * DOG_SIGMA_RATIO, truncate=GAUSSIAN_TRUNCATE)
    del slab
    if sign < 0:
        np.negative(response, out=response)
    core = response[start - low : stop - low]
    first_sample = (-start * core.shape[1] * core.shape[2]) % sample_stride
    sample = core.ravel()[first_sample::sample_stride].copy()

    # A maximum must be the largest value within a cube of side about the particle radius.
    size = 2 * max(1, int(round(radius_voxels / 2))) + 1
    peaks = ndimage.maximum_filter(response, size=size, mode="nearest")
    is_peak = (response == peaks) & (response > 0)
    is_peak[: start - low] = False
    is_peak[stop - low :] = False
    indices = np.argwhere(is_peak)
    responses = response[is_peak]
    refined = _refine_peaks(response, indices)
    refined[:, 0] += low
    return refined, responses, sample


def bin_volume(volume: np.ndarray, factor: int) -> np.ndarray:
    """Return the float32 mean of each block of ``factor``³ voxels of a (z, y, x) volume.

    Blocks on trailing faces that the shape does not fill are averaged over the voxels present.
    """
    if factor == 1:
        return np.asarray(volume, dtype=np.float32)
    summed = np.asarray(volume, dtype=np.float32)
    for axis, size in enumerate(summed.shape):
        summed = np.add.reduceat(summed, np.arange(0, size, factor), axis=axis)
    counts = [np.bincount(np.arange(size) // factor).astype(np.float32) for size in volume.shape]
    return summed / (counts[0][:, None, None] * counts[1][None, :, None] * counts[2][None, None, :])


def local_energy(volume: np.ndarray, voxel_size: float, bin_factor: int = 2, slab_depth: int = 32) -> np.ndarray:
    """Return the local power of the band-passed volume, averaged over blocks of ``bin_factor``³ voxels.

    The band-pass is a difference of Gaussians of widths ``ENERGY_BAND_ANGSTROM``. Squaring it
    makes every particle a bright blob, solid or hollow and whatever the sign of its contrast,
    so blob detection on this map finds particles that CTF filtering has turned into rings. The
    volume is filtered in z-slabs, so peak memory is a few float32 copies of one slab. Trailing
    voxels that do not fill a block are averaged over the voxels present.
    """
    if bin_factor < 1:
        raise ValueError(f"Invalid bin_factor {bin_factor}; expected at least 1.")
    slab_depth = max(bin_factor, slab_depth // bin_factor * bin_factor)
    inner_sigma, outer_sigma = (width / voxel_size for width in ENERGY_BAND_ANGSTROM)
    margin = int(math.ceil(GAUSSIAN_TRUNCATE * outer_sigma)) + 1
    depth = volume.shape[0]
    binned_shape = tuple(-(-size // bin_factor) for size in volume.shape)
    energy = np.empty(binned_shape, dtype=np.float32)
    for start in range(0, depth, slab_depth):
        stop = min(depth, start + slab_depth)
        low, high = max(0, start - margin), min(depth, stop + margin)
        slab = volume[low:high].astype(np.float32)
        band = ndimage.gaussian_filter(slab, inner_sigma, truncate=GAUSSIAN_TRUNCATE)
        band -= ndimage.gaussian_filter(slab, outer_sigma, truncate=GAUSSIAN_TRUNCATE)
        del slab
        core = band[start - low : stop - low]
        np.square(core, out=core)
        binned = bin_volume(core, bin_factor)
        first = start // bin_factor
        energy[first : first + binned.shape[0]] = binned
    return energy


def default_bin_factor(voxel_size: float, classes: Sequence[str]) -> int:
    """Return the largest binning that keeps the smallest class radius at least three binned voxels."""
    smallest = min(CLASS_BY_NAME[name].radius_angstrom for name in classes)
    return max(1, int(smallest // (3 * voxel_size)))


def pick_blobs(
    volume: np.ndarray,
    voxel_size: float,
    classes: Sequence[str] = CLASS_NAMES,
    min_score: float = 5.0,
    contrast: str = "bright",
    slab_depth: int = 32,
    suppress_across_classes: bool = True,
    feature: str = "density",
    bin_factor: int | None = None,
    reporter: ProgressReporter | None = None,
) -> Picks:
    """Find blobs at each class's size with a difference of Gaussians, then suppress non-maxima.

    For a class of radius r voxels the inner Gaussian has sigma r / sqrt(3), the scale at which
    the response to a solid sphere of radius r peaks. Scores are the response divided by its
    noise level (median absolute deviation over a sample of the volume), and picks need at least
    ``min_score``. Peaks are refined below one voxel by a parabola fit.

    ``feature`` "density" filters the volume itself. ``contrast`` is then "bright" when particles
    are brighter than the background and "dark" when darker, as in tomograms with raw cryo-EM
    contrast. ``feature`` "energy" filters ``local_energy`` of the volume binned ``bin_factor``
    times (default: ``default_bin_factor``), which finds hollow and CTF-filtered particles and
    ignores ``contrast``. The density is filtered in z-slabs of ``slab_depth`` voxels with
    margins, so peak memory is about four float32 arrays of (slab_depth + 2 * margin, ny, nx),
    where the margin is about 5 sigma plus r.
    Picks of one class closer than its radius are merged. With ``suppress_across_classes``, a
    pick is also dropped when it lies within the radius of a higher-scoring pick of another class.
    """
    volume = _check_volume(volume, voxel_size)
    if contrast not in CONTRASTS:
        raise ValueError(f"Invalid contrast {contrast!r}; expected 'bright' or 'dark'.")
    if feature not in FEATURES:
        raise ValueError(f"Invalid feature {feature!r}; expected 'density' or 'energy'.")
    if slab_depth < 1:
        raise ValueError(f"Invalid slab_depth {slab_depth}; expected at least 1 voxel.")
    unknown = [name for name in classes if name not in CLASS_BY_NAME]
    if unknown:
        raise ValueError(f"Unknown particle class {unknown[0]!r}; expected one of {', '.join(CLASS_NAMES)}.")
    reporter = reporter or NullReporter()

    if feature == "energy":
        bin_factor = default_bin_factor(voxel_size, classes) if bin_factor is None else bin_factor
        reporter.report("pick", 0.0, f"local energy, binned {bin_factor} times")
        source = local_energy(volume, voxel_size, bin_factor, slab_depth)
        sign = 1.0
    else:
        bin_factor = 1
        source = volume
        sign = 1.0 if contrast == "bright" else -1.0
    source_voxel_size = voxel_size * bin_factor
    depth = source.shape[0]
    slab_starts = list(range(0, depth, slab_depth))
    steps = len(classes) * len(slab_starts)
    # About a million sampled voxels estimate the noise level of each class's response.
    sample_stride = max(1, source.size // 1_000_000)

    all_positions, all_scores, all_names, all_radii = [], [], [], []
    for class_number, name in enumerate(classes):
        radius = CLASS_BY_NAME[name].radius_angstrom
        radius_voxels = radius / source_voxel_size
        sigma = radius_voxels / math.sqrt(3)
        indices_parts, response_parts, sample_parts = [], [], []
        for slab_number, start in enumerate(slab_starts):
            stop = min(depth, start + slab_depth)
            indices, responses, sample = _dog_maxima_in_slab(
                source, start, stop, sigma, radius_voxels, sign, sample_stride
            )
            indices_parts.append(indices)
            response_parts.append(responses)
            sample_parts.append(sample)
            done = class_number * len(slab_starts) + slab_number + 1
            reporter.report("pick", done / steps, f"{name}: slab {slab_number + 1} of {len(slab_starts)}")
        scores = np.concatenate(response_parts).astype(np.float64) / _robust_sigma(np.concatenate(sample_parts))
        strong = scores >= min_score
        positions = indices_to_angstrom(np.concatenate(indices_parts)[strong], voxel_size, bin_factor)
        scores = scores[strong]
        kept = suppress_non_maxima(positions, scores, radius)
        all_positions.append(positions[kept])
        all_scores.append(scores[kept])
        all_names.extend([name] * len(kept))
        all_radii.append(np.full(len(kept), radius))

    positions = np.concatenate(all_positions) if all_positions else np.empty((0, 3))
    scores = np.concatenate(all_scores) if all_scores else np.empty(0)
    names = np.array(all_names, dtype=object)
    if suppress_across_classes and len(classes) > 1:
        kept = suppress_non_maxima(positions, scores, np.concatenate(all_radii))
        positions, scores, names = positions[kept], scores[kept], names[kept]
    return Picks(positions=positions, scores=scores, class_names=[str(name) for name in names])


def find_candidates(
    volume: np.ndarray,
    voxel_size: float,
    min_score: float = 20.0,
    classes: Sequence[str] = CLASS_NAMES,
    bin_factor: int | None = None,
    reporter: ProgressReporter | None = None,
) -> Picks:
    """Propose particle positions for a classifier to label: blobs of local energy at every class size.

    Runs ``pick_blobs`` with ``feature="energy"`` and no suppression across classes, so a small
    particle beside a large one survives, then merges picks of any size closer than half the
    smallest class radius, keeping the higher score. The class names of the result are the
    sizes that found each pick, which is only a hint of the class.
    """
    picks = pick_blobs(
        volume,
        voxel_size,
        classes=classes,
        min_score=min_score,
        suppress_across_classes=False,
        feature="energy",
        bin_factor=bin_factor,
        reporter=reporter,
    )
    merge_distance = min(CLASS_BY_NAME[name].radius_angstrom for name in classes) / 2
    kept = suppress_non_maxima(picks.positions, picks.scores, merge_distance)
    names = [picks.class_names[index] for index in kept] if picks.class_names is not None else None
    return Picks(positions=picks.positions[kept], scores=picks.scores[kept], class_names=names)


# ---------------------------------------------------------------- template matching


def sample_rotations(count: int, seed: int = 0) -> np.ndarray:
    """Return ``count`` rotation matrices, the identity first and the rest uniformly random."""
    if count < 1:
        raise ValueError(f"Invalid rotation count {count}; expected at least 1.")
    random = Rotation.random(count - 1, random_state=seed).as_matrix() if count > 1 else np.empty((0, 3, 3))
    return np.concatenate([np.eye(3)[None], random.reshape(-1, 3, 3)])


def _odd_template(template: np.ndarray) -> np.ndarray:
    """Pad each even-length axis by one voxel of the template mean, so the template has a centre voxel."""
    padding = [(0, 1 - size % 2) for size in template.shape]
    return np.pad(template, padding, mode="constant", constant_values=float(template.mean()))


def _rotate_template(template: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    center = (np.array(template.shape) - 1) / 2
    # affine_transform maps output index o to input index matrix @ o + offset, so this rotates about the centre.
    inverse = matrix.T
    offset = center - inverse @ center
    return ndimage.affine_transform(template, inverse, offset=offset, order=1, mode="nearest")


def match_template(
    volume: np.ndarray,
    voxel_size: float,
    template: np.ndarray,
    rotations: np.ndarray | None = None,
    min_score: float = 0.3,
    min_distance_angstrom: float | None = None,
    class_name: str | None = None,
    contrast: str = "bright",
    bin_factor: int = 1,
    reporter: ProgressReporter | None = None,
) -> Picks:
    """Pick by normalised cross-correlation (NCC) of a template over rotations, keeping the best rotation.

    ``template`` is a (z, y, x) volume at the same voxel size, with the particle at its centre.
    ``rotations`` is an (r, 3, 3) array of rotation matrices acting on (z, y, x) and defaults to
    ``sample_rotations(24)``. The NCC at a voxel compares the template box centred there with the
    volume under it, so a score of 1 is a perfect match up to brightness and contrast. Peaks need
    at least ``min_score`` and are merged within ``min_distance_angstrom``, which defaults to half
    the template's smallest side. ``contrast`` "dark" matches a bright template to dark particles.
    With ``bin_factor`` b, the volume and the template are both binned b times first, which makes
    matching about b³ times faster at the cost of detail finer than b voxels.
    """
    volume = _check_volume(volume, voxel_size)
    template = np.asarray(template, dtype=np.float64)
    if template.ndim != 3 or any(size > limit for size, limit in zip(template.shape, volume.shape, strict=True)):
        raise ValueError(f"Template shape {template.shape} must be 3D and fit inside the volume {volume.shape}.")
    if template.std() == 0:
        raise ValueError("Template is constant; it needs contrast to match.")
    if contrast not in CONTRASTS:
        raise ValueError(f"Invalid contrast {contrast!r}; expected 'bright' or 'dark'.")
    if bin_factor < 1:
        raise ValueError(f"Invalid bin_factor {bin_factor}; expected at least 1.")
    if rotations is None:
        rotations = sample_rotations(24)
    rotations = np.asarray(rotations, dtype=np.float64).reshape(-1, 3, 3)
    reporter = reporter or NullReporter()
    if min_distance_angstrom is None:
        min_distance_angstrom = min(template.shape) / 2 * voxel_size
    template = _odd_template(bin_volume(template, bin_factor).astype(np.float64))
    unbinned_voxel_size = voxel_size
    voxel_size = voxel_size * bin_factor

    # float32 halves memory. Removing the mean first keeps the local variance (mean of squares
    # minus squared mean) from cancelling to noise in float32.
    data = bin_volume(volume, bin_factor) if bin_factor > 1 else volume.astype(np.float32)
    data -= data.mean(dtype=np.float64)
    if contrast == "dark":
        np.negative(data, out=data)
    box = template.shape
    count = template.size
    local_mean = ndimage.uniform_filter(data, size=box, mode="reflect")
    local_square = ndimage.uniform_filter(data * data, size=box, mode="reflect")
    local_sigma = np.sqrt(np.maximum(local_square - local_mean**2, 1e-6 * max(1e-12, float(data.var()))))
    del local_square, local_mean
    volume_spectrum = scipy.fft.rfftn(data)
    center = tuple(size // 2 for size in box)

    # NOTE: the whole volume is transformed at once, so peak memory is an estimated ten float32 copies
    # of it (about 3 GB for 630 x 630 x 184 voxels). Unlike pick_blobs, it does not work in slabs.
    best = np.full(data.shape, -np.inf, dtype=np.float32)
    best_rotation = np.zeros(data.shape, dtype=np.int32)
    for index, matrix in enumerate(rotations):
        rotated = _rotate_template(template, matrix)
        normalised = (rotated - rotated.mean()) / (rotated.std() or 1.0)
        padded = np.zeros(data.shape, dtype=np.float32)
        padded[: box[0], : box[1], : box[2]] = normalised
        # Put the template centre at index 0 so a correlation peak sits at the particle centre.
        padded = np.roll(padded, [-offset for offset in center], axis=(0, 1, 2))
        # NOTE: the FFT correlation wraps around the volume edges, so scores within half a template
        # of a face mix in voxels from the opposite face.
        correlation = scipy.fft.irfftn(volume_spectrum * np.conj(scipy.fft.rfftn(padded)), s=data.shape)
        score = correlation / (count * local_sigma)
        better = score > best
        best[better] = score[better]
        best_rotation[better] = index
        reporter.report("template matching", (index + 1) / len(rotations), f"rotation {index + 1} of {len(rotations)}")

    min_distance_voxels = min_distance_angstrom / voxel_size
    size = 2 * max(1, int(round(min_distance_voxels / 2))) + 1
    is_peak = (best == ndimage.maximum_filter(best, size=size, mode="nearest")) & (best >= min_score)
    indices = np.argwhere(is_peak)
    scores = best[is_peak]
    positions = indices_to_angstrom(indices, unbinned_voxel_size, bin_factor)
    kept = suppress_non_maxima(positions, scores, min_distance_angstrom)
    picked_rotations = rotations[best_rotation[is_peak][kept]]
    names = [class_name] * len(kept) if class_name else None
    return Picks(positions=positions[kept], scores=scores[kept], class_names=names, rotations=picked_rotations)
