import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from analysis.cryoet.metrics import score_picks
from analysis.cryoet.pick import (
    Picks,
    _rotate_template,
    bin_volume,
    find_candidates,
    match_template,
    pick,
    pick_blobs,
    sample_rotations,
    suppress_non_maxima,
)
from analysis.progress import RecordingReporter

VOXEL_SIZE = 10.0
SHAPE = (48, 80, 80)  # z, y, x


def sphere_volume(centers_xyz, radius_voxels, shape=SHAPE, noise=0.3, seed=0, contrast=1.0):
    """Return a (z, y, x) volume of smoothed solid spheres at voxel centres given as x, y, z, plus noise."""
    z, y, x = np.indices(shape)
    volume = np.zeros(shape)
    for cx, cy, cz in centers_xyz:
        volume[(x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= radius_voxels**2] = contrast
    volume = ndimage.gaussian_filter(volume, 1.0)
    return volume + np.random.default_rng(seed).normal(scale=noise, size=shape)


def spaced_centers(count, margin, min_spacing, shape=SHAPE, seed=1):
    rng = np.random.default_rng(seed)
    centers = []
    while len(centers) < count:
        candidate = rng.integers(margin, np.array(shape[::-1]) - margin)
        if all(np.linalg.norm(candidate - other) >= min_spacing for other in centers):
            centers.append(candidate)
    return np.array(centers, dtype=float)


def test_dog_recovers_blob_centres():
    # apo-ferritin radius 60 A is 6 voxels at 10 A per voxel.
    centers = spaced_centers(10, margin=8, min_spacing=16)
    volume = sphere_volume(centers, 6)
    picks = pick(volume, VOXEL_SIZE, classes=["apo-ferritin"])
    truth = centers * VOXEL_SIZE  # x, y, z voxel indices to angstroms

    distances, _ = cKDTree(picks.positions).query(truth)
    found = distances <= 30.0  # half the apo-ferritin radius
    assert found.sum() >= 9
    assert np.mean(distances[found]) <= 10.0
    assert len(picks) <= 12
    assert set(picks.class_names) == {"apo-ferritin"}

    score = score_picks(picks.by_class(), {"apo-ferritin": truth})
    assert score.classes[0].recall >= 0.9


def test_dog_dark_contrast():
    centers = spaced_centers(6, margin=8, min_spacing=16, seed=2)
    volume = sphere_volume(centers, 6, contrast=-1.0, seed=3)
    bright = pick_blobs(volume, VOXEL_SIZE, classes=["apo-ferritin"], contrast="bright")
    dark = pick_blobs(volume, VOXEL_SIZE, classes=["apo-ferritin"], contrast="dark")
    distances, _ = cKDTree(dark.positions).query(centers * VOXEL_SIZE)
    assert np.all(distances <= 30.0)
    if len(bright):
        wrong_distances, _ = cKDTree(bright.positions).query(centers * VOXEL_SIZE)
        assert np.count_nonzero(wrong_distances <= 30.0) <= 1


def test_dog_slabs_match_whole_volume():
    centers = spaced_centers(8, margin=8, min_spacing=16, seed=4)
    volume = sphere_volume(centers, 6, seed=5)
    whole = pick_blobs(volume, VOXEL_SIZE, classes=["apo-ferritin"], slab_depth=SHAPE[0])
    reporter = RecordingReporter()
    slabs = pick_blobs(volume, VOXEL_SIZE, classes=["apo-ferritin"], slab_depth=5, reporter=reporter)
    order_whole = np.lexsort(whole.positions.T)
    order_slabs = np.lexsort(slabs.positions.T)
    np.testing.assert_array_equal(whole.positions[order_whole], slabs.positions[order_slabs])
    np.testing.assert_allclose(whole.scores[order_whole], slabs.scores[order_slabs], rtol=1e-5)
    assert len(reporter.reports) == 10
    assert reporter.reports[-1][1] == 1.0


def test_dog_assigns_size_classes():
    # A ribosome (radius 15 voxels) and apo-ferritins (radius 6 voxels) far from it.
    shape = (48, 96, 96)
    big = sphere_volume([(30, 48, 24)], 15, shape=shape, noise=0.0)
    small = sphere_volume([(75, 20, 24), (75, 75, 24)], 6, shape=shape, noise=0.0)
    volume = big + small + np.random.default_rng(6).normal(scale=0.2, size=shape)
    picks = pick_blobs(volume, VOXEL_SIZE, classes=["apo-ferritin", "ribosome"])
    tree = cKDTree(picks.positions)
    _, ribosome_index = tree.query([300.0, 480, 240])
    assert picks.class_names[ribosome_index] == "ribosome"
    _, ferritin_index = tree.query([750.0, 200, 240])
    assert picks.class_names[ferritin_index] == "apo-ferritin"


def test_suppress_non_maxima_keeps_best():
    positions = np.array([[0.0, 0, 0], [5, 0, 0], [20, 0, 0]])
    scores = np.array([1.0, 2.0, 0.5])
    assert suppress_non_maxima(positions, scores, 10.0).tolist() == [1, 2]
    assert suppress_non_maxima(positions, scores, 30.0).tolist() == [1]


def ellipsoid_template(size=15):
    z, y, x = np.indices((size, size, size)) - size // 2
    return ndimage.gaussian_filter(((x / 6.0) ** 2 + (y / 3.0) ** 2 + (z / 2.0) ** 2 <= 1).astype(float), 0.7)


def test_template_matching_finds_rotated_copies():
    rotations = sample_rotations(12, seed=3)
    template = ellipsoid_template()
    volume = np.zeros((40, 64, 64))
    truth_zyx = [(12, 16, 16), (26, 44, 20), (20, 30, 48)]
    for (cz, cy, cx), rotation_index in zip(truth_zyx, [0, 5, 9], strict=True):
        rotated = _rotate_template(template, rotations[rotation_index])
        volume[cz - 7 : cz + 8, cy - 7 : cy + 8, cx - 7 : cx + 8] += rotated
    volume += np.random.default_rng(7).normal(scale=0.05, size=volume.shape)

    picks = pick(
        volume, VOXEL_SIZE, classes=["thyroglobulin"], method="template", template=template, rotations=rotations
    )
    truth = np.array(truth_zyx, dtype=float)[:, ::-1] * VOXEL_SIZE
    distances, _ = cKDTree(picks.positions).query(truth)
    assert np.all(distances <= 10.0)
    assert np.all(picks.scores[:3] > 0.8)
    assert picks.class_names[0] == "thyroglobulin"
    assert picks.rotations.shape == (len(picks), 3, 3)


def test_pick_rejects_bad_input():
    with pytest.raises(ValueError, match="3D volume"):
        pick(np.zeros((4, 4)), VOXEL_SIZE)
    with pytest.raises(ValueError, match="voxel_size -1"):
        pick(np.zeros((4, 4, 4)), -1)
    with pytest.raises(ValueError, match="'ribosomes'"):
        pick(np.zeros((4, 4, 4)), VOXEL_SIZE, classes=["ribosomes"])
    with pytest.raises(ValueError, match="method 'cnn'"):
        pick(np.zeros((4, 4, 4)), VOXEL_SIZE, method="cnn")
    with pytest.raises(ValueError, match="contrast 'grey'"):
        pick(np.zeros((4, 4, 4)), VOXEL_SIZE, contrast="grey")


def test_picks_by_class_without_names():
    with pytest.raises(ValueError, match="no class names"):
        Picks(positions=np.zeros((1, 3)), scores=np.ones(1)).by_class()


def test_bin_volume_averages_blocks():
    volume = np.arange(5 * 4 * 3, dtype=np.float32).reshape(5, 4, 3)
    binned = bin_volume(volume, 2)
    assert binned.shape == (3, 2, 2)
    assert binned[0, 0, 0] == pytest.approx(volume[:2, :2, :2].mean())
    # Trailing blocks average only the voxels present.
    assert binned[2, 1, 1] == pytest.approx(volume[4:, 2:, 2:].mean())
    np.testing.assert_array_equal(bin_volume(volume, 1), volume)


def test_dog_peaks_refined_below_a_voxel():
    # A Gaussian blob centred between voxels: the refined pick lands within 0.15 voxel of it.
    centre_xyz = np.array([40.3, 39.6, 24.4])
    z, y, x = np.indices(SHAPE, dtype=float)
    distance_squared = (x - centre_xyz[0]) ** 2 + (y - centre_xyz[1]) ** 2 + (z - centre_xyz[2]) ** 2
    volume = np.exp(-distance_squared / (2 * 3.0**2))
    picks = pick_blobs(volume, VOXEL_SIZE, classes=["apo-ferritin"], min_score=0.0)
    best = picks.positions[np.argmax(picks.scores)]
    assert np.linalg.norm(best / VOXEL_SIZE - centre_xyz) < 0.15


def test_energy_finds_hollow_shells():
    # Thin hollow shells of radius 10 voxels: the energy peaks at each shell's centre.
    centers = spaced_centers(4, margin=14, min_spacing=26, shape=(48, 96, 96), seed=4)
    z, y, x = np.indices((48, 96, 96))
    volume = np.zeros((48, 96, 96))
    for cx, cy, cz in centers:
        distance = np.sqrt((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2)
        volume[np.abs(distance - 10) <= 1] = 1.0
    volume = ndimage.gaussian_filter(volume, 1.0) + np.random.default_rng(5).normal(scale=0.2, size=volume.shape)
    truth = centers * VOXEL_SIZE

    candidates = find_candidates(volume, VOXEL_SIZE, min_score=5.0, classes=["virus-like-particle"])
    distances, _ = cKDTree(candidates.positions).query(truth)
    assert np.all(distances <= 135 / 2)
    assert len(candidates) <= 2 * len(truth)


def test_find_candidates_keeps_small_beside_large():
    # A small and a large sphere just apart: both centres survive, merged only within 30 Å.
    centers = np.array([[24.0, 40.0, 24.0], [48.0, 40.0, 24.0]])
    z, y, x = np.indices(SHAPE)
    volume = np.zeros(SHAPE)
    for (cx, cy, cz), radius in zip(centers, (6, 13), strict=True):
        volume[(x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= radius**2] = 1.0
    volume = ndimage.gaussian_filter(volume, 1.0) + np.random.default_rng(6).normal(scale=0.1, size=SHAPE)

    candidates = find_candidates(volume, VOXEL_SIZE, min_score=5.0)
    distances, _ = cKDTree(candidates.positions).query(centers * VOXEL_SIZE)
    assert distances[0] <= 30.0
    assert distances[1] <= 75.0
    pairwise = cKDTree(candidates.positions).query_pairs(30.0)
    assert not pairwise


def test_template_matching_binned_finds_copies():
    template = np.zeros((13, 13, 13))
    template[3:10, 5:8, 5:8] = 1.0
    template = ndimage.gaussian_filter(template, 0.8)
    volume = np.random.default_rng(7).normal(scale=0.05, size=SHAPE)
    centres_zyx = [(16, 20, 20), (30, 50, 56)]
    for cz, cy, cx in centres_zyx:
        volume[cz - 6 : cz + 7, cy - 6 : cy + 7, cx - 6 : cx + 7] += template
    picks = match_template(volume, VOXEL_SIZE, template, rotations=sample_rotations(1), min_score=0.5, bin_factor=2)
    truth = np.array(centres_zyx, dtype=float)[:, ::-1] * VOXEL_SIZE
    distances, _ = cKDTree(picks.positions).query(truth)
    assert np.all(distances <= 15.0)
    assert len(picks) == 2
