"""Measured (morphometric) features of one image, computed without any model weights.

Intensity, contrast and colour come from the pixels. Texture comes from grey-level
co-occurrence matrices and uniform local binary patterns, and edge density from a Canny edge
map. Object count, size, shape and spacing come from a segmentation, which is an Otsu
threshold, optionally split into touching objects by a watershed on the distance transform.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from skimage import feature, filters, measure, morphology, segmentation


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    higher: str  # description of the group with higher values
    lower: str  # description of the group with lower values
    unit: str
    family: str  # what kind of difference the feature measures

    @property
    def label(self) -> str:
        """Readable name of the measured property, such as "local binary pattern entropy"."""
        return FEATURE_LABELS[self.name]

    @property
    def whole_image(self) -> bool:
        """Whether the feature summarises the whole image rather than measuring each object."""
        return self.name in WHOLE_IMAGE_FEATURES


# Whole-image summaries change with any change to the objects (more nuclei also mean more
# edges, more covered area and a brighter mean), so the ranking prefers an object measurement
# that separates the groups about as well.
WHOLE_IMAGE_FEATURES = {
    "mean_intensity",
    "background_intensity",
    "contrast",
    "saturation",
    "red_fraction",
    "green_fraction",
    "blue_fraction",
    "glcm_contrast",
    "glcm_homogeneity",
    "glcm_correlation",
    "lbp_entropy",
    "edge_density",
    "foreground_fraction",
}

FEATURE_LABELS = {
    "mean_intensity": "mean intensity",
    "object_intensity": "mean object intensity",
    "background_intensity": "mean background intensity",
    "contrast": "intensity standard deviation",
    "saturation": "mean HSV saturation",
    "red_fraction": "red share of the RGB sum",
    "green_fraction": "green share of the RGB sum",
    "blue_fraction": "blue share of the RGB sum",
    "glcm_contrast": "GLCM contrast",
    "glcm_homogeneity": "GLCM homogeneity",
    "glcm_correlation": "GLCM correlation",
    "object_texture": "intensity variation inside objects",
    "lbp_entropy": "local binary pattern entropy",
    "edge_density": "Canny edge density",
    "object_count": "object count",
    "object_area": "median object area",
    "object_perimeter": "median object perimeter",
    "foreground_fraction": "fraction of the image covered by objects",
    "eccentricity": "median ellipse eccentricity",
    "circularity": "median circularity",
    "solidity": "median solidity",
    "nearest_neighbour_distance": "mean nearest-neighbour distance",
    "clark_evans_ratio": "Clark-Evans ratio",
}

# Every description is unique, so no two rows of a result read the same: eccentricity's lower
# direction says "less elongated" because circularity's higher direction says "rounder".
FEATURES = [
    FeatureSpec("mean_intensity", "brighter images", "darker images", "fraction of full scale", "brightness"),
    FeatureSpec("object_intensity", "brighter objects", "dimmer objects", "fraction of full scale", "brightness"),
    FeatureSpec(
        "background_intensity", "brighter background", "darker background", "fraction of full scale", "brightness"
    ),
    FeatureSpec("contrast", "higher contrast", "lower contrast", "standard deviation of intensity", "contrast"),
    FeatureSpec("saturation", "more saturated colour", "less saturated colour", "HSV saturation", "colour"),
    FeatureSpec("red_fraction", "redder images", "less red images", "fraction of RGB sum", "colour"),
    FeatureSpec("green_fraction", "greener images", "less green images", "fraction of RGB sum", "colour"),
    FeatureSpec("blue_fraction", "bluer images", "less blue images", "fraction of RGB sum", "colour"),
    FeatureSpec("glcm_contrast", "coarser, higher-contrast texture", "smoother texture", "GLCM contrast", "texture"),
    FeatureSpec(
        "glcm_homogeneity", "more homogeneous texture", "less homogeneous texture", "GLCM homogeneity", "texture"
    ),
    FeatureSpec(
        "glcm_correlation", "more correlated texture", "less correlated texture", "GLCM correlation", "texture"
    ),
    FeatureSpec(
        "object_texture", "more textured objects", "smoother objects", "interior coefficient of variation", "texture"
    ),
    FeatureSpec(
        "lbp_entropy",
        "more varied fine texture",
        "more uniform fine texture",
        "LBP histogram entropy (bits)",
        "texture",
    ),
    FeatureSpec("edge_density", "more edges", "fewer edges", "fraction of pixels on Canny edges", "texture"),
    FeatureSpec("object_count", "more objects per image", "fewer objects per image", "objects", "count"),
    FeatureSpec("object_area", "larger objects", "smaller objects", "pixels", "size"),
    FeatureSpec("object_perimeter", "objects with longer outlines", "objects with shorter outlines", "pixels", "size"),
    FeatureSpec(
        "foreground_fraction",
        "more of the image covered by objects",
        "less of the image covered by objects",
        "fraction of pixels",
        "size",
    ),
    FeatureSpec("eccentricity", "more elongated objects", "less elongated objects", "ellipse eccentricity", "shape"),
    FeatureSpec("circularity", "rounder objects", "less round objects", "4 pi area / perimeter^2", "shape"),
    FeatureSpec("solidity", "more convex objects", "more irregular objects", "area / convex hull area", "shape"),
    FeatureSpec(
        "nearest_neighbour_distance", "more widely spaced objects", "more closely spaced objects", "pixels", "spacing"
    ),
    FeatureSpec(
        "clark_evans_ratio", "more evenly spread objects", "more clustered objects", "Clark-Evans ratio", "clustering"
    ),
]
FEATURE_SPECS = {spec.name: spec for spec in FEATURES}
FEATURE_NAMES = [spec.name for spec in FEATURES]

GLCM_LEVELS = 32
MIN_OBJECT_AREA = 9  # pixels; smaller components are noise


def segment(gray: np.ndarray, method: str = "watershed") -> np.ndarray:
    """Label objects in a [0, 1] grayscale image: Otsu foreground, optionally split by watershed.

    Objects are taken to be the minority side of the threshold, so dark nuclei on a bright
    stain and bright nuclei on a dark background both work.
    """
    if method not in ("otsu", "watershed"):
        raise ValueError(f"unknown segmentation method {method!r}; use otsu or watershed")
    smooth = filters.gaussian(gray, sigma=1.0)
    if smooth.max() - smooth.min() < 1e-6:
        return np.zeros(gray.shape, np.int32)
    threshold = filters.threshold_otsu(smooth)
    foreground = smooth > threshold
    if foreground.mean() > 0.5:
        foreground = ~foreground
    foreground = morphology.remove_small_objects(foreground, max_size=MIN_OBJECT_AREA - 1)
    foreground = ndimage.binary_fill_holes(foreground)
    if method == "otsu":
        return measure.label(foreground).astype(np.int32)
    distance = ndimage.distance_transform_edt(foreground)
    # Peaks closer than 3 pixels belong to one object; a 2-pixel floor ignores thin noise.
    peaks = feature.peak_local_max(
        ndimage.gaussian_filter(distance, 1.0), min_distance=3, threshold_abs=2.0, labels=measure.label(foreground)
    )
    markers = np.zeros(gray.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = segmentation.watershed(-distance, markers, mask=foreground)
    # Foreground components without a peak (small, thin objects) keep their own label.
    missing = foreground & (labels == 0)
    if missing.any():
        extra = measure.label(missing)
        labels = np.where(extra > 0, extra + labels.max(), labels)
    return labels.astype(np.int32)


def _glcm_features(gray: np.ndarray) -> dict[str, float]:
    levels = np.minimum((gray * GLCM_LEVELS).astype(np.uint8), GLCM_LEVELS - 1)
    matrix = feature.graycomatrix(
        levels,
        distances=[1, 2],
        angles=[0, np.pi / 4, np.pi / 2, 3 * np.pi / 4],
        levels=GLCM_LEVELS,
        symmetric=True,
        normed=True,
    )
    values = {}
    for prop in ("contrast", "homogeneity", "correlation"):
        measured = feature.graycoprops(matrix, prop)
        values[f"glcm_{prop}"] = float(np.nan_to_num(measured, nan=1.0).mean())
    return values


def _lbp_entropy(gray: np.ndarray) -> float:
    codes = feature.local_binary_pattern((gray * 255).astype(np.uint8), P=8, R=1, method="uniform")
    histogram = np.bincount(codes.astype(np.int64).ravel(), minlength=10).astype(np.float64)
    probabilities = histogram[histogram > 0] / histogram.sum()
    return float(-(probabilities * np.log2(probabilities)).sum())


def _interior_variation(gray: np.ndarray, region) -> float:
    """Coefficient of variation of intensity inside an object, 2 pixels in from its outline.

    Dividing by the mean keeps brighter objects with the same pattern from counting as more
    textured, and leaving out the blurred rim keeps larger objects (relatively less rim) from
    counting as smoother. Objects with fewer than 5 interior pixels use all their pixels.
    """
    interior = ndimage.binary_erosion(region.image, iterations=2)
    mask = interior if interior.sum() >= 5 else region.image
    pixels = gray[region.slice][mask]
    # A flat interior is exactly 0. The float32 mean of equal values is not exact, and its
    # rounding error (1e-7 of the value for discs of level 200) would otherwise rank as a texture difference.
    if np.ptp(pixels) == 0:
        return 0.0
    pixels = pixels.astype(np.float64)
    return float(pixels.std() / max(pixels.mean(), 1e-6))


def _touches_edge(bbox: tuple[int, int, int, int], shape: tuple[int, ...]) -> bool:
    return bbox[0] == 0 or bbox[1] == 0 or bbox[2] == shape[0] or bbox[3] == shape[1]


PER_OBJECT_FEATURES = (
    "object_area",
    "object_perimeter",
    "eccentricity",
    "circularity",
    "solidity",
    "object_texture",
    "nearest_neighbour_distance",
    "clark_evans_ratio",
)


def _spacing_features(centroids: np.ndarray, shape: tuple[int, ...]) -> dict[str, float]:
    if len(centroids) < 2:
        return {"nearest_neighbour_distance": float(np.hypot(*shape)), "clark_evans_ratio": 1.0}
    distances, _ = cKDTree(centroids).query(centroids, k=2)
    nearest = distances[:, 1]
    density = len(centroids) / float(np.prod(shape))
    # Clark-Evans ratio: the observed mean nearest-neighbour distance over 1 / (2 sqrt(density)),
    # its expected value under complete spatial randomness. Below 1 means clustered.
    return {
        "nearest_neighbour_distance": float(nearest.mean()),
        "clark_evans_ratio": float(nearest.mean() * 2.0 * np.sqrt(density)),
    }


def _object_features(gray: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    regions = [region for region in measure.regionprops(labels, intensity_image=gray) if region.area >= MIN_OBJECT_AREA]
    foreground = labels > 0

    # Objects cut by the image edge count as half, which on average counts each object once
    # when a larger field is cut into tiles.
    on_edge = sum(1 for region in regions if _touches_edge(region.bbox, gray.shape))
    values = {
        "object_count": float(len(regions) - 0.5 * on_edge),
        "foreground_fraction": float(foreground.mean()),
        "object_intensity": float(gray[foreground].mean()) if foreground.any() else float(gray.mean()),
        "background_intensity": float(gray[~foreground].mean()) if (~foreground).any() else float(gray.mean()),
    }
    if not regions:
        # Size and shape have no value without objects. A value of 0 keeps each feature
        # defined and ranks such images below every image with objects.
        values.update(dict.fromkeys(PER_OBJECT_FEATURES, 0.0))
        return values

    areas = np.array([region.area for region in regions], np.float64)
    perimeters = np.array([max(region.perimeter, 1.0) for region in regions], np.float64)
    values["object_area"] = float(np.median(areas))
    values["object_perimeter"] = float(np.median(perimeters))
    values["eccentricity"] = float(np.median([region.eccentricity for region in regions]))
    values["circularity"] = float(np.median(np.minimum(4 * np.pi * areas / perimeters**2, 1.0)))
    values["solidity"] = float(np.median([region.solidity for region in regions]))
    values["object_texture"] = float(np.median([_interior_variation(gray, region) for region in regions]))

    values.update(_spacing_features(np.array([region.centroid for region in regions]), gray.shape))
    return values


def measure_image(pixels: np.ndarray, method: str = "watershed") -> dict[str, float]:
    """Return every feature of ``FEATURES`` for one uint8 RGB image."""
    rgb = pixels.astype(np.float32) / 255.0
    gray = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    total = rgb.sum(axis=2) + 1e-6
    brightest = rgb.max(axis=2)
    values = {
        "mean_intensity": float(gray.mean()),
        "contrast": float(gray.std()),
        "saturation": float(
            np.where(brightest > 0, (brightest - rgb.min(axis=2)) / np.maximum(brightest, 1e-6), 0).mean()
        ),
        "red_fraction": float((rgb[..., 0] / total).mean()),
        "green_fraction": float((rgb[..., 1] / total).mean()),
        "blue_fraction": float((rgb[..., 2] / total).mean()),
        "lbp_entropy": _lbp_entropy(gray),
        "edge_density": float(feature.canny(gray, sigma=1.5).mean()),
    }
    values.update(_glcm_features(gray))
    values.update(_object_features(gray, segment(gray, method)))
    return {name: values[name] for name in FEATURE_NAMES}


def measure_images(images: list[np.ndarray], method: str = "watershed") -> np.ndarray:
    """Return a (number of images, number of features) array in ``FEATURE_NAMES`` order."""
    return np.array(
        [[row[name] for name in FEATURE_NAMES] for row in (measure_image(image, method) for image in images)]
    )
