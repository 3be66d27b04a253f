"""The login and key-management forms as msgspec Structs, read with ``app.web.bodies.from_form``.

Shapes only: which role names exist and what would lock the team out are
checked by ``app.auth.keys``, which the CLI calls too.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

KeyName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"\S")]


class LoginForm(msgspec.Struct, kw_only=True):
    key: str = ""
    next: str = "/"  # where to go after logging in (same-site paths only)


class KeyCreate(msgspec.Struct, kw_only=True):
    name: KeyName
    role: str  # viewer | member | admin


class KeyRevoke(msgspec.Struct, kw_only=True):
    name: str
    confirm: str = ""  # "yes" once an admin confirmed revoking their own key


class KeyRoleChange(msgspec.Struct, kw_only=True):
    name: str
    role: str
