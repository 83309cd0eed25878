"""Gas per operation of the system contracts, next to the targets and the seed design's naive
`grantAccess` baseline, measured side by side on one real chain (py-evm, Prague rules).

Run: uv run python -m bench.gas

Transaction rows are receipt gas (what the sender pays: the 21000 base and calldata included).
View rows are the gas the call executes (`canAccess` as an eth_call); eth_estimateGas reports
that plus the 21000 + calldata intrinsic cost that no contract can avoid, shown in the notes.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from eth_utils import keccak

from contracts.artifacts import load_artifact
from contracts.bindings import BreakGlassReason, Contract, Purpose, hospital_grantee
from genesis.schema import AllocAccount
from tests.contract_chain import CID, Consortium

NAIVE_ADDRESS = bytes.fromhex("000000000000000000000000000000000000beef")
TREATMENT = 1
BATCH = 11  # one grant plus ten additional ones


@dataclass(frozen=True)
class GasRow:
    """One operation: our gas, the issue's target (None: informational) and the naive baseline."""

    operation: str
    gas: int
    target: int | None = None
    naive: int | None = None
    note: str = ""

    @property
    def meets_target(self) -> bool | None:
        return None if self.target is None else self.gas < self.target


def measure(workdir: Path) -> list[GasRow]:
    """Run every measured operation on a fresh consortium chain under `workdir`."""
    naive_code = load_artifact("NaiveAccess").deployed_bytecode
    c = Consortium(workdir, extra_alloc={NAIVE_ADDRESS: AllocAccount(nonce=1, code=naive_code)})
    try:
        return _measure(c, Contract.from_artifact("NaiveAccess", NAIVE_ADDRESS))
    finally:
        c.close()


def _measure(c: Consortium, naive: Contract) -> list[GasRow]:
    m = c.medledger
    rows: list[GasRow] = []
    doc_b, pat = c.address("doc-b"), c.address("pat-1")
    far = c.now + 365 * 86_400

    def ids(label: str, n: int) -> list[bytes]:
        return [keccak(f"{label}-{i}".encode()) for i in range(n)]

    def naive_tx(name: str, data: bytes) -> int:
        return c.ok(name, data, to=naive.address).gas_used

    # Record version registration.
    records = ids("record", 2 + 2 * BATCH)
    first = c.ok("doc-a", m.create_record(records[0], pat, "Observation", CID, keccak(b"v1")))
    naive_record = naive_tx("doc-a", naive.encode(
        "addRecord", records[0], "b" + "a" * 58, keccak(b"v1"), 1, "Observation"))
    rows.append(GasRow("record version registration (new record)", first.gas_used, 80_000,
                       naive_record, "naive: every field in storage"))
    added = c.ok("doc-a", m.add_version(records[0], CID, keccak(b"v2")))
    naive_version = naive_tx("doc-a", naive.encode(
        "addRecord", records[0], "b" + "c" * 58, keccak(b"v2"), 1, "Observation"))
    rows.append(GasRow("record version registration (next version)", added.gas_used, 80_000,
                       naive_version))
    block = c.chain.send_block([
        (c.keys["doc-a"], m.address, m.create_record(r, pat, "Observation", CID, keccak(r)))
        for r in records[1:]
    ])
    assert all(r.success for r in block)

    # Grants: single, then batches of one and of BATCH to get the cost of each additional one.
    single = c.ok("pat-1", m.grant(doc_b, records[1], TREATMENT, far))
    naive_single = naive_tx("pat-1", naive.encode("grantAccess", records[1], doc_b))
    rows.append(GasRow("grant (single record)", single.gas_used, 60_000, naive_single,
                       "naive: 4-slot struct per record hash"))
    one = c.ok("pat-1", m.grant_records(doc_b, records[2:3], TREATMENT, far)).gas_used
    many = c.ok("pat-1", m.grant_records(doc_b, records[3:3 + BATCH], TREATMENT, far)).gas_used
    naive_one = naive_tx("pat-1", naive.encode("grantAccessBatch", records[2:3], doc_b))
    naive_many = naive_tx("pat-1", naive.encode("grantAccessBatch", records[3:3 + BATCH], doc_b))
    rows.append(GasRow("grant, each additional record in a batch", (many - one) // (BATCH - 1),
                       30_000, (naive_many - naive_one) // (BATCH - 1),
                       f"(batch of {BATCH} - batch of 1) / {BATCH - 1}"))
    type_grant = c.ok("pat-1", m.grant_resource_type(pat, c.address("doc-c"), "DiagnosticReport",
                                                     TREATMENT, far))
    rows.append(GasRow("grant (resource type, first one)", type_grant.gas_used))
    hospital_grant = c.ok("pat-2", m.grant_resource_type(c.address("pat-2"), hospital_grantee(3),
                                                         0, TREATMENT, far))
    rows.append(GasRow("grant (all records to a hospital, first one)", hospital_grant.gas_used))
    revoke = c.ok("pat-1", m.revoke(doc_b, records[1]))
    naive_revoke = naive_tx("pat-1", naive.encode("revokeAccess", records[1]))
    rows.append(GasRow("revoke (single record)", revoke.gas_used, None, naive_revoke,
                       "refund of the cleared slot included"))

    # canAccess as eth_call: execution gas (the estimate adds 21000 + calldata).
    def view(grantee: bytes, record: bytes, purpose: Purpose = Purpose.TREATMENT) -> tuple[
            int, int]:
        return c.chain.call_gas(m.address, m.encode("canAccess", grantee, record, int(purpose)))

    def naive_view(record: bytes, who: bytes) -> int:
        return c.chain.call_gas(naive.address, naive.encode("checkAccess", record, who))[0]

    granted = records[2]
    nurse_b = c.address("nurse-b")
    for label, (execution, estimate), naive_gas in (
        ("canAccess: allowed by a record grant", view(doc_b, granted), naive_view(granted, doc_b)),
        ("canAccess: denied, no grant", view(nurse_b, granted), naive_view(records[1], doc_b)),
        ("canAccess: denied, grant for another purpose", view(doc_b, granted, Purpose.RESEARCH),
         None),
    ):
        rows.append(GasRow(label, execution, 10_000, naive_gas,
                           f"eth_estimateGas {estimate}"))
    informational: Sequence[tuple[str, Callable[[], tuple[int, int]]]] = (
        ("canAccess: denied, grantee has another type grant",
         lambda: view(c.address("doc-c"), granted)),
        ("canAccess: author hospital clinician", lambda: view(c.address("doc-a"), granted)),
        ("canAccess: the patient", lambda: view(pat, granted)),
    )
    for label, run in informational:
        execution, estimate = run()
        rows.append(GasRow(label, execution, None, None, f"eth_estimateGas {estimate}"))

    # Paths that need the patient's hints (type / hospital grants, break-glass).
    report = keccak(b"report")
    c.ok("doc-a", m.create_record(report, pat, "DiagnosticReport", CID, keccak(b"r")))
    pat2_record = keccak(b"pat-2 record")
    c.ok("doc-a", m.create_record(pat2_record, c.address("pat-2"), "Observation", CID,
                                  keccak(b"p")))
    breakglass = c.ok("doc-b", m.open_break_glass(pat, BreakGlassReason.LIFE_THREATENING))
    rows.append(GasRow("break-glass open", breakglass.gas_used))
    review = c.ok("auditor-a", m.review_break_glass(1, True, keccak(b"ok")))
    rows.append(GasRow("break-glass review", review.gas_used))
    for label, who, record in (
        ("canAccess: allowed by a resource-type grant", c.address("doc-c"), report),
        ("canAccess: allowed by a hospital grant", c.address("doc-c"), pat2_record),
        ("canAccess: allowed by break-glass", doc_b, report),
    ):
        execution, estimate = view(who, record)
        rows.append(GasRow(label, execution, None, None, f"eth_estimateGas {estimate}"))

    # Audit-only access log and the request a clinician sends the patient.
    logged = c.ok("doc-b", m.log_access(granted, Purpose.TREATMENT))
    naive_log = naive_tx("doc-b", naive.encode("logAccess", granted))
    rows.append(GasRow("audit-only access log", logged.gas_used, 30_000, naive_log))
    requested = c.ok("researcher-b", m.request_access(granted, Purpose.RESEARCH))
    rows.append(GasRow("access request", requested.gas_used))

    # Identity and governance, for completeness.
    registered = c.ok("admin-a", m.register_staff(c.address("outsider"), keccak(b"n"), 3))
    rows.append(GasRow("register staff / patient", registered.gas_used))
    g = c.governance
    proposed = c.ok("admin-a", g.propose(c.nodes.address, c.nodes.add_node(b"\x42" * 20)),
                    to=g.address)
    rows.append(GasRow("governance: propose (with own vote)", proposed.gas_used))
    executed = c.ok("admin-b", g.vote(1), to=g.address)
    rows.append(GasRow("governance: deciding vote (executes addNode)", executed.gas_used))
    return rows


def format_table(rows: Sequence[GasRow]) -> str:
    header = f"{'operation':<48} {'gas':>8} {'target':>8} {'ok':>3} {'naive':>8} {'naive/us':>8}"
    lines = [header, "-" * len(header)]
    for row in rows:
        target = f"<{row.target // 1000}k" if row.target else ""
        ok = {True: "yes", False: "NO", None: ""}[row.meets_target]
        naive = str(row.naive) if row.naive is not None else ""
        ratio = f"{row.naive / row.gas:.2f}x" if row.naive is not None else ""
        line = f"{row.operation:<48} {row.gas:>8} {target:>8} {ok:>3} {naive:>8} {ratio:>8}"
        lines.append(f"{line}  {row.note}".rstrip())
    return "\n".join(lines)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="medledger-gas-") as tmp:
        rows = measure(Path(tmp) / "chain")
    print("MedLedger gas per operation (py-evm, Prague; tx rows: receipt gas incl. 21000 base;")
    print("canAccess rows: eth_call execution gas; naive = seed design NaiveAccess.sol)")
    print()
    print(format_table(rows))
    missed = [row.operation for row in rows if row.meets_target is False]
    if missed:
        print(f"\nmissed targets: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
