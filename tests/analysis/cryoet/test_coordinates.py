import numpy as np

from analysis.cryoet.io import angstrom_to_indices, indices_to_angstrom


def test_indices_to_angstrom_swaps_axes():
    positions = indices_to_angstrom(np.array([[1, 2, 3]]), 10.0)
    np.testing.assert_allclose(positions, [[30.0, 20.0, 10.0]])


def test_binned_index_is_block_centre():
    # Binned voxel 1 of factor 2 averages unbinned voxels 2 and 3, centred on 2.5.
    positions = indices_to_angstrom(np.array([[1, 0, 1]]), 10.0, bin_factor=2)
    np.testing.assert_allclose(positions, [[25.0, 5.0, 25.0]])


def test_round_trip():
    positions = np.array([[12.5, 300.0, 41.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(indices_to_angstrom(angstrom_to_indices(positions, 7.5), 7.5), positions)
