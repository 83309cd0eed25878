import { useCallback, useEffect, useMemo, useRef, useState, type FormEvent } from "react";
import type { Subscribe } from "../App";
import { PURPOSES, short, transact } from "../chain";
import type { Me, Session } from "../session";
import { Section, Status, fromUnix, useAction } from "../ui";
import { when } from "../components/FhirView";

interface RecordMeta { resourceType: string; id: string; version: number; lastUpdated: string;
                       deleted: boolean; recordId: string }
interface Grant { grantee: { kind: "account" | "hospital"; account: string; hospital?: number };
                  scopeKind: "record" | "type"; scope: string; target: string; purposes: string[];
                  expiry: number; granted: number; consent: string | null }
/* eslint-disable @typescript-eslint/no-explicit-any */
type AuditEvent = any;

const RESOURCE_TYPES = ["Observation", "Condition", "ImagingStudy", "MedicationRequest",
                        "AllergyIntolerance", "Procedure", "DiagnosticReport", "Encounter", "Immunization"];

function inDays(days: number): string {
  const d = new Date(Date.now() + days * 86400_000);
  return d.toISOString().slice(0, 10);
}

/** Re-run `fn` at most every `ms` when `kick` is called (live events come in bursts). */
function useDebounced(fn: () => void, ms: number): () => void {
  const timer = useRef<number | undefined>(undefined);
  const latest = useRef(fn);
  latest.current = fn;
  useEffect(() => () => window.clearTimeout(timer.current), []);
  return useCallback(() => {
    window.clearTimeout(timer.current);
    timer.current = window.setTimeout(() => latest.current(), ms);
  }, [ms]);
}

export function PatientPage({ session, me, subscribe }: { session: Session; me: Me; subscribe: Subscribe }) {
  if (me.role !== "patient") {
    return (
      <Section title="Patient portal" id="patient-h">
        <p>This page is for patients. You are signed in as a <strong>{me.role}</strong>.</p>
      </Section>
    );
  }
  return <PatientPortal session={session} me={me} subscribe={subscribe} />;
}

function PatientPortal({ session, me, subscribe }: { session: Session; me: Me; subscribe: Subscribe }) {
  const ref = me.patientRefs?.[0] ?? null;
  const [delegate, setDelegate] = useState(!!me.serviceDelegate);
  const [askDelegate] = useState(!me.serviceDelegate); // the card stays to show the outcome
  const [records, setRecords] = useState<RecordMeta[]>([]);
  const [grants, setGrants] = useState<Grant[]>([]);
  const [timeline, setTimeline] = useState<AuditEvent[]>([]);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [prefill, setPrefill] = useState<string>("");

  const load = useCallback(async () => {
    if (!ref) return;
    try {
      const q = `patient=${encodeURIComponent(ref)}`;
      const [r, g, t] = await Promise.all([
        session.fhir<{ records: RecordMeta[] }>("GET", `/$records?${q}`),
        session.fhir<{ grants: Grant[] }>("GET", `/$grants?${q}`),
        session.fhir<{ entry?: { resource: AuditEvent }[] }>("GET", `/AuditEvent?${q}`),
      ]);
      setRecords(r.records);
      setGrants(g.grants);
      setTimeline((t.entry ?? []).map((e) => e.resource).reverse());
      setLoadError(null);
    } catch (err) {
      setLoadError((err as Error).message);
    }
  }, [ref, session]);
  const reload = useDebounced(() => void load(), 250);

  useEffect(() => {
    void load();
  }, [load]);
  useEffect(() => subscribe((e) => {
    if (e.event !== "block") reload();
  }), [subscribe, reload]);

  const labels = useMemo(() => {
    const map = new Map<string, string>();
    for (const r of records) map.set(r.recordId.toLowerCase(), `${r.resourceType}/${r.id}`);
    return map;
  }, [records]);

  return (
    <div className="page">
      <h1>My health records</h1>
      {!ref && (
        <Section title="No records here yet" id="none-h">
          <p>This hospital's node holds no records for your account <code>{me.address}</code> yet.</p>
        </Section>
      )}
      {loadError && <p className="notice error" role="alert">Could not load: {loadError}</p>}
      {askDelegate && <DelegateCard session={session} me={me} done={delegate}
                                    onDone={() => setDelegate(true)} />}
      {ref && (
        <div className="grid">
          <Section title="Who has access" id="access-h">
            <GrantsTable grants={grants} session={session} me={me} patientRef={ref} onChange={reload} />
          </Section>
          <Section title="Grant access" id="grant-h">
            <GrantForm session={session} patientRef={ref} disabled={!delegate} prefill={prefill}
                       onDone={reload} />
          </Section>
          <Section title="My records" id="records-h">
            <RecordsTable records={records} />
          </Section>
          <Section title="Access timeline" id="timeline-h">
            <Timeline events={timeline} labels={labels} me={me}
                      onGrantRequest={(who) => setPrefill(who)} />
          </Section>
        </div>
      )}
    </div>
  );
}

function DelegateCard({ session, me, done, onDone }: { session: Session; me: Me; done: boolean;
                                                      onDone: () => void }) {
  const [busy, notice, run] = useAction();
  return (
    <Section title="Let this hospital record your consent" id="delegate-h">
      <p>
        Grants and revocations you make here are sent to the chain by {me.hospitalName || "the hospital"}'s
        node (<code>{short(me.node.serviceAccount)}</code>) on your behalf. Allow it once by signing a
        transaction with your key; you can withdraw it at any time.
      </p>
      <button type="button" disabled={busy || done} onClick={() => void run("Authorising the hospital node", async () => {
        await transact(session.wallet, me.node.medledger, "setDelegate", me.node.serviceAccount, true);
        onDone();
        return "The hospital node may now record your consent decisions.";
      })}>Allow the hospital node</button>
      <Status notice={notice} />
    </Section>
  );
}

function RecordsTable({ records }: { records: RecordMeta[] }) {
  if (!records.length) return <p>No records yet.</p>;
  return (
    <div className="table-wrap">
      <table>
        <caption className="sr-only">Your records on this hospital's node (metadata only)</caption>
        <thead>
          <tr><th scope="col">Type</th><th scope="col">Id</th><th scope="col">Version</th><th scope="col">Updated</th></tr>
        </thead>
        <tbody>
          {records.map((r) => (
            <tr key={r.recordId} className={r.deleted ? "muted" : ""}>
              <td>{r.resourceType}{r.deleted ? " (deleted)" : ""}</td>
              <td><code title={r.id}>{short(r.id, 4)}</code></td>
              <td>{r.version}</td>
              <td>{when(r.lastUpdated)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function granteeText(g: Grant["grantee"], me: Me): string {
  if (g.kind === "hospital") return `Hospital ${g.hospital}${g.hospital === me.hospital ? ` (${me.hospitalName})` : ""}`;
  return g.account;
}

function GrantsTable({ grants, session, me, patientRef, onChange }: {
  grants: Grant[]; session: Session; me: Me; patientRef: string; onChange: () => void }) {
  const [busy, notice, run] = useAction();
  const revoke = (g: Grant) => run("Revoking access", async () => {
    if (g.consent) {
      await session.fhir("DELETE", `/${g.consent}`);
    } else if (g.scopeKind === "record") {
      await transact(session.wallet, me.node.medledger, "revoke", g.grantee.account, g.scope);
    } else {
      await transact(session.wallet, me.node.medledger, "revokeResourceType", session.address,
                     g.grantee.account, BigInt(g.scope));
    }
    onChange();
    return `Access of ${granteeText(g.grantee, me)} revoked.`;
  });
  void patientRef;
  return (
    <>
      {grants.length === 0 ? <p>Nobody outside your care team has been granted access.</p> : (
        <ul className="grants">
          {grants.map((g) => (
            <li key={`${g.grantee.account}-${g.scope}`} className="grant" data-grantee={g.grantee.account.toLowerCase()}>
              <div>
                <strong className="mono-wrap">{granteeText(g.grantee, me)}</strong>
                <div>{g.target} · {g.purposes.map((p) => PURPOSES[p]?.label ?? p).join(", ")}</div>
                <div className="small">until {fromUnix(g.expiry)}</div>
              </div>
              <button type="button" className="danger" disabled={busy}
                      aria-label={`Revoke access of ${granteeText(g.grantee, me)} to ${g.target}`}
                      onClick={() => void revoke(g)}>Revoke</button>
            </li>
          ))}
        </ul>
      )}
      <Status notice={notice} />
    </>
  );
}

function GrantForm({ session, patientRef, disabled, prefill, onDone }: {
  session: Session; patientRef: string; disabled: boolean; prefill: string; onDone: () => void }) {
  const [kind, setKind] = useState<"account" | "hospital">("account");
  const [grantee, setGrantee] = useState("");
  const [purpose, setPurpose] = useState("TREAT");
  const [expiry, setExpiry] = useState(inDays(30));
  const [scope, setScope] = useState("all");
  const [busy, notice, run] = useAction();

  useEffect(() => {
    if (prefill) {
      setKind("account");
      setGrantee(prefill);
    }
  }, [prefill]);

  const submit = (event: FormEvent) => {
    event.preventDefault();
    void run("Granting access", async () => {
      const value = grantee.trim();
      if (kind === "account" && !/^0x[0-9a-fA-F]{40}$/.test(value)) {
        throw new Error("the grantee account is a 0x-prefixed 40-digit hex address");
      }
      if (kind === "hospital" && !/^[1-9][0-9]*$/.test(value)) throw new Error("a hospital id is a number");
      const end = new Date(`${expiry}T23:59:59Z`);
      if (!(end.getTime() > Date.now())) throw new Error("the expiry must be in the future");
      const provision: Record<string, unknown> = {
        type: "permit",
        period: { end: end.toISOString().replace(/\.\d{3}Z$/, "Z") },
        actor: [{
          role: { coding: [{ system: "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", code: "PRCP" }] },
          reference: { identifier: { system: kind === "account" ? "urn:medledger:account" : "urn:medledger:hospital",
                                     value } },
        }],
        purpose: [{ system: "http://terminology.hl7.org/CodeSystem/v3-ActReason", code: purpose }],
      };
      if (scope !== "all") provision.class = [{ system: "http://hl7.org/fhir/resource-types", code: scope }];
      await session.fhir("POST", "/Consent", {
        resourceType: "Consent",
        status: "active",
        scope: { coding: [{ system: "http://terminology.hl7.org/CodeSystem/consentscope", code: "patient-privacy" }] },
        category: [{ coding: [{ system: "http://loinc.org", code: "59284-0" }] }],
        patient: { reference: patientRef },
        provision,
      });
      setGrantee("");
      onDone();
      return `Access granted until ${end.toLocaleDateString()}.`;
    });
  };

  return (
    <form onSubmit={submit} aria-describedby={disabled ? "grant-disabled" : undefined}>
      {disabled && <p id="grant-disabled" className="small">Allow the hospital node first (above).</p>}
      <fieldset disabled={disabled || busy}>
        <legend className="sr-only">Grantee</legend>
        <div className="field">
          <label htmlFor="grantee-kind">Grant to</label>
          <select id="grantee-kind" value={kind} onChange={(e) => setKind(e.target.value as "account" | "hospital")}>
            <option value="account">A clinician (account)</option>
            <option value="hospital">A whole hospital</option>
          </select>
        </div>
        <div className="field">
          <label htmlFor="grantee">{kind === "account" ? "Clinician account (0x…)" : "Hospital id"}</label>
          <input id="grantee" value={grantee} onChange={(e) => setGrantee(e.target.value)} required
                 spellCheck={false} autoComplete="off" />
        </div>
        <div className="field">
          <label htmlFor="grant-scope">Records</label>
          <select id="grant-scope" value={scope} onChange={(e) => setScope(e.target.value)}>
            <option value="all">All my records</option>
            {RESOURCE_TYPES.map((t) => <option key={t} value={t}>{t} records only</option>)}
          </select>
        </div>
        <div className="field">
          <label htmlFor="grant-purpose">Purpose</label>
          <select id="grant-purpose" value={purpose} onChange={(e) => setPurpose(e.target.value)}>
            {Object.entries(PURPOSES).map(([code, p]) => <option key={code} value={code}>{p.label}</option>)}
          </select>
        </div>
        <div className="field">
          <label htmlFor="grant-expiry">Until (inclusive)</label>
          <input id="grant-expiry" type="date" value={expiry} min={inDays(0)}
                 onChange={(e) => setExpiry(e.target.value)} required />
        </div>
        <button type="submit">Grant access</button>
      </fieldset>
      <Status notice={notice} />
    </form>
  );
}

const EVENT_TEXT: Record<string, string> = {
  AccessLogged: "Record accessed",
  AccessRequested: "Access requested",
  RecordVersionAdded: "Record written",
  AccessGranted: "Access granted",
  AccessRevoked: "Access revoked",
  BreakGlassOpened: "Emergency (break-glass) access",
  BreakGlassReviewed: "Break-glass reviewed",
};

function Timeline({ events, labels, me, onGrantRequest }: { events: AuditEvent[]; labels: Map<string, string>;
                                                            me: Me; onGrantRequest: (who: string) => void }) {
  if (!events.length) return <p>No events yet.</p>;
  const who = (account: string | undefined) => {
    if (!account) return "someone";
    if (account.toLowerCase() === me.address.toLowerCase()) return "you";
    if (account.toLowerCase() === me.node.serviceAccount.toLowerCase()) return `${me.hospitalName || "hospital"} node`;
    return short(account);
  };
  return (
    <ol className="timeline" aria-label="Access and break-glass events, newest first">
      {events.map((e) => {
        const kind: string = e.subtype?.[0]?.code ?? "event";
        const agent = e.agent?.[0]?.who?.identifier?.value as string | undefined;
        const grantee = e.agent?.find((a: AuditEvent) => a.type?.text === "grantee")?.who?.identifier?.value;
        const record = e.entity?.find((x: AuditEvent) => x.what?.identifier?.system === "urn:medledger:record")
          ?.what?.identifier?.value as string | undefined;
        const purpose = e.purposeOfEvent?.[0]?.coding?.[0]?.display;
        const failed = e.outcome && e.outcome !== "0";
        const alarm = kind.startsWith("BreakGlass");
        return (
          <li key={e.id} className={`event ${alarm ? "alarm" : ""} ${failed ? "failed" : ""}`} data-kind={kind}>
            <time dateTime={e.recorded}>{when(e.recorded)}</time>
            <div>
              <strong>{alarm && <span aria-hidden="true">⚠ </span>}{EVENT_TEXT[kind] ?? kind}</strong>
              {failed && <span className="tag">refused</span>}
              {" "}
              {record && <span>{labels.get(record.toLowerCase()) ?? short(record)} </span>}
              {grantee ? <span>for <code>{short(grantee)}</code> </span> : null}
              <span>{agent && agent.toLowerCase() === me.node.serviceAccount.toLowerCase() ? "via" : "by"}{" "}
                {who(agent)}</span>
              {purpose && <span className="small"> · {purpose}</span>}
              {e.outcomeDesc && <span className="small"> · {e.outcomeDesc}</span>}
              {kind === "AccessRequested" && agent && (
                <button type="button" className="link" onClick={() => onGrantRequest(agent)}>
                  Grant this clinician…
                </button>
              )}
            </div>
          </li>
        );
      })}
    </ol>
  );
}
