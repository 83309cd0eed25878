"""The `medledger` command line: one click group, sub-commands live in their own modules."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="medledger")
def main() -> None:
    """medledger: node software for a permissioned consortium of hospitals."""


def _register_subcommands() -> None:
    from node.cli_chaos import chaos_command
    from node.cli_compose import compose_command
    from node.cli_config import config_group
    from node.cli_db import db_group
    from node.cli_genesis import genesis_group
    from node.cli_keys import keys_group
    from node.cli_node import devnet, node_group, status
    from node.cli_record import record_group
    from node.cli_zk import zk_group

    main.add_command(genesis_group)
    main.add_command(node_group)
    main.add_command(devnet)
    main.add_command(status)
    main.add_command(record_group)
    main.add_command(compose_command)
    main.add_command(keys_group)
    main.add_command(db_group)
    main.add_command(config_group)
    main.add_command(chaos_command)
    main.add_command(zk_group)


_register_subcommands()
