import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from analysis.cryoet.metrics import score_picks
from analysis.cryoet.pick import Picks, _rotate_template, pick, pick_blobs, sample_rotations, suppress_non_maxima
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
