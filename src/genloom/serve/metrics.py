"""What the server counts, in the Prometheus format (``GET /metrics``): requests, tokens, queue depth, latencies."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Seconds: from a few milliseconds (a tiny model's next token) to a minute (a long beam search on a CPU).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """One registry per server (so that two servers in one process, as in the tests, count apart)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("genloom_requests", "Requests answered, by endpoint and HTTP status.",
                                ["endpoint", "status"], registry=r)
        self.prompt_tokens = Counter("genloom_prompt_tokens", "Prompt (or source) tokens read.", ["model"], registry=r)
        self.generated_tokens = Counter("genloom_generated_tokens", "Tokens generated.", ["model"], registry=r)
        self.active = Gauge("genloom_active_requests", "Requests accepted and not yet finished (queued or decoding).",
                            ["model"], registry=r)
        self.queue_depth = Gauge("genloom_queue_depth", "Requests waiting to join the decode batch.", ["model"],
                                 registry=r)
        self.batch_rows = Gauge("genloom_batch_rows", "Rows in the running decode batch.", ["model"], registry=r)
        self.latency = Histogram("genloom_request_seconds", "Time from a request's arrival to its last byte.",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.first_token = Histogram("genloom_time_to_first_token_seconds", "Time from arrival to the first token.",
                                     ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.between_tokens = Histogram("genloom_inter_token_seconds", "Time between a request's decoding steps.",
                                        ["model"], buckets=LATENCY_BUCKETS, registry=r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
