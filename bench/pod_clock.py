"""When pods appeared and went, as this process saw them: the clock the operator benchmarks
(bench.operator_restart_latency, bench.operator_scale) time restarts by."""

from __future__ import annotations

import json
import threading
import time

from kubernetes import client
from kubernetes.watch.watch import iter_resp_lines


class PodClock:
    """Local receive times of pod ADDED/DELETED events, by pod name.

    One watch that resumes from the last resourceVersion it saw. A watch restarted
    without one replays every existing pod as ADDED first (4,000 at the scale
    benchmark's 1,000 jobs), and the client's per-event model decoding took ~8 s over
    that replay: pods created meanwhile were stamped seconds after the API server had
    them (their creationTimestamps said so), a lag of the clock, not of the operator.
    Events are read as plain JSON for the same reason."""

    def __init__(self, api: client.ApiClient, ns: str, window_s: int = 60) -> None:
        self.core = client.CoreV1Api(api)
        self.ns = ns
        self.window_s = window_s  # each watch request's length before it resumes
        self.added: dict[str, float] = {}
        self.deleted: dict[str, float] = {}
        self.events = 0  # ADDED/MODIFIED/DELETED events read, over every request
        self.cv = threading.Condition()
        self._rv: str | None = None  # resume point; None: replay the current pods
        self._stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._watch()
            except Exception:  # a dropped stream (the server closed it): watch again
                time.sleep(0.1)

    def _watch(self) -> None:
        resp = self.core.list_namespaced_pod(
            self.ns,
            label_selector="lazarus.dev/job",
            watch=True,
            allow_watch_bookmarks=True,
            resource_version=self._rv,
            timeout_seconds=self.window_s,
            _preload_content=False,
        )
        try:
            for line in iter_resp_lines(resp):
                if not line.strip():
                    continue
                ev = json.loads(line)
                now, obj = time.monotonic(), ev["object"]
                if ev["type"] == "ERROR":
                    if obj.get("code") == 410:  # too old to resume from: replay
                        self._rv = None
                    return
                self._rv = obj["metadata"]["resourceVersion"]
                if ev["type"] == "BOOKMARK":
                    continue
                name = obj["metadata"]["name"]
                with self.cv:
                    self.events += 1
                    if ev["type"] == "ADDED":
                        self.added.setdefault(name, now)
                    elif ev["type"] == "DELETED":
                        self.deleted.setdefault(name, now)
                    self.cv.notify_all()
                if self._stop.is_set():
                    return
        finally:
            resp.release_conn()

    def stop(self) -> None:
        self._stop.set()
