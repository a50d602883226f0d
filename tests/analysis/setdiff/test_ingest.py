"""Each ingest quirk as a small generated file."""

from __future__ import annotations

import io
import tarfile
import zipfile

import numpy as np
import pytest
import tifffile
from PIL import Image

from analysis.setdiff.ingest import (
    IngestError,
    IngestOptions,
    decode_image_bytes,
    load_group,
    load_groups,
    load_visdiff_groups,
    scale_to_uint8,
)

OPTIONS = IngestOptions()


def decode(name: str, data: bytes, options: IngestOptions = OPTIONS):
    return decode_image_bytes(name, data, options)


def png_bytes(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **params)
    return buffer.getvalue()


def test_exif_orientation_applied_once():
    # A 4 wide, 2 high image with a red top-left pixel and EXIF orientation 6 (rotate 90 clockwise).
    pixels = np.zeros((2, 4, 3), np.uint8)
    pixels[0, 0] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", exif=exif)
    [(name, rgb, _)] = decode("rotated.png", buffer.getvalue())
    assert rgb.shape == (4, 2, 3)
    # Rotating 90 degrees clockwise moves the top-left pixel to the top-right.
    assert tuple(rgb[0, 1]) == (255, 0, 0)
    assert tuple(rgb[0, 0]) == (0, 0, 0)
    # Saving the normalised image and reading it again does not rotate it a second time.
    [(_, again, _)] = decode("again.png", png_bytes(Image.fromarray(rgb)))
    assert np.array_equal(again, rgb)


def test_sixteen_bit_uses_bits_in_use():
    values = np.array([[0, 1000], [2000, 4095]], np.uint16)  # 12-bit camera data
    [(_, rgb, scaling)] = decode("twelve.png", png_bytes(Image.fromarray(values)))
    assert rgb[..., 0].tolist() == [[0, 62], [125, 255]]
    assert "4095" in scaling


def test_sixteen_bit_full_range():
    values = np.array([[0, 65535], [32768, 16384]], np.uint16)
    scaled, scaling = scale_to_uint8(values)
    assert scaled.tolist() == [[0, 255], [128, 64]]
    assert "16 bits" in scaling


def test_float_tiff_scaled():
    unit = np.array([[0.0, 0.5], [1.0, 0.25]], np.float32)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, unit)
    [(_, rgb, _)] = decode("unit.tif", buffer.getvalue())
    assert rgb[..., 1].tolist() == [[0, 128], [255, 64]]
    # Floats outside [0, 1] are stretched from their own range.
    wide, scaling = scale_to_uint8(np.array([[-2.0, 0.0], [2.0, 6.0]]))
    assert wide.tolist() == [[0, 64], [128, 255]]
    assert "stretched" in scaling


def test_alpha_flattened_on_background():
    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[0, 0] = (200, 0, 0, 255)  # opaque red
    rgba[0, 1] = (200, 0, 0, 0)  # fully transparent
    data = png_bytes(Image.fromarray(rgba, mode="RGBA"))
    [(_, on_white, _)] = decode("alpha.png", data)
    assert tuple(on_white[0, 0]) == (200, 0, 0)
    assert tuple(on_white[0, 1]) == (255, 255, 255)
    [(_, on_grey, _)] = decode("alpha.png", data, IngestOptions(background=(128, 128, 128)))
    assert tuple(on_grey[0, 1]) == (128, 128, 128)


def test_palette_with_transparency():
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    [(_, rgb, _)] = decode("palette.png", png_bytes(image, transparency=1))
    assert tuple(rgb[0, 0]) == (0, 0, 255)
    assert tuple(rgb[0, 1]) == (255, 255, 255)  # the transparent index is flattened


def test_grayscale_and_cmyk_become_rgb():
    [(_, gray, _)] = decode("gray.png", png_bytes(Image.fromarray(np.full((3, 3), 77, np.uint8))))
    assert gray.shape == (3, 3, 3)
    assert set(gray.ravel().tolist()) == {77}
    cmyk = Image.new("CMYK", (2, 2), (0, 255, 255, 0))  # no cyan or black, full magenta and yellow: red
    buffer = io.BytesIO()
    cmyk.save(buffer, format="TIFF")
    [(_, rgb, scaling)] = decode("cmyk.tif", buffer.getvalue())
    assert tuple(rgb[0, 0]) == (255, 0, 0)
    assert "CMYK" in scaling


def test_multipage_tiff_reads_each_page():
    stack = np.stack([np.full((4, 5), value, np.uint8) for value in (10, 20, 30)])
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, stack, photometric="minisblack")
    pages = decode("stack.tif", buffer.getvalue())
    assert [name for name, _, _ in pages] == ["stack.tif#page1", "stack.tif#page2", "stack.tif#page3"]
    assert [int(rgb[0, 0, 0]) for _, rgb, _ in pages] == [10, 20, 30]


def test_ome_tiff_pages():
    planes = np.arange(2 * 6 * 7, dtype=np.uint16).reshape(2, 6, 7) * 100
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, planes, ome=True, metadata={"axes": "ZYX"})
    pages = decode("cells.ome.tif", buffer.getvalue())
    assert len(pages) == 2
    assert all(rgb.shape == (6, 7, 3) for _, rgb, _ in pages)
    assert pages[1][1][-1, -1, 0] == round(83 * 100 / (2**14 - 1) * 255)  # 8300 needs 14 bits


def dicom_bytes(pixels: np.ndarray, photometric: str = "MONOCHROME2", slope: float = 1.0, intercept: float = 0.0):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID = SecondaryCaptureImageStorage
    dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    dataset.Rows, dataset.Columns = pixels.shape[-2:]
    if pixels.ndim == 3:
        dataset.NumberOfFrames = pixels.shape[0]
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = photometric
    dataset.BitsAllocated = 16
    dataset.BitsStored = 12
    dataset.HighBit = 11
    dataset.PixelRepresentation = 0
    if slope != 1.0 or intercept != 0.0:
        dataset.RescaleSlope = slope
        dataset.RescaleIntercept = intercept
    dataset.PixelData = pixels.astype(np.uint16).tobytes()
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_dicom_bits_stored():
    [(_, rgb, scaling)] = decode("scan.dcm", dicom_bytes(np.array([[0, 4095], [2048, 1024]])))
    assert rgb[..., 0].tolist() == [[0, 255], [128, 64]]
    assert "MONOCHROME2" in scaling


def test_dicom_monochrome1_inverted():
    [(_, rgb, _)] = decode("film.dcm", dicom_bytes(np.array([[0, 4095], [4095, 4095]]), "MONOCHROME1"))
    assert rgb[0, 0, 0] == 255  # 0 is white in MONOCHROME1
    assert rgb[0, 1, 0] == 0


def test_dicom_rescale_and_frames():
    frames = np.stack([np.full((3, 3), 100), np.full((3, 3), 200)])
    frames[:, 0, 0] = 0
    decoded = decode("ct.dcm", dicom_bytes(frames, slope=1.0, intercept=-1000.0))
    assert [name for name, _, _ in decoded] == ["ct.dcm#frame1", "ct.dcm#frame2"]
    # Modality values -1000 .. -900 are negative, so each frame is stretched from its own range.
    assert decoded[0][1][1, 1, 0] == 255
    assert decoded[0][1][0, 0, 0] == 0


def write_images(folder, count: int, value: int = 100):
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        Image.fromarray(np.full((8, 8, 3), value + index, np.uint8)).save(folder / f"img{index}.png")


def test_undecodable_and_oversized_left_out(tmp_path):
    write_images(tmp_path / "a", 3)
    write_images(tmp_path / "b", 2)
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "b" / "huge.png")
    groups = load_groups(tmp_path / "a", tmp_path / "b", IngestOptions(max_pixels=1000))
    assert len(groups.a) == 3
    assert len(groups.b) == 2
    reasons = dict(groups.skipped)
    assert "cannot be decoded" in reasons[str(tmp_path / "a" / "broken.png")]
    assert "BytesIO" not in reasons[str(tmp_path / "a" / "broken.png")]
    assert "over the limit of 1000" in reasons[str(tmp_path / "b" / "huge.png")]


def test_too_few_images_named(tmp_path):
    write_images(tmp_path / "a", 3)
    write_images(tmp_path / "b", 1)
    (tmp_path / "b" / "broken.jpg").write_bytes(b"garbage")
    with pytest.raises(IngestError, match=r"Group B has 1 usable image.*broken\.jpg"):
        load_groups(tmp_path / "a", tmp_path / "b")


def test_missing_folder_and_empty_folder(tmp_path):
    with pytest.raises(IngestError, match="no such file or folder"):
        load_groups(tmp_path / "nowhere", tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IngestError, match="contains no images"):
        load_groups(tmp_path / "empty", tmp_path / "empty")


def test_archives_and_file_lists(tmp_path):
    write_images(tmp_path / "raw", 3)
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as archive:
        for path in sorted((tmp_path / "raw").iterdir()):
            archive.write(path, f"inner/{path.name}")
        archive.writestr("notes.txt", "not an image")
    with tarfile.open(tmp_path / "b.tar.gz", "w:gz") as archive:
        for path in sorted((tmp_path / "raw").iterdir()):
            archive.add(path, path.name)
    listing = tmp_path / "list.txt"
    listing.write_text("# images\nraw/img0.png\nraw/img2.png\nraw/missing.png\n")
    skipped: list = []
    from_zip = load_group(tmp_path / "a.zip", "A", OPTIONS, skipped)
    from_tar = load_group(tmp_path / "b.tar.gz", "B", OPTIONS, skipped)
    from_list = load_group(listing, "A", OPTIONS, skipped)
    assert [record.name for record in from_zip] == [f"{tmp_path / 'a.zip'}:inner/img{i}.png" for i in range(3)]
    assert [record.sha256 for record in from_tar] == [record.sha256 for record in from_zip]
    assert len(from_list) == 2
    assert skipped == [(str(tmp_path / "raw" / "missing.png"), f"listed in {listing} but not found")]


def test_visdiff_csv(tmp_path):
    write_images(tmp_path / "x", 2, 10)
    write_images(tmp_path / "y", 3, 200)
    rows = ["path,group_name"] + [f"x/img{i}.png,dogs" for i in range(2)] + [f"y/img{i}.png,cats" for i in range(3)]
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    groups = load_visdiff_groups(tmp_path / "pairs.csv", "cats", "dogs")
    assert (groups.name_a, len(groups.a), groups.name_b, len(groups.b)) == ("cats", 3, "dogs", 2)
    assert groups.a[0].pixels[0, 0, 0] == 200
    with pytest.raises(IngestError, match="no rows with group_name 'birds'"):
        load_visdiff_groups(tmp_path / "pairs.csv", "birds", "dogs")
    (tmp_path / "bad.csv").write_text("file,label\n")
    with pytest.raises(IngestError, match="needs the columns path and group_name"):
        load_visdiff_groups(tmp_path / "bad.csv", "a", "b")
