"""``backdrop keys``: create, list and revoke API keys (stored hashed in Redis)."""

from __future__ import annotations

import click

from common.api_keys import ApiKeyStore
from common.keyspace import redis_from_settings
from common.settings import get_settings


def _store() -> ApiKeyStore:
    return ApiKeyStore(redis_from_settings(get_settings()))


@click.group()
def keys() -> None:
    """Manage the API keys of the job service (BACKDROP_REDIS_URL)."""


@keys.command()
@click.option("--name", required=True, help="Who or what the key is for.")
def create(name: str) -> None:
    """Create a key; its token and webhook secret are shown once."""
    new = _store().create(name)
    click.echo(f"id:             {new.key.id}")
    click.echo(f"name:           {new.key.name}")
    click.echo(f"api key:        {new.token}")
    click.echo(f"webhook secret: {new.key.webhook_secret}")
    click.echo("Keep the API key now: only its hash is stored.", err=True)


@keys.command(name="list")
def list_keys() -> None:
    """List keys (never their tokens)."""
    for key in _store().list():
        state = f"revoked {key.revoked_at.isoformat()}" if key.revoked_at else "active"
        click.echo(f"{key.id}  {key.created_at.isoformat()}  {state:32}  {key.name}")


@keys.command()
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Revoke a key: its requests are refused from now on."""
    if not _store().revoke(key_id):
        raise click.ClickException(f"no key {key_id!r}")
    click.echo(f"revoked {key_id}")
