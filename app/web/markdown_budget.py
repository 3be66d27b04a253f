"""How much work Python-Markdown's link parsing would do on a text, measured in linear time.

Python-Markdown looks for a link at every ``[`` (and a target at every ``(``
after ``]``) by scanning forward to the matching bracket, or to the end of
the text when there is none. Text made of many unclosed or deeply nested
brackets therefore costs quadratic time: 20,000 characters of ``[(!a`` took
17 s, a whole page's worth of event loop. Model output and ingested
telemetry are untrusted, so the renderer first adds up those scan lengths
here and shows text over budget as plain text instead.
"""

from __future__ import annotations

# Scanned characters, summed over every bracket; about 0.15 s of rendering here.
LINK_SCAN_BUDGET = 500_000


def link_scan_cost(text: str) -> int:
    """The sum, over every ``[`` and ``(``, of the distance to its match (or to the end)."""
    cost = 0
    end = len(text)
    for opener, closer in (("[", "]"), ("(", ")")):
        if opener not in text:
            continue
        stack: list[int] = []
        for i, ch in enumerate(text):
            if ch == opener:
                stack.append(i)
            elif ch == closer and stack:
                cost += i - stack.pop()
        cost += sum(end - i for i in stack)
    return cost


def within_budget(text: str) -> bool:
    return link_scan_cost(text) <= LINK_SCAN_BUDGET
