"""Particle list readers and writers: round trips, unit conversions and convention checks."""

import json

import numpy as np
import pandas as pd
import pytest
import starfile

from analysis.cryoet.io.particles import (
    ParticleFormatError,
    ParticleList,
    check_conventions,
    read_copick,
    read_copick_run,
    read_csv,
    read_imod_points,
    read_particles,
    read_portal_ndjson,
    read_relion_star,
    write_copick,
    write_copick_run,
    write_csv,
    write_imod_points,
    write_portal_ndjson,
    write_relion_star,
)

VOXEL = 10.0
SHAPE = (184, 630, 630)


@pytest.fixture
def picks():
    rng = np.random.default_rng(1)
    positions = rng.uniform([0, 0, 0], [6300, 6300, 1840], size=(12, 3))
    names = np.array(["ribosome", "apo-ferritin", "thyroglobulin"] * 4, dtype=object)
    scores = rng.uniform(0, 1, 12)
    return ParticleList(positions, names, scores, np.arange(12), tomogram="TS_5_4")


def assert_same(read, written, scores=True, names=True):
    np.testing.assert_allclose(read.positions, written.positions, atol=1e-3)
    if names:
        assert list(read.class_names) == list(written.class_names)
    if scores:
        np.testing.assert_allclose(read.scores, written.scores, atol=1e-6)


def test_particle_list_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="3 positions but 2 scores"):
        ParticleList(np.zeros((3, 3)), ["a"] * 3, [0.0, 1.0], [0, 1, 2])


@pytest.mark.parametrize("optics", [True, False])
def test_relion4_round_trip(tmp_path, picks, optics):
    path = write_relion_star(tmp_path / "picks.star", picks, pixel_size=VOXEL, optics=optics)
    pixel_size = None if optics else VOXEL
    read = read_relion_star(path, pixel_size=pixel_size)
    assert_same(read, picks)
    assert read.tomogram == "TS_5_4"


def test_relion4_coordinates_are_pixels(tmp_path, picks):
    path = write_relion_star(tmp_path / "picks.star", picks, pixel_size=VOXEL)
    frame = starfile.read(path)["particles"]
    np.testing.assert_allclose(frame["rlnCoordinateX"], picks.positions[:, 0] / VOXEL)


def test_relion_without_optics_needs_pixel_size(tmp_path, picks):
    path = write_relion_star(tmp_path / "picks.star", picks, pixel_size=VOXEL, optics=False)
    with pytest.raises(ParticleFormatError, match="pass pixel_size"):
        read_relion_star(path)


def test_relion_optics_groups_per_particle(tmp_path):
    optics = pd.DataFrame({"rlnOpticsGroup": [1, 2], "rlnOpticsGroupName": ["a", "b"], "rlnImagePixelSize": [2.0, 4.0]})
    particles = pd.DataFrame(
        {
            "rlnCoordinateX": [10.0, 10.0],
            "rlnCoordinateY": [5.0, 5.0],
            "rlnCoordinateZ": [1.0, 1.0],
            "rlnMicrographName": ["tomo.mrc", "tomo.mrc"],
            "rlnOpticsGroup": [1, 2],
        }
    )
    path = tmp_path / "groups.star"
    starfile.write({"optics": optics, "particles": particles}, path)
    read = read_relion_star(path)
    np.testing.assert_allclose(read.positions, [[20, 10, 2], [40, 20, 4]])
    assert read.tomogram == "tomo.mrc"


def test_relion3_single_block(tmp_path):
    frame = pd.DataFrame({"rlnCoordinateX": [1.0], "rlnCoordinateY": [2.0], "rlnCoordinateZ": [3.0]})
    path = tmp_path / "plain.star"
    starfile.write(frame, path)
    read = read_relion_star(path, pixel_size=5.0)
    np.testing.assert_allclose(read.positions, [[5, 10, 15]])


def test_relion5_round_trip(tmp_path, picks):
    path = write_relion_star(tmp_path / "r5.star", picks, pixel_size=VOXEL, version=5, tomogram_shape=SHAPE)
    frame = starfile.read(path)["particles"]
    # The centre of a 630 x 630 x 184 tomogram at 10 Å is at (3150, 3150, 920) Å.
    np.testing.assert_allclose(frame["rlnCenteredCoordinateXAngst"], picks.positions[:, 0] - 3150)
    np.testing.assert_allclose(frame["rlnCenteredCoordinateZAngst"], picks.positions[:, 2] - 920)
    read = read_relion_star(path, pixel_size=VOXEL, tomogram_shape=SHAPE)
    assert_same(read, picks)


def test_relion5_needs_shape(tmp_path, picks):
    path = write_relion_star(tmp_path / "r5.star", picks, pixel_size=VOXEL, version=5, tomogram_shape=SHAPE)
    with pytest.raises(ParticleFormatError, match="tomogram_shape"):
        read_relion_star(path, pixel_size=VOXEL)


def test_star_without_coordinates_rejected(tmp_path):
    path = tmp_path / "other.star"
    starfile.write(pd.DataFrame({"rlnAngleRot": [1.0]}), path)
    with pytest.raises(ParticleFormatError, match="rlnCoordinateX"):
        read_relion_star(path, pixel_size=1.0)


def test_copick_round_trip(tmp_path, picks):
    ribosomes = picks.select(picks.class_names == "ribosome")
    path = write_copick(tmp_path / "ribosome.json", ribosomes)
    document = json.loads(path.read_text())
    assert document["pickable_object_name"] == "ribosome"
    assert document["points"][0]["location"]["x"] == pytest.approx(ribosomes.positions[0, 0])
    assert_same(read_copick(path), ribosomes)


def test_copick_run_round_trip(tmp_path, picks):
    paths = write_copick_run(tmp_path / "Picks", picks)
    assert sorted(path.name for path in paths) == [
        "biovlm_0_apo-ferritin.json",
        "biovlm_0_ribosome.json",
        "biovlm_0_thyroglobulin.json",
    ]
    read = read_copick_run(tmp_path / "Picks")
    order_read = np.lexsort(read.positions.T)
    order_written = np.lexsort(picks.positions.T)
    np.testing.assert_allclose(read.positions[order_read], picks.positions[order_written])
    assert list(read.class_names[order_read]) == list(picks.class_names[order_written])


def test_copick_without_scores(tmp_path):
    path = tmp_path / "bare.json"
    path.write_text(
        json.dumps({"pickable_object_name": "ribosome", "points": [{"location": {"x": 1, "y": 2, "z": 3}}]})
    )
    read = read_copick(path)
    np.testing.assert_allclose(read.positions, [[1, 2, 3]])
    assert np.isnan(read.scores[0])


def test_copick_invalid_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text(json.dumps({"points": [{"position": [1, 2, 3]}]}))
    with pytest.raises(ParticleFormatError, match="broken.json"):
        read_copick(path)


def test_copick_rejects_mixed_classes(tmp_path, picks):
    with pytest.raises(ValueError, match="contains one object"):
        write_copick(tmp_path / "mixed.json", picks)


@pytest.mark.parametrize("unit", ["angstrom", "nm", "pixel"])
def test_csv_round_trip(tmp_path, picks, unit):
    path = write_csv(tmp_path / "picks.csv", picks, unit=unit, voxel_size=VOXEL)
    assert path.read_text().startswith(f"# unit: {unit}\n")
    assert_same(read_csv(path, voxel_size=VOXEL), picks)


def test_csv_units_convert(tmp_path):
    path = tmp_path / "nm.csv"
    path.write_text("x,y,z\n1,2,3\n")
    np.testing.assert_allclose(read_csv(path, unit="nm").positions, [[10, 20, 30]])
    np.testing.assert_allclose(read_csv(path, unit="pixel", voxel_size=7.0).positions, [[7, 14, 21]])


def test_csv_without_unit_rejected(tmp_path):
    path = tmp_path / "bare.csv"
    path.write_text("x,y,z\n1,2,3\n")
    with pytest.raises(ParticleFormatError, match="states no unit"):
        read_csv(path)


def test_csv_bad_input(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("# unit: furlong\nx,y,z\n1,2,3\n")
    with pytest.raises(ParticleFormatError, match="furlong"):
        read_csv(path)
    path.write_text("# unit: pixel\nx,y,z\n1,2,3\n")
    with pytest.raises(ParticleFormatError, match="voxel_size"):
        read_csv(path)
    path.write_text("# unit: nm\na,b,c\n1,2,3\n")
    with pytest.raises(ParticleFormatError, match="expected x, y, z"):
        read_csv(path)
    path.write_text("# unit: nm\nx,y,z\n1,two,3\n")
    with pytest.raises(ParticleFormatError, match="not a number"):
        read_csv(path)


def test_portal_ndjson_round_trip(tmp_path, picks):
    path = write_portal_ndjson(tmp_path / "points.ndjson", picks, voxel_size=VOXEL)
    first = json.loads(path.read_text().splitlines()[0])
    assert first["type"] == "orientedPoint"
    assert first["location"]["x"] == pytest.approx(picks.positions[0, 0] / VOXEL)
    read = read_portal_ndjson(path, voxel_size=VOXEL, class_name="ribosome")
    assert_same(read, picks, scores=False, names=False)
    assert set(read.class_names) == {"ribosome"}


def test_portal_ndjson_invalid_line(tmp_path):
    path = tmp_path / "points.ndjson"
    path.write_text('{"type": "orientedPoint", "location": {"x": 1, "y": 2, "z": 3}}\n{"type": "mesh"}\n')
    with pytest.raises(ParticleFormatError, match="points.ndjson:2"):
        read_portal_ndjson(path, voxel_size=VOXEL)


def test_imod_points_round_trip(tmp_path, picks):
    numbers = {"ribosome": 1, "apo-ferritin": 2, "thyroglobulin": 3}
    path = write_imod_points(tmp_path / "picks.txt", picks, voxel_size=VOXEL, object_numbers=numbers)
    names = {number: name for name, number in numbers.items()}
    read = read_imod_points(path, voxel_size=VOXEL, object_names=names)
    assert_same(read, picks, scores=False)


def test_imod_plain_xyz(tmp_path):
    path = tmp_path / "plain.txt"
    path.write_text("  10.0  20.0  3.0\n\n  1 2 3\n")
    read = read_imod_points(path, voxel_size=2.0)
    np.testing.assert_allclose(read.positions, [[20, 40, 6], [2, 4, 6]])


def test_imod_bad_columns(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("1 2\n")
    with pytest.raises(ParticleFormatError, match="bad.txt:1: 2 columns"):
        read_imod_points(path, voxel_size=2.0)


def test_conventions_clean(picks):
    assert check_conventions(picks, SHAPE, VOXEL) == []


def test_conventions_pixels_read_as_angstroms(picks):
    as_pixels = ParticleList.from_positions(picks.positions / VOXEL)
    warnings = check_conventions(as_pixels, SHAPE, VOXEL)
    assert len(warnings) == 1
    assert "pixels read as angstroms" in warnings[0]


def test_conventions_converted_twice(picks):
    scaled = ParticleList.from_positions(picks.positions * VOXEL)
    warnings = check_conventions(scaled, SHAPE, VOXEL)
    assert any("a second time" in message for message in warnings)
    assert any("outside the volume" in message for message in warnings)


def test_conventions_centred(picks):
    extent = np.array(SHAPE[::-1]) * VOXEL
    centred = ParticleList.from_positions(picks.positions - extent / 2)
    warnings = check_conventions(centred, SHAPE, VOXEL)
    assert any("centred" in message for message in warnings)


def test_conventions_z_x_swapped():
    rng = np.random.default_rng(2)
    positions = rng.uniform([0, 0, 0], [1840, 6300, 6300], size=(20, 3))
    warnings = check_conventions(ParticleList.from_positions(positions), SHAPE, VOXEL)
    assert any("z and x look swapped" in message for message in warnings)
    assert any("100% fit with x and z exchanged" in message for message in warnings)


def test_conventions_points_outside(picks):
    moved = ParticleList.from_positions(np.vstack([picks.positions, [[7000.0, 10.0, 10.0]]]))
    warnings = check_conventions(moved, SHAPE, VOXEL)
    assert warnings == [warnings[0]]
    assert "1 of 13 points lie outside" in warnings[0]
    assert "id 12 at (7000, 10, 10)" in warnings[0]


def test_relion_several_tomograms_warns(tmp_path):
    frame = pd.DataFrame(
        {
            "rlnCoordinateX": [1.0, 2.0],
            "rlnCoordinateY": [1.0, 2.0],
            "rlnCoordinateZ": [1.0, 2.0],
            "rlnTomoName": ["TS_01", "TS_02"],
        }
    )
    path = tmp_path / "two.star"
    starfile.write({"particles": frame}, path)
    read = read_relion_star(path, pixel_size=2.0)
    assert read.tomogram is None
    assert len(read.warnings) == 1
    assert "2 tomograms" in read.warnings[0]


def test_relion_class_numbers_map_to_names(tmp_path):
    frame = pd.DataFrame(
        {
            "rlnCoordinateX": [1.0, 2.0],
            "rlnCoordinateY": [1.0, 2.0],
            "rlnCoordinateZ": [1.0, 2.0],
            "rlnClassNumber": [4, 9],
        }
    )
    path = tmp_path / "classes.star"
    starfile.write({"particles": frame}, path)
    read = read_relion_star(path, pixel_size=2.0)
    assert list(read.class_names) == ["ribosome", "class 9"]


def test_read_particles_by_suffix(tmp_path, picks):
    ribosomes = picks.select(picks.class_names == "ribosome")
    written = {
        "picks.star": write_relion_star(tmp_path / "picks.star", picks, pixel_size=VOXEL),
        "r5.star": write_relion_star(tmp_path / "r5.star", picks, pixel_size=VOXEL, version=5, tomogram_shape=SHAPE),
        "ribosome.json": write_copick(tmp_path / "ribosome.json", ribosomes),
        "points.ndjson": write_portal_ndjson(tmp_path / "points.ndjson", picks, voxel_size=VOXEL),
        "picks.csv": write_csv(tmp_path / "picks.csv", picks, unit="nm"),
        "picks.txt": write_imod_points(tmp_path / "picks.txt", picks, voxel_size=VOXEL),
    }
    for name, path in written.items():
        read = read_particles(path, volume_shape=SHAPE, voxel_size=VOXEL)
        expected = ribosomes if name == "ribosome.json" else picks
        np.testing.assert_allclose(read.positions, expected.positions, atol=1e-3, err_msg=name)
        assert read.warnings == [], name


def test_read_particles_adds_convention_warnings(tmp_path, picks):
    path = write_csv(tmp_path / "pixels.csv", ParticleList.from_positions(picks.positions / VOXEL), unit="angstrom")
    read = read_particles(path, volume_shape=SHAPE, voxel_size=VOXEL)
    assert len(read.warnings) == 1
    assert "pixels read as angstroms" in read.warnings[0]


def test_read_particles_unknown_suffix(tmp_path):
    path = tmp_path / "picks.xlsx"
    path.write_bytes(b"")
    with pytest.raises(ParticleFormatError, match="unknown particle file type '.xlsx'"):
        read_particles(path)


def with_rotations(particles):
    from scipy.spatial.transform import Rotation

    matrices = Rotation.random(len(particles), random_state=4).as_matrix()
    return ParticleList(
        particles.positions,
        particles.class_names,
        particles.scores,
        particles.ids,
        particles.tomogram,
        rotations=matrices,
    )


def test_copick_rotations_round_trip(tmp_path, picks):
    rotated = with_rotations(picks)
    write_copick_run(tmp_path / "Picks", rotated)
    read = read_copick_run(tmp_path / "Picks")
    order_read = np.lexsort(read.positions.T)
    order_written = np.lexsort(rotated.positions.T)
    np.testing.assert_allclose(read.rotations[order_read], rotated.rotations[order_written], atol=1e-12)


def test_portal_rotations_round_trip(tmp_path, picks):
    rotated = with_rotations(picks)
    path = write_portal_ndjson(tmp_path / "points.ndjson", rotated, voxel_size=VOXEL)
    read = read_portal_ndjson(path, voxel_size=VOXEL)
    np.testing.assert_allclose(read.rotations, rotated.rotations, atol=1e-12)


def test_rotations_follow_select_and_concatenate(picks):
    rotated = with_rotations(picks)
    first = rotated.select(np.arange(12) < 5)
    second = rotated.select(np.arange(12) >= 5)
    np.testing.assert_array_equal(ParticleList.concatenate([first, second]).rotations, rotated.rotations)
    assert ParticleList.concatenate([first, picks]).rotations is None


def test_rotations_shape_checked():
    with pytest.raises(ValueError, match="rotations of shape"):
        ParticleList(np.zeros((2, 3)), ["a", "b"], [0.0, 0.0], [0, 1], rotations=np.zeros((3, 3, 3)))


def test_relion_keeps_background_and_other_labels(tmp_path):
    particles = ParticleList(
        np.array([[10.0, 20.0, 30.0], [40.0, 50.0, 60.0], [70.0, 80.0, 90.0]]),
        ["ribosome", "background", "membrane"],
        [0.9, 0.8, 0.7],
        [0, 1, 2],
    )
    path = write_relion_star(tmp_path / "labels.star", particles, pixel_size=VOXEL)
    frame = starfile.read(path)["particles"]
    assert list(frame["rlnClassNumber"]) == [4, 7, 8]
    read = read_relion_star(path)
    assert list(read.class_names) == ["ribosome", "background", "class 8"]
