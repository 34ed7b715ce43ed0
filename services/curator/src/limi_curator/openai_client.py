"""A small client for OpenAI-compatible chat completions (vLLM, SGLang, hosted APIs), on urllib.

`ChatClient.complete(messages)` posts to `<base_url>/chat/completions` with a per-request
timeout and retries connection errors, timeouts, 429 and 5xx answers with exponential backoff;
other 4xx answers fail at once. Failures raise `EndpointError` (an `Unavailable`) naming the
endpoint and what went wrong. It does not stream, and it does not parse the model's text.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from limi_core.errors import Unavailable

RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}


class EndpointError(Unavailable):
    def __init__(self, endpoint: str, reason: str, *, status: int = 0) -> None:
        super().__init__(f"synthesis endpoint {endpoint}: {reason}")
        self.status = status


class ChatClient:
    def __init__(self, base_url: str, model: str, *, api_key: str = "", timeout: float = 120.0, retries: int = 3,
                 first_backoff: float = 0.5, max_backoff: float = 8.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.model, self._api_key = model, api_key
        self._timeout, self._retries = timeout, retries
        self._first_backoff, self._max_backoff = first_backoff, max_backoff

    def complete(self, messages: list[dict], *, temperature: float = 0.2, max_tokens: int = 1024) -> str:
        """The assistant text of one chat completion."""
        body = json.dumps({"model": self.model, "messages": messages, "temperature": temperature, "max_tokens": max_tokens}).encode()
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        url = self.base_url + "/chat/completions"
        delay = self._first_backoff
        for attempt in range(self._retries + 1):
            try:
                request = urllib.request.Request(url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=self._timeout) as response:
                    payload = response.read()
                return self._content(payload)
            except urllib.error.HTTPError as exc:
                detail = exc.read()[:300].decode("utf-8", "replace")
                if exc.code not in RETRYABLE_STATUS or attempt == self._retries:
                    raise EndpointError(self.base_url, f"HTTP {exc.code} after {attempt + 1} attempt(s): {detail}", status=exc.code) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if attempt == self._retries:
                    reason = getattr(exc, "reason", exc)
                    raise EndpointError(self.base_url, f"unreachable after {attempt + 1} attempt(s): {reason}") from None
            time.sleep(delay)
            delay = min(delay * 2, self._max_backoff)
        raise AssertionError("unreachable")

    def _content(self, payload: bytes) -> str:
        try:
            answer = json.loads(payload)
            content = answer["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise EndpointError(self.base_url, f"answer is not a chat completion: {payload[:200]!r}") from None
        if not isinstance(content, str):
            raise EndpointError(self.base_url, "answer's message content is not text")
        return content
