import numpy as np
import pytest

from analysis.cryoet.classes import CLASS_NAMES
from analysis.cryoet.spatial import SpatialMap

BOUNDS = np.array([[0.0, 0, 0], [6300, 6300, 1840]])


def random_map(count=500, seed=0, embeddings=False):
    rng = np.random.default_rng(seed)
    positions = rng.uniform(BOUNDS[0], BOUNDS[1], size=(count, 3))
    return SpatialMap(
        ids=np.arange(count) * 3 + 7,
        class_indices=rng.integers(0, len(CLASS_NAMES), count),
        positions=positions,
        scores=rng.uniform(size=count),
        bounds=BOUNDS,
        embeddings=rng.normal(size=(count, 8)) if embeddings else None,
    )


def test_spatial_map_save_load_round_trip(tmp_path):
    original = random_map(embeddings=True)
    path = tmp_path / "map.npz"
    original.save(path)
    loaded = SpatialMap.load(path)
    np.testing.assert_array_equal(loaded.ids, original.ids)
    np.testing.assert_array_equal(loaded.class_indices, original.class_indices)
    np.testing.assert_array_equal(loaded.positions, original.positions)
    np.testing.assert_array_equal(loaded.scores, original.scores)
    np.testing.assert_array_equal(loaded.bounds, original.bounds)
    np.testing.assert_array_equal(loaded.embeddings, original.embeddings)
    assert loaded.class_names == CLASS_NAMES


def test_spatial_map_without_embeddings_round_trip(tmp_path):
    path = tmp_path / "map.npz"
    random_map().save(path)
    assert SpatialMap.load(path).embeddings is None


def test_spatial_map_class_tree_matches_members():
    spatial_map = random_map()
    ribosome = spatial_map.class_index("ribosome")
    members = spatial_map.class_members(ribosome)
    assert np.all(spatial_map.class_indices[members] == ribosome)
    np.testing.assert_array_equal(spatial_map.class_tree(ribosome).data, spatial_map.positions[members])
    assert spatial_map.tree.n == len(spatial_map)


def test_spatial_map_row_of_id():
    spatial_map = random_map()
    assert spatial_map.row_of(10) == 1
    with pytest.raises(KeyError):
        spatial_map.row_of(8)


def test_spatial_map_from_particles_names():
    spatial_map = SpatialMap.from_particles(["ribosome", "apo-ferritin"], np.zeros((2, 3)), BOUNDS)
    assert spatial_map.class_indices.tolist() == [CLASS_NAMES.index("ribosome"), 0]
    with pytest.raises(ValueError, match="'ribosomes'"):
        SpatialMap.from_particles(["ribosomes"], np.zeros((1, 3)), BOUNDS)


def test_spatial_map_rejects_mismatched_rows():
    with pytest.raises(ValueError, match="positions has 2 rows"):
        SpatialMap(ids=[1], class_indices=[0], positions=np.zeros((2, 3)), scores=[1.0], bounds=BOUNDS)
    with pytest.raises(ValueError, match="unique"):
        SpatialMap(ids=[1, 1], class_indices=[0, 0], positions=np.zeros((2, 3)), scores=[1.0, 1.0], bounds=BOUNDS)
