"""The /docs page in headless Chromium, on a phone's viewport: it renders every operation and model of the
served document, the authentication schemes and the examples, shows no raw markup and does not overflow.

Chromium is found as in test_demo_page.py; without it these tests are skipped, except under CI=true.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration.stack import Stack, http
from tests.integration.test_demo_page import PHONE, PageLog, _page_and_log
from tests.integration.test_demo_page import browser as browser  # the Chromium fixture

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

# What a page must never show as text: markup that was meant to be rendered.
RAW_MARKUP = ("``", "<br", "</", "<code", "**", "`")


@pytest.fixture(scope="module")
def stack(stack_factory: Callable[..., Stack]) -> Stack:
    stack = stack_factory("local")
    stack.start_api()
    return stack


@pytest.fixture(scope="module")
def document(stack: Stack) -> dict[str, Any]:
    return http("GET", f"{stack.api_url}/openapi.json").json()


@pytest.fixture
def phone_docs(browser: Browser, stack: Stack) -> Iterator[tuple[Page, PageLog]]:
    for page, log in _page_and_log(browser, PHONE, record_states=False):
        page.goto(f"{stack.api_url}/docs")
        page.wait_for_selector("body[data-rendered='true']")
        yield page, log


def test_every_operation_and_model_is_rendered(phone_docs: tuple[Page, PageLog], document: dict[str, Any]) -> None:
    page, log = phone_docs
    operation_ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    for operation_id in operation_ids:
        assert page.locator(f"#op-{operation_id}").count() == 1, operation_id
    assert page.locator("section.op").count() == len(operation_ids)
    for name in document["components"]["schemas"]:
        assert page.locator(f"#schema-{name}").count() == 1, name
    job_form = page.locator("#op-createJob").inner_text()
    assert "image_url" in job_form and "multipart/form-data" in job_form and "Location" in job_form
    assert "application/json" in page.locator("#op-createBatch").inner_text()
    assert not log.errors and not log.csp_violations(), log


def test_authentication_and_examples_are_shown(phone_docs: tuple[Page, PageLog], document: dict[str, Any]) -> None:
    page, _ = phone_docs
    auth = page.locator("#authentication").inner_text()
    assert "Authorization: Bearer <key>" in auth and "X-Api-Key" in auth
    assert "API key" in page.locator("#op-getJob").inner_text()
    assert "No API key needed" in page.locator("#op-healthz").inner_text()
    page.locator("#schema-JobModel details.example summary").first.click()
    example_id = document["components"]["schemas"]["JobModel"]["examples"][0]["id"]
    assert example_id in page.locator("#schema-JobModel pre").first.inner_text()
    examples = page.locator("details.example").count()
    assert examples >= 10, examples


def test_no_raw_markup_and_no_horizontal_overflow_on_a_phone(phone_docs: tuple[Page, PageLog]) -> None:
    page, _ = phone_docs
    for details in page.locator("details").all():
        details.evaluate("node => { node.open = true; }")
    text = page.locator("body").inner_text()
    shown = [marker for marker in RAW_MARKUP if marker in text]
    assert not shown, shown
    assert page.locator("code").count() > 50  # the `code` spans of descriptions, rendered
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], widths
    too_wide = page.evaluate(
        "() => [...document.querySelectorAll('body *')].filter((n) => n.getBoundingClientRect().right > "
        "window.innerWidth + 1).map((n) => n.tagName + ' ' + (n.id || n.className)).slice(0, 5)"
    )
    assert not too_wide, too_wide
