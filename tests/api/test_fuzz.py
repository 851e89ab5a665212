"""Schema-driven fuzzing (schemathesis + hypothesis) of every operation in the app's OpenAPI
description, on the real seed index: valid and invalid parameters alike never give a 5xx.

Bounded and reproducible: a fixed number of examples per operation and mode, derandomised.
Runs with an API token configured and sent, so that the search code and the admin reload are
reached rather than stopped at the door.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from api.app import SearcherHolder, create_app

TOKEN = "fuzz-t0ken"
# Examples per operation and generation mode; the admin reload loads the index each time.
EXAMPLES = {"/api/admin/reload": 8, "/api/health": 10}
DEFAULT_EXAMPLES = 200


@pytest.fixture(scope="module")
def app(seed_settings, seed_index: Path):  # type: ignore[no-untyped-def]
    settings = dataclasses.replace(seed_settings, api_token=TOKEN)
    holder = SearcherHolder(settings)
    holder.load()  # the ASGI transport does not run the lifespan
    return create_app(settings, holder)


def operations(app):  # type: ignore[no-untyped-def]
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return [result.ok() for result in schema.get_all_operations()]


def test_every_operation_is_fuzzed_without_a_server_error(app) -> None:  # type: ignore[no-untyped-def]
    ops = operations(app)
    described = {(method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item}
    assert {(op.method.upper(), op.path) for op in ops} == described
    assert len(described) >= 6

    counts: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    failures: list[str] = []

    def fuzz(op, mode: GenerationMode) -> None:  # type: ignore[no-untyped-def]
        label = f"{op.method.upper()} {op.path} ({mode.value})"

        @settings(
            max_examples=EXAMPLES.get(op.path, DEFAULT_EXAMPLES),
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=op.as_strategy(generation_mode=mode))
        def run(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})
            counts[label] += 1
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(f"{label}: {case.as_curl_command()} -> {response.status_code} {response.text[:200]}")

        try:
            run()
        except Unsatisfiable:
            # No invalid value exists for some operations (a path segment is any string).
            assert mode is GenerationMode.NEGATIVE, label
            unsatisfiable.append(label)

    unsatisfiable: list[str] = []
    for op in ops:
        fuzz(op, GenerationMode.POSITIVE)
        if list(op.iter_parameters()):
            fuzz(op, GenerationMode.NEGATIVE)
    print(
        "fuzz examples:", dict(counts), "statuses:", dict(sorted(statuses.items())), "no invalid input:", unsatisfiable
    )
    assert failures == [], "\n".join(failures[:10])
    # Every operation was really exercised, valid requests were answered and invalid ones refused.
    # (An operation without parameters has one possible request.)
    assert all(n >= 50 for label, n in counts.items() if "/api/search" in label or "/api/ask" in label), counts
    assert counts["GET /api/documents/{doc_id} (positive)"] >= 50, counts
    assert all(counts[f"{op.method.upper()} {op.path} (positive)"] >= 1 for op in ops), counts
    assert sum(counts.values()) >= 500
    assert statuses[200] > 0 and sum(n for s, n in statuses.items() if 400 <= s < 500) > 0
