"""The six particle classes of the CZ Imaging Institute cryo-ET object identification
benchmark (Kaggle 2024-25), with their radii and scoring weights."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ParticleClass:
    name: str
    radius_angstrom: float
    # Weight of the class in the benchmark's weighted F-beta.
    weight: float


PARTICLE_CLASSES = (
    ParticleClass("apo-ferritin", 60.0, 1.0),
    ParticleClass("beta-amylase", 65.0, 0.0),
    ParticleClass("beta-galactosidase", 90.0, 2.0),
    ParticleClass("ribosome", 150.0, 1.0),
    ParticleClass("thyroglobulin", 130.0, 2.0),
    ParticleClass("virus-like-particle", 135.0, 1.0),
)
CLASS_NAMES = tuple(particle_class.name for particle_class in PARTICLE_CLASSES)
CLASS_BY_NAME = {particle_class.name: particle_class for particle_class in PARTICLE_CLASSES}
# The benchmark's tomograms are binned to 10 angstroms per voxel.
DEFAULT_VOXEL_SIZE = 10.0
# F-beta with beta = 4 weights recall 16 times as much as precision.
FBETA_BETA = 4.0
