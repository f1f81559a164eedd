"""schemathesis against the served document, in positive mode: requests generated from the document alone
create jobs and batches, and every answer passes schemathesis' standard checks.

No worker runs: the jobs stay queued, so that no generated photo URL or webhook is ever fetched. Photo
parts get a real image (a generator cannot draw one from ``format: binary``); everything else is generated.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from tests.integration.stack import Stack

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402 - after the skip, like schemathesis
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES_PER_OPERATION = 12
STANDARD_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
PHOTO_PARTS = ("image", "background_image", "images")


@pytest.fixture(scope="module")
def stack(stack_factory: Callable[..., Stack]) -> Stack:
    stack = stack_factory("local")
    # Generous budgets: the run must meet the documented answers, not the rate limits.
    stack.start_api(BACKDROP_RATE_LIMIT="100000/minute", BACKDROP_MAX_WAIT_SECONDS="1")
    return stack


def small_photo(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def with_photos(body: object, seed: int) -> object:
    """The generated multipart body with a real image in each photo part."""
    if not isinstance(body, dict):
        return body
    found = dict(body)
    for name in PHOTO_PARTS:
        if isinstance(found.get(name), list):
            found[name] = [small_photo(seed + index) for index, _ in enumerate(found[name])]
        elif name in found:
            found[name] = small_photo(seed)
    return found


def fuzz(operation: schemathesis.APIOperation, stack: Stack, statuses: Counter[tuple[str, int]]) -> None:
    """Bounded examples of one operation, each answer validated with the standard checks."""
    auth = {"Authorization": f"Bearer {stack.token}"}

    @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        if case.media_type == "multipart/form-data":
            case.body = with_photos(case.body, sum(statuses.values()))
        response = case.call_and_validate(base_url=stack.api_url, headers=auth, checks=STANDARD_CHECKS, timeout=30)
        statuses[(operation.label, response.status_code)] += 1

    run()


def test_generated_requests_pass_the_standard_checks(stack: Stack) -> None:
    schema = schemathesis.openapi.from_url(f"{stack.api_url}/openapi.json")
    statuses: Counter[tuple[str, int]] = Counter()
    for result in schema.get_all_operations():
        fuzz(result.ok(), stack, statuses)
    assert statuses[("POST /v1/jobs", 202)] >= 1, statuses
    assert statuses[("POST /v1/batches", 202)] >= 1, statuses
    assert not [key for key in statuses if key[1] >= 500], statuses
