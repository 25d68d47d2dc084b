"""Counting through the public infini-gram API (https://api.infini-gram.io/), as the paper did.

Requests follow the API's documented format: an HTTP POST whose JSON payload names the `index`,
`query_type: "count"` and the `query`; a co-occurrence query is `"A AND B"` with optional
`max_diff_tokens` and `max_clause_freq`. The answer is JSON with `count` and `approx`, or `error`.
Every answer is kept on disk (one JSON file per request hash), so a rerun or a resumed run asks the
service only for what it has not answered yet. Requests are spaced to `requests_per_second` and
retried with exponential backoff on network errors, 429 and 5xx.

The tests exercise this client against a local HTTP server that speaks the same format; the live
service is not contacted by them.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from frequnlearn.errors import DataError
from frequnlearn.frequency.base import TextCounter, register_backend
from frequnlearn.records import read_json, write_json

if TYPE_CHECKING:
    from frequnlearn.config.count import CountConfig


class _Retry(Exception):
    """A failure worth another attempt (network error, 429, 5xx)."""


class ApiClient:
    def __init__(
        self,
        url: str,
        index: str,
        cache_dir: str | Path,
        requests_per_second: float = 2.0,
        max_retries: int = 5,
        backoff_s: float = 1.0,
        timeout_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.index = index
        self.cache = Path(cache_dir).expanduser() / "infinigram-api"
        self.interval = 1.0 / requests_per_second
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.sleep = sleep
        self._last = float("-inf")
        self.requests = 0
        self.cache_hits = 0
        self.approx = 0

    def count(self, query: str, **options: int) -> int:
        payload = {"index": self.index, "query_type": "count", "query": query, **options}
        answer = self.request(payload)
        if not isinstance(answer.get("count"), int):
            raise DataError(
                f"infinigram-api: answer to {query!r} has no integer 'count': {json.dumps(answer)[:200]}"
            )
        self.approx += bool(answer.get("approx"))
        return answer["count"]

    def request(self, payload: dict[str, Any]) -> dict[str, Any]:
        key = hashlib.sha256(json.dumps([self.url, payload], sort_keys=True).encode()).hexdigest()
        path = self.cache / key[:2] / f"{key}.json"
        if path.is_file():
            self.cache_hits += 1
            return read_json(path)["response"]
        answer = self._post_with_retries(payload)
        if "error" in answer:
            raise DataError(f"infinigram-api: the service refused {payload['query']!r}: {answer['error']}")
        write_json(path, {"request": payload, "response": answer})
        return answer

    def _post_with_retries(self, payload: dict[str, Any]) -> dict[str, Any]:
        reason = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                return self._post(payload)
            except _Retry as err:
                reason = str(err)
        raise DataError(
            f"infinigram-api: cannot get an answer from {self.url} after {self.max_retries + 1} attempts "
            f"({reason}); check the network, or count in a local corpus with backend infinigram-local"
        )

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        wait = self._last + self.interval - time.monotonic()
        if wait > 0:
            self.sleep(wait)
        self._last = time.monotonic()
        self.requests += 1
        req = urllib.request.Request(
            self.url,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                body = resp.read()
        except urllib.error.HTTPError as err:
            if err.code == 429 or err.code >= 500:
                raise _Retry(f"HTTP {err.code}") from None
            text = err.read().decode(errors="replace")[:200]
            raise DataError(f"infinigram-api: HTTP {err.code} for {payload['query']!r}: {text}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as err:
            raise _Retry(str(getattr(err, "reason", err))) from None
        try:
            answer = json.loads(body)
        except json.JSONDecodeError:
            raise _Retry("the answer was not JSON") from None
        if not isinstance(answer, dict):
            raise _Retry("the answer was not a JSON object")
        return answer


class ApiCounter(TextCounter):
    """Occurrences and `A AND B` windows as the API counts them, in the API index's tokens."""

    def __init__(
        self,
        client: ApiClient,
        measure: str,
        variants: Sequence[str],
        max_diff_tokens: int | None,
        max_clause_freq: int,
    ):
        super().__init__(measure, variants, max_diff_tokens)
        self.client = client
        self.max_clause_freq = max_clause_freq

    @staticmethod
    def _check(text: str) -> str:
        # The API parses AND/OR inside the query string (OR binds tighter than AND).
        if " AND " in f" {text} " or " OR " in f" {text} ":
            raise DataError(
                f"{text!r}: the infini-gram API reads AND/OR in a query as operators; it cannot be counted"
            )
        return text

    def occurrences(self, text: str) -> int:
        return self.client.count(self._check(text))

    def window(self, a: str, b: str, max_diff_tokens: int) -> int:
        return self.client.count(
            f"{self._check(a)} AND {self._check(b)}",
            max_diff_tokens=max_diff_tokens,
            max_clause_freq=self.max_clause_freq,
        )

    def info(self) -> dict[str, Any]:
        c = self.client
        return {
            "url": c.url,
            "index": c.index,
            "requests": c.requests,
            "cache_hits": c.cache_hits,
            "approximate_counts": c.approx,
            "cache": str(c.cache),
        }


@register_backend("infinigram-api")
def _make(cfg: CountConfig) -> ApiCounter:
    client = ApiClient(
        cfg.api_url,
        cfg.api_index,
        cfg.cache_dir,
        requests_per_second=cfg.requests_per_second,
        max_retries=cfg.max_retries,
        backoff_s=cfg.backoff_s,
        timeout_s=cfg.timeout_s,
    )
    return ApiCounter(client, cfg.measure, cfg.case_variants, cfg.max_diff_tokens, cfg.max_clause_freq)
