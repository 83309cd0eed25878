"""`medledger genesis new|check`: create a consortium genesis plus validator keys, or check one."""

from __future__ import annotations

import contextlib
import json
import secrets
from pathlib import Path

import click
from eth_utils import keccak, to_checksum_address

from genesis.builder import new_consortium
from genesis.schema import (
    Genesis,
    GenesisError,
    dump_genesis,
    fork_to_json,
    genesis_to_json,
    load_genesis,
    parse_address,
    parse_genesis,
    parse_quantity,
)
from genesis.system import Member
from node.keystore import (
    PASSPHRASE_ENV_VAR,
    KeystoreError,
    resolve_passphrase,
    write_file_exclusive,
    write_keystore,
)

MAX_VALIDATORS = 64


class _RefusedError(click.ClickException):
    """A refusal that must not touch existing files; exit code 2 like a usage error."""

    exit_code = 2


def _parse_prefund(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> dict[bytes, int]:
    prefund: dict[bytes, int] = {}
    for item in values:
        address_text, sep, wei_text = item.partition("=")
        if not sep:
            raise click.BadParameter(f"expected ADDR=WEI, got {item!r}")
        try:
            address = parse_address(address_text.strip(), "ADDR")
            wei = parse_quantity(wei_text.strip(), "WEI")
        except GenesisError as exc:
            raise click.BadParameter(f"{item!r}: {exc}") from None
        if address in prefund:
            raise click.BadParameter(f"{to_checksum_address(address)} is prefunded twice")
        prefund[address] = wei
    return prefund


def _parse_members(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> list[Member] | None:
    members: list[Member] = []
    for item in values:
        name, sep, address_text = item.rpartition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected NAME=ADMIN_ADDRESS, got {item!r}")
        try:
            members.append(Member(name.strip(), parse_address(address_text.strip(), "ADMIN")))
        except GenesisError as exc:
            raise click.BadParameter(f"{item!r}: {exc}") from None
    return members or None


def _check_scrypt_n(_ctx: click.Context, _param: click.Parameter, value: int | None) -> int | None:
    if value is not None and (value < 2 or value & (value - 1)):
        raise click.BadParameter(f"must be a power of two >= 2, got {value}")
    return value


@click.group("genesis")
def genesis_group() -> None:
    """Create or check a consortium genesis file."""


@genesis_group.command("new")
@click.option(
    "--validators",
    "n_validators",
    type=click.IntRange(1, MAX_VALIDATORS),
    required=True,
    help=f"Number of validators to generate (1..{MAX_VALIDATORS}).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory for genesis.json and keys/ (created if missing).",
)
@click.option("--chain-id", type=click.IntRange(1, 2**63 - 1), default=1337, show_default=True)
@click.option(
    "--block-period", type=click.IntRange(1), default=1, show_default=True, help="Seconds."
)
@click.option(
    "--empty-block-period",
    type=click.IntRange(1),
    default=10,
    show_default=True,
    help="Seconds between blocks when there are no transactions.",
)
@click.option(
    "--prefund",
    multiple=True,
    metavar="ADDR=WEI",
    callback=_parse_prefund,
    help="Pre-fund an account (repeatable); WEI is decimal or 0x-hex.",
)
@click.option(
    "--member",
    "members",
    multiple=True,
    metavar="NAME=ADMIN",
    callback=_parse_members,
    help="A founding member hospital and its first admin account (repeatable; default: one "
    "member per validator, administered by the validator address).",
)
@click.option(
    "--no-system-contracts",
    is_flag=True,
    help="Do not predeploy the system contracts (MedLedger, governance, allow-lists).",
)
@click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"File holding the key passphrase (else ${PASSPHRASE_ENV_VAR}, else one is generated).",
)
@click.option(
    "--scrypt-n",
    type=int,
    default=None,
    callback=_check_scrypt_n,
    help="scrypt work factor for the key files (default 262144); lower only for throw-away "
    "devnets.",
)
@click.option(
    "--forks",
    "forks_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="JSON file with the fork schedule: the genesis `forks` array (see OPERATIONS.md).",
)
def new_command(
    n_validators: int,
    out_dir: Path,
    chain_id: int,
    block_period: int,
    empty_block_period: int,
    prefund: dict[bytes, int],
    members: list[Member] | None,
    no_system_contracts: bool,
    passphrase_file: Path | None,
    scrypt_n: int | None,
    forks_file: Path | None,
) -> None:
    """Generate validator keys and a genesis file into OUT."""
    genesis_path = out_dir / "genesis.json"
    keys_dir = out_dir / "keys"
    key_paths = [keys_dir / f"validator-{i}.json" for i in range(1, n_validators + 1)]
    generated_passphrase_path = keys_dir / "passphrase.txt"

    if genesis_path.exists():
        raise _RefusedError(f"refusing to overwrite existing {genesis_path}")
    if members and no_system_contracts:
        raise click.UsageError("--member needs the system contracts (drop --no-system-contracts)")
    try:
        passphrase = resolve_passphrase(passphrase_file)
    except KeystoreError as exc:
        raise click.BadParameter(str(exc), param_hint="--passphrase-file") from None
    targets = [*key_paths, *([generated_passphrase_path] if passphrase is None else [])]
    existing = [p for p in targets if p.exists()]
    if existing:
        raise _RefusedError(f"refusing to overwrite existing {existing[0]}")

    try:
        genesis, private_keys = new_consortium(
            n_validators,
            chain_id=chain_id,
            block_period_seconds=block_period,
            empty_block_period_seconds=empty_block_period,
            prefund=prefund,
            predeploy_system=not no_system_contracts,
            members=members,
        )
        if forks_file is not None:
            genesis = _with_forks(genesis, forks_file)
    except GenesisError as exc:
        raise click.UsageError(str(exc)) from None

    created: list[Path] = []
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        keys_dir.mkdir(mode=0o700, exist_ok=True)
        if passphrase is None:
            passphrase = secrets.token_urlsafe(32)
            write_file_exclusive(generated_passphrase_path, (passphrase + "\n").encode(), 0o600)
            created.append(generated_passphrase_path)
            click.echo(
                f"No passphrase given (--passphrase-file or ${PASSPHRASE_ENV_VAR}): generated one "
                f"and wrote it to {generated_passphrase_path} (mode 0600); keep it secret.",
                err=True,
            )
        for path, private_key in zip(key_paths, private_keys, strict=True):
            write_keystore(path, private_key, passphrase, kdf_iterations=scrypt_n)
            created.append(path)
        write_file_exclusive(genesis_path, dump_genesis(genesis).encode(), 0o644)
        created.append(genesis_path)
    except (KeystoreError, OSError) as exc:
        for path in created:
            with contextlib.suppress(OSError):
                path.unlink()
        message = exc.args[0] if isinstance(exc, KeystoreError) else f"{exc.strerror}: {exc}"
        raise click.ClickException(f"nothing written: {message}") from None

    click.echo(f"Wrote {genesis_path} (chain id {genesis.chain_id}, {n_validators} validators)")
    for index, (address, path) in enumerate(zip(genesis.validators, key_paths, strict=True), 1):
        click.echo(f"validator {index}: {to_checksum_address(address)}  {path}")
    for name, address in genesis.system_contracts.items():
        click.echo(f"system contract {name}: {to_checksum_address(address)}")


def _with_forks(genesis: Genesis, forks_file: Path) -> Genesis:
    """`genesis` with the fork schedule read from `forks_file` (a JSON array), fully checked."""
    try:
        forks = json.loads(forks_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise GenesisError(f"cannot read the fork schedule: {exc}", file=str(forks_file)) from None
    doc = genesis_to_json(genesis)
    doc["forks"] = forks
    return parse_genesis(doc)


def _echo_forks(genesis: Genesis) -> None:
    click.echo(f"forks: {len(genesis.forks)}")
    for fork in genesis.forks:
        click.echo(f"  block {fork.block}: {fork.name}  digest 0x{fork.digest().hex()}")
        if fork.gas_limit is not None:
            click.echo(f"    gas limit -> {fork.gas_limit}")
        for name, value in fork_to_json(fork).get("qbft", {}).items():
            click.echo(f"    qbft {name} -> {value}s")
        for address, upgrade in fork.system_contracts.items():
            click.echo(
                f"    code of {to_checksum_address(address)} -> {len(upgrade.code)} bytes, "
                f"keccak 0x{keccak(upgrade.code).hex()}"
                + (f", {len(upgrade.storage)} storage slots" if upgrade.storage else "")
            )


@genesis_group.command("check")
@click.argument("file", type=click.Path(path_type=Path))
def check_command(file: Path) -> None:
    """Validate a genesis FILE and print a summary."""
    try:
        genesis = load_genesis(file)
    except GenesisError as exc:
        raise click.ClickException(str(exc)) from None
    qbft = genesis.qbft
    click.echo(f"{file}: valid genesis")
    click.echo(f"chain id: {genesis.chain_id}")
    click.echo(f"validators ({len(genesis.validators)}):")
    for address in genesis.validators:
        click.echo(f"  {to_checksum_address(address)}")
    click.echo(f"alloc accounts: {len(genesis.alloc)}")
    click.echo(f"system contracts: {len(genesis.system_contracts)}")
    for name, address in genesis.system_contracts.items():
        click.echo(f"  {name}: {to_checksum_address(address)}")
    click.echo(
        f"qbft: block period {qbft.block_period_seconds}s, empty block period "
        f"{qbft.empty_block_period_seconds}s, request timeout {qbft.request_timeout_seconds}s, "
        f"epoch length {qbft.epoch_length}"
    )
    click.echo(f"gas limit: {genesis.gas_limit}, base fee per gas: {genesis.base_fee_per_gas} wei")
    if genesis.forks:
        _echo_forks(genesis)
