"""Cryo-ET: tomogram I/O, simulation, particle picking, APT-ViT classification, the spatial
map of particles and the query tools. Positions are x, y, z in angstroms; volumes are NumPy
arrays indexed (z, y, x); conversions happen in ``analysis.cryoet.io`` only."""
