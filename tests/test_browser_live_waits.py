"""A person in Chromium watches a run wait: every wait is named and timed, tokens count up live.

The fake Mistral server streams a tool call's arguments and then the answer
slowly (a delay between chunks in the fake network peer), and the tool asks
a fake Hub that answers after a delay, so each wait lasts long enough to see.
"""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser import log_in, save_shot
from tests.conftest import MISTRAL_MODEL
from tests.fake_mistral import Reply
from tests.test_live_waits import hub, settings  # noqa: F401 - fixtures: the slow Hub

pytestmark = pytest.mark.browser

ANSWER = "bert-base-uncased is the model you are looking for, and there are more."


def test_the_run_page_explains_each_wait_live(browser, live_server, fake_mistral, keys, tmp_path):
    fake_mistral.add(
        Reply(
            tool_calls=[{"name": "hf_list_models", "arguments": {"search": "bert", "limit": 3}}],
            args_chunk_size=3,
            delay_s=0.3,
            usage=(40, 12),
        ),
        Reply(text=ANSWER, chunk_size=3, delay_s=0.15, usage=(60, 20)),
    )
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    log_in(page, live_server.url, keys["viewer"])
    r = httpx.post(
        live_server.url + "/api/runs",
        headers={"X-API-Key": keys["member"]},
        json={"prompt": "find bert models", "model": MISTRAL_MODEL, "tools": ["hf_list_models"]},
        timeout=10,
    )
    assert r.status_code == 201, r.text
    page.goto(f"{live_server.url}/runs/{r.json()['run_id']}")
    activity = page.locator("#activity")

    # The model writes the tool call: the line names the tool, the arguments appear as they come.
    expect(activity).to_contain_text("Writing a tool call: hf_list_models", timeout=10_000)
    expect(page.locator("#tool-draft")).to_contain_text('{"se', timeout=5_000)
    save_shot(page, tmp_path, "run-writing-tool-call")
    # The tool runs (the Hub answers after 1.6 s): the timer ticks.
    expect(activity).to_contain_text(re.compile(r"Calling hf_list_models… [1-9]\d* s"))
    save_shot(page, tmp_path, "run-calling-tool")
    assert page.inner_text("#tool-draft") == ""  # the call is on its card now

    # The answer streams: "Tokens out" counts up live, before the call reports its usage.
    tokens_out = page.locator("#tokens-out")
    expect(tokens_out).to_contain_text(re.compile(r"≈ 1[3-9] live"), timeout=10_000)
    first = int(re.search(r"≈ (\d+)", tokens_out.inner_text()).group(1))  # type: ignore[union-attr]
    expect(tokens_out).to_contain_text(re.compile(rf"≈ (?!{first}\b)\d+ live"))
    assert "Writing the answer…" in activity.inner_text()
    # The pieces join as one text (nothing the live count brings along shows in it).
    draft = page.inner_text("#draft")
    assert draft and "\n" not in draft and ANSWER.startswith(draft)
    save_shot(page, tmp_path, "run-tokens-live")

    # The run ends: the exact usage replaces the estimate and the line goes away.
    expect(page.locator("#run-status")).to_have_class(re.compile("status-succeeded"))
    expect(tokens_out).to_have_text("32")
    expect(activity).to_have_text("")
    assert errors == []
