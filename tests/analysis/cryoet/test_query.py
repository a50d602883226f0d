import dataclasses
import json
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from analysis.cryoet.classes import CLASS_NAMES
from analysis.cryoet.query import (
    TOOLS,
    ClustersParams,
    NearestNeighborParams,
    NeighborsParams,
    QueryError,
    RegionCompositionParams,
    build_params,
    clusters,
    nearest_neighbor_distances,
    neighbors,
    region_composition,
    run_tool,
    tool_specs,
)
from analysis.cryoet.spatial import SpatialMap

BOUNDS = np.array([[0.0, 0, 0], [4000, 3000, 1000]])


def random_map(count=3000, seed=1):
    rng = np.random.default_rng(seed)
    return SpatialMap(
        ids=np.arange(count) + 100,
        class_indices=rng.integers(0, len(CLASS_NAMES), count),
        positions=rng.uniform(BOUNDS[0], BOUNDS[1], size=(count, 3)),
        scores=rng.uniform(size=count),
        bounds=BOUNDS,
    )


def test_neighbors_matches_brute_force_point():
    spatial_map = random_map()
    point = [1000.0, 1500.0, 400.0]
    result = neighbors(spatial_map, NeighborsParams(radius_angstrom=300.0, point=point))
    distances = np.linalg.norm(spatial_map.positions - point, axis=1)
    expected = spatial_map.ids[np.argsort(distances)][: np.count_nonzero(distances <= 300)]
    assert result["count"] == len(expected)
    assert [item["id"] for item in result["particles"]] == expected.tolist()
    assert result["particles"][0]["distance_angstrom"] == pytest.approx(distances.min())
    json.dumps(result)


def test_neighbors_of_particle_with_class_filter():
    spatial_map = random_map()
    ribosome = CLASS_NAMES.index("ribosome")
    center = spatial_map.positions[10]
    result = neighbors(spatial_map, NeighborsParams(radius_angstrom=500.0, particle_id=110, class_name="ribosome"))
    distances = np.linalg.norm(spatial_map.positions - center, axis=1)
    mask = (distances <= 500) & (spatial_map.class_indices == ribosome)
    mask[10] = False
    expected = spatial_map.ids[mask][np.argsort(distances[mask])]
    assert [item["id"] for item in result["particles"]] == expected.tolist()
    assert all(item["class"] == "ribosome" for item in result["particles"])
    assert 110 not in [item["id"] for item in result["particles"]]


def test_neighbors_limit_truncates():
    result = neighbors(random_map(), NeighborsParams(radius_angstrom=5000.0, point=[0.0, 0, 0], limit=5))
    assert len(result["particles"]) == 5
    assert result["truncated"] is True
    assert result["count"] == 3000


def test_region_composition_box_matches_brute_force():
    spatial_map = random_map()
    low, high = np.array([500.0, 200, 100]), np.array([2500.0, 2000, 900])
    result = region_composition(
        spatial_map, RegionCompositionParams(shape="box", box_min=low.tolist(), box_max=high.tolist())
    )
    inside = np.all((spatial_map.positions >= low) & (spatial_map.positions <= high), axis=1)
    expected = np.bincount(spatial_map.class_indices[inside], minlength=6)
    assert [item["count"] for item in result["classes"]] == expected.tolist()
    volume_um3 = 2000 * 1800 * 800 / 1e12
    assert result["volume_um3"] == pytest.approx(volume_um3)
    assert result["classes"][0]["density_per_um3"] == pytest.approx(expected[0] / volume_um3)
    assert result["classes"][0]["fraction"] == pytest.approx(expected[0] / inside.sum())


def test_region_composition_box_clipped_to_bounds():
    result = region_composition(
        random_map(), RegionCompositionParams(shape="box", box_min=[-1000.0, 0, 0], box_max=[1000.0, 3000, 1000])
    )
    assert result["volume_um3"] == pytest.approx(1000 * 3000 * 1000 / 1e12)


def test_region_composition_sphere_matches_brute_force():
    spatial_map = random_map()
    center = np.array([2000.0, 1500, 500])
    result = region_composition(
        spatial_map, RegionCompositionParams(shape="sphere", center=center.tolist(), radius_angstrom=400.0)
    )
    inside = np.linalg.norm(spatial_map.positions - center, axis=1) <= 400
    assert [item["count"] for item in result["classes"]] == np.bincount(
        spatial_map.class_indices[inside], minlength=6
    ).tolist()
    assert result["volume_um3"] == pytest.approx(4 / 3 * math.pi * 400**3 / 1e12)
    assert result["volume_estimated"] is False


def test_region_composition_sphere_at_corner_estimates_volume():
    result = region_composition(
        random_map(), RegionCompositionParams(shape="sphere", center=[0.0, 0, 0], radius_angstrom=400.0)
    )
    # One eighth of the sphere lies inside the bounds.
    assert result["volume_um3"] == pytest.approx(4 / 3 * math.pi * 400**3 / 8 / 1e12, rel=0.05)
    assert result["volume_estimated"] is True


def test_region_composition_tomogram():
    spatial_map = random_map()
    result = region_composition(spatial_map, RegionCompositionParams())
    assert result["count"] == 3000
    assert result["volume_um3"] == pytest.approx(4000 * 3000 * 1000 / 1e12)
    assert sum(item["fraction"] for item in result["classes"]) == pytest.approx(1.0)


def test_nearest_neighbor_distances_brute_force():
    spatial_map = random_map()
    index_a = CLASS_NAMES.index("ribosome")
    index_b = CLASS_NAMES.index("apo-ferritin")
    result = nearest_neighbor_distances(
        spatial_map, NearestNeighborParams(class_a="ribosome", class_b="apo-ferritin", simulations=19)
    )
    points_a = spatial_map.positions[spatial_map.class_indices == index_a]
    points_b = spatial_map.positions[spatial_map.class_indices == index_b]
    expected = np.linalg.norm(points_a[:, None] - points_b[None], axis=2).min(axis=1)
    np.testing.assert_allclose(result["distances_angstrom"], expected)
    assert result["median_angstrom"] == pytest.approx(np.median(expected))
    assert sum(result["histogram"]["counts"]) == len(points_a)
    json.dumps(result)


def test_nearest_neighbor_same_class_skips_self():
    spatial_map = random_map()
    index = CLASS_NAMES.index("thyroglobulin")
    result = nearest_neighbor_distances(spatial_map, NearestNeighborParams(class_a="thyroglobulin", simulations=0))
    points = spatial_map.positions[spatial_map.class_indices == index]
    pairwise = np.linalg.norm(points[:, None] - points[None], axis=2)
    np.fill_diagonal(pairwise, np.inf)
    np.testing.assert_allclose(result["distances_angstrom"], pairwise.min(axis=1))
    assert result["csr"]["verdict"] is None


def clustered_map(seed=3):
    rng = np.random.default_rng(seed)
    centers = rng.uniform(BOUNDS[0] + 200, BOUNDS[1] - 200, size=(40, 3))
    positions = (centers[:, None, :] + rng.normal(scale=30.0, size=(40, 10, 3))).reshape(-1, 3)
    return SpatialMap.from_particles(["apo-ferritin"] * len(positions), positions, BOUNDS)


def uniform_map(seed=4):
    rng = np.random.default_rng(seed)
    positions = rng.uniform(BOUNDS[0], BOUNDS[1], size=(400, 3))
    return SpatialMap.from_particles(["apo-ferritin"] * len(positions), positions, BOUNDS)


def test_csr_clustered_points():
    result = nearest_neighbor_distances(clustered_map(), NearestNeighborParams(class_a="apo-ferritin", seed=7))
    assert result["csr"]["verdict"] == "clustered"
    assert result["csr"]["p_value"] < 0.05


def test_csr_uniform_points_random():
    result = nearest_neighbor_distances(uniform_map(seed=0), NearestNeighborParams(class_a="apo-ferritin", seed=7))
    assert result["csr"]["verdict"] == "random"
    low, high = result["csr"]["envelope_angstrom"]
    assert low <= result["csr"]["observed_mean_angstrom"] <= high


def test_csr_false_alarm_rate_on_uniform_maps():
    # At a 0.05 level about one uniform map in 20 is called non-random, so allow 2 in 10.
    verdicts = [
        nearest_neighbor_distances(uniform_map(seed=seed), NearestNeighborParams(class_a="apo-ferritin", seed=7))[
            "csr"
        ]["verdict"]
        for seed in range(10)
    ]
    assert verdicts.count("random") >= 8


def test_csr_lattice_points_dispersed():
    grid = np.stack(np.meshgrid(np.arange(250, 4000, 500), np.arange(250, 3000, 500), [250.0, 750.0]), -1)
    positions = grid.reshape(-1, 3).astype(float)
    spatial_map = SpatialMap.from_particles(["ribosome"] * len(positions), positions, BOUNDS)
    result = nearest_neighbor_distances(spatial_map, NearestNeighborParams(class_a="ribosome"))
    assert result["csr"]["verdict"] == "dispersed"


def brute_force_components(points, distance):
    count = len(points)
    labels = list(range(count))

    def find(index):
        while labels[index] != index:
            index = labels[index]
        return index

    pairwise = np.linalg.norm(points[:, None] - points[None], axis=2)
    for first, second in zip(*np.nonzero(pairwise <= distance), strict=True):
        labels[find(first)] = find(second)
    groups = {}
    for index in range(count):
        groups.setdefault(find(index), []).append(index)
    return sorted(sorted(group) for group in groups.values())


def test_clusters_match_brute_force():
    spatial_map = random_map(count=1500, seed=5)
    index = CLASS_NAMES.index("ribosome")
    result = clusters(
        spatial_map, ClustersParams(class_name="ribosome", link_distance_angstrom=250.0, min_size=1, limit=10_000)
    )
    rows = np.flatnonzero(spatial_map.class_indices == index)
    expected = brute_force_components(spatial_map.positions[rows], 250.0)
    expected_ids = sorted(sorted(spatial_map.ids[rows[group]].tolist()) for group in expected)
    assert sorted(cluster["particle_ids"] for cluster in result["clusters"]) == expected_ids
    assert result["cluster_count"] == len(expected)
    largest = result["clusters"][0]
    member_positions = spatial_map.positions[np.isin(spatial_map.ids, largest["particle_ids"])]
    np.testing.assert_allclose(largest["centroid"], member_positions.mean(axis=0))
    np.testing.assert_allclose(largest["extent_angstrom"], np.ptp(member_positions, axis=0))


def test_clusters_min_size_filters():
    result = clusters(clustered_map(), ClustersParams(class_name="apo-ferritin", link_distance_angstrom=150.0))
    assert result["cluster_count"] >= 30
    assert all(cluster["size"] >= 2 for cluster in result["clusters"])
    assert result["clustered_particle_count"] + result["unclustered_particle_count"] == 400


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("neighbors", {"radius_angstrom": -5, "point": [0, 0, 0]}, "radius_angstrom -5"),
        ("neighbors", {"radius_angstrom": 5}, "exactly one of point or particle_id"),
        ("neighbors", {"radius_angstrom": 5, "particle_id": 99999}, "Particle 99999 not found"),
        ("neighbors", {"radius_angstrom": 5, "point": [0, 0]}, "point"),
        ("neighbors", {"radius_angstrom": "far", "point": [0, 0, 0]}, "radius_angstrom 'far'"),
        ("neighbors", {"radius_angstrom": 5, "point": [0, 0, 0], "class_name": "ribosomes"}, "'ribosomes'"),
        ("region_composition", {"shape": "cube"}, "shape 'cube'"),
        ("region_composition", {"shape": "box", "box_min": [5, 5, 5], "box_max": [1, 9, 9]}, "box_max"),
        ("nearest_neighbor_distances", {}, "Missing parameter 'class_a'"),
        ("nearest_neighbor_distances", {"class_a": "ribosome", "significance": 2}, "significance 2"),
        ("clusters", {"class_name": "ribosome", "link_distance_angstrom": 0}, "link_distance_angstrom 0"),
        ("clusters", {"class_name": "ribosome", "link_distance_angstrom": 5, "colour": 1}, "'colour'"),
        ("teleport", {}, "Unknown tool 'teleport'"),
    ],
)
def test_run_tool_rejects_invalid(tool, arguments, message):
    with pytest.raises(QueryError, match=message):
        run_tool(random_map(count=100), tool, arguments)


def test_tool_specs_cover_registry():
    specs = tool_specs(CLASS_NAMES)
    assert [spec["function"]["name"] for spec in specs] == list(TOOLS)
    neighbors_schema = specs[0]["function"]["parameters"]
    assert neighbors_schema["required"] == ["radius_angstrom"]
    assert neighbors_schema["properties"]["class_name"]["enum"] == list(CLASS_NAMES)
    assert neighbors_schema["properties"]["point"]["type"] == "array"
    json.dumps(specs)


def test_build_params_converts_json_numbers():
    params = build_params("clusters", {"class_name": "ribosome", "link_distance_angstrom": 300, "min_size": 3.0})
    assert params == ClustersParams(class_name="ribosome", link_distance_angstrom=300.0, min_size=3)


# ---------------------------------------------------------------- memoised results


def test_nearest_neighbor_memoised_equals_fresh():
    spatial_map = random_map()
    params = NearestNeighborParams(class_a="ribosome", class_b="apo-ferritin", simulations=19)
    first = nearest_neighbor_distances(spatial_map, params)
    second = nearest_neighbor_distances(spatial_map, params)
    spatial_map.drop_cached_results()
    fresh = nearest_neighbor_distances(spatial_map, params)
    assert second == first
    assert fresh == first


def test_nearest_neighbor_cache_keys_on_parameters():
    spatial_map = random_map()
    nearest_neighbor_distances(spatial_map, NearestNeighborParams(class_a="ribosome", class_b="apo-ferritin"))
    other_pair = nearest_neighbor_distances(spatial_map, NearestNeighborParams(class_a="ribosome", class_b="ribosome"))
    other_bins = nearest_neighbor_distances(
        spatial_map, NearestNeighborParams(class_a="ribosome", class_b="apo-ferritin", bins=7)
    )
    other_seed = nearest_neighbor_distances(
        spatial_map, NearestNeighborParams(class_a="ribosome", class_b="apo-ferritin", seed=5, max_sample=50)
    )
    fresh_map = random_map()
    assert other_pair == nearest_neighbor_distances(
        fresh_map, NearestNeighborParams(class_a="ribosome", class_b="ribosome")
    )
    assert len(other_bins["histogram"]["counts"]) == 7
    assert other_seed["csr"]["sampled_particles"] == 50
    assert other_seed == nearest_neighbor_distances(
        random_map(), NearestNeighborParams(class_a="ribosome", class_b="apo-ferritin", seed=5, max_sample=50)
    )


def test_csr_simulations_extend_memoised_run():
    spatial_map = random_map()
    few = NearestNeighborParams(class_a="ribosome", class_b="apo-ferritin", simulations=19, include_distances=False)
    many = dataclasses.replace(few, simulations=99)
    nearest_neighbor_distances(spatial_map, few)
    extended = nearest_neighbor_distances(spatial_map, many)
    prefix = nearest_neighbor_distances(spatial_map, few)
    assert extended == nearest_neighbor_distances(random_map(), many)
    assert prefix == nearest_neighbor_distances(random_map(), few)
    assert extended["csr"]["simulations"] == 99
    assert prefix["csr"]["simulations"] == 19


def test_nearest_neighbor_lists_are_copies():
    spatial_map = random_map()
    params = NearestNeighborParams(class_a="ribosome", class_b="apo-ferritin", simulations=0)
    first = nearest_neighbor_distances(spatial_map, params)
    expected = list(first["distances_angstrom"])
    first["distances_angstrom"][0] = -1.0
    first["particle_ids"].clear()
    first["histogram"]["counts"][0] = -1
    second = nearest_neighbor_distances(spatial_map, params)
    assert second["distances_angstrom"] == expected
    assert len(second["particle_ids"]) == second["count_a"]
    assert second["histogram"]["counts"][0] >= 0


def test_nearest_neighbor_rejects_negative_seed():
    with pytest.raises(QueryError, match="seed -1"):
        run_tool(random_map(count=100), "nearest_neighbor_distances", {"class_a": "ribosome", "seed": -1})


def cluster_ids(spatial_map, class_name, distance):
    rows = spatial_map.class_members(spatial_map.class_index(class_name))
    groups = brute_force_components(spatial_map.positions[rows], distance)
    return sorted(sorted(spatial_map.ids[rows[group]].tolist()) for group in groups)


def test_clusters_forest_serves_other_distances():
    spatial_map = random_map(count=1500, seed=6)
    # The first call builds a forest at 150 Å, the second replaces it with one at 300 Å, and the
    # last two are served by the 300 Å forest.
    for distance in (150.0, 300.0, 80.0, 220.0):
        result = clusters(
            spatial_map,
            ClustersParams(class_name="ribosome", link_distance_angstrom=distance, min_size=1, limit=10_000),
        )
        assert sorted(cluster["particle_ids"] for cluster in result["clusters"]) == cluster_ids(
            spatial_map, "ribosome", distance
        )
    assert spatial_map.linkage_forest(spatial_map.class_index("ribosome"), 10.0).max_distance == 300.0


def test_clusters_duplicate_positions_linked():
    positions = np.array([[100.0, 100, 100], [100.0, 100, 100], [400.0, 100, 100], [3000.0, 2000, 500]])
    spatial_map = SpatialMap.from_particles(["ribosome"] * 4, positions, BOUNDS)
    result = clusters(spatial_map, ClustersParams(class_name="ribosome", link_distance_angstrom=50.0))
    assert [cluster["particle_ids"] for cluster in result["clusters"]] == [[0, 1]]
    assert result["unclustered_particle_count"] == 2


def test_clusters_unsorted_ids():
    spatial_map = random_map(count=600, seed=8)
    shuffled = SpatialMap(
        ids=np.random.default_rng(0).permutation(600) * 5,
        class_indices=spatial_map.class_indices,
        positions=spatial_map.positions,
        scores=spatial_map.scores,
        bounds=BOUNDS,
    )
    result = clusters(shuffled, ClustersParams(class_name="ribosome", link_distance_angstrom=400.0, limit=10_000))
    expected = [group for group in cluster_ids(shuffled, "ribosome", 400.0) if len(group) >= 2]
    assert sorted(cluster["particle_ids"] for cluster in result["clusters"]) == expected


def test_tools_after_save_and_load_equal_fresh(tmp_path):
    spatial_map = random_map()
    path = tmp_path / "map.npz"
    spatial_map.save(path)
    loaded = SpatialMap.load(path)
    assert loaded.query_cache == {}
    nearest_params = NearestNeighborParams(class_a="thyroglobulin", class_b="ribosome", simulations=19)
    cluster_params = ClustersParams(class_name="thyroglobulin", link_distance_angstrom=300.0, min_size=1)
    fresh = random_map()
    assert nearest_neighbor_distances(loaded, nearest_params) == nearest_neighbor_distances(fresh, nearest_params)
    assert clusters(loaded, cluster_params) == clusters(fresh, cluster_params)


def test_clusters_memoised_result_is_copied():
    spatial_map = random_map(count=1500, seed=5)
    params = ClustersParams(class_name="ribosome", link_distance_angstrom=300.0)
    first = clusters(spatial_map, params)
    expected = [list(cluster["particle_ids"]) for cluster in first["clusters"]]
    first["clusters"][0]["particle_ids"].clear()
    first["clusters"].clear()
    second = clusters(spatial_map, params)
    assert [cluster["particle_ids"] for cluster in second["clusters"]] == expected


def test_clusters_cache_keys_on_size_and_limit():
    spatial_map = random_map(count=1500, seed=5)
    clusters(spatial_map, ClustersParams(class_name="ribosome", link_distance_angstrom=300.0))
    bigger = clusters(spatial_map, ClustersParams(class_name="ribosome", link_distance_angstrom=300.0, min_size=4))
    limited = clusters(spatial_map, ClustersParams(class_name="ribosome", link_distance_angstrom=300.0, limit=2))
    expected = [group for group in cluster_ids(spatial_map, "ribosome", 300.0) if len(group) >= 4]
    assert sorted(cluster["particle_ids"] for cluster in bigger["clusters"]) == expected
    assert len(limited["clusters"]) == 2
    assert limited["truncated"] is True
    assert [cluster["size"] for cluster in limited["clusters"]] == sorted(map(len, expected), reverse=True)[:2]


def test_tools_share_map_across_threads():
    spatial_map = random_map()
    fresh = random_map()
    params = [
        NearestNeighborParams(class_a=CLASS_NAMES[index % 6], class_b=CLASS_NAMES[(index + 1) % 6], simulations=9)
        for index in range(12)
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda item: nearest_neighbor_distances(spatial_map, item), params))
    for item, result in zip(params, results, strict=True):
        assert result == nearest_neighbor_distances(fresh, item)


def test_nearest_neighbor_too_few_particles():
    spatial_map = SpatialMap.from_particles(
        ["apo-ferritin", "ribosome"], np.array([[100.0, 100.0, 100.0], [900.0, 900.0, 900.0]]), BOUNDS
    )
    with pytest.raises(QueryError, match="'apo-ferritin' has 1 particle\\(s\\) in this map; distances between"):
        nearest_neighbor_distances(spatial_map, NearestNeighborParams(class_a="apo-ferritin", simulations=0))
    with pytest.raises(QueryError, match="'ribosome' has 1 particle\\(s\\) and 'thyroglobulin' has 0"):
        nearest_neighbor_distances(
            spatial_map, NearestNeighborParams(class_a="ribosome", class_b="thyroglobulin", simulations=0)
        )
