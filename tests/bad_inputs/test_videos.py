"""Rotated, 10-bit, empty and cut-short videos through the decoder, the upload API, the scene API and the command line."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from django.contrib.messages import get_messages
from django.test import Client
from PIL import Image

from analysis.anomaly.video import VideoError, probe, read_frames
from biovlm_web.anomalies.models import Scene
from tests.bad_inputs.conftest import StoredState, assert_rejected_upload, corpus_module, run_cli, upload_file

CODED_WIDTH, CODED_HEIGHT = corpus_module.VIDEO_CODED_SIZE
RED = np.array([230, 40, 40])
# Where the red band, stored on the left edge, must appear once the rotation is applied.
ROTATED = {"rotated_90": "bottom", "rotated_270": "top"}
# Rejected files and words their message must contain.
REJECTED = {"empty_video": ("empty", "0 bytes"), "truncated_no_index": ("could not be opened",)}


def red_edge(image: np.ndarray) -> str:
    """Return which edge of an RGB frame is covered by the red band."""
    edges = {"top": image[:4], "bottom": image[-4:], "left": image[:, :4], "right": image[:, -4:]}
    for name, pixels in edges.items():
        if np.abs(pixels.reshape(-1, 3).astype(int) - RED).max() < 30:
            return name
    return "none"


# --- the decoder ------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(ROTATED))
def test_decoder_applies_rotation(corpus, case):
    info = probe(corpus[case])
    frames = list(read_frames(corpus[case]))

    assert (info.width, info.height) == (CODED_HEIGHT, CODED_WIDTH)
    assert (info.coded_width, info.coded_height) == (CODED_WIDTH, CODED_HEIGHT)
    assert len(frames) == corpus_module.VIDEO_FRAMES
    assert frames[0].image.shape == (CODED_WIDTH, CODED_HEIGHT, 3)
    assert red_edge(frames[0].image) == ROTATED[case]


def test_decoder_reads_ten_bit(corpus):
    info = probe(corpus["ten_bit"])
    frames = list(read_frames(corpus["ten_bit"]))

    assert info.bit_depth == 10
    assert info.pixel_format == "yuv420p10le"
    assert len(frames) == corpus_module.VIDEO_FRAMES
    assert frames[0].image.dtype == np.uint8
    assert frames[0].image.shape == (CODED_HEIGHT, CODED_WIDTH, 3)
    assert red_edge(frames[0].image) == "left"


@pytest.mark.parametrize(("case", "phrase"), [("empty_video", "empty (0 bytes)"), ("truncated_no_index", "FFmpeg")])
def test_decoder_rejects(corpus, case, phrase):
    with pytest.raises(VideoError) as caught:
        list(read_frames(corpus[case]))

    assert str(caught.value).startswith(f"{corpus[case].name}: ")
    assert phrase in str(caught.value)


# --- the upload API, the scene API and the scene page -----------------------------------------


@pytest.mark.parametrize("case", [*sorted(ROTATED), "ten_bit"])
def test_upload_reads_video_metadata(owner_client, dataset, corpus, case):
    response = upload_file(owner_client, dataset, corpus[case])

    assert response.status_code == 201, response.json()
    metadata = response.json()["metadata"]
    assert response.json()["kind"] == "video"
    assert (metadata["width"], metadata["height"]) == (CODED_WIDTH, CODED_HEIGHT)
    assert metadata["frame_count"] == corpus_module.VIDEO_FRAMES
    if case in ROTATED:
        assert metadata["rotation_degrees"] == int(case.split("_")[1])
        assert (metadata["display_width"], metadata["display_height"]) == (CODED_HEIGHT, CODED_WIDTH)
    else:
        assert metadata["pixel_format"] == "yuv420p10le"
        assert (metadata["display_width"], metadata["display_height"]) == (CODED_WIDTH, CODED_HEIGHT)


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_upload_rejects_video(owner_client, dataset, settings, corpus, case):
    earlier = upload_file(owner_client, dataset, corpus["rotated_90"], "stored_before.mp4").json()
    state = StoredState(settings)

    response = upload_file(owner_client, dataset, corpus[case])

    assert_rejected_upload(response, corpus[case].name, *REJECTED[case])
    assert str(settings.UPLOAD_TEMP_DIR) not in response.json()["detail"]
    state.assert_unchanged()
    assert owner_client.get(f"/api/files/{earlier['uuid']}/").json()["sha256"] == earlier["sha256"]


@pytest.mark.parametrize("case", [*sorted(ROTATED), "ten_bit"])
def test_scene_frame_has_display_size(owner_client, dataset, personas, corpus, case):
    video = upload_file(owner_client, dataset, corpus[case]).json()
    body = {"project": str(personas["project"].uuid), "name": case, "normal_videos": [video["uuid"]]}
    created = owner_client.post("/api/scenes/", body, format="json")
    assert created.status_code == 201, created.json()

    response = owner_client.get(f"/anomaly-scenes/{created.json()['uuid']}/frame.png")

    assert response.status_code == 200
    frame = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
    expected_edge = ROTATED.get(case, "left")
    expected_shape = (CODED_WIDTH, CODED_HEIGHT) if case in ROTATED else (CODED_HEIGHT, CODED_WIDTH)
    assert frame.shape[:2] == expected_shape
    assert red_edge(frame) == expected_edge


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_scene_form_rejects_video(personas, settings, corpus, case):
    client = Client()
    client.force_login(personas["owner"])
    scene = Scene.objects.create(project=personas["project"], name="Bench", created_by=personas["owner"])
    state = StoredState(settings)

    with corpus[case].open("rb") as handle:
        response = client.post(f"/anomaly-scenes/{scene.uuid}/upload/", {"purpose": "normal", "videos": [handle]})

    assert response.status_code == 302
    messages_shown = [str(message) for message in get_messages(response.wsgi_request)]
    assert len(messages_shown) == 1
    assert messages_shown[0].startswith("Nothing was stored")
    assert corpus[case].name in messages_shown[0]
    for phrase in REJECTED[case]:
        assert phrase in messages_shown[0]
    state.assert_unchanged()
    assert scene.normal_videos.count() == 0


# --- the command line -------------------------------------------------------------------------


def test_cli_inspect_videos(corpus):
    cases = [*sorted(ROTATED), "ten_bit", *sorted(REJECTED)]
    result = run_cli("inspect", *(corpus[case] for case in cases))

    assert result.returncode == 2
    reports = {item["file"]: item["metadata"] for item in json.loads(result.stdout)}
    assert set(reports) == {str(corpus[case]) for case in [*ROTATED, "ten_bit"]}
    for case in ROTATED:
        metadata = reports[str(corpus[case])]
        assert (metadata["display_width"], metadata["display_height"]) == (CODED_HEIGHT, CODED_WIDTH)
    assert reports[str(corpus["ten_bit"])]["pixel_format"] == "yuv420p10le"
    for case in REJECTED:
        lines = [line for line in result.stderr.splitlines() if line.startswith(f"error: {corpus[case]}:")]
        assert len(lines) == 1, result.stderr
        for phrase in REJECTED[case]:
            assert phrase in lines[0]


def test_cli_fit_scene_rotated(corpus, tmp_path):
    output = tmp_path / "scene.json"
    result = run_cli("anomaly", "fit-scene", corpus["rotated_90"], corpus["rotated_270"], "--output", output)

    assert result.returncode == 0, result.stderr
    assert json.loads(output.read_text())["frame_size"] == [CODED_HEIGHT, CODED_WIDTH]


def test_cli_fit_scene_ten_bit(corpus, tmp_path):
    output = tmp_path / "scene.json"
    result = run_cli("anomaly", "fit-scene", corpus["ten_bit"], "--output", output)

    assert result.returncode == 0, result.stderr
    assert json.loads(output.read_text())["frame_size"] == [CODED_WIDTH, CODED_HEIGHT]


@pytest.mark.parametrize(("case", "phrase"), [("empty_video", "empty (0 bytes)"), ("truncated_no_index", "FFmpeg")])
def test_cli_fit_scene_rejects(corpus, tmp_path, case, phrase):
    output = tmp_path / "scene.json"
    result = run_cli("anomaly", "fit-scene", corpus[case], "--output", output)

    assert result.returncode == 2
    assert f"{corpus[case].name}: " in result.stderr
    assert phrase in result.stderr
    assert "Traceback" not in result.stderr
    assert not output.exists()
