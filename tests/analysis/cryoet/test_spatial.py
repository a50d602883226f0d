import pickle

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from analysis.cryoet.classes import CLASS_NAMES
from analysis.cryoet.spatial import LinkageForest, SpatialMap

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


def brute_nearest(points_a, points_b, same_class):
    pairwise = np.linalg.norm(points_a[:, None] - points_b[None], axis=2)
    if same_class:
        np.fill_diagonal(pairwise, np.inf)
    return pairwise.min(axis=1)


def test_spatial_map_nearest_distances_brute_force():
    spatial_map = random_map()
    for index_a, index_b in ((0, 3), (3, 0), (2, 2)):
        points_a = spatial_map.positions[spatial_map.class_members(index_a)]
        points_b = spatial_map.positions[spatial_map.class_members(index_b)]
        np.testing.assert_allclose(
            spatial_map.nearest_distances(index_a, index_b), brute_nearest(points_a, points_b, index_a == index_b)
        )


def test_spatial_map_saves_precomputed_results(tmp_path):
    original = random_map()
    path = tmp_path / "map.npz"
    original.save(path)
    loaded = SpatialMap.load(path)
    assert loaded._nearest.keys() == original._nearest.keys()
    assert len(loaded._nearest) == len(CLASS_NAMES) ** 2
    for key, distances in original._nearest.items():
        np.testing.assert_array_equal(loaded._nearest[key], distances)
    assert loaded._csr_nulls.keys() == original._csr_nulls.keys()
    for key, null in original._csr_nulls.items():
        np.testing.assert_array_equal(loaded._csr_nulls[key].sample, null.sample)
        np.testing.assert_array_equal(loaded._csr_nulls[key].simulated, null.simulated)
    for class_index, forest in original._forests.items():
        np.testing.assert_array_equal(loaded._forests[class_index].order, forest.order)
        np.testing.assert_array_equal(loaded._forests[class_index].reachability, forest.reachability)
        assert loaded._forests[class_index].max_distance == forest.max_distance


def test_spatial_map_save_without_precompute(tmp_path):
    path = tmp_path / "map.npz"
    original = random_map()
    original.nearest_distances(1, 2)
    original.save(path, precompute=False)
    loaded = SpatialMap.load(path)
    assert list(loaded._nearest) == [(1, 2)]
    assert loaded._forests == {}


def test_spatial_map_loads_format_version_1(tmp_path):
    original = random_map()
    path = tmp_path / "map.npz"
    np.savez(
        path,
        format_version=np.array(1),
        ids=original.ids,
        class_indices=original.class_indices,
        positions=original.positions,
        scores=original.scores,
        bounds=original.bounds,
        class_names=np.array(CLASS_NAMES),
    )
    loaded = SpatialMap.load(path)
    np.testing.assert_array_equal(loaded.positions, original.positions)
    assert loaded._nearest == {}


def test_spatial_map_rejects_bad_distance_table(tmp_path):
    original = random_map()
    path = tmp_path / "map.npz"
    original.save(path, precompute=False)
    with np.load(path) as data:
        arrays = dict(data)
    arrays["nearest_distances"] = np.zeros((3, 6))
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="nearest_distances table of shape"):
        SpatialMap.load(path)


def test_spatial_map_arrays_read_only_copies():
    positions = np.zeros((2, 3))
    spatial_map = SpatialMap(ids=[1, 2], class_indices=[0, 1], positions=positions, scores=[1.0, 1.0], bounds=BOUNDS)
    with pytest.raises(ValueError, match="read-only"):
        spatial_map.positions[0, 0] = 5.0
    positions[0, 0] = 5.0
    assert spatial_map.positions[0, 0] == 0.0


def test_linkage_forest_order_and_reachability():
    spatial_map = random_map()
    forest = spatial_map.linkage_forest(0, 400.0)
    member_count = len(spatial_map.class_members(0))
    np.testing.assert_array_equal(np.sort(forest.order), np.arange(member_count))
    finite = forest.reachability[np.isfinite(forest.reachability)]
    assert np.all(finite <= 400.0)
    assert forest.reachability[0] == np.inf
    assert len(forest.cluster_starts(200.0)) == np.count_nonzero(forest.reachability > 200.0)
    with pytest.raises(ValueError, match="exceeds"):
        forest.cluster_starts(500.0)


def test_linkage_forest_runs_are_components():
    rng = np.random.default_rng(2)
    points = rng.uniform(0, 1000, size=(300, 3))
    forest = LinkageForest.build(points, 150.0)
    pairwise = np.linalg.norm(points[:, None] - points[None], axis=2)
    for distance in (40.0, 90.0, 150.0):
        _, expected = connected_components(csr_matrix(pairwise <= distance), directed=False)
        starts = forest.cluster_starts(distance)
        run_labels = np.empty(len(points), dtype=np.int64)
        run_labels[forest.order] = np.cumsum(np.isin(np.arange(len(points)), starts)) - 1
        # Same partition: each run maps to one component and back.
        assert len(set(zip(run_labels, expected, strict=True))) == len(starts) == expected.max() + 1


def test_spatial_map_rejects_bad_forest(tmp_path):
    original = random_map()
    path = tmp_path / "map.npz"
    original.linkage_forest(0, 300.0)
    original.save(path, precompute=False)
    with np.load(path) as data:
        arrays = dict(data)
    arrays["forest_orders"] = np.zeros_like(arrays["forest_orders"])
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="invalid forest for class 0"):
        SpatialMap.load(path)


def test_spatial_map_precomputed_csr_equals_on_demand():
    precomputed = random_map()
    precomputed.precompute(csr_simulations=9)
    for index_a, index_b in ((0, 3), (3, 3), (5, 1)):
        sample, simulated = precomputed.csr_null(index_a, index_b, max_sample=2000, seed=0, simulations=9)
        on_demand = random_map()
        expected_sample, expected_simulated = on_demand.csr_null(index_a, index_b, 2000, 0, 9)
        np.testing.assert_array_equal(sample, expected_sample)
        np.testing.assert_array_equal(simulated, expected_simulated)
        assert len(simulated) == 9


def test_spatial_map_csr_null_sample_and_seed():
    spatial_map = random_map(count=2000)
    sample, simulated = spatial_map.csr_null(1, 2, max_sample=30, seed=4, simulations=5)
    other_sample, other_simulated = spatial_map.csr_null(1, 2, max_sample=30, seed=5, simulations=5)
    assert len(sample) == 30
    assert len(np.unique(sample)) == 30
    assert not np.array_equal(sample, other_sample)
    assert not np.array_equal(simulated, other_simulated)


def test_spatial_map_pickle_round_trip():
    original = random_map()
    original.nearest_distances(0, 1)
    copy = pickle.loads(pickle.dumps(original))
    np.testing.assert_array_equal(copy.positions, original.positions)
    np.testing.assert_array_equal(copy.nearest_distances(0, 1), original.nearest_distances(0, 1))
    assert copy.cache_lock is not original.cache_lock
    assert not copy.positions.flags.writeable
