"""bench.incremental_ckpt's counting and its HF peer: uploads counted at botocore's HTTP
session, HF's own checkpoint uploaded file by file, the frozen base's fingerprint timed."""

from __future__ import annotations

import shutil
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lazarus_devstack.bench_harness import spread
from lazarus_trainer.base_fingerprint import FrozenBase

MB = 1e6


class Uploads:
    """Requests and body bytes botocore sends (PUT/POST), counted at its HTTP session."""

    def __init__(self) -> None:
        from botocore.httpsession import URLLib3Session

        self.requests = self.bytes = 0
        self._lock = threading.Lock()
        send = URLLib3Session.send

        def counted(session: Any, request: Any) -> Any:
            if request.method in ("PUT", "POST"):
                size = int(request.headers.get("Content-Length") or 0)
                with self._lock:
                    self.requests += 1
                    self.bytes += size
            return send(session, request)

        URLLib3Session.send = counted  # type: ignore[method-assign,assignment]

    def now(self) -> tuple[int, int]:
        with self._lock:
            return self.requests, self.bytes


def hf_save(trainer: Any, client: Any, bucket: str, job: str) -> Callable[[], None]:
    counter = iter(range(1, 1_000_000))

    def save() -> None:
        n = next(counter)
        trainer.state.global_step = n
        trainer._save_checkpoint(trainer.model, trial=None)
        d = Path(trainer.args.output_dir) / f"checkpoint-{n}"
        for f in sorted(p for p in d.rglob("*") if p.is_file()):
            client.upload_file(str(f), bucket, f"hf-{job}/{n}/{f.relative_to(d).as_posix()}")
        shutil.rmtree(d)

    return save


def fingerprint_cost(model: Any, rounds: int) -> dict[str, float]:
    from lazarus_trainer.base_fingerprint import frozen_state

    size = sum(t.numel() * t.element_size() for t in frozen_state(model).values())
    took = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        FrozenBase().add("model", model)
        took.append(time.perf_counter() - t0)
    print(f"fingerprint of the {size / MB:.0f} MB frozen base: {spread(took)} s", flush=True)
    return {"frozen_mb": size / MB, "seconds_median": statistics.median(took)}
