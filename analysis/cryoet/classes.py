"""The six particle classes of the CZ Imaging Institute cryo-ET object identification
benchmark (Kaggle 2024-25), with their radii and scoring weights."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ParticleClass:
    name: str
    radius_angstrom: float
    # Weight of the class in the benchmark's weighted F-beta.
    weight: float
    # Approximate molecular mass of the complex in kilodaltons, which sets its density in simulations.
    mass_kda: float


PARTICLE_CLASSES = (
    # Masses: apo-ferritin 24 x 19 kDa, beta-amylase 4 x 56 kDa, E. coli beta-galactosidase
    # 4 x 116 kDa, the 80S ribosome about 4.3 MDa, thyroglobulin 2 x 330 kDa, and a T=3
    # virus-like particle of 180 x 14 kDa coat proteins (as the PP7 capsid).
    ParticleClass("apo-ferritin", 60.0, 1.0, 456.0),
    ParticleClass("beta-amylase", 65.0, 0.0, 224.0),
    ParticleClass("beta-galactosidase", 90.0, 2.0, 465.0),
    ParticleClass("ribosome", 150.0, 1.0, 4300.0),
    ParticleClass("thyroglobulin", 130.0, 2.0, 660.0),
    ParticleClass("virus-like-particle", 135.0, 1.0, 2520.0),
)
CLASS_NAMES = tuple(particle_class.name for particle_class in PARTICLE_CLASSES)
CLASS_BY_NAME = {particle_class.name: particle_class for particle_class in PARTICLE_CLASSES}
# The benchmark's tomograms are binned to 10 angstroms per voxel.
DEFAULT_VOXEL_SIZE = 10.0
# F-beta with beta = 4 weights recall 16 times as much as precision.
FBETA_BETA = 4.0
