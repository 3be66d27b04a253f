"""Typed request parameters shared by the handlers.

Row ids are bounded to SQLite's 64-bit integers, so a huge number is a 400
with a message (and documented as such in the OpenAPI schema), not an
overflow deep in a query.
"""

from __future__ import annotations

from typing import Annotated

from litestar.params import PathParameter, QueryParameter

MAX_ID = 2**63 - 1
RowId = Annotated[int, PathParameter(ge=1, le=MAX_ID)]
QueryId = Annotated[int, QueryParameter(ge=1, le=MAX_ID)]
