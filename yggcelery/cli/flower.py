"""``ygg flower``: Flower, the Celery web UI, for the cluster's app, behind HTTP basic auth.

Flower is a ``celery`` subcommand; it runs in this process (``app.start(["flower", ...])``), so the
credentials travel in memory and never show in a process list. It listens on
``settings.flower.address`` (127.0.0.1 by default). With no password configured one is generated
and printed once on stdout. Listening anywhere but loopback without auth is refused.

Flower's own ``/metrics`` and ``/healthcheck`` answer **without** the password (Flower 2.2
exempts them from basic auth), which is why it stays on loopback unless something in front of it
(the Docker pod's loopback-only port, an SSH tunnel) limits who can reach it.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import secrets
from dataclasses import dataclass

import click

from yggcelery.celery_app import make_app
from yggcelery.cli.context import Context, pass_context
from yggcelery.cli.services import require_broker
from yggcelery.errors import AddressInUse, ConfigError
from yggcelery.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlowerLaunch:
    """Where Flower listens and who may log in (``password`` None: no auth, loopback only)."""

    address: str
    port: int
    user: str
    password: str | None
    #: Whether the password was generated here (and so must be shown to the operator once).
    generated: bool = False

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}/"

    def argv(self) -> list[str]:
        """The ``celery flower`` arguments (the password included: pass them in memory only)."""
        args = ["flower", f"--address={self.address}", f"--port={self.port}"]
        if self.password is not None:
            args.append(f"--basic_auth={self.user}:{self.password}")
        return args

    def __repr__(self) -> str:
        auth = "basic-auth" if self.password is not None else "no-auth"
        return f"<FlowerLaunch {self.url} {auth} user={self.user}>"


def is_loopback(address: str) -> bool:
    """Whether ``address`` only accepts local connections (``""`` and ``0.0.0.0`` do not)."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def plan_launch(
    settings: Settings,
    *,
    address: str | None = None,
    port: int | None = None,
    no_auth: bool = False,
) -> FlowerLaunch:
    """Flower's address, port and credentials, or a :class:`ConfigError` for an unsafe choice."""
    flower = settings.flower
    address = flower.address if address is None else address
    port = flower.port if port is None else port
    if no_auth:
        if not is_loopback(address):
            raise ConfigError(
                f"flower: refusing --no-auth on {address or 'all addresses'}: without a password"
                " Flower may only listen on loopback (127.0.0.1)"
            )
        return FlowerLaunch(address=address, port=port, user=flower.user, password=None)
    if flower.password is not None and flower.password.get_secret_value():
        password, generated = flower.password.get_secret_value(), False
    else:
        password, generated = secrets.token_urlsafe(18), True
    if ":" in flower.user or "," in password or "," in flower.user:
        raise ConfigError("flower: user must not contain ':' or ',', nor the password ','")
    return FlowerLaunch(
        address=address, port=port, user=flower.user, password=password, generated=generated
    )


def run_flower(settings: Settings, launch: FlowerLaunch) -> int:
    """Run Flower in the foreground until SIGTERM or Ctrl+C; returns its exit status
    (:class:`AddressInUse` when another process holds its port)."""
    log.info("flower: starting on %s (%r)", launch.url, launch)
    try:
        code: int | None = make_app(settings).start(launch.argv())
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        setting = "flower.port (or --port)"
        raise AddressInUse("flower", launch.address, launch.port, setting=setting) from exc
    return int(code or 0)


@click.command()
@click.option("--address", default=None, help="Listen address (default: flower.address).")
@click.option("--port", type=int, default=None, help="Listen port (default: flower.port).")
@click.option(
    "--no-auth",
    is_flag=True,
    help="No password at all; allowed on a loopback address only.",
)
@pass_context
def flower(ctx: Context, address: str | None, port: int | None, no_auth: bool) -> None:
    """Run Flower (the Celery web UI) for the cluster, with HTTP basic auth.

    Listens on flower.address:flower.port (127.0.0.1:5555). The user is flower.user; the
    password is flower.password (YGG_FLOWER__PASSWORD), or, when unset, a random one printed
    once here. A non-loopback address without auth is refused.

    Note: Flower's own /metrics and /healthcheck are NOT behind the password; keep Flower on
    loopback (reach it with `ssh -L 5555:127.0.0.1:5555 HOST`).
    """
    launch = plan_launch(ctx.settings, address=address, port=port, no_auth=no_auth)
    require_broker(ctx.settings)  # as for worker and beat: a broker outage is one line, exit 2
    if launch.generated:
        click.echo(
            f"Flower: {launch.url}  user {launch.user}  password {launch.password}"
            "  (generated; set flower.password to choose one)"
        )
    elif launch.password is None:
        click.echo(f"Flower: {launch.url}  (no auth, loopback only)")
    else:
        click.echo(f"Flower: {launch.url}  user {launch.user}  (password from settings)")
    ctx_exit = run_flower(ctx.settings, launch)
    if ctx_exit:
        raise SystemExit(ctx_exit)
