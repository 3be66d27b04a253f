"""The route handlers of the integrations, for the app factory."""

from __future__ import annotations

from app.web.integrations_alerts import AlertsAPI, AlertsPage
from app.web.integrations_exports import ExportsAPI, ExportsPage
from app.web.integrations_finetune import FineTuneAPI, FineTunePage
from app.web.integrations_otlp import OTLPController
from app.web.integrations_prices import PricesPage

CONTROLLERS = [
    OTLPController,
    AlertsPage,
    AlertsAPI,
    ExportsPage,
    ExportsAPI,
    FineTunePage,
    FineTuneAPI,
    PricesPage,
]
