import { useCallback, useEffect, useRef, useState, type FormEvent } from "react";
import { getAddress, keccak256, toUtf8Bytes, type Log } from "ethers";
import type { Subscribe } from "../App";
import { ROLES, ROLE_NAMES, decodeExtra, hospitalTopic, medledgerInterface, quorum, rpc, sealSigners,
         short, transact, type RpcBlock } from "../chain";
import type { Me, Session } from "../session";
import { Section, Status, fromUnix, useAction } from "../ui";

interface BlockRow { number: number; hash: string; proposer: string; txs: number; time: number;
                     seals: number; validators: number; round: number; signers: string[] | null }
interface Signer { address: string; proposedBlockCount: string; lastProposedBlockNumber: string }
interface Case { case: number; patient: string; patientRef: string | null; patientHospital: number;
                 clinician: string; clinicianHospital: number; reason: string; opened: number;
                 until: number; status: "pending" | "justified" | "unjustified"; reviewer: string | null;
                 requestedBy: string | null }

const RECENT_BLOCKS = 8; // shown
const SIGNING_WINDOW = 24; // blocks whose commit seals count as recent signing activity

export function ConsortiumPage({ session, me, subscribe }: { session: Session; me: Me; subscribe: Subscribe }) {
  return (
    <div className="page">
      <h1>Consortium &amp; audit</h1>
      <div className="grid">
        <ChainView subscribe={subscribe} />
        {(me.role === "auditor" || me.role === "admin") && (
          <ReviewQueue session={session} me={me} subscribe={subscribe} />
        )}
        {me.role === "admin" && <StaffRegistration session={session} me={me} subscribe={subscribe} />}
        {me.role !== "auditor" && me.role !== "admin" && (
          <Section title="Review and staff" id="roles-h">
            <p>Break-glass review is for auditors; staff registration for hospital admins.</p>
          </Section>
        )}
      </div>
    </div>
  );
}

function useThrottled(fn: () => void, ms: number): () => void {
  const last = useRef(0);
  const timer = useRef<number | undefined>(undefined);
  const latest = useRef(fn);
  latest.current = fn;
  useEffect(() => () => window.clearTimeout(timer.current), []);
  return useCallback(() => {
    const wait = Math.max(0, last.current + ms - Date.now());
    window.clearTimeout(timer.current);
    timer.current = window.setTimeout(() => {
      last.current = Date.now();
      latest.current();
    }, wait);
  }, [ms]);
}

function ChainView({ subscribe }: { subscribe: Subscribe }) {
  const [blocks, setBlocks] = useState<BlockRow[]>([]);
  const [signers, setSigners] = useState<Signer[]>([]);
  const [validators, setValidators] = useState<string[]>([]);
  const [error, setError] = useState<string | null>(null);

  const load = useCallback(async () => {
    try {
      const provider = rpc();
      const head = await provider.getBlockNumber();
      const numbers = Array.from({ length: Math.min(SIGNING_WINDOW, head + 1) }, (_, i) => head - i);
      const raw: (RpcBlock | null)[] = await Promise.all(numbers.map((n) =>
        provider.send("eth_getBlockByNumber", [`0x${n.toString(16)}`, false])));
      setBlocks(raw.filter((b): b is RpcBlock => b !== null).map((b) => {
        const extra = decodeExtra(b.extraData);
        return {
          number: Number(b.number), hash: b.hash, proposer: getAddress(b.miner),
          txs: b.transactions.length, time: Number(b.timestamp), seals: extra?.seals ?? 0,
          validators: extra?.validators.length ?? 0, round: extra?.round ?? 0,
          signers: Number(b.number) === 0 ? [] : sealSigners(b),
        };
      }));
      const [vals, metrics] = await Promise.all([
        provider.send("qbft_getValidatorsByBlockNumber", ["latest"]) as Promise<string[]>,
        provider.send("qbft_getSignerMetrics", [null, `0x${head.toString(16)}`]) as Promise<Signer[]>,
      ]);
      setValidators(vals.map((v) => getAddress(v)));
      setSigners(metrics);
      setError(null);
    } catch (err) {
      setError((err as Error).message);
    }
  }, []);
  const refresh = useThrottled(() => void load(), 1000);
  useEffect(() => {
    void load();
  }, [load]);
  useEffect(() => subscribe((e) => {
    if (e.event === "block") refresh();
  }), [subscribe, refresh]);

  const metric = (address: string) => signers.find((s) => getAddress(s.address) === address);
  const sealed = (address: string) => blocks.filter((b) => b.signers?.includes(address)).length;
  const checked = blocks.filter((b) => b.number > 0 && b.signers !== null).length;
  const head = blocks[0];
  return (
    <>
      <Section title="Validators" id="validators-h"
               actions={head && <span className="small">head <strong data-head={head.number}>#{head.number}</strong></span>}>
        {error && <p className="notice error" role="alert">{error}</p>}
        <div className="table-wrap">
          <table>
            <caption className="sr-only">Validators and the blocks they proposed recently</caption>
            <thead><tr><th scope="col">Validator</th><th scope="col">Blocks proposed</th><th scope="col">Last proposed</th>
              <th scope="col">Commit seals (last {checked} blocks)</th></tr></thead>
            <tbody>
              {validators.map((v) => {
                const m = metric(v);
                return (
                  <tr key={v}>
                    <td><code title={v}>{short(v)}</code></td>
                    <td>{m ? Number(m.proposedBlockCount) : 0}</td>
                    <td>{m && Number(m.lastProposedBlockNumber) > 0 ? `#${Number(m.lastProposedBlockNumber)}` : "—"}</td>
                    <td data-sealed={sealed(v)}>{sealed(v)} / {checked}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
        <p className="small">Quorum: {quorum(validators.length)} of {validators.length} commit seals.</p>
      </Section>
      <Section title="Latest blocks" id="blocks-h">
        <div className="table-wrap">
          <table className="blocks">
            <caption className="sr-only">Most recent blocks and their finality</caption>
            <thead><tr><th scope="col">Block</th><th scope="col">Proposer</th><th scope="col">Txs</th>
              <th scope="col">Time</th><th scope="col">Finality</th></tr></thead>
            <tbody>
              {blocks.slice(0, RECENT_BLOCKS).map((b) => {
                const valid = b.signers === null ? b.seals
                  : b.signers.filter((s) => validators.length === 0 || validators.includes(s)).length;
                const final = b.number === 0 || (b.validators > 0 && valid >= quorum(b.validators));
                return (
                  <tr key={b.hash}>
                    <td><span title={b.hash}>#{b.number}</span></td>
                    <td><code title={b.proposer}>{short(b.proposer, 4)}</code></td>
                    <td>{b.txs}</td>
                    <td>{fromUnix(b.time)}</td>
                    <td>{b.number === 0 ? "genesis" : (
                      <span className={final ? "ok-text" : "bad-text"}>
                        {final ? "final" : "not final"} ({valid}/{b.validators} seals
                        {b.signers === null ? ", unverified" : ""}{b.round ? `, round ${b.round}` : ""})
                      </span>)}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      </Section>
    </>
  );
}

function ReviewQueue({ session, me, subscribe }: { session: Session; me: Me; subscribe: Subscribe }) {
  const [cases, setCases] = useState<Case[]>([]);
  const [canReview, setCanReview] = useState(false);
  const [notes, setNotes] = useState<Record<number, string>>({});
  const [busy, notice, run] = useAction();
  const [error, setError] = useState<string | null>(null);

  const load = useCallback(async () => {
    try {
      const out = await session.fhir<{ cases: Case[]; canReview: boolean }>("GET", "/$break-glass-cases");
      setCases(out.cases);
      setCanReview(out.canReview);
      setError(null);
    } catch (err) {
      setError((err as Error).message);
    }
  }, [session]);
  const refresh = useThrottled(() => void load(), 500);
  useEffect(() => {
    void load();
  }, [load]);
  useEffect(() => subscribe((e) => {
    if (e.event === "audit" || e.event === "break-glass") refresh();
  }), [subscribe, refresh]);

  const review = (c: Case, justified: boolean) => run(`Reviewing case ${c.case}`, async () => {
    const note = notes[c.case]?.trim() ?? "";
    const noteHash = note ? keccak256(toUtf8Bytes(note)) : `0x${"00".repeat(32)}`;
    await transact(session.wallet, me.node.medledger, "reviewBreakGlass", c.case, justified, noteHash);
    await load();
    return `Case ${c.case} marked ${justified ? "justified" : "unjustified"}.`;
  });

  const pending = cases.filter((c) => c.status === "pending");
  const done = cases.filter((c) => c.status !== "pending");
  return (
    <Section title={`Break-glass review queue (${pending.length} pending)`} id="review-h">
      {error && <p className="notice error" role="alert">{error}</p>}
      {!canReview && <p className="small">Only auditors can mark cases; you can see them.</p>}
      {pending.length === 0 ? <p>No cases awaiting review.</p> : (
        <ul className="cases">
          {pending.map((c) => (
            <li key={c.case} className="case alarm" data-case={c.case}>
              <div>
                <strong>Case {c.case}</strong> · <span className="tag">{c.reason}</span>
                <div>Clinician <code title={c.requestedBy ?? c.clinician}>{short(c.requestedBy ?? c.clinician)}</code>
                  {c.requestedBy && <> via node account <code title={c.clinician}>{short(c.clinician, 4)}</code></>}
                  {" "}(hospital {c.clinicianHospital}) opened the records of patient{" "}
                  <code title={c.patient}>{short(c.patient)}</code>{c.patientRef ? ` (${c.patientRef})` : ""}
                  {" "}(hospital {c.patientHospital})</div>
                <div className="small">{fromUnix(c.opened)} — window until {fromUnix(c.until)}</div>
              </div>
              {canReview && (
                <div className="review">
                  <label htmlFor={`note-${c.case}`}>Review note (optional, hashed on chain)</label>
                  <input id={`note-${c.case}`} value={notes[c.case] ?? ""}
                         onChange={(e) => setNotes({ ...notes, [c.case]: e.target.value })} />
                  <div className="buttons">
                    <button type="button" disabled={busy} onClick={() => void review(c, true)}
                            aria-label={`Mark case ${c.case} justified`}>Justified</button>
                    <button type="button" className="danger" disabled={busy} onClick={() => void review(c, false)}
                            aria-label={`Mark case ${c.case} unjustified`}>Unjustified</button>
                  </div>
                </div>
              )}
            </li>
          ))}
        </ul>
      )}
      <Status notice={notice} />
      {done.length > 0 && (
        <details>
          <summary>Reviewed cases ({done.length})</summary>
          <ul className="cases">
            {done.map((c) => (
              <li key={c.case} className="case" data-case={c.case}>
                Case {c.case}: <strong className={c.status === "justified" ? "ok-text" : "bad-text"}>{c.status}</strong>
                {" "}— {c.reason}, clinician <code>{short(c.requestedBy ?? c.clinician)}</code>, reviewer{" "}
                <code>{short(c.reviewer ?? "")}</code>
              </li>
            ))}
          </ul>
        </details>
      )}
    </Section>
  );
}

interface Registered { account: string; role: string; block: number }

function StaffRegistration({ session, me, subscribe }: { session: Session; me: Me; subscribe: Subscribe }) {
  const [account, setAccount] = useState("");
  const [role, setRole] = useState<keyof typeof ROLES>("doctor");
  const [person, setPerson] = useState("");
  const [staff, setStaff] = useState<Registered[]>([]);
  const [busy, notice, run] = useAction();

  const load = useCallback(async () => {
    const event = medledgerInterface.getEvent("AccountRegistered")!;
    const logs: Log[] = await rpc().getLogs({
      address: me.node.medledger, fromBlock: 0, toBlock: "latest",
      topics: [event.topicHash, null, hospitalTopic(me.hospital)],
    });
    setStaff(logs.map((l) => {
      const parsed = medledgerInterface.parseLog({ topics: [...l.topics], data: l.data })!;
      return { account: parsed.args.account as string, role: ROLE_NAMES[Number(parsed.args.role)] ?? "?",
               block: l.blockNumber };
    }).reverse());
  }, [me]);
  const refresh = useThrottled(() => void load().catch(() => undefined), 2000);
  useEffect(() => {
    void load().catch(() => undefined);
  }, [load]);
  useEffect(() => subscribe((e) => {
    if (e.event === "block" && Number(e.transactions ?? 0) > 0) refresh();
  }), [subscribe, refresh]);

  const submit = (event: FormEvent) => {
    event.preventDefault();
    void run("Registering", async () => {
      const who = account.trim();
      if (!/^0x[0-9a-fA-F]{40}$/.test(who)) throw new Error("the account is a 0x-prefixed 40-digit hex address");
      if (!person.trim()) throw new Error("a person identifier is required");
      // Only a keyed hash of the hospital's own person identifier goes on chain, never PHI.
      const personId = keccak256(toUtf8Bytes(`medledger:person:${me.hospital}:${person.trim()}`));
      if (role === "patient") {
        await transact(session.wallet, me.node.medledger, "registerPatient", who, personId);
      } else {
        await transact(session.wallet, me.node.medledger, "registerStaff", who, personId, ROLES[role]);
      }
      setAccount("");
      setPerson("");
      await load();
      return `${short(who)} registered as ${role}.`;
    });
  };
  return (
    <Section title="Staff registration" id="staff-h">
      <form onSubmit={submit}>
        <fieldset disabled={busy}>
          <legend className="sr-only">New account</legend>
          <div className="field">
            <label htmlFor="staff-account">Account (0x…)</label>
            <input id="staff-account" value={account} onChange={(e) => setAccount(e.target.value)} required
                   spellCheck={false} autoComplete="off" />
          </div>
          <div className="field">
            <label htmlFor="staff-role">Role</label>
            <select id="staff-role" value={role} onChange={(e) => setRole(e.target.value as keyof typeof ROLES)}>
              {Object.keys(ROLES).map((r) => <option key={r} value={r}>{r}</option>)}
            </select>
          </div>
          <div className="field">
            <label htmlFor="staff-person">Person identifier (employee / MRN number)</label>
            <input id="staff-person" value={person} onChange={(e) => setPerson(e.target.value)} required
                   autoComplete="off" />
          </div>
          <button type="submit">Register</button>
        </fieldset>
        <Status notice={notice} />
      </form>
      <h3>Accounts of {me.hospitalName || `hospital ${me.hospital}`}</h3>
      <ul className="staff">
        {staff.map((s) => (
          <li key={s.account}><code title={s.account}>{short(s.account)}</code> <span className="tag">{s.role}</span>
            <span className="small"> block #{s.block}</span></li>
        ))}
      </ul>
    </Section>
  );
}
