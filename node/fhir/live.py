"""Live updates: authorized WebSocket clients hear of new record versions, grants and
break-glass events for patients they may see.

Each connection belongs to an authenticated account. A new version is announced only to
accounts for which `canAccess` holds on chain at that moment; grants and revocations to the
patient and the grantee; break-glass openings to the patient and the clinician; new audit
trail entries (no details, just the patient) to the patient and auditors; new final blocks
(number, hash, time, transaction count: public chain data) to everyone. These last two
kinds go only to subscribers that ask for them (`$live?token=...&include=block,audit`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from contracts.bindings import Event, Purpose, Role, hospital_grantee

if TYPE_CHECKING:
    from node.fhir.service import Caller, FhirService

QUEUE_SIZE = 256
EXTRA_KINDS = frozenset({"block", "audit"})  # sent only to subscribers that ask (?include=)


@dataclass(eq=False)
class Subscriber:
    caller: Caller
    send: trio.MemorySendChannel[dict[str, Any]]
    dropped: bool = field(default=False)
    extras: frozenset[str] = field(default=frozenset())  # opted-in kinds: "block", "audit"


class LiveHub:
    def __init__(self, service: FhirService) -> None:
        self.service = service
        self.subscribers: list[Subscriber] = []

    def subscribe(self, caller: Caller, extras: frozenset[str] = frozenset()
                  ) -> tuple[Subscriber, trio.MemoryReceiveChannel[Any]]:
        send, receive = trio.open_memory_channel[dict[str, Any]](QUEUE_SIZE)
        sub = Subscriber(caller, send, extras=extras & EXTRA_KINDS)
        self.subscribers.append(sub)
        return sub, receive

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub in self.subscribers:
            self.subscribers.remove(sub)

    def _deliver(self, sub: Subscriber, message: dict[str, Any]) -> None:
        try:
            sub.send.send_nowait(message)
        except trio.WouldBlock:  # a client that does not read loses its subscription
            sub.dropped = True
            self.unsubscribe(sub)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.unsubscribe(sub)

    def _patient_ref(self, patient: bytes) -> str:
        refs = self.service.index.patient_refs(patient)
        return refs[0] if refs else "0x" + patient.hex()

    def publish_break_glass(self, patient: bytes, clinician: bytes, case_id: int) -> None:
        message = {"event": "break-glass", "patient": self._patient_ref(patient),
                   "clinician": "0x" + clinician.hex(), "case": case_id}
        for sub in list(self.subscribers):
            if sub.caller.address in (patient, clinician):
                self._deliver(sub, message)

    def publish_block(self, number: int, block_hash: bytes, timestamp: int, tx_count: int
                      ) -> None:
        """A new final block, to every subscriber (the web UI's consortium view)."""
        message = {"event": "block", "number": number, "hash": "0x" + block_hash.hex(),
                   "timestamp": timestamp, "transactions": tx_count}
        for sub in list(self.subscribers):
            if "block" in sub.extras:
                self._deliver(sub, message)

    def publish_audit(self, patients: set[bytes]) -> None:
        """New audit trail entries (accesses, grants, break-glass, ...) of these patients, to
        the patient and to auditors (whose review queue may have changed)."""
        for patient in patients:
            message = {"event": "audit", "patient": self._patient_ref(patient)}
            for sub in list(self.subscribers):
                if "audit" in sub.extras and (sub.caller.address == patient
                                              or sub.caller.role == Role.AUDITOR):
                    self._deliver(sub, message)

    async def publish_events(self, events: list[Event]) -> None:
        for event in events:
            # This node's own versions are announced by the service once they are indexed.
            if event.name == "RecordVersionAdded" and (
                    event.args["author"] != self.service.service_address):
                await self.publish_version(event)
            elif event.name in ("AccessGranted", "AccessRevoked"):
                self._publish_grant(event)

    async def publish_version(self, event: Event) -> None:
        row = self.service.index.resource_by_record(event.args["recordId"])
        message = {
            "event": "version",
            "resource": f"{row.rtype}/{row.id}" if row else "0x" + event.args["recordId"].hex(),
            "version": int(event.args["version"]),
            "patient": self._patient_ref(event.args["patient"]),
        }
        for sub in list(self.subscribers):
            allowed = await self.service.chainio.view(
                "canAccess", sub.caller.address, event.args["recordId"], int(Purpose.TREATMENT))
            if allowed:
                self._deliver(sub, message)

    def _publish_grant(self, event: Event) -> None:
        granted = event.name == "AccessGranted"
        message = {"event": "grant" if granted else "revoke",
                   "patient": self._patient_ref(event.args["patient"]),
                   "grantee": "0x" + event.args["grantee"].hex()}
        if granted:
            message["expiry"] = int(event.args["expiry"])
        for sub in list(self.subscribers):
            mine = sub.caller.address in (event.args["patient"], event.args["grantee"])
            hospital = sub.caller.hospital and event.args["grantee"] == hospital_grantee(
                sub.caller.hospital)
            if mine or hospital:
                self._deliver(sub, message)
