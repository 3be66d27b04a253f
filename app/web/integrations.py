"""The route handlers of the integrations, for the app factory."""

from __future__ import annotations

from app.alerts.pages import AlertsAPI, AlertsPage
from app.exports.pages import ExportsAPI, ExportsPage
from app.finetune.pages import FineTuneAPI, FineTunePage
from app.ingest.api import OTLPController
from app.pricing.pages import PricesPage

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
