"""`python -m server.keys`: create, list and revoke API keys, and set a tenant's limits.

Works whether or not the server runs: it opens the same database (DATABASE_URL, or the
embedded Postgres under DATA_DIR, shared with a running server) and applies migrations. A new
key is printed once, as the last word of the last line; only its hash is stored.

    python -m server.keys create --tenant acme [--name backend] [--admin]
    python -m server.keys list [--tenant acme]
    python -m server.keys revoke <key id>
    python -m server.keys limits --tenant acme [--max-sessions N] [--starts-per-minute N]
                                               [--max-session-s S]
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from pydantic import ValidationError

from server.auth import keys
from server.config import Settings
from server.persistence.database import Database, DatabaseUnavailable


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m server.keys", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="a new key for a tenant (created if new)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", default="", help="what the key is for")
    create.add_argument("--admin", action="store_true", help="may manage every tenant's keys")
    listing = sub.add_parser("list", help="keys (never their secrets)")
    listing.add_argument("--tenant")
    revoke = sub.add_parser("revoke", help="revoke a key and every token it minted")
    revoke.add_argument("key_id")
    limits = sub.add_parser("limits", help="a tenant's limits (unset ones: server defaults)")
    limits.add_argument("--tenant", required=True)
    limits.add_argument("--max-sessions", type=int)
    limits.add_argument("--starts-per-minute", type=int)
    limits.add_argument("--max-session-s", type=int)
    return p


async def run(args: argparse.Namespace, settings: Settings) -> int:
    db = await Database.open(settings.database_url, settings.data_dir, pool_size=2)
    try:
        pool = db.pool
        info: keys.KeyInfo | None  # None: revoke found no such key
        if args.command == "create":
            key, info = await keys.create(pool, args.tenant, name=args.name, admin=args.admin)
            kind = "admin key" if info.admin else "key"
            print(f"created {kind} {info.id} for tenant {info.tenant_id}")
            print("store it now, it is not shown again:")
            print(key)
        elif args.command == "list":
            for k in await keys.list_keys(pool, args.tenant):
                state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
                admin = " admin" if k.admin else ""
                print(f"{k.id}  {k.tenant_id}  {state}{admin}  {k.created_at:%Y-%m-%d %H:%M}  "
                      f"{k.name}")  # fmt: skip
        elif args.command == "revoke":
            info = await keys.revoke(pool, args.key_id)
            if info is None:
                print(f"no key {args.key_id}", file=sys.stderr)
                return 1
            print(f"revoked {info.id} (tenant {info.tenant_id})")
        else:
            await keys.set_limits(
                pool,
                args.tenant,
                max_sessions=args.max_sessions,
                starts_per_minute=args.starts_per_minute,
                max_session_s=args.max_session_s,
            )
            print(f"limits of {args.tenant} updated")
        return 0
    finally:
        await db.close()


def main() -> None:
    args = parser().parse_args()
    try:
        settings = Settings()
        code = asyncio.run(run(args, settings))
    except ValidationError as exc:
        print(f"invalid configuration:\n{exc}", file=sys.stderr)
        code = 2
    except (DatabaseUnavailable, ValueError) as exc:
        print(str(exc), file=sys.stderr)
        code = 2
    raise SystemExit(code)


if __name__ == "__main__":
    main()
