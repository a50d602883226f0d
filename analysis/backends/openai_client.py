"""VLM, LLM and captioner backends for an OpenAI-compatible HTTP endpoint (vLLM, Ollama, a lab server).

Source options, as in ``openai:http://127.0.0.1:8001/v1?model=qwen2-vl&api_key_env=VLM_API_KEY``:

- ``model``: the served model name. It may be left out when the endpoint serves exactly one model.
- ``api_key_env``: the name of the environment variable that contains the API key. The key is
  sent as a bearer token when that variable is set, and it is never logged.
- ``timeout``: seconds to wait for each request (default 60).
- ``retries``: how many times a failed request is retried (default 3, so at most 4 attempts).
  Connection errors, timeouts, HTTP 429 and HTTP 5xx are retried with exponential backoff, or
  after the server's ``Retry-After``. Other HTTP 4xx errors are not retried.
- ``backoff``: seconds before the first retry (default 1); each later retry waits twice as long.
- ``image_format``: ``png`` (default, lossless) or ``jpeg`` (smaller requests) for images sent
  to a VLM as base64 data URLs.
"""

from __future__ import annotations

import base64
import email.utils
import io
import json
import logging
import os
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import requests

from analysis.backends.base import ModelInfo, ModelUnavailable
from analysis.backends.registry import LoadContext, register_loader
from analysis.backends.roles import (
    Captioner,
    ChatResult,
    Generation,
    LanguageModel,
    ToolCall,
    VisionLanguageModel,
)
from analysis.backends.spec import ModelSource

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF_S = 1.0
# Upper bound on one wait between attempts, whether from backoff or from a Retry-After header,
# so a server that requests a long pause cannot stall a worker for minutes.
MAX_RETRY_WAIT_S = 60.0
BODY_EXCERPT_CHARS = 200
CAPTION_PROMPT = "Describe this image in one sentence."
IMAGE_FORMATS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg")}


class EndpointError(RuntimeError):
    """A request to an OpenAI-compatible endpoint failed.

    The message names the URL, the model and what failed. ``status`` is the HTTP status code,
    or None when no response arrived.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text[:BODY_EXCERPT_CHARS] + ("…" if len(text) > BODY_EXCERPT_CHARS else "")


def _describe_connection_error(error: requests.ConnectionError) -> str:
    text = str(error)
    if "Connection refused" in text or "ConnectionRefusedError" in text:
        return "failed: connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo failed" in text:
        return "failed: host name not found"
    return f"failed to connect: {_excerpt(text)}"


def _is_retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _parse_retry_after(value: str | None) -> float | None:
    """Return the wait in seconds that a ``Retry-After`` header requests (a number or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class OpenAIEndpoint:
    """An HTTP client for one model on an OpenAI-compatible server, with timeouts and retries."""

    def __init__(
        self,
        base_url: str,
        model: str | None,
        *,
        api_key_env: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF_S,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.session = requests.Session()

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def label(self, method: str, path: str) -> str:
        """Describe a request for messages, such as ``POST http://host/v1/chat/completions for model 'x'``."""
        model = f" for model {self.model!r}" if self.model else ""
        return f"{method} {self.url(path)}{model}"

    def _auth_hint(self, status: int) -> str:
        if status not in (401, 403):
            return ""
        if not self.api_key_env:
            return " The endpoint may need an API key: add api_key_env=<variable name> to the source."
        if not os.environ.get(self.api_key_env):
            return f" The environment variable {self.api_key_env} that should contain the API key is not set."
        return f" Check the API key in the environment variable {self.api_key_env}."

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        """Send one request and return its decoded JSON body, retrying transient failures.

        Raises EndpointError naming the URL, the model and the last failure.
        """
        url = self.url(path)
        label = self.label(method, path)
        attempts = self.retries + 1
        failure = ""
        status: int | None = None
        for attempt in range(attempts):
            retry_after = None
            try:
                response = self.session.request(method, url, json=body, headers=self._headers(), timeout=self.timeout)
            except requests.Timeout:
                failure, status = f"timed out after {self.timeout:g} s", None
            except requests.ConnectionError as error:
                failure, status = _describe_connection_error(error), None
            else:
                status = response.status_code
                if response.ok:
                    try:
                        return response.json()
                    except ValueError:
                        raise EndpointError(
                            f"{label} returned HTTP {status} with a body that is not JSON: {_excerpt(response.text)}",
                            status,
                        ) from None
                failure = f"returned HTTP {status}: {_excerpt(response.text)}"
                if not _is_retryable(status):
                    raise EndpointError(f"{label} {failure}.{self._auth_hint(status)}", status)
                retry_after = _parse_retry_after(response.headers.get("Retry-After"))

            if attempt + 1 < attempts:
                wait = retry_after if retry_after is not None else self.backoff * 2**attempt
                wait = min(wait, MAX_RETRY_WAIT_S)
                logger.warning("%s %s; retry %d of %d in %.2f s", label, failure, attempt + 1, self.retries, wait)
                time.sleep(wait)

        tries = f" ({attempts} attempts)" if attempts > 1 else ""
        raise EndpointError(f"{label} {failure}{tries}.", status)

    def list_models(self) -> list[str]:
        data = self.request("GET", "models")
        entries = data.get("data") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise EndpointError(f"{self.label('GET', 'models')} returned no model list: {_excerpt(json.dumps(data))}")
        return [str(entry.get("id")) for entry in entries if isinstance(entry, dict) and entry.get("id")]

    def chat_completion(self, body: dict) -> dict:
        """POST ``body`` (with this endpoint's model added) to ``/chat/completions`` and return the first choice."""
        data = self.request("POST", "chat/completions", {"model": self.model, **body})
        choices = data.get("choices") if isinstance(data, dict) else None
        if not choices or not isinstance(choices[0], dict) or not isinstance(choices[0].get("message"), dict):
            label = self.label("POST", "chat/completions")
            raise EndpointError(f"{label} returned no choices: {_excerpt(json.dumps(data))}")
        return choices[0]

    def close(self) -> None:
        self.session.close()


def _message_text(message: dict) -> str:
    """Return a response message's text, whether its content is a string or a list of parts."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


def image_data_url(image: Any, image_format: str = "png") -> str:
    """Encode a PIL image or an RGB uint8 array as a base64 ``data:`` URL."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise TypeError(f"Expected a PIL image or a NumPy array, got {type(image).__name__}.")
    pil_format, mime = IMAGE_FORMATS[image_format]
    if pil_format == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format=pil_format)
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def _parse_logprobs(choice: dict) -> tuple[list[str], list[float] | None]:
    content = (choice.get("logprobs") or {}).get("content")
    if not isinstance(content, list):
        return [], None
    tokens = [str(entry.get("token", "")) for entry in content]
    logprobs = [float(entry.get("logprob", 0.0)) for entry in content]
    return tokens, logprobs


def _parse_tool_calls(message: dict, label: str) -> list[ToolCall]:
    calls = []
    for raw in message.get("tool_calls") or []:
        function = raw.get("function") or {}
        name = function.get("name", "")
        arguments = function.get("arguments") or {}
        # The OpenAI API sends arguments as a JSON string, but some servers send an object.
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError as error:
                raise EndpointError(
                    f"{label} returned a call to tool {name!r} whose arguments are not valid JSON "
                    f"({error.msg} at position {error.pos}): {_excerpt(arguments)}"
                ) from None
        if not isinstance(arguments, dict):
            raise EndpointError(f"{label} returned a call to tool {name!r} whose arguments are not a JSON object.")
        calls.append(ToolCall(name=name, arguments=arguments, id=str(raw.get("id", ""))))
    return calls


class _EndpointBackend:
    """Shared state of the backends on one endpoint: the client, the image encoding and ``info``."""

    def __init__(self, endpoint: OpenAIEndpoint, info: ModelInfo, image_format: str = "png") -> None:
        self.endpoint = endpoint
        self.info = info
        self.image_format = image_format

    def _generate(self, images: list, prompt: str, max_new_tokens: int, with_logprobs: bool) -> Generation:
        content: list[dict] = [
            {"type": "image_url", "image_url": {"url": image_data_url(image, self.image_format)}} for image in images
        ]
        content.append({"type": "text", "text": prompt})
        body: dict = {
            "messages": [{"role": "user", "content": content}],
            "max_tokens": max_new_tokens,
            "temperature": 0.0,
        }
        if with_logprobs:
            body["logprobs"] = True
        choice = self.endpoint.chat_completion(body)
        tokens, logprobs = _parse_logprobs(choice) if with_logprobs else ([], None)
        return Generation(text=_message_text(choice["message"]), tokens=tokens, logprobs=logprobs)

    def close(self) -> None:
        self.endpoint.close()


class OpenAIVisionLanguageModel(_EndpointBackend, VisionLanguageModel):
    def generate(self, images: list, prompt: str, max_new_tokens: int = 64, with_logprobs: bool = False) -> Generation:
        """Generate a reply to ``prompt`` about ``images``.

        With ``with_logprobs``, the tokens and log-probabilities are filled when the server returns
        them, and ``logprobs`` is None when it does not.
        """
        return self._generate(images, prompt, max_new_tokens, with_logprobs)


class OpenAICaptioner(_EndpointBackend, Captioner):
    def caption(self, images: list, max_new_tokens: int = 30) -> list[str]:
        """Caption each image in its own request with CAPTION_PROMPT."""
        return [self._generate([image], CAPTION_PROMPT, max_new_tokens, False).text.strip() for image in images]


class OpenAILanguageModel(_EndpointBackend, LanguageModel):
    def chat(
        self,
        messages: list[dict],
        tools: list[dict] | None = None,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
    ) -> ChatResult:
        body: dict = {"messages": messages, "max_tokens": max_new_tokens, "temperature": temperature}
        if tools:
            body["tools"] = tools
        choice = self.endpoint.chat_completion(body)
        message = choice["message"]
        label = self.endpoint.label("POST", "chat/completions")
        return ChatResult(text=_message_text(message), tool_calls=_parse_tool_calls(message, label))


_BACKEND_CLASSES = {"vlm": OpenAIVisionLanguageModel, "captioner": OpenAICaptioner, "llm": OpenAILanguageModel}


def _number_option(role: str, source: ModelSource, name: str, default: float, kind: type) -> Any:
    text = source.option(name)
    if text is None or text == "":
        return default
    try:
        value = kind(text)
    except ValueError:
        unit = "a whole number" if kind is int else "a number of seconds"
        raise ModelUnavailable(role, str(source), f"the {name} option {text!r} is not {unit}.") from None
    if value < 0:
        raise ModelUnavailable(role, str(source), f"the {name} option {text!r} must not be negative.")
    return value


def endpoint_from_source(role: str, source: ModelSource) -> OpenAIEndpoint:
    """Build the client that a source string describes, or raise ModelUnavailable for an invalid option."""
    timeout = _number_option(role, source, "timeout", DEFAULT_TIMEOUT_S, float)
    if timeout == 0:
        raise ModelUnavailable(role, str(source), "the timeout option must be more than 0 seconds.")
    return OpenAIEndpoint(
        source.location,
        source.option("model") or None,
        api_key_env=source.option("api_key_env") or None,
        timeout=timeout,
        retries=_number_option(role, source, "retries", DEFAULT_RETRIES, int),
        backoff=_number_option(role, source, "backoff", DEFAULT_BACKOFF_S, float),
    )


@register_loader("vlm", ("openai",))
@register_loader("llm", ("openai",))
@register_loader("captioner", ("openai",))
def load_openai_model(role: str, source: ModelSource, context: LoadContext):
    """Check that the endpoint serves the model (``GET {base}/models``) and return the role's backend."""
    image_format = (source.option("image_format") or "png").lower()
    if image_format not in IMAGE_FORMATS:
        raise ModelUnavailable(
            role, str(source), f"the image_format option {image_format!r} must be one of: {', '.join(IMAGE_FORMATS)}."
        )
    endpoint = endpoint_from_source(role, source)
    if endpoint.api_key_env and not os.environ.get(endpoint.api_key_env):
        logger.warning(
            "The environment variable %s named by api_key_env is not set; requests to %s go without an API key",
            endpoint.api_key_env,
            endpoint.base_url,
        )

    try:
        served = endpoint.list_models()
    except EndpointError as error:
        endpoint.close()
        raise ModelUnavailable(role, str(source), f"the endpoint check failed: {error}") from error

    if endpoint.model is None:
        if len(served) != 1:
            endpoint.close()
            listed = ", ".join(served) or "none"
            reason = f"{endpoint.base_url} serves several models or none ({listed}); choose one with ?model=<name>."
            raise ModelUnavailable(role, str(source), reason)
        endpoint.model = served[0]
    elif endpoint.model not in served:
        endpoint.close()
        listed = ", ".join(served) or "none"
        reason = f"the model {endpoint.model!r} is not served at {endpoint.base_url}/models; served models: {listed}."
        raise ModelUnavailable(role, str(source), reason)

    info = ModelInfo(
        role=role,
        source=str(source),
        backend="openai",
        model_id=endpoint.model,
        weights_sha256="",  # the weights behind a remote model are unknown
        device="remote",
        dtype="unknown",
        details={
            "base_url": endpoint.base_url,
            "timeout_s": endpoint.timeout,
            "retries": endpoint.retries,
            "image_format": image_format,
        },
    )
    return _BACKEND_CLASSES[role](endpoint, info, image_format)
