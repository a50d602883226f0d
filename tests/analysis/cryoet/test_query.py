import json
import math

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
