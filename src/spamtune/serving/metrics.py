"""The service's Prometheus metrics (prometheus_client), one registry per app: requests, latency, batching,
queue depth, decisions and scores, feedback, the store, and the model that answers."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
SCORE_BUCKETS = tuple(i / 10 for i in range(1, 11))


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.requests = Counter("spamtune_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=r)
        self.latency = Histogram("spamtune_request_latency_seconds", "HTTP request latency by route", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("spamtune_batch_size", "Messages per forward pass (micro-batching)",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge("spamtune_queue_depth", "Messages waiting for a forward pass", registry=r)
        self.rejected = Counter("spamtune_overload_rejections", "Requests refused with 503 (queue full or timeout)",
                                ["reason"], registry=r)
        self.predictions = Counter("spamtune_predictions", "Decisions by label and band", ["label", "decision"],
                                   registry=r)
        self.positive_score = Histogram("spamtune_positive_probability",
                                        "Calibrated probability of the positive label (spam)",
                                        buckets=SCORE_BUCKETS, registry=r)
        self.feedback = Counter("spamtune_feedback", "Corrections by type", ["type"], registry=r)
        self.store_written = Counter("spamtune_store_records_written", "Prediction records written", registry=r)
        self.store_failures = Counter("spamtune_store_write_failures",
                                      "Prediction records not recorded (store down or full)", registry=r)
        self.model = Info("spamtune_model", "The run that answers (and the shadow and canary runs)", registry=r)
        self.answers = Counter("spamtune_answers", "Messages answered, by the model's role (primary / canary)",
                               ["role"], registry=r)
        self.swaps = Counter("spamtune_model_swaps", "Registry versions swapped in while serving", registry=r)
        self.shadow_agreement = Counter("spamtune_shadow_decisions", "Shadow decisions: same label as the answer "
                                        "or not", ["agreement"], registry=r)
        self.list_entries = Gauge("spamtune_list_entries", "Active operator-list entries this process decides with",
                                  registry=r)
        self.memory_entries = Gauge("spamtune_memory_entries", "Corrections the answering model's memory decides "
                                    "with", registry=r)
        self.decided_by = Counter("spamtune_decided_by", "Messages decided by a final check (the lists, the memory) "
                                  "instead of "
                                  "the model", ["check", "label"], registry=r)
        self.cache_entries = Gauge("spamtune_decision_cache_entries", "Messages in the answering model's decision "
                                   "cache", registry=r)
        self.cache_lookups = Counter("spamtune_decision_cache_lookups", "Decision cache lookups by result (hit: "
                                     "the message was not scored again)", ["result"], registry=r)
        self.shadow_skipped = Counter("spamtune_shadow_skipped", "Messages the shadow did not score (busy or "
                                      "failed)", registry=r)
