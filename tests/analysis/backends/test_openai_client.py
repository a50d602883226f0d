"""The OpenAI-compatible client against a local HTTP server that replies by simple rules."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from analysis.backends import ModelRegistry, ModelUnavailable
from analysis.backends.openai_client import EndpointError, _parse_retry_after
from analysis.backends.roles import Captioner, ChatResult, Generation, LanguageModel, VisionLanguageModel
from tests.analysis.backends.network_guard import block_network


@dataclass
class ServerState:
    """What the fake server serves and records. Tests change it to script failures."""

    models: list[str] = field(default_factory=lambda: ["tiny-vlm", "tiny-llm"])
    fail_count: int = 0  # fail this many chat requests before responding
    fail_status: int = 503
    retry_after: str | None = None
    delay_s: float = 0.0
    status: int | None = None  # respond to every chat request with this status
    models_status: int | None = None
    bad_tool_arguments: bool = False
    ignore_logprobs: bool = False  # respond without logprobs even when requested, as some servers do
    requests: list[dict] = field(default_factory=list)


def _word_count(message: dict) -> tuple[int, int]:
    content = message["content"]
    if isinstance(content, str):
        return len(content.split()), 0
    words = sum(len(part["text"].split()) for part in content if part["type"] == "text")
    images = sum(1 for part in content if part["type"] == "image_url")
    return words, images


def _chat_reply(state: ServerState, body: dict) -> dict:
    words, images = _word_count(body["messages"][-1])
    text = f"{words} words and {images} images"
    message: dict = {"role": "assistant", "content": text}
    if body.get("tools"):
        name = body["tools"][0]["function"]["name"]
        arguments = "{not json" if state.bad_tool_arguments else json.dumps({"word_count": words})
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call-1", "type": "function", "function": {"name": name, "arguments": arguments}}],
        }
    choice: dict = {"index": 0, "message": message, "finish_reason": "stop"}
    if body.get("logprobs") and not state.ignore_logprobs:
        choice["logprobs"] = {
            "content": [{"token": token, "logprob": -0.5 * (i + 1)} for i, token in enumerate(text.split())]
        }
    return {"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"], "choices": [choice]}


def make_handler(state: ServerState):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format, *args):  # keep test output quiet
            pass

        def _send(self, status: int, payload, headers: dict | None = None) -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _record(self, body: dict | None) -> None:
            state.requests.append(
                {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
            )

        def do_GET(self):
            self._record(None)
            if self.path != "/v1/models":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
            elif state.models_status:
                self._send(state.models_status, {"error": {"message": "models are unavailable"}})
            else:
                self._send(200, {"object": "list", "data": [{"id": name, "object": "model"} for name in state.models]})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self._record(body)
            if self.path != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            if state.fail_count > 0:
                state.fail_count -= 1
                headers = {"Retry-After": state.retry_after} if state.retry_after else {}
                self._send(state.fail_status, b"server overloaded, try again" + b" x" * 300, headers)
                return
            if state.status:
                self._send(state.status, {"error": {"message": "invalid API key"}})
                return
            if state.delay_s:
                time.sleep(state.delay_s)
            self._send(200, _chat_reply(state, body))

    return Handler


@pytest.fixture
def server():
    """Start a rule-based OpenAI-compatible server on 127.0.0.1 and yield (base URL, state)."""
    state = ServerState()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """Fail any test that reaches a host other than 127.0.0.1."""
    attempts = block_network(monkeypatch)
    yield
    assert attempts == []


def load(role: str, source: str):
    return ModelRegistry({role: source}).get(role)


def chat_requests(state: ServerState) -> list[dict]:
    return [request for request in state.requests if request["path"] == "/v1/chat/completions"]


def test_vlm_sends_images_as_data_urls(server):
    url, state = server
    vlm = load("vlm", f"openai:{url}?model=tiny-vlm")
    rgb = np.zeros((8, 12, 3), dtype=np.uint8)
    rgb[2:5, 3:9] = (200, 30, 90)
    images = [Image.fromarray(rgb), Image.new("L", (5, 4), 77)]

    result = vlm.generate(images, "what is unusual here", max_new_tokens=12)

    assert isinstance(vlm, VisionLanguageModel)
    assert isinstance(result, Generation)
    assert result.text == "4 words and 2 images"
    assert result.logprobs is None
    body = chat_requests(state)[-1]["body"]
    assert body["model"] == "tiny-vlm"
    assert body["max_tokens"] == 12
    assert "logprobs" not in body
    parts = body["messages"][0]["content"]
    assert [part["type"] for part in parts] == ["image_url", "image_url", "text"]
    assert parts[2]["text"] == "what is unusual here"
    for part, original in zip(parts[:2], images, strict=True):
        prefix, _, encoded = part["image_url"]["url"].partition(",")
        assert prefix == "data:image/png;base64"
        decoded = Image.open(io.BytesIO(base64.b64decode(encoded)))
        assert decoded.mode == original.mode
        assert np.array_equal(np.asarray(decoded), np.asarray(original))


def test_vlm_jpeg_image_format(server):
    url, state = server
    vlm = load("vlm", f"openai:{url}?model=tiny-vlm&image_format=jpeg")

    vlm.generate([Image.new("RGBA", (6, 6), (10, 20, 30, 255))], "describe")

    image_url = chat_requests(state)[-1]["body"]["messages"][0]["content"][0]["image_url"]["url"]
    assert image_url.startswith("data:image/jpeg;base64,")


def test_vlm_logprobs_when_server_returns_them(server):
    url, state = server
    vlm = load("vlm", f"openai:{url}?model=tiny-vlm")

    result = vlm.generate([Image.new("RGB", (4, 4))], "is the tip touching", with_logprobs=True)

    assert chat_requests(state)[-1]["body"]["logprobs"] is True
    assert result.tokens == ["4", "words", "and", "1", "images"]
    assert result.logprobs == [-0.5, -1.0, -1.5, -2.0, -2.5]


def test_vlm_logprobs_none_when_missing(server):
    url, state = server
    state.ignore_logprobs = True
    vlm = load("vlm", f"openai:{url}?model=tiny-vlm")

    result = vlm.generate([Image.new("RGB", (4, 4))], "ok?", with_logprobs=True)

    assert chat_requests(state)[-1]["body"]["logprobs"] is True
    assert result.text == "1 words and 1 images"
    assert result.tokens == []
    assert result.logprobs is None


def test_captioner_one_request_per_image(server):
    url, state = server
    captioner = load("captioner", f"openai:{url}?model=tiny-vlm")

    captions = captioner.caption([Image.new("RGB", (4, 4)), Image.new("RGB", (5, 5))], max_new_tokens=20)

    assert isinstance(captioner, Captioner)
    assert captions == ["6 words and 1 images", "6 words and 1 images"]
    requests = chat_requests(state)
    assert len(requests) == 2
    for request in requests:
        parts = request["body"]["messages"][0]["content"]
        assert parts[-1]["text"] == "Describe this image in one sentence."
        assert request["body"]["max_tokens"] == 20


def test_llm_passes_tools_and_parses_calls(server):
    url, state = server
    llm = load("llm", f"openai:{url}?model=tiny-llm")
    tools = [
        {
            "type": "function",
            "function": {
                "name": "count_particles",
                "description": "Count particles of one class.",
                "parameters": {"type": "object", "properties": {"label": {"type": "string"}}},
            },
        }
    ]

    result = llm.chat([{"role": "user", "content": "how many ribosomes are there"}], tools=tools)

    assert isinstance(llm, LanguageModel)
    assert isinstance(result, ChatResult)
    assert result.text == ""
    assert len(result.tool_calls) == 1
    call = result.tool_calls[0]
    assert call.name == "count_particles"
    assert call.arguments == {"word_count": 5}
    assert call.id == "call-1"
    assert chat_requests(state)[-1]["body"]["tools"] == tools


def test_llm_without_tools_sends_none(server):
    url, state = server
    llm = load("llm", f"openai:{url}?model=tiny-llm")

    result = llm.chat([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}])

    assert result.text == "2 words and 0 images"
    assert result.tool_calls == []
    body = chat_requests(state)[-1]["body"]
    assert "tools" not in body
    assert body["temperature"] == 0.0
    assert body["messages"][0] == {"role": "system", "content": "be brief"}


def test_llm_invalid_tool_arguments(server):
    url, state = server
    state.bad_tool_arguments = True
    llm = load("llm", f"openai:{url}?model=tiny-llm")
    tools = [{"type": "function", "function": {"name": "find_nearest", "parameters": {"type": "object"}}}]

    with pytest.raises(EndpointError) as caught:
        llm.chat([{"role": "user", "content": "nearest to particle 3"}], tools=tools)

    message = str(caught.value)
    assert "'find_nearest'" in message
    assert "not valid JSON" in message
    assert f"{url}/chat/completions" in message
    assert "'tiny-llm'" in message


def test_authorization_only_when_key_set(server, monkeypatch):
    url, state = server
    monkeypatch.delenv("TEST_VLM_KEY", raising=False)
    vlm = load("vlm", f"openai:{url}?model=tiny-vlm&api_key_env=TEST_VLM_KEY")
    vlm.generate([], "no key")
    assert "Authorization" not in chat_requests(state)[-1]["headers"]

    monkeypatch.setenv("TEST_VLM_KEY", "secret-123")
    vlm.generate([], "with key")
    assert chat_requests(state)[-1]["headers"]["Authorization"] == "Bearer secret-123"


def test_key_stays_out_of_info_and_logs(server, monkeypatch, caplog):
    url, state = server
    monkeypatch.setenv("TEST_VLM_KEY", "secret-123")
    state.fail_count = 1
    caplog.set_level("DEBUG")
    vlm = load("vlm", f"openai:{url}?model=tiny-vlm&api_key_env=TEST_VLM_KEY&backoff=0.01")

    vlm.generate([], "hello")

    assert "secret-123" not in json.dumps(vlm.info.as_dict())
    assert "secret-123" not in caplog.text
    assert "retry 1 of 3" in caplog.text


def test_model_info(server):
    url, _ = server
    vlm = load("vlm", f"openai:{url}?model=tiny-vlm&timeout=12")

    info = vlm.info
    assert info.backend == "openai"
    assert info.model_id == "tiny-vlm"
    assert info.weights_sha256 == ""
    assert info.device == "remote"
    assert info.details["base_url"] == url
    assert info.details["timeout_s"] == 12.0
    assert info.version == "tiny-vlm"
    assert info.load_seconds is not None


def test_single_served_model_is_default(server):
    url, state = server
    state.models = ["only-model"]
    llm = load("llm", f"openai:{url}")

    llm.chat([{"role": "user", "content": "hi"}])

    assert llm.info.model_id == "only-model"
    assert chat_requests(state)[-1]["body"]["model"] == "only-model"


def test_model_not_listed(server):
    url, _ = server
    with pytest.raises(ModelUnavailable) as caught:
        load("vlm", f"openai:{url}?model=missing-model")

    reason = caught.value.reason
    assert "'missing-model'" in reason
    assert f"{url}/models" in reason
    assert "tiny-vlm, tiny-llm" in reason


def test_several_models_need_choice(server):
    url, _ = server
    with pytest.raises(ModelUnavailable) as caught:
        load("llm", f"openai:{url}")

    assert "?model=" in caught.value.reason


def test_models_check_http_error(server):
    url, state = server
    state.models_status = 401
    with pytest.raises(ModelUnavailable) as caught:
        load("vlm", f"openai:{url}?model=tiny-vlm")

    reason = caught.value.reason
    assert f"GET {url}/models" in reason
    assert "HTTP 401" in reason
    assert "api_key_env" in reason
    assert len(state.requests) == 1  # a 401 is not retried


def test_connection_refused_names_url():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"

    with pytest.raises(ModelUnavailable) as caught:
        load("llm", f"openai:{url}?model=tiny-llm&retries=1&backoff=0.01")

    reason = caught.value.reason
    assert f"GET {url}/models" in reason
    assert "connection refused" in reason
    assert "(2 attempts)" in reason


def test_retries_503_then_succeeds(server):
    url, state = server
    vlm = load("vlm", f"openai:{url}?model=tiny-vlm&retries=3&backoff=0.01")
    state.fail_count = 2

    result = vlm.generate([], "two words")

    assert result.text == "2 words and 0 images"
    assert len(chat_requests(state)) == 3


def test_retries_exhausted_names_status_and_body(server):
    url, state = server
    vlm = load("vlm", f"openai:{url}?model=tiny-vlm&retries=2&backoff=0.01")
    state.fail_count = 10
    state.fail_status = 500

    with pytest.raises(EndpointError) as caught:
        vlm.generate([], "hello")

    message = str(caught.value)
    assert caught.value.status == 500
    assert f"POST {url}/chat/completions for model 'tiny-vlm'" in message
    assert "HTTP 500: server overloaded, try again" in message
    assert "(3 attempts)" in message
    body_excerpt = message.split("HTTP 500: ")[1].split(" (3 attempts)")[0]
    assert len(body_excerpt) <= 201  # the first 200 characters and an ellipsis
    assert len(chat_requests(state)) == 3


def test_retry_after_is_respected(server):
    url, state = server
    llm = load("llm", f"openai:{url}?model=tiny-llm&retries=1&backoff=0.01")
    state.fail_count = 1
    state.fail_status = 429
    state.retry_after = "1"

    started = time.perf_counter()
    result = llm.chat([{"role": "user", "content": "hi"}])
    elapsed = time.perf_counter() - started

    assert result.text == "1 words and 0 images"
    assert elapsed >= 0.95
    assert len(chat_requests(state)) == 2


def test_401_is_not_retried(server, monkeypatch):
    url, state = server
    monkeypatch.delenv("TEST_LLM_KEY", raising=False)
    llm = load("llm", f"openai:{url}?model=tiny-llm&retries=3&backoff=0.01&api_key_env=TEST_LLM_KEY")
    state.status = 401

    with pytest.raises(EndpointError) as caught:
        llm.chat([{"role": "user", "content": "hi"}])

    message = str(caught.value)
    assert caught.value.status == 401
    assert "HTTP 401" in message
    assert "TEST_LLM_KEY" in message
    assert "is not set" in message
    assert len(chat_requests(state)) == 1


def test_timeout_names_seconds(server):
    url, state = server
    vlm = load("vlm", f"openai:{url}?model=tiny-vlm&timeout=0.2&retries=1&backoff=0.01")
    state.delay_s = 0.6

    with pytest.raises(EndpointError) as caught:
        vlm.generate([], "slow")

    message = str(caught.value)
    assert "timed out after 0.2 s" in message
    assert f"{url}/chat/completions" in message
    assert "'tiny-vlm'" in message
    assert caught.value.status is None
    assert len(chat_requests(state)) == 2


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("timeout=soon", "the timeout option 'soon' is not a number of seconds"),
        ("timeout=0", "must be more than 0 seconds"),
        ("retries=-1", "must not be negative"),
        ("retries=2.5", "is not a whole number"),
        ("image_format=gif", "must be one of: png, jpeg"),
    ],
)
def test_invalid_options(server, options, expected):
    url, state = server
    with pytest.raises(ModelUnavailable) as caught:
        load("vlm", f"openai:{url}?model=tiny-vlm&{options}")

    assert expected in caught.value.reason
    assert state.requests == []


def test_parse_retry_after_forms():
    assert _parse_retry_after("3") == 3.0
    assert _parse_retry_after(None) is None
    assert _parse_retry_after("soon") is None
    assert _parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= _parse_retry_after(future) <= 31
