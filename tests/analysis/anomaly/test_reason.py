"""Explanations of flagged segments: the answer validator, a local OpenAI-compatible server, a tiny VLM."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from analysis.anomaly.pipeline import analyse
from analysis.anomaly.reason import MEASURED, AnswerError, describe_component, explain_segments, parse_answer
from analysis.backends import ModelRegistry
from tests.analysis.backends.network_guard import block_network

VALID = {
    "anomaly": True,
    "category": "restricted_zone",
    "start": 0.4,
    "end": 0.7,
    "explanation": "A bottle sits in the hatched zone.",
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    attempts = block_network(monkeypatch)
    yield
    assert attempts == []


def test_parse_answer_accepts_valid_json_in_text():
    text = "Here is the answer:\n```json\n" + json.dumps(VALID) + "\n```"
    assert parse_answer(text) == VALID


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"category": "alien"}, "is not one of"),
        ({"start": 1.5}, "between 0 and 1"),
        ({"start": 0.8}, "is after end"),
        ({"anomaly": "yes"}, "true or false"),
        ({"explanation": " "}, "non-empty"),
        ({"end": True}, "between 0 and 1"),
    ],
)
def test_parse_answer_rejects_invalid_fields(change, message):
    with pytest.raises(AnswerError, match=message):
        parse_answer(json.dumps({**VALID, **change}))


@pytest.mark.parametrize(
    ("component", "expected"),
    [
        (
            {"name": "unusual_track_place", "value": 0.0, "normal": 0.03, "track_id": 6},
            "Scene model: an object moving where objects do not normally pass (track 6). The normal videos' "
            "density of moving objects at this place is 0.00 of their busiest place, below the floor of 0.03.",
        ),
        (
            {"name": "acceleration", "value": 8.8, "normal": 3.57, "track_id": 6},
            "Scene model: an acceleration above the normal range (track 6). Its change of speed is 8.8 frame "
            "widths/s², above the upper end of the normal range, 3.57 frame widths/s².",
        ),
        (
            {"name": "unusual_place", "value": 3.0, "normal": 0.5, "track_id": None},
            "Scene model: foreground where the normal videos had none. 3 grid cell(s) changed where the normal "
            "videos had changes in fewer than 0.5 frame(s).",
        ),
        (
            {"name": "foreground_fraction", "value": 0.12, "normal": 0.05, "track_id": None},
            "Scene model: more of the frame changed than normal. The changed share of the frame is 12.00%, above "
            "the upper end of the normal range, 5.00%.",
        ),
    ],
)
def test_describe_component_says_comparison(component, expected):
    assert describe_component(component) == expected


def test_parse_answer_rejects_missing_keys_and_text():
    with pytest.raises(AnswerError, match="lacks category"):
        parse_answer(json.dumps({key: value for key, value in VALID.items() if key != "category"}))
    with pytest.raises(AnswerError, match="no JSON object"):
        parse_answer("It looks abnormal.")
    with pytest.raises(AnswerError, match="invalid"):
        parse_answer('{"anomaly": true, "category": }')


@pytest.fixture
def scripted_server():
    """Serve chat completions from a list of reply texts, in order; record each request body."""
    replies: list[str] = []
    requests: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format, *args):
            pass

        def _send(self, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._send({"object": "list", "data": [{"id": "lab-vlm", "object": "model"}]})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append(body)
            text = replies.pop(0) if replies else "no more scripted replies"
            message = {"role": "assistant", "content": text}
            self._send(
                {
                    "id": "1",
                    "object": "chat.completion",
                    "model": body["model"],
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                }
            )

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", replies, requests
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def restricted_result(lab_set, lab_scene):
    folder, _ = lab_set
    return folder / "restricted_zone_00.mp4", analyse(folder / "restricted_zone_00.mp4", lab_scene)


def endpoint_vlm(url):
    return ModelRegistry({"vlm": f"openai:{url}?model=lab-vlm"}).get("vlm")


def prompt_text(body: dict) -> str:
    return " ".join(part["text"] for part in body["messages"][-1]["content"] if part["type"] == "text")


def image_count(body: dict) -> int:
    return sum(1 for part in body["messages"][-1]["content"] if part["type"] == "image_url")


def test_chain_through_endpoint(scripted_server, restricted_result, lab_scene):
    url, replies, requests = scripted_server
    path, result = restricted_result
    replies += [
        "A bench with a tube rack and a brown bottle, box 3.",
        "The bottle rests in the restricted zone.",
        json.dumps(VALID),
    ]

    explain_segments(result, lab_scene, endpoint_vlm(url), path)

    explanation = result.segments[0].explanation
    assert explanation["source"] == "vlm"
    assert explanation["category"] == "restricted_zone"
    assert explanation["explanation"] == VALID["explanation"]
    assert explanation["vlm"]["description"].startswith("A bench")
    assert len(requests) == 3
    assert all(image_count(body) == 3 for body in requests)
    assert "Rule broken (entry into a restricted zone)" in prompt_text(requests[0])
    assert "The bottle rests in the restricted zone." in prompt_text(requests[2])


def test_malformed_answer_gets_one_repair(scripted_server, restricted_result, lab_scene):
    url, replies, requests = scripted_server
    path, result = restricted_result
    replies += [
        "scene",
        "reasoning",
        '{"anomaly": "maybe", "category": "spill"',
        json.dumps({**VALID, "category": "spill"}),
    ]

    explain_segments(result, lab_scene, endpoint_vlm(url), path)

    explanation = result.segments[0].explanation
    assert explanation["source"] == "vlm"
    assert explanation["category"] == "spill"
    assert len(explanation["vlm"]["answers"]) == 2
    assert "rejected because" in prompt_text(requests[3])


def test_answer_still_malformed_falls_back_to_facts(scripted_server, restricted_result, lab_scene):
    url, replies, _ = scripted_server
    path, result = restricted_result
    replies += ["scene", "reasoning", "I think it is fine.", '{"anomaly": true}']

    explain_segments(result, lab_scene, endpoint_vlm(url), path)

    explanation = result.segments[0].explanation
    assert explanation["source"] == MEASURED
    assert explanation["category"] == "restricted_zone"
    assert "lacks category" in explanation["vlm"]["error"]


def test_chain_with_tiny_vlm(tmp_path, restricted_result, lab_scene):
    from tests.analysis.backends.tiny_models import save_tiny_llava

    folder = save_tiny_llava(tmp_path / "tiny-llava")
    vlm = ModelRegistry({"vlm": f"local:{folder}"}, device="cpu").get("vlm")
    path, result = restricted_result

    explain_segments(result, lab_scene, vlm, path)

    explanation = result.segments[0].explanation
    # Random weights write random words, so the chain must end in the measured-facts fallback.
    assert explanation["source"] == MEASURED
    assert explanation["vlm"]["model"] == vlm.info.version
    assert len(explanation["vlm"]["answers"]) == 2
    assert explanation["vlm"]["error"]


def test_vlm_failure_falls_back_to_facts(restricted_result, lab_scene):
    class FailingVlm:
        """A VLM whose endpoint went away: every call raises, as EndpointError does."""

        info = type("Info", (), {"version": "lab-vlm@0"})()

        def generate(self, images, prompt, max_new_tokens=64, with_logprobs=False):
            raise RuntimeError("POST /chat/completions failed: connection refused")

    path, result = restricted_result

    explain_segments(result, lab_scene, FailingVlm(), path)

    explanation = result.segments[0].explanation
    assert explanation["source"] == MEASURED
    assert explanation["vlm"]["model"] == "lab-vlm@0"
    assert "connection refused" in explanation["vlm"]["error"]
