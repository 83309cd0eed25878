import { useCallback, useEffect, useRef, useState, type FormEvent } from "react";
import type { Subscribe } from "../App";
import { PURPOSES, recordIdsOf, transact } from "../chain";
import { FhirResource, humanName } from "../components/FhirView";
import type { Me, Session } from "../session";
import { Section, Status, useAction } from "../ui";

/* eslint-disable @typescript-eslint/no-explicit-any */
type Resource = any;
interface Bundle { total?: number; entry?: { resource: Resource }[] }

const CLINICAL_TYPES = ["Observation", "Condition", "ImagingStudy", "MedicationRequest",
                        "AllergyIntolerance", "Procedure", "DiagnosticReport", "Encounter", "Immunization"];
const REASONS = [
  { code: "life-threatening", label: "Life-threatening emergency" },
  { code: "unable-to-consent", label: "Patient unable to consent" },
  { code: "urgent-consent-unobtainable", label: "Urgent, consent unobtainable in time" },
  { code: "other", label: "Other (explain below)" },
];

function accountOf(patient: Resource): string | undefined {
  return patient.identifier?.find((i: Resource) => i.system === "urn:medledger:account")?.value;
}

export function ClinicianPage({ session, me, subscribe }: { session: Session; me: Me; subscribe: Subscribe }) {
  const [patients, setPatients] = useState<Resource[]>([]);
  const [filter, setFilter] = useState("");
  const [selected, setSelected] = useState<string | null>(null);
  const [records, setRecords] = useState<Resource[] | null>(null);
  const [emergency, setEmergency] = useState<Resource[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [updated, setUpdated] = useState<string>("");
  const clinician = me.role === "doctor" || me.role === "nurse";

  const loadPatients = useCallback(async () => {
    try {
      const bundle = await session.fhir<Bundle>("GET", "/Patient?_count=200");
      setPatients((bundle.entry ?? []).map((e) => e.resource));
      setUpdated(new Date().toLocaleTimeString());
      setError(null);
    } catch (err) {
      setError((err as Error).message);
    }
  }, [session]);

  const loadRecords = useCallback(async (ref: string) => {
    const bundles = await Promise.all(CLINICAL_TYPES.map((t) =>
      session.fhir<Bundle>("GET", `/${t}?patient=${encodeURIComponent(ref)}&_count=100`)
        .catch(() => ({ entry: [] }) as Bundle)));
    setRecords(bundles.flatMap((b) => (b.entry ?? []).map((e) => e.resource)));
  }, [session]);

  const selectedRef = useRef(selected);
  selectedRef.current = selected;
  const timer = useRef<number | undefined>(undefined);
  useEffect(() => {
    void loadPatients();
  }, [loadPatients]);
  useEffect(() => subscribe((e) => {
    if (!["grant", "revoke", "version", "break-glass"].includes(e.event)) return;
    window.clearTimeout(timer.current);
    timer.current = window.setTimeout(() => {
      void loadPatients();
      const ref = selectedRef.current;
      if (ref && (!e.patient || e.patient === ref || e.event !== "version")) void loadRecords(ref);
    }, 250);
  }), [subscribe, loadPatients, loadRecords]);

  const open = (ref: string) => {
    setSelected(ref);
    setRecords(null);
    void loadRecords(ref).catch((err) => setError((err as Error).message));
  };

  const shown = patients.filter((p) => {
    const text = `${humanName(p)} ${p.id} ${accountOf(p) ?? ""} ${p.birthDate ?? ""}`.toLowerCase();
    return text.includes(filter.trim().toLowerCase());
  });
  const current = patients.find((p) => `Patient/${p.id}` === selected);

  return (
    <div className="page">
      <h1>Clinician workspace</h1>
      {!clinician && (
        <p className="notice info">You are signed in as a {me.role}: reading records, requesting access and
          break-glass are for doctors and nurses.</p>
      )}
      {error && <p className="notice error" role="alert">{error}</p>}
      <div className="grid clinician">
        <Section title="Patients you may see" id="patients-h"
                 actions={<span className="small" aria-live="polite">updated {updated}</span>}>
          <div className="field">
            <label htmlFor="patient-filter">Search by name, id, account or birth date</label>
            <input id="patient-filter" type="search" value={filter} onChange={(e) => setFilter(e.target.value)} />
          </div>
          {shown.length === 0 ? <p id="no-patients">No patients you may see{filter ? " match" : " yet"}.</p> : (
            <ul className="patients" aria-label="Patients">
              {shown.map((p) => {
                const ref = `Patient/${p.id}`;
                return (
                  <li key={p.id}>
                    <button type="button" className="patient" aria-pressed={selected === ref}
                            onClick={() => open(ref)} data-patient={ref}>
                      <strong>{humanName(p)}</strong>
                      <span className="small">{p.gender ?? ""} {p.birthDate ? `· born ${p.birthDate}` : ""}</span>
                    </button>
                  </li>
                );
              })}
            </ul>
          )}
        </Section>
        <Section title={current ? `Record of ${humanName(current)}` : "Record"} id="record-h">
          {!selected && <p>Choose a patient to see their record.</p>}
          {selected && current && <FhirResource resource={current} />}
          {selected && records === null && <p role="status">Loading records…</p>}
          {records && records.length === 0 && <p>No clinical records you may read.</p>}
          {records?.map((r) => <FhirResource key={`${r.resourceType}/${r.id}`} resource={r} />)}
        </Section>
        <Section title="Request access" id="request-h">
          <RequestAccess session={session} me={me} disabled={!clinician} />
        </Section>
        <Section title="Emergency access (break-glass)" id="bg-h">
          <BreakGlass session={session} disabled={!clinician} onOpened={setEmergency} />
          {emergency && (
            <div className="emergency-records" aria-live="polite">
              <h3>Records opened by break-glass</h3>
              {emergency.length === 0 ? <p>The patient has no records here.</p>
                : emergency.map((r) => <FhirResource key={`${r.resourceType}/${r.id}`} resource={r} />)}
            </div>
          )}
        </Section>
      </div>
    </div>
  );
}

function RequestAccess({ session, me, disabled }: { session: Session; me: Me; disabled: boolean }) {
  const [account, setAccount] = useState("");
  const [purpose, setPurpose] = useState("TREAT");
  const [busy, notice, run] = useAction();
  const submit = (event: FormEvent) => {
    event.preventDefault();
    void run("Requesting access", async () => {
      const patient = account.trim();
      if (!/^0x[0-9a-fA-F]{40}$/.test(patient)) throw new Error("enter the patient's 0x account address");
      const ids = await recordIdsOf(me.node.medledger, patient);
      if (!ids.length) throw new Error("this patient has no records on the chain yet");
      // On chain a purpose is the bit's index: 0 treatment, 1 payment, 2 operations, 3 research.
      await transact(session.wallet, me.node.medledger, "requestAccess", ids[0],
                     Math.log2(PURPOSES[purpose].bit));
      return "Request sent: the patient sees it in their timeline and can grant you access.";
    });
  };
  return (
    <form onSubmit={submit}>
      <p className="small">The patient is asked on chain; you see their records here as soon as they grant access.</p>
      <fieldset disabled={disabled || busy}>
        <legend className="sr-only">Access request</legend>
        <div className="field">
          <label htmlFor="request-patient">Patient account (0x…)</label>
          <input id="request-patient" value={account} onChange={(e) => setAccount(e.target.value)} required
                 spellCheck={false} autoComplete="off" />
        </div>
        <div className="field">
          <label htmlFor="request-purpose">Purpose</label>
          <select id="request-purpose" value={purpose} onChange={(e) => setPurpose(e.target.value)}>
            {Object.entries(PURPOSES).map(([code, p]) => <option key={code} value={code}>{p.label}</option>)}
          </select>
        </div>
        <button type="submit">Request access</button>
      </fieldset>
      <Status notice={notice} />
    </form>
  );
}

function BreakGlass({ session, disabled, onOpened }: { session: Session; disabled: boolean;
                                                     onOpened: (r: Resource[]) => void }) {
  const [patient, setPatient] = useState("");
  const [reason, setReason] = useState("");
  const [detail, setDetail] = useState("");
  const [confirmed, setConfirmed] = useState(false);
  const [busy, notice, run] = useAction();
  const submit = (event: FormEvent) => {
    event.preventDefault();
    void run("Opening emergency access", async () => {
      if (!reason) throw new Error("a reason is required");
      if (reason === "other" && !detail.trim()) throw new Error("explain the reason");
      const target = patient.trim();
      const parameter: Record<string, unknown>[] = [
        target.startsWith("0x") ? { name: "patient", valueString: target }
          : { name: "patient", valueReference: { reference: target.includes("/") ? target : `Patient/${target}` } },
        { name: "reason", valueCode: reason },
      ];
      if (detail.trim()) parameter.push({ name: "detail", valueString: detail.trim() });
      const bundle = await session.fhir<Bundle>("POST", "/$break-glass", { resourceType: "Parameters", parameter });
      onOpened((bundle.entry ?? []).map((e) => e.resource));
      setConfirmed(false);
      return `Emergency access open for one hour (${bundle.total ?? 0} records). This case is queued for audit review.`;
    });
  };
  return (
    <form onSubmit={submit} className="break-glass">
      <div className="warning" role="note" id="bg-warning">
        <strong>Warning: emergency access only.</strong> Break-glass opens all of this patient's records to you
        for one hour without their consent. It is recorded permanently on the chain with your identity and reason,
        the patient is notified, and an auditor reviews every case. Unjustified use is a disciplinary matter.
      </div>
      <fieldset disabled={disabled || busy} aria-describedby="bg-warning">
        <legend className="sr-only">Break-glass request</legend>
        <div className="field">
          <label htmlFor="bg-patient">Patient (account 0x… or Patient id)</label>
          <input id="bg-patient" value={patient} onChange={(e) => setPatient(e.target.value)} required
                 spellCheck={false} autoComplete="off" />
        </div>
        <div className="field">
          <label htmlFor="bg-reason">Reason (required)</label>
          <select id="bg-reason" value={reason} onChange={(e) => setReason(e.target.value)} required>
            <option value="">Choose a reason…</option>
            {REASONS.map((r) => <option key={r.code} value={r.code}>{r.label}</option>)}
          </select>
        </div>
        <div className="field">
          <label htmlFor="bg-detail">Details{reason === "other" ? " (required)" : " (optional)"}</label>
          <textarea id="bg-detail" rows={2} value={detail} onChange={(e) => setDetail(e.target.value)}
                    required={reason === "other"} />
        </div>
        <label className="inline confirm">
          <input type="checkbox" checked={confirmed} onChange={(e) => setConfirmed(e.target.checked)} required />
          I confirm this is an emergency and I accept that this access is audited.
        </label>
        <button type="submit" className="danger" disabled={!confirmed || !reason}>Break the glass</button>
      </fieldset>
      <Status notice={notice} />
    </form>
  );
}
