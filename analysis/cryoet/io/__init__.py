"""Cryo-ET file formats: MRC volumes and particle lists. All conversions between pixels, angstroms and (z, y, x) array order live here."""
