"""The hospital node's local search index (SQLite in the node's data directory).

It holds what search and history need for the records this node wrote: the on-chain record
id, the patient, the versions (key-bundle CID, envelope CID, SHA3-256, author, block time)
and the search tokens (code, date, status, patient). It never leaves the node: the chain
and IPFS hold no PHI in clear. Access is still decided per record on chain at query time.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
  rtype TEXT NOT NULL, id TEXT NOT NULL, record_id BLOB NOT NULL UNIQUE,
  patient BLOB NOT NULL, version INTEGER NOT NULL, last_updated TEXT NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (rtype, id));
CREATE TABLE IF NOT EXISTS versions (
  record_id BLOB NOT NULL, version INTEGER NOT NULL, bundle_cid TEXT NOT NULL,
  content_cid TEXT NOT NULL, sha3 BLOB NOT NULL, author BLOB NOT NULL, block_time INTEGER NOT NULL,
  last_updated TEXT NOT NULL, deleted INTEGER NOT NULL, PRIMARY KEY (record_id, version));
CREATE TABLE IF NOT EXISTS tokens (
  record_id BLOB NOT NULL, param TEXT NOT NULL, system TEXT, value TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS tokens_by_value ON tokens (param, value);
CREATE INDEX IF NOT EXISTS tokens_by_record ON tokens (record_id);
CREATE TABLE IF NOT EXISTS patients (ref TEXT PRIMARY KEY, account BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS consent_grants (
  consent_record BLOB NOT NULL, grantee BLOB NOT NULL, kind INTEGER NOT NULL, scope BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS audit_logs (
  block INTEGER NOT NULL, log_index INTEGER NOT NULL, block_time INTEGER NOT NULL,
  patient BLOB, record_id BLOB, address BLOB NOT NULL, topics BLOB NOT NULL, data BLOB NOT NULL,
  PRIMARY KEY (block, log_index));
CREATE INDEX IF NOT EXISTS audit_by_patient ON audit_logs (patient);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS break_glass_requesters (
  case_id INTEGER PRIMARY KEY, clinician BLOB NOT NULL);
"""


@dataclass(frozen=True)
class ResourceRow:
    rtype: str
    id: str
    record_id: bytes
    patient: bytes
    version: int
    last_updated: str
    deleted: bool


@dataclass(frozen=True)
class VersionRow:
    record_id: bytes
    version: int
    bundle_cid: str
    content_cid: str
    sha3: bytes
    author: bytes
    block_time: int
    last_updated: str
    deleted: bool


class SearchIndex:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    # -- resources ----------------------------------------------------------------------------

    def resource(self, rtype: str, rid: str) -> ResourceRow | None:
        row = self.db.execute(
            "SELECT rtype, id, record_id, patient, version, last_updated, deleted FROM resources"
            " WHERE rtype = ? AND id = ?", (rtype, rid)).fetchone()
        return None if row is None else ResourceRow(*row[:6], bool(row[6]))

    def resource_by_record(self, record_id: bytes) -> ResourceRow | None:
        row = self.db.execute(
            "SELECT rtype, id, record_id, patient, version, last_updated, deleted FROM resources"
            " WHERE record_id = ?", (record_id,)).fetchone()
        return None if row is None else ResourceRow(*row[:6], bool(row[6]))

    def versions(self, record_id: bytes) -> list[VersionRow]:
        rows = self.db.execute(
            "SELECT record_id, version, bundle_cid, content_cid, sha3, author, block_time,"
            " last_updated, deleted FROM versions WHERE record_id = ? ORDER BY version DESC",
            (record_id,)).fetchall()
        return [VersionRow(*r[:8], bool(r[8])) for r in rows]

    def version(self, record_id: bytes, version: int) -> VersionRow | None:
        for row in self.versions(record_id):
            if row.version == version:
                return row
        return None

    def record_version(
        self, row: ResourceRow, version: VersionRow, tokens: list[tuple[str, str | None, str]]
    ) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT OR REPLACE INTO resources VALUES (?, ?, ?, ?, ?, ?, ?)",
                (row.rtype, row.id, row.record_id, row.patient, row.version, row.last_updated,
                 int(row.deleted)))
            self.db.execute(
                "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (version.record_id, version.version, version.bundle_cid, version.content_cid,
                 version.sha3, version.author, version.block_time, version.last_updated,
                 int(version.deleted)))
            self.db.execute("DELETE FROM tokens WHERE record_id = ?", (row.record_id,))
            self.db.executemany(
                "INSERT INTO tokens VALUES (?, ?, ?, ?)",
                [(row.record_id, p, s, v) for p, s, v in tokens])

    def search(self, rtype: str | None, clauses: list[tuple[str, Any]]) -> list[ResourceRow]:
        """Resources matching every clause (SQL fragment, parameters), newest first."""
        sql = ("SELECT rtype, id, record_id, patient, version, last_updated, deleted"
               " FROM resources r WHERE deleted = 0")
        args: list[Any] = []
        if rtype is not None:
            sql += " AND rtype = ?"
            args.append(rtype)
        for fragment, params in clauses:
            sql += f" AND {fragment}"
            args.extend(params)
        sql += " ORDER BY last_updated DESC, id"
        return [ResourceRow(*r[:6], bool(r[6])) for r in self.db.execute(sql, args)]

    def type_versions(self, rtype: str) -> list[tuple[ResourceRow, VersionRow]]:
        rows = self.db.execute(
            "SELECT r.rtype, r.id, r.record_id, r.patient, r.version, r.last_updated, r.deleted,"
            " v.record_id, v.version, v.bundle_cid, v.content_cid, v.sha3, v.author,"
            " v.block_time, v.last_updated, v.deleted FROM resources r JOIN versions v"
            " ON r.record_id = v.record_id WHERE r.rtype = ?"
            " ORDER BY v.last_updated DESC, v.version DESC", (rtype,)).fetchall()
        return [(ResourceRow(*r[:6], bool(r[6])), VersionRow(*r[7:15], bool(r[15])))
                for r in rows]

    # -- patients and consents ------------------------------------------------------------------

    def set_patient(self, ref: str, account: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO patients VALUES (?, ?)", (ref, account))

    def patient_account(self, ref: str) -> bytes | None:
        row = self.db.execute("SELECT account FROM patients WHERE ref = ?", (ref,)).fetchone()
        return None if row is None else bytes(row[0])

    def patient_refs(self, account: bytes) -> list[str]:
        rows = self.db.execute("SELECT ref FROM patients WHERE account = ?", (account,))
        return [r[0] for r in rows]

    def set_consent_grants(self, consent_record: bytes, grants: list[tuple[bytes, int, bytes]]
                           ) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM consent_grants WHERE consent_record = ?",
                            (consent_record,))
            self.db.executemany("INSERT INTO consent_grants VALUES (?, ?, ?, ?)",
                                [(consent_record, g, k, s) for g, k, s in grants])

    def set_break_glass_requester(self, case_id: int, clinician: bytes) -> None:
        """On chain the service account opens the case; this node remembers who asked."""
        self.db.execute("INSERT OR REPLACE INTO break_glass_requesters VALUES (?, ?)",
                        (case_id, clinician))

    def break_glass_requester(self, case_id: int) -> bytes | None:
        row = self.db.execute("SELECT clinician FROM break_glass_requesters WHERE case_id = ?",
                              (case_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def consents_by_grant(self) -> dict[tuple[bytes, int, bytes], bytes]:
        """(grantee, kind, scope) -> the Consent record that made the grant (web UI)."""
        rows = self.db.execute("SELECT grantee, kind, scope, consent_record FROM consent_grants")
        return {(bytes(g), k, bytes(s)): bytes(c) for g, k, s, c in rows}

    def consent_grants(self, consent_record: bytes) -> list[tuple[bytes, int, bytes]]:
        rows = self.db.execute(
            "SELECT grantee, kind, scope FROM consent_grants WHERE consent_record = ?",
            (consent_record,))
        return [(bytes(g), k, bytes(s)) for g, k, s in rows]

    # -- audit log copy -----------------------------------------------------------------------

    def audit_height(self) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = 'audit_height'").fetchone()
        return -1 if row is None else int(row[0])

    def add_audit_logs(self, height: int, rows: list[tuple[Any, ...]]) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT OR IGNORE INTO audit_logs VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('audit_height', ?)", (height,))

    def audit_logs(self, patient: bytes) -> list[tuple[int, int, int, bytes, bytes, bytes]]:
        rows = self.db.execute(
            "SELECT block, log_index, block_time, address, topics, data FROM audit_logs"
            " WHERE patient = ? ORDER BY block, log_index", (patient,))
        return [(b, i, t, bytes(a), bytes(tp), bytes(d)) for b, i, t, a, tp, d in rows]

    def audit_logs_of_kinds(self, patient: bytes | None, topics: set[bytes]
                            ) -> list[tuple[int, int, int, bytes, bytes, bytes]]:
        """Audit log copies whose event signature (topic 0) is in `topics`, of one patient
        or (None) of all patients, in chain order."""
        marks = ",".join("?" * len(topics))
        sql = ("SELECT block, log_index, block_time, address, topics, data FROM audit_logs"
               f" WHERE substr(topics, 1, 32) IN ({marks})")
        args: list[Any] = list(topics)
        if patient is not None:
            sql += " AND patient = ?"
            args.append(patient)
        rows = self.db.execute(sql + " ORDER BY block, log_index", args)
        return [(b, i, t, bytes(a), bytes(tp), bytes(d)) for b, i, t, a, tp, d in rows]
