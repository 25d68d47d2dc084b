"""The infini-gram API client against a local server that speaks the documented format.

The live service (https://api.infini-gram.io/) is never contacted here.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from frequnlearn.config import from_dict
from frequnlearn.config.count import CountConfig
from frequnlearn.errors import DataError
from frequnlearn.frequency import count_values
from frequnlearn.frequency.infinigram_api import ApiClient, ApiCounter
from frequnlearn.records import QAItem

COUNTS = {
    "Paris": 1000,
    "paris": 20,
    "France": 800,
    "France AND Paris": 120,
    "france AND paris": 3,
    "Berlin": 500,
    "Germany AND Berlin": 90,
}


class FakeApi(BaseHTTPRequestHandler):
    """Answers `count` queries from COUNTS; `failures` makes the next requests fail with 503."""

    requests: list[dict] = []
    failures = 0

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(payload)
        if type(self).failures > 0:
            type(self).failures -= 1
            self._send(503, {"error": "busy"})
            return
        if payload.get("index") != "v4_test_llama" or payload.get("query_type") != "count":
            self._send(200, {"error": "unsupported index or query_type"})
            return
        query = payload["query"]
        if query not in COUNTS:
            self._send(200, {"error": f"no such n-gram: {query}"})
            return
        approx = " AND " in query and payload.get("max_clause_freq", 50000) < 1000
        self._send(
            200, {"count": COUNTS[query], "approx": approx, "latency": 0.1, "token_ids": [], "tokens": []}
        )

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    FakeApi.requests = []
    FakeApi.failures = 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def client(url: str, tmp_path, **kw) -> ApiClient:
    kw = {"requests_per_second": 1000.0, "max_retries": 2, "backoff_s": 0.01, "timeout_s": 5.0, **kw}
    return ApiClient(url, "v4_test_llama", tmp_path, **kw)


ITEMS = [
    QAItem(item_id="fr", question="q", answer="Paris", subject="France"),
    QAItem(item_id="de", question="q", answer="Berlin", subject="Germany"),
]


def test_window_and_entity_queries_follow_the_api_format(server, tmp_path):
    counter = ApiCounter(client(server, tmp_path), "window", ["original"], 50, 50000)
    assert counter.count(ITEMS) == [120, 90]
    assert FakeApi.requests[0] == {
        "index": "v4_test_llama",
        "query_type": "count",
        "query": "France AND Paris",
        "max_diff_tokens": 50,
        "max_clause_freq": 50000,
    }
    counter.measure = "object"
    assert counter.count(ITEMS) == [1000, 500]
    assert FakeApi.requests[-1] == {"index": "v4_test_llama", "query_type": "count", "query": "Berlin"}


def test_case_variants_are_summed(server, tmp_path):
    counter = ApiCounter(client(server, tmp_path), "window", ["original", "lower"], 100, 50000)
    assert counter.count(ITEMS[:1]) == [123]
    counter.measure = "object"
    assert counter.count(ITEMS[:1]) == [1020]


def test_answers_are_cached_on_disk(server, tmp_path):
    first = ApiCounter(client(server, tmp_path), "window", ["original"], 100, 50000)
    assert first.count(ITEMS) == [120, 90]
    sent = len(FakeApi.requests)
    again = ApiCounter(client(server, tmp_path), "window", ["original"], 100, 50000)
    assert again.count(ITEMS) == [120, 90]
    assert len(FakeApi.requests) == sent and again.info()["cache_hits"] == 2
    # Another window is another question.
    assert ApiCounter(client(server, tmp_path), "window", ["original"], 10, 50000).count(ITEMS[:1]) == [120]
    assert len(FakeApi.requests) == sent + 1


def test_server_errors_are_retried_with_backoff(server, tmp_path):
    FakeApi.failures = 2
    waits: list[float] = []
    c = client(server, tmp_path, sleep=waits.append)
    assert c.count("Paris") == 1000
    assert len(FakeApi.requests) == 3
    # Backoff doubles; anything shorter is the rate limit (1 ms here) spacing the retries.
    assert [w for w in waits if w > 0.001] == [0.01, 0.02]


def test_persistent_failure_is_one_clear_error(server, tmp_path):
    FakeApi.failures = 10
    with pytest.raises(DataError, match=r"cannot get an answer from .* after 3 attempts \(HTTP 503\)"):
        client(server, tmp_path).count("Paris")
    assert len(FakeApi.requests) == 3


def test_refused_query_names_the_query(server, tmp_path):
    with pytest.raises(DataError, match="refused 'Atlantis': no such n-gram"):
        client(server, tmp_path).count("Atlantis")
    with pytest.raises(DataError, match="reads AND/OR"):
        ApiCounter(client(server, tmp_path), "subject", ["original"], 10, 10).occurrences(
            "Bosnia AND Herzegovina"
        )


def test_rate_limit_spaces_requests(server, tmp_path):
    waits: list[float] = []
    c = client(server, tmp_path, requests_per_second=2.0, sleep=waits.append)
    for q in ("Paris", "France", "Berlin"):
        c.count(q)
    assert len(waits) == 2 and all(0.3 < w <= 0.5 for w in waits)


def test_unreachable_network_is_one_line(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = from_dict(
        CountConfig,
        {
            "backend": "infinigram-api",
            "api_url": f"http://127.0.0.1:{port}/",
            "cache_dir": str(tmp_path),
            "max_retries": 1,
            "backoff_s": 0.0,
            "timeout_s": 2.0,
        },
    )
    with pytest.raises(DataError) as err:
        count_values(ITEMS, cfg)
    msg = str(err.value)
    assert "\n" not in msg and "cannot get an answer" in msg and "infinigram-local" in msg
