"""Cryo-ET file formats: MRC volumes and particle lists.

All conversions between pixels, angstroms and (z, y, x) array order live in this package.
"""

from analysis.cryoet.io.coordinates import angstrom_to_indices, indices_to_angstrom
from analysis.cryoet.io.mrc import MrcError, Volume, read_volume, write_volume
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

__all__ = [
    "angstrom_to_indices",
    "indices_to_angstrom",
    "MrcError",
    "ParticleFormatError",
    "ParticleList",
    "Volume",
    "check_conventions",
    "read_copick",
    "read_copick_run",
    "read_csv",
    "read_imod_points",
    "read_particles",
    "read_portal_ndjson",
    "read_relion_star",
    "read_volume",
    "write_copick",
    "write_copick_run",
    "write_csv",
    "write_imod_points",
    "write_portal_ndjson",
    "write_relion_star",
    "write_volume",
]
