"""Conversions between (z, y, x) voxel indices of a volume and x, y, z positions in angstroms.

Voxel index i lies at ``i * voxel_size`` Å, so voxel 0 is at 0 Å, as in copick and the CryoET
Data Portal and as the particle readers in this package convert pixel coordinates.
"""

from __future__ import annotations

import numpy as np


def indices_to_angstrom(indices_zyx: np.ndarray, voxel_size: float, bin_factor: int = 1) -> np.ndarray:
    """Return (n, 3) x, y, z positions in Å for (n, 3) z, y, x indices, which may be fractional.

    With ``bin_factor`` b the indices address a volume binned b times, whose voxel i averages the
    unbinned voxels b*i to b*i + b - 1 and so is centred on unbinned index b*i + (b - 1) / 2.
    """
    indices = np.asarray(indices_zyx, dtype=np.float64).reshape(-1, 3)
    unbinned = indices * bin_factor + (bin_factor - 1) / 2
    return unbinned[:, ::-1] * voxel_size


def angstrom_to_indices(positions_xyz: np.ndarray, voxel_size: float) -> np.ndarray:
    """Return fractional (n, 3) z, y, x voxel indices for (n, 3) x, y, z positions in Å."""
    positions = np.asarray(positions_xyz, dtype=np.float64).reshape(-1, 3)
    return positions[:, ::-1] / voxel_size
