import { useEffect, useState } from "react";
import { SignIn } from "./pages/SignIn";
import { PatientPage } from "./pages/Patient";
import { ClinicianPage } from "./pages/Clinician";
import { ConsortiumPage } from "./pages/Consortium";
import { useLive, type LiveEvent } from "./live";
import type { Me, Session } from "./session";
import { LiveBadge } from "./ui";
import { short } from "./chain";

type Page = "patient" | "clinician" | "consortium";
const PAGES: { id: Page; label: string }[] = [
  { id: "patient", label: "My records & consent" },
  { id: "clinician", label: "Clinician" },
  { id: "consortium", label: "Consortium & audit" },
];

function defaultPage(role: Me["role"]): Page {
  if (role === "patient") return "patient";
  if (role === "doctor" || role === "nurse") return "clinician";
  return "consortium";
}

function pageFromHash(): Page | null {
  const name = window.location.hash.replace(/^#\/?/, "");
  return PAGES.some((p) => p.id === name) ? (name as Page) : null;
}

export function App() {
  const [auth, setAuth] = useState<{ session: Session; me: Me } | null>(null);
  if (auth === null) {
    return (
      <Shell>
        <SignIn onSignedIn={(session, me) => setAuth({ session, me })} />
      </Shell>
    );
  }
  return <SignedIn session={auth.session} me={auth.me} onSignOut={() => {
    void auth.session.logout();
    setAuth(null);
  }} />;
}

function Shell({ children, header }: { children: React.ReactNode; header?: React.ReactNode }) {
  return (
    <>
      <a className="skip" href="#main">Skip to content</a>
      <header className="top">
        <div className="brand">
          <svg aria-hidden="true" width="22" height="22" viewBox="0 0 24 24" focusable="false">
            <rect x="9" y="2" width="6" height="20" rx="1" fill="currentColor" />
            <rect x="2" y="9" width="20" height="6" rx="1" fill="currentColor" />
          </svg>
          medledger
        </div>
        {header}
      </header>
      <main id="main" tabIndex={-1}>{children}</main>
    </>
  );
}

type Listener = (e: LiveEvent) => void;

function SignedIn({ session, me, onSignOut }: { session: Session; me: Me; onSignOut: () => void }) {
  const [page, setPage] = useState<Page>(pageFromHash() ?? defaultPage(me.role));
  const [listeners] = useState(() => new Set<Listener>());
  const live = useLive(session, (event) => listeners.forEach((l) => l(event)));

  useEffect(() => {
    const onHash = () => setPage(pageFromHash() ?? defaultPage(me.role));
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, [me.role]);

  const subscribe = (l: Listener) => {
    listeners.add(l);
    return () => listeners.delete(l);
  };
  const header = (
    <>
      <nav aria-label="Pages">
        <ul>
          {PAGES.map((p) => (
            <li key={p.id}>
              <a href={`#/${p.id}`} aria-current={page === p.id ? "page" : undefined}>{p.label}</a>
            </li>
          ))}
        </ul>
      </nav>
      <div className="who">
        <LiveBadge state={live} />
        <span className="role" data-role={me.role}>{me.role}</span>
        <span title={me.address}><code>{short(me.address, 4)}</code></span>
        <span className="hospital">{me.hospitalName || `hospital ${me.hospital}`}</span>
        <button type="button" className="secondary" onClick={onSignOut}>Sign out</button>
      </div>
    </>
  );
  return (
    <Shell header={header}>
      {page === "patient" && <PatientPage session={session} me={me} subscribe={subscribe} />}
      {page === "clinician" && <ClinicianPage session={session} me={me} subscribe={subscribe} />}
      {page === "consortium" && <ConsortiumPage session={session} me={me} subscribe={subscribe} />}
    </Shell>
  );
}

export type Subscribe = (l: Listener) => () => void;
