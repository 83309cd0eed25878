"""`medledger config check|example`: the effective configuration, and a documented template."""

from __future__ import annotations

import os
from pathlib import Path

import click

from node.config import ConfigError, NodeSettings, example_toml, load_config


@click.group("config")
def config_group() -> None:
    """Check and document the node's TOML configuration."""


@config_group.command("example")
def config_example() -> None:
    """Print a config file with every option, its default and its documentation."""
    click.echo(example_toml(), nl=False)


@config_group.command("check")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="The TOML config file (else only env variables and defaults).")
def config_check(config_path: Path | None) -> None:
    """Print the effective configuration (with each value's source) or say what is wrong."""
    try:
        settings = load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    problems = _check_files(settings)
    click.echo(settings.to_toml(), nl=False)
    if problems:
        raise click.ClickException("; ".join(problems))
    click.echo("# configuration OK", err=True)


def _check_files(settings: NodeSettings) -> list[str]:
    """What the node would trip over at start: unreadable genesis or key, unusable datadir."""
    from genesis.schema import GenesisError, load_genesis
    from node.keystore import KeystoreError, keystore_address

    problems: list[str] = []
    genesis: Path = settings["node.genesis"]
    try:
        load_genesis(genesis)
    except GenesisError as exc:
        problems.append(f"node.genesis {genesis}: {exc}")
    except OSError as exc:
        problems.append(f"node.genesis {genesis}: {exc.strerror}")
    key: Path | None = settings["node.key"]
    if key is not None:
        try:
            keystore_address(key)
        except KeystoreError as exc:
            problems.append(f"node.key: {exc}")
    node_key: Path | None = settings["node.node_key"]
    if node_key is not None:
        try:
            keystore_address(node_key)
        except KeystoreError as exc:
            problems.append(f"node.node_key: {exc}")
    for option in ("node.passphrase_file", "node.node_key_passphrase_file"):
        passphrase_file: Path | None = settings[option]
        if passphrase_file is not None and not os.access(passphrase_file, os.R_OK):
            problems.append(f"{option} {passphrase_file} is not readable")
    datadir: Path = settings["node.datadir"]
    existing = next((p for p in (datadir, *datadir.parents) if p.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK):
        problems.append(f"node.datadir {datadir} cannot be created or written")
    return problems


if __name__ == "__main__":  # `python -m node.cli_config` until the group joins `medledger`
    config_group()
