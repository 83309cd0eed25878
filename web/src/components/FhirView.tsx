// Readable renderings of the FHIR resources a clinician sees most; anything else falls back
// to a summary plus its JSON.
import type { ReactNode } from "react";

/* eslint-disable @typescript-eslint/no-explicit-any */
type Json = any;

const ICD10 = "http://hl7.org/fhir/sid/icd-10-cm";
const SYSTEMS: Record<string, string> = {
  "http://loinc.org": "LOINC",
  "http://snomed.info/sct": "SNOMED CT",
  [ICD10]: "ICD-10-CM",
  "http://hl7.org/fhir/sid/icd-10": "ICD-10",
  "http://dicom.nema.org/resources/ontology/DCM": "DICOM",
};

export function codingText(concept: Json): string {
  if (!concept) return "—";
  const coding: Json[] = concept.coding ?? [];
  const first = coding.find((c) => c.display) ?? coding[0];
  return concept.text ?? first?.display ?? first?.code ?? "—";
}

function Codes({ concept }: { concept: Json }) {
  const coding: Json[] = concept?.coding ?? [];
  if (!coding.length) return null;
  return (
    <span className="codes">
      {coding.map((c, i) => (
        <span className="code" key={i}>
          {SYSTEMS[c.system] ?? c.system ?? "code"} {c.code}
          {c.display && c.display !== concept.text ? ` (${c.display})` : ""}
        </span>
      ))}
    </span>
  );
}

export function humanName(patient: Json): string {
  const name = patient?.name?.[0];
  if (!name) return "(no name)";
  if (name.text) return name.text;
  return [...(name.given ?? []), name.family].filter(Boolean).join(" ") || "(no name)";
}

function quantity(q: Json): string {
  if (!q || q.value === undefined) return "—";
  return `${q.comparator ?? ""}${q.value} ${q.unit ?? q.code ?? ""}`.trim();
}

function observationValue(o: Json): string {
  if (o.valueQuantity) return quantity(o.valueQuantity);
  if (o.valueCodeableConcept) return codingText(o.valueCodeableConcept);
  if (o.valueString !== undefined) return String(o.valueString);
  if (o.valueBoolean !== undefined) return o.valueBoolean ? "yes" : "no";
  if (o.valueInteger !== undefined) return String(o.valueInteger);
  if (o.valueDateTime) return when(o.valueDateTime);
  if (o.dataAbsentReason) return `absent: ${codingText(o.dataAbsentReason)}`;
  return "—";
}

export function when(value: string | undefined): string {
  if (!value) return "—";
  const d = new Date(value);
  return Number.isNaN(d.getTime()) || value.length <= 10 ? value : d.toLocaleString();
}

function Field({ label, children }: { label: string; children: ReactNode }) {
  return (
    <>
      <dt>{label}</dt>
      <dd>{children}</dd>
    </>
  );
}

function PatientView({ r }: { r: Json }) {
  const account = (r.identifier ?? []).find((i: Json) => i.system === "urn:medledger:account");
  return (
    <dl>
      <Field label="Name">{humanName(r)}</Field>
      <Field label="Gender">{r.gender ?? "—"}</Field>
      <Field label="Born">{r.birthDate ?? "—"}</Field>
      {account && <Field label="Account"><code>{account.value}</code></Field>}
    </dl>
  );
}

function ObservationView({ r }: { r: Json }) {
  return (
    <dl>
      <Field label="Test">{codingText(r.code)} <Codes concept={r.code} /></Field>
      <Field label="Value"><strong className="value">{observationValue(r)}</strong></Field>
      {(r.component ?? []).map((c: Json, i: number) => (
        <Field key={i} label={codingText(c.code)}>
          <strong className="value">{observationValue(c)}</strong>
        </Field>
      ))}
      {r.referenceRange?.[0] && (
        <Field label="Reference range">
          {quantity(r.referenceRange[0].low)} – {quantity(r.referenceRange[0].high)}
        </Field>
      )}
      {r.interpretation && <Field label="Interpretation">{codingText(r.interpretation[0])}</Field>}
      <Field label="Status">{r.status}</Field>
      <Field label="When">{when(r.effectiveDateTime ?? r.issued)}</Field>
    </dl>
  );
}

function ConditionView({ r }: { r: Json }) {
  const icd = (r.code?.coding ?? []).filter((c: Json) => c.system === ICD10);
  return (
    <dl>
      <Field label="Condition">{codingText(r.code)}</Field>
      {icd.map((c: Json, i: number) => (
        <Field key={i} label="ICD-10-CM">
          <code>{c.code}</code> {c.display ?? ""}
        </Field>
      ))}
      <Field label="Clinical status">{codingText(r.clinicalStatus)}</Field>
      {r.verificationStatus && <Field label="Verification">{codingText(r.verificationStatus)}</Field>}
      {r.severity && <Field label="Severity">{codingText(r.severity)}</Field>}
      <Field label="Onset">{when(r.onsetDateTime) }</Field>
      {r.recordedDate && <Field label="Recorded">{when(r.recordedDate)}</Field>}
    </dl>
  );
}

function ImagingStudyView({ r }: { r: Json }) {
  const uid = (r.identifier ?? []).find((i: Json) => i.system === "urn:dicom:uid");
  const modalities = (r.modality ?? []).map((m: Json) => m.code).join(", ");
  return (
    <>
      <dl>
        <Field label="Study">{r.description ?? "—"}</Field>
        <Field label="Modality">{modalities || "—"}</Field>
        <Field label="Started">{when(r.started)}</Field>
        {uid && <Field label="Study Instance UID"><code>{uid.value}</code></Field>}
        <Field label="Series / instances">
          {r.numberOfSeries ?? (r.series ?? []).length} / {r.numberOfInstances ?? "—"}
        </Field>
        <Field label="Status">{r.status}</Field>
      </dl>
      {(r.series ?? []).length > 0 && (
        <div className="table-wrap">
          <table>
            <caption>DICOM series</caption>
            <thead>
              <tr><th scope="col">#</th><th scope="col">Modality</th><th scope="col">Body site</th>
                <th scope="col">Description</th><th scope="col">Instances</th><th scope="col">Series UID</th></tr>
            </thead>
            <tbody>
              {r.series.map((s: Json, i: number) => (
                <tr key={i}>
                  <td>{s.number ?? i + 1}</td>
                  <td>{s.modality?.code ?? "—"}</td>
                  <td>{s.bodySite?.display ?? s.bodySite?.code ?? "—"}</td>
                  <td>{s.description ?? "—"}</td>
                  <td>{s.numberOfInstances ?? (s.instance ?? []).length}</td>
                  <td><code>{s.uid}</code></td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}

function GenericView({ r }: { r: Json }) {
  const concept = r.code ?? r.medicationCodeableConcept ?? r.vaccineCode ?? r.type?.[0];
  return (
    <dl>
      {concept && <Field label="What">{codingText(concept)} <Codes concept={concept} /></Field>}
      {r.status && <Field label="Status">{r.status}</Field>}
      <Field label="Updated">{when(r.meta?.lastUpdated)}</Field>
    </dl>
  );
}

const VIEWS: Record<string, (p: { r: Json }) => ReactNode> = {
  Patient: PatientView,
  Observation: ObservationView,
  Condition: ConditionView,
  ImagingStudy: ImagingStudyView,
};

export function FhirResource({ resource }: { resource: Json }) {
  const View = VIEWS[resource.resourceType] ?? GenericView;
  const headingId = `res-${resource.resourceType}-${resource.id}`;
  return (
    <article className="resource card" aria-labelledby={headingId}
             data-resource={`${resource.resourceType}/${resource.id}`}>
      <h4 id={headingId}>
        <span className="badge">{resource.resourceType}</span>{" "}
        {resource.resourceType === "Patient" ? humanName(resource) : codingText(
          resource.code ?? resource.medicationCodeableConcept ?? resource.vaccineCode
          ?? { text: resource.description ?? resource.id })}
      </h4>
      <View r={resource} />
      <details>
        <summary>FHIR JSON (version {resource.meta?.versionId ?? "?"})</summary>
        <pre>{JSON.stringify(resource, null, 2)}</pre>
      </details>
    </article>
  );
}
