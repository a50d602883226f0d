"""YOLO object detection and instance segmentation with ultralytics.

Source: ``local:/models/yolov8n.pt`` for the detector role, ``local:/models/yolov8n-seg.pt`` for
the segmenter role. A detector must be a detection model (task "detect") and a segmenter a
segmentation model (task "segment"). Options: ``imgsz`` (inference size in pixels, default the
model's training size) and ``batch_size`` (frames per forward pass, default 16).

ultralytics is imported with its network features off: no online check, no telemetry and no
automatic ``pip install``, unless the environment already set ``YOLO_OFFLINE``,
``YOLO_AUTOINSTALL`` or ``ULTRALYTICS_SAFE_LOAD`` otherwise before the first import.
Checkpoints load with ultralytics' safe mode (``torch.load(weights_only=True)`` with an
allow-list of ultralytics and torch layer classes). A checkpoint that contains other classes
fails to load. Set ``ULTRALYTICS_SAFE_LOAD=0`` to load such a file, and then only from a
trusted source, because a full unpickle can run code.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image

from analysis.backends.base import ModelInfo, ModelUnavailable, torch_module_size, weights_sha256
from analysis.backends.device import pick_device, pick_dtype
from analysis.backends.registry import LoadContext, register_loader
from analysis.backends.roles import Detections, Detector
from analysis.backends.spec import ModelSource

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 16
ROLE_TASKS = {"detector": "detect", "segmenter": "segment"}
# Read by ultralytics when it is first imported (ultralytics 8.4, ultralytics/utils/__init__.py).
ULTRALYTICS_ENVIRONMENT = {
    "YOLO_OFFLINE": "1",  # skip the DNS check for internet access, which also turns off telemetry
    "YOLO_AUTOINSTALL": "false",  # never pip-install a missing requirement
    "YOLO_VERBOSE": "false",
    "ULTRALYTICS_SAFE_LOAD": "1",
}


def import_ultralytics():
    """Import ultralytics with the network features off, and return the ``YOLO`` class.

    Every import of ultralytics in this project goes through here.
    """
    for name, value in ULTRALYTICS_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    from ultralytics import YOLO
    from ultralytics.utils import events, patches

    # ultralytics reads the environment once, at its first import. Telemetry may still be on if
    # another module imported ultralytics earlier, so turn it off here as well.
    events.events.enabled = False
    # Importing ultralytics (8.4) replaces PIL.Image.open for the whole process. Its wrapper
    # imports the optional pi_heif package when Pillow cannot identify a file, so without that
    # package every undecodable upload failed with "No module named 'pi_heif'". Put Pillow's
    # own function back.
    original_open = getattr(patches, "_image_open", None)
    if original_open is not None and Image.open is getattr(patches, "image_open", None):
        Image.open = original_open
    return YOLO


class YoloDetector(Detector):
    """An ultralytics YOLO detection or segmentation model on one device."""

    def __init__(self, role: str, model, info: ModelInfo, imgsz: int | None, batch_size: int, half: bool) -> None:
        self.role = role
        self.model = model
        self.info = info
        self.imgsz = imgsz
        self.batch_size = batch_size
        self.half = half
        self.names = dict(model.names)

    def detect(self, frames: list[np.ndarray], confidence: float = 0.25) -> list[Detections]:
        """Detect objects in RGB uint8 frames of shape (height, width, 3), one Detections per frame.

        ``class_names`` has one entry per detection, the name of its class id. A segmenter also
        fills ``masks`` with boolean masks at frame size.
        """
        for index, frame in enumerate(frames):
            if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                shape = getattr(frame, "shape", None)
                dtype = getattr(frame, "dtype", type(frame).__name__)
                raise ValueError(f"Frame {index} must be an RGB uint8 array (height, width, 3), got {shape} {dtype}.")
        if not 0.0 <= confidence <= 1.0:
            raise ValueError(f"confidence must be between 0 and 1, got {confidence}.")

        detections: list[Detections] = []
        for start in range(0, len(frames), self.batch_size):
            # ultralytics reads NumPy images as BGR, the OpenCV channel order.
            batch = [np.ascontiguousarray(frame[:, :, ::-1]) for frame in frames[start : start + self.batch_size]]
            options = {"conf": confidence, "device": self.info.device, "half": self.half, "verbose": False}
            if self.imgsz:
                options["imgsz"] = self.imgsz
            if self.role == "segmenter":
                options["retina_masks"] = True  # masks at the frame size, not the letterboxed input size
            results = self.model.predict(batch, **options)
            detections.extend(self._convert(result) for result in results)
        return detections

    def _convert(self, result) -> Detections:
        boxes = result.boxes
        class_ids = boxes.cls.cpu().numpy().astype(np.int64)
        masks = None
        if self.role == "segmenter":
            height, width = result.orig_shape
            if result.masks is None:
                masks = np.zeros((0, height, width), dtype=bool)
            else:
                masks = result.masks.data.cpu().numpy() > 0.5
        return Detections(
            boxes=boxes.xyxy.cpu().numpy().astype(np.float32),
            scores=boxes.conf.cpu().numpy().astype(np.float32),
            class_ids=class_ids,
            class_names=[str(self.names.get(int(class_id), class_id)) for class_id in class_ids],
            masks=masks,
        )

    def close(self) -> None:
        self.model = None


def _positive_int_option(role: str, source: ModelSource, name: str) -> int | None:
    text = source.option(name)
    if text is None or text == "":
        return None
    if not text.isdigit() or int(text) < 1:
        raise ModelUnavailable(role, str(source), f"the {name} option {text!r} must be a whole number of at least 1.")
    return int(text)


@register_loader("detector", ("local",))
@register_loader("segmenter", ("local",))
def load_yolo(role: str, source: ModelSource, context: LoadContext) -> YoloDetector:
    path = Path(source.location).expanduser()
    # ultralytics downloads a missing file whose name matches one of its released models, so
    # a missing file must be caught here.
    if not path.is_file():
        raise ModelUnavailable(role, str(source), f"the YOLO weights file {path} does not exist.")
    if path.suffix != ".pt":
        raise ModelUnavailable(role, str(source), f"{path} is not a .pt file; export or save the model as .pt.")
    imgsz = _positive_int_option(role, source, "imgsz")
    batch_size = _positive_int_option(role, source, "batch_size") or DEFAULT_BATCH_SIZE

    YOLO = import_ultralytics()
    try:
        model = YOLO(str(path), verbose=False)
    except (TypeError, ValueError, RuntimeError, ModuleNotFoundError) as error:
        raise ModelUnavailable(
            role, str(source), f"ultralytics cannot load {path}: {type(error).__name__}: {error}"
        ) from error
    expected = ROLE_TASKS[role]
    if model.task != expected:
        raise ModelUnavailable(
            role,
            str(source),
            f"{path} is a YOLO model for task {model.task!r}, but the {role} role needs a {expected!r} model.",
        )

    device = pick_device(context.device)
    # ultralytics runs in float32 or, on a GPU, float16 (``half``), never bfloat16.
    half = device.startswith("cuda") and str(pick_dtype(device, context.dtype)) != "torch.float32"
    model.model.to(device)
    parameters, size = torch_module_size(model.model)
    info = ModelInfo(
        role=role,
        source=str(source),
        backend="ultralytics",
        model_id=path.name,
        weights_sha256=weights_sha256(path),
        device=device,
        dtype="float16" if half else "float32",
        parameters=parameters,
        memory_bytes=size // 2 if half else size,
        details={
            "path": str(path),
            "task": model.task,
            "classes": len(model.names),
            "imgsz": imgsz or model.overrides.get("imgsz"),
            "batch_size": batch_size,
        },
    )
    return YoloDetector(role, model, info, imgsz, batch_size, half)
