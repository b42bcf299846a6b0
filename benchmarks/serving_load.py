"""Load generator for a TF-Serving-style REST endpoint: latency percentiles and throughput.

Used by the serving benchmark against `tfrs_llmrec.serving.server` (or TF Serving itself).
Standard library only, and each client thread holds one keep-alive connection, as a production
client pool does, so that the numbers are the server's and not connection set-up or a client
library's.
"""

import http.client
import json
import math
import threading
import time
from urllib.parse import urlsplit


def _percentile(sorted_values: list, percent: float) -> float:
    """Nearest-rank percentile (a value that was observed, no interpolation); NaN when empty."""
    if not sorted_values:
        return math.nan
    return sorted_values[max(0, math.ceil(percent / 100 * len(sorted_values)) - 1)]


def measure_latency(url: str, payloads, concurrency: int = 4, duration_s=None, num_requests=None,
                    timeout_s: float = 30.0) -> dict:
    """POSTs `payloads` (JSON-serialisable objects, or bytes sent as they are), in turn, to `url`
    from `concurrency` threads, until `duration_s` has passed or `num_requests` have been sent
    (give exactly one).

    Returns {"p50_ms", "p99_ms", "qps", "errors", "requests"}: percentiles over the successful
    (2xx) requests, qps = successful requests per second of wall time, errors = other answers
    plus requests that failed on the connection (the client then reconnects), requests = sent.
    """
    if (duration_s is None) == (num_requests is None):
        raise ValueError("give exactly one of duration_s and num_requests")
    if not payloads or concurrency < 1:
        raise ValueError("need at least one payload and one client")
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"expected an http://host[:port]/path URL, got {url!r}")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    bodies = [payload if isinstance(payload, bytes) else json.dumps(payload).encode() for payload in payloads]
    headers = {"Content-Type": "application/json"}
    lock = threading.Lock()
    sent = 0
    deadline = None

    def next_body():
        nonlocal sent
        with lock:
            if num_requests is not None and sent >= num_requests:
                return None
            if duration_s is not None and time.perf_counter() >= deadline:
                return None
            sent += 1
            return bodies[(sent - 1) % len(bodies)]

    def client(latencies: list, errors: list) -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout_s)
        while (body := next_body()) is not None:
            started = time.perf_counter()
            try:
                connection.request("POST", path, body, headers)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                errors.append(1)
                connection.close()  # the next request opens a new connection
                continue
            if 200 <= response.status < 300:
                latencies.append(time.perf_counter() - started)
            else:
                errors.append(1)
        connection.close()

    # One list per thread: appends never contend on a lock while requests are being timed.
    results = [([], []) for _ in range(concurrency)]
    threads = [threading.Thread(target=client, args=result, name=f"load-client-{number}")
               for number, result in enumerate(results)]
    started = time.perf_counter()
    if duration_s is not None:
        deadline = started + duration_s
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies = sorted(latency for thread_latencies, _ in results for latency in thread_latencies)
    return {"p50_ms": 1000 * _percentile(latencies, 50), "p99_ms": 1000 * _percentile(latencies, 99),
            "qps": len(latencies) / elapsed, "errors": sum(len(errors) for _, errors in results),
            "requests": sent}
