"""A deployment's availability as routing reads it: one comparison per call, kept right by the
methods that change the state (a 429's cooldown, a failure's until a probe, a refusal of our
credentials until a reload)."""
from __future__ import annotations

import math
import time

from monoai_tornado.backends.demo import DemoBackend
from monoai_tornado.config import DeploymentConfig
from monoai_tornado.routing.slots import ModelRoute
from monoai_tornado.routing.state import Deployment


def deployment(ident: str = "m#1") -> Deployment:
    return Deployment(DeploymentConfig(name="m", id=ident, backend="demo"), DemoBackend(delay=0))


def test_a_429_cooldown_ends_by_itself_and_a_failure_only_with_a_probe() -> None:
    replica = deployment()
    now = time.monotonic()
    assert replica.usable(now) and replica.state(now) == "ok"

    replica.cool_down(5.0, failure=False)  # a 429 with Retry-After: 5
    assert not replica.usable(now) and replica.usable(now + 6.0)
    assert replica.state(now) == "cooldown"

    replica.cool_down(1.0, failure=True)  # then a failure: out until a probe brings it back
    assert not replica.usable(now + 3600.0) and replica.available_at == math.inf
    replica.rejoin()
    assert replica.usable(time.monotonic()) and replica.state() == "ok"


def test_a_deployment_that_refused_our_credentials_stays_out_even_when_it_rejoins() -> None:
    replica = deployment()
    replica.disable()
    assert not replica.usable(time.monotonic() + 3600.0) and replica.state() == "disabled"
    replica.rejoin()  # (a probe may not bring it back: only a reload does)
    assert not replica.usable(time.monotonic() + 3600.0)
    replica.cool_down(1.0, failure=False)
    assert not replica.usable(time.monotonic() + 3600.0)


def test_the_route_takes_only_usable_deployments_with_room() -> None:
    first, second = deployment("m#1"), deployment("m#2")
    route = ModelRoute("m", [first, second], (), "least-busy", 0.0)
    first.cool_down(60.0, failure=False)
    chosen = [route.take(set()) for _ in range(3)]
    assert all(slot is not None and slot.deployment is second for slot in chosen)
    assert route.take({"m#2"}) is None  # the other one is cooling down
    second.disable()
    assert route.select(frozenset(), time.monotonic()) is None  # none usable: 503 no_deployment
    first.rejoin()
    slot = route.take(set())
    assert slot is not None and slot.deployment is first
