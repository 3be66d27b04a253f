"""The dashboard at ``/``: KPIs, charts over a time range, recent runs and a quick-start form."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Template

from app.dashboard.charts import DEFAULT_RANGE, checked_range, dashboard_charts
from app.runs.form import form_context
from app.runs.live_lists import first_rows
from app.runs.runner import Runner
from app.store import Store
from app.store.runs import totals


class DashboardPage(Controller):
    path = "/"
    include_in_schema = False

    @get("/")
    async def dashboard(
        self,
        store: NamedDependency[Store],
        runner: NamedDependency[Runner],
        range_key: Annotated[str, QueryParameter(name="range")] = DEFAULT_RANGE,
    ) -> Template:
        charts = await store.read(dashboard_charts, checked_range(range_key))
        kpis = await store.read(totals)
        recent = await first_rows(store, compact=True)
        return Template(
            "dashboard.html",
            context={
                "kpis": kpis,
                "runs": recent,
                "nav": "dashboard",
                "charts": charts,
                **form_context(runner),
            },
        )
