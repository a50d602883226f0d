"""Text of the tomogram pages: one format for voxel sizes, and the run's candidate counts in words."""

from __future__ import annotations

# The pipeline treats voxels as cubes, so sizes that differ by more than this fraction of the
# smallest get a warning.
ANISOTROPY_TOLERANCE = 0.01


def format_angstrom(value: float) -> str:
    """Return a length in angstroms with 5 significant digits, the one format of the tomogram pages."""
    return f"{float(value):.5g}"


def voxel_facts(header_voxel: dict | None, used: float | None) -> dict:
    """Return the header's voxel size and the size used as text, and a warning for anisotropic voxels.

    ``header_voxel`` maps "x", "y" and "z" to angstroms, as the MRC header summary stores them.
    """
    facts = {"header": "", "used": format_angstrom(used) if used else "", "anisotropy": ""}
    if not header_voxel:
        return facts
    sizes = [float(header_voxel[axis]) for axis in ("x", "y", "z")]
    facts["header"] = " × ".join(format_angstrom(size) for size in sizes)
    smallest, largest = min(sizes), max(sizes)
    if smallest > 0 and (largest - smallest) / smallest > ANISOTROPY_TOLERANCE:
        spread = 100 * (largest - smallest) / smallest
        facts["anisotropy"] = (
            f"The voxels are anisotropic: the sizes along x, y and z differ by {spread:.0f} %. The pipeline "
            "assumes cubic voxels and uses one size for all three axes, so positions and particle sizes "
            "along the other axes are off by up to that much. Resample the map to cubic voxels before a run."
        )
    return facts


def candidate_counts(summary: dict) -> list[str]:
    """Return where each of a run's candidates went, one phrase per outcome, so the phrases add up.

    The pipeline's summary counts the picker's candidates (``picked``) and those whose most
    probable particle class is below the minimum class probability (``rejected_as_background``).
    It also counts those merged into a more probable pick of the same class by per-class
    non-maximum suppression (``merged_duplicates``). The web app adds the picks of classes the
    run left out (``excluded_by_class_filter``).
    """
    if "picked" not in summary:
        return []
    threshold = summary.get("min_class_probability")
    below = "below the minimum class probability" + (f" {threshold:g}" if threshold is not None else "")
    phrases = [f"{summary['picked']} candidates from the picker"]
    phrases.append(f"{summary.get('rejected_as_background', 0)} {below}, called background")
    if "merged_duplicates" in summary:
        phrases.append(
            f"{summary['merged_duplicates']} merged into a more probable pick of the same class "
            "(per-class non-maximum suppression within the class radius)"
        )
    if summary.get("excluded_by_class_filter"):
        phrases.append(f"{summary['excluded_by_class_filter']} of classes this run left out")
    phrases.append(f"{summary.get('kept', 0)} kept")
    return phrases
