"""The body of a new alert rule, one msgspec Struct for the JSON API and the page's form.

Which thresholds a rule needs depends on its kind; that is checked here too
(``__post_init__``, which msgspec runs while decoding), so both paths refuse
the same rule with the same message.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

import msgspec

RuleKind = Literal["run_cost", "window_cost", "baseline"]
KINDS: tuple[str, ...] = get_args(RuleKind)
MIN_BASELINE_RUNS = 3
# The fields each kind of rule needs (a missing baseline_runs takes its default).
NEEDS: dict[str, tuple[str, ...]] = {
    "run_cost": ("threshold_usd",),
    "window_cost": ("threshold_usd", "window_s"),
    "baseline": ("multiplier", "baseline_runs"),
}

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"\S")]
Usd = Annotated[float, msgspec.Meta(ge=0, le=1e9, description="USD")]
Seconds = Annotated[float, msgspec.Meta(ge=1, le=90 * 86400, description="seconds")]
Multiplier = Annotated[float, msgspec.Meta(ge=1, le=1e6)]
BaselineRuns = Annotated[int, msgspec.Meta(ge=MIN_BASELINE_RUNS, le=10000)]
WebhookUrl = Annotated[str, msgspec.Meta(pattern=r"^\s*https?://", description="http(s) URL")]
EmailList = Annotated[str, msgspec.Meta(description="e-mail addresses separated by commas")]


class RuleCreate(msgspec.Struct, kw_only=True):
    """A cost alert rule: ``run_cost`` and ``window_cost`` need ``threshold_usd``
    (and ``window_s``), ``baseline`` needs ``multiplier``."""

    name: Name
    kind: RuleKind
    threshold_usd: Usd | None = None
    window_s: Seconds | None = None
    multiplier: Multiplier | None = None
    baseline_runs: BaselineRuns = 20
    webhook_url: WebhookUrl | None = None
    email_to: EmailList | None = None

    def __post_init__(self) -> None:
        for field in NEEDS[self.kind]:
            if getattr(self, field) is None:
                raise ValueError(f"{field} is required for this kind of rule")
        if any("@" not in a or " " in a for a in self.addresses()):
            raise ValueError("email_to must be e-mail addresses separated by commas")

    def addresses(self) -> list[str]:
        return [a.strip() for a in (self.email_to or "").split(",") if a.strip()]
