"""`medledger compose`: write a docker compose deployment of the devnet consortium."""

from __future__ import annotations

from pathlib import Path

import click
from eth_keys import keys

from genesis.schema import GenesisError
from node.cli_node import DEVNET_CHAIN_ID, devnet_account_keys
from node.compose import NODE_IMAGE, ComposeError, write_compose


@click.command("compose")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              required=True, help="Empty or new directory for the compose file, genesis and keys.")
@click.option("--validators", type=click.IntRange(1, 16), default=4, show_default=True,
              help="Hospital validators; each also gets its own Kubo node.")
@click.option("--auditor/--no-auditor", default=True, show_default=True,
              help="Add a read-only auditor node.")
@click.option("--chain-id", type=click.IntRange(1, 2**63 - 1), default=DEVNET_CHAIN_ID,
              show_default=True)
@click.option("--block-period", type=click.IntRange(1), default=1, show_default=True)
@click.option("--accounts", type=click.IntRange(0, 100), default=5, show_default=True,
              help="Pre-fund the devnet's well-known development accounts (public keys!).")
@click.option("--image", default=NODE_IMAGE, show_default=True, help="Node image to run.")
def compose_command(
    out_dir: Path, validators: int, auditor: bool, chain_id: int, block_period: int,
    accounts: int, image: str,
) -> None:
    """Write OUT/docker-compose.yml with hospitals, an auditor and a private IPFS swarm."""
    prefund = {
        keys.PrivateKey(k).public_key.to_canonical_address(): 10**24
        for k in devnet_account_keys(accounts)
    }
    try:
        compose_file = write_compose(
            out_dir, validators=validators, auditor=auditor, chain_id=chain_id,
            block_period=block_period, prefund=prefund, image=image,
        )
    except (ComposeError, GenesisError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {out_dir}: {exc}") from None
    click.echo(f"wrote {compose_file}")
    click.echo(f"start it with: docker compose -f {compose_file} up")
