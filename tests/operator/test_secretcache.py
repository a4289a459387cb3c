"""The Secrets jobs name, read by GET and kept briefly (secretcache): at rest no GET,
only the named keys kept, a refused or missing Secret read again, bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from lazarus_operator.secretcache import SecretCache

pytestmark = pytest.mark.unit
KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")


class Api:
    """Secrets by (namespace, name), as the API would answer a GET; counts the GETs."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}
        self.gets: list[tuple[str, str]] = []
        self.gate: asyncio.Event | None = None  # hold GETs until set

    async def get(self, ns: str, name: str) -> Mapping[str, Any] | None:
        self.gets.append((ns, name))
        if self.gate is not None:
            await self.gate.wait()
        data = self.secrets.get((ns, name))
        return None if data is None else {"metadata": {"name": name}, "data": dict(data)}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def cache(api: Api, clock: Clock, **kw: Any) -> SecretCache:
    return SecretCache(api.get, ttl_s=300, clock=clock, **kw)


def test_a_secret_is_read_once_within_its_ttl_and_again_after() -> None:
    api, clock = Api(), Clock()
    api.secrets["a", "creds"] = {"AWS_ACCESS_KEY_ID": "QUs=", "AWS_SECRET_ACCESS_KEY": "U0s="}
    c = cache(api, clock)

    async def go() -> None:
        for t in (0.0, 10.0, 299.0):
            clock.now = t
            assert await c.data("a", "creds", KEYS) == api.secrets["a", "creds"]
        assert api.gets == [("a", "creds")], "a job at rest reads its Secret once per TTL"
        api.secrets["a", "creds"]["AWS_ACCESS_KEY_ID"] = "bmV3"
        clock.now = 300.0
        got = await c.data("a", "creds", KEYS)
        assert got is not None and got["AWS_ACCESS_KEY_ID"] == "bmV3"
        assert len(api.gets) == 2

    asyncio.run(go())


def test_only_the_keys_a_job_names_are_kept() -> None:
    api, clock = Api(), Clock()
    api.secrets["a", "mixed"] = {"id": "QUs=", "key": "U0s=", "tls.key": "UFJJVkFURQ=="}
    c = cache(api, clock)
    got = asyncio.run(c.data("a", "mixed", ("id", "key", "AWS_REGION")))
    assert got == {"id": "QUs=", "key": "U0s="}
    assert "UFJJVkFURQ==" not in repr(vars(c)), "a key no job names stays out of memory"


def test_a_missing_secret_is_not_remembered() -> None:
    api, clock = Api(), Clock()
    c = cache(api, clock)

    async def go() -> None:
        assert await c.data("a", "later", KEYS) is None
        api.secrets["a", "later"] = {"AWS_ACCESS_KEY_ID": "QUs="}
        assert await c.data("a", "later", KEYS) == {"AWS_ACCESS_KEY_ID": "QUs="}

    asyncio.run(go())
    assert len(api.gets) == 2


def test_forget_drops_that_secret_only() -> None:
    api, clock = Api(), Clock()
    for ns, name in (("a", "x"), ("a", "y"), ("b", "x")):
        api.secrets[ns, name] = {"AWS_ACCESS_KEY_ID": "QUs="}
    c = cache(api, clock)

    async def go() -> None:
        for ns, name in (("a", "x"), ("a", "y"), ("b", "x")):
            await c.data(ns, name, KEYS)
            await c.data(ns, name, ("AWS_ACCESS_KEY_ID",))  # another job's keys
        c.forget("a", "x")
        for ns, name in (("a", "x"), ("a", "y"), ("b", "x")):
            await c.data(ns, name, KEYS)

    asyncio.run(go())
    assert api.gets.count(("a", "x")) == 3 and api.gets.count(("b", "x")) == 2
    assert api.gets.count(("a", "y")) == 2


def test_least_recently_used_entries_go_beyond_the_bound() -> None:
    api, clock = Api(), Clock()
    for i in range(4):
        api.secrets["a", f"s{i}"] = {"AWS_ACCESS_KEY_ID": "QUs="}
    c = cache(api, clock, max_entries=2)

    async def go() -> None:
        for name in ("s0", "s1", "s0", "s2"):  # s1 is the least recently used
            await c.data("a", name, KEYS)
        assert len(c) == 2
        api.gets.clear()
        await c.data("a", "s0", KEYS)
        await c.data("a", "s2", KEYS)
        assert api.gets == []
        await c.data("a", "s1", KEYS)
        assert api.gets == [("a", "s1")]

    asyncio.run(go())


def test_concurrent_cycles_share_one_get() -> None:
    api, clock = Api(), Clock()
    api.secrets["a", "creds"] = {"AWS_ACCESS_KEY_ID": "QUs="}
    c = cache(api, clock)

    async def go() -> list[dict[str, str] | None]:
        api.gate = asyncio.Event()
        waiters = [asyncio.create_task(c.data("a", "creds", KEYS)) for _ in range(50)]
        await asyncio.sleep(0)
        api.gate.set()
        return await asyncio.gather(*waiters)

    got = asyncio.run(go())
    assert got == [{"AWS_ACCESS_KEY_ID": "QUs="}] * 50
    assert api.gets == [("a", "creds")]
