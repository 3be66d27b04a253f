"""``agentop migrate`` and ``agentop copy-db --to postgresql://…``.

``migrate`` applies the store's migrations (SQLite in the data dir, or
``AGENTOP_DATABASE_URL``) and says which ran; ``serve`` does the same at start.
``copy-db`` moves a SQLite studio to PostgreSQL (``app.database.copy``), then
prints each table's rows on both sides and fails if any count differs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from app.core.settings import Settings
from app.store import Store
from app.store.backend import is_postgres_url, require_psycopg
from app.store.processes import live_servers

COPY_HELP = """\
Copy the SQLite studio of the data dir into an empty PostgreSQL database
(migrated first), in one transaction: a failed copy leaves the target empty,
so it can be run again. Refused (exit 2) when the URL is not PostgreSQL, the
data dir has no studio, the target holds data already, or a server is running
on the source. Prints progress per table, then the rows of each table on both
sides; exit 1 if any count differs. Files in the data dir (secret.key,
exports) stay there: keep using the same --data-dir with AGENTOP_DATABASE_URL.
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    migrate = sub.add_parser(
        "migrate", help="apply the store's migrations (SQLite, or AGENTOP_DATABASE_URL)"
    )
    migrate.add_argument("--data-dir")
    migrate.set_defaults(func=cmd_migrate)

    copy = sub.add_parser(
        "copy-db",
        help="copy this SQLite studio into an empty PostgreSQL database",
        description=COPY_HELP,
    )
    copy.add_argument("--to", required=True, metavar="URL", help="postgresql://user@host/db")
    copy.add_argument("--data-dir")
    copy.add_argument("--batch", type=int, default=5000, help="rows per COPY batch (default 5000)")
    copy.add_argument(
        "--force",
        action="store_true",
        help="copy even while a server runs on the source: what it writes after the copy"
        " starts is not copied (stop the server instead if you can)",
    )
    copy.set_defaults(func=cmd_copy_db)


def shown(url: str) -> str:
    """A database URL without its password, to print."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(data_dir=Path(args.data_dir) if args.data_dir else None)


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    where = shown(settings.database_url) if settings.database_url else str(settings.db_path)
    store = Store(settings.db_path, url=settings.database_url)
    store.close()
    applied = store.migrations_applied
    print(f"{where}: " + (f"applied {', '.join(applied)}" if applied else "nothing to apply"))
    return 0


def _refuse(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def cmd_copy_db(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not is_postgres_url(args.to):
        return _refuse(f"--to must be a postgresql:// URL, not {args.to.split('://', 1)[0]}://…")
    if args.batch < 1:
        return _refuse("--batch must be at least 1")
    if not settings.db_path.exists():
        return _refuse(f"no studio to copy: {settings.db_path} does not exist")
    try:
        require_psycopg()
    except RuntimeError as exc:
        return _refuse(str(exc))
    import psycopg  # the postgres extra, there now

    from app.database.copy import CopyFailed, CopyRefused, copy_studio, is_derived

    # Opening the store brings an older studio's schema up to date first.
    source = Store(settings.db_path)
    try:
        servers = source.read_sync(live_servers, time.time())
    finally:
        source.close()
    if servers and not args.force:
        return _refuse(
            f"a server is running on this studio ({servers[0]['url']}): stop it first,"
            " or pass --force to copy a snapshot as of now"
        )

    def say(line: str) -> None:
        print(line, flush=True)

    say(f"copying {settings.db_path} to {shown(args.to)}")
    try:
        counts = copy_studio(settings.db_path, args.to, args.batch, say)
    except CopyRefused as exc:
        return _refuse(str(exc))
    except CopyFailed as exc:
        print(f"error: copy failed, nothing was written: {exc}", file=sys.stderr)
        return 1
    except psycopg.OperationalError as exc:
        return _refuse(f"cannot use {shown(args.to)}: {str(exc).strip().splitlines()[0]}")
    width = max(len(c.table) for c in counts)
    print(f"\n{'TABLE':{width}} {'SQLITE':>10} {'POSTGRESQL':>10}")
    for c in counts:
        note = "" if c.same else "  DIFFERS"
        if is_derived(c.table):
            # Recomputed from the copied runs: a difference means the source's had drifted.
            note = "  recomputed" + ("" if c.same else " (the source's differs)")
        print(f"{c.table:{width}} {c.source:>10} {c.target:>10}{note}")
    differ = [c.table for c in counts if not c.same and not is_derived(c.table)]
    if differ:
        print(f"error: counts differ in {', '.join(differ)}", file=sys.stderr)
        return 1
    print(f"\nall counts match: set AGENTOP_DATABASE_URL={shown(args.to)} to serve from it")
    return 0
