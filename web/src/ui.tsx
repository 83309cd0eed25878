// Small shared pieces: status messages (announced to screen readers), busy buttons, dates.
import { useCallback, useState, type ReactNode } from "react";

export type Notice = { kind: "ok" | "error" | "info"; text: string } | null;

export function Status({ notice }: { notice: Notice }) {
  return (
    <p className={`notice ${notice?.kind ?? ""}`} role={notice?.kind === "error" ? "alert" : "status"}
       aria-live="polite">
      {notice?.text ?? ""}
    </p>
  );
}

/** Run an async action with a busy flag and a notice for its outcome. */
export function useAction(): [boolean, Notice, (label: string, fn: () => Promise<string | void>) => Promise<void>,
                              (n: Notice) => void] {
  const [busy, setBusy] = useState(false);
  const [notice, setNotice] = useState<Notice>(null);
  const run = useCallback(async (label: string, fn: () => Promise<string | void>) => {
    setBusy(true);
    setNotice({ kind: "info", text: `${label}…` });
    try {
      const done = await fn();
      setNotice({ kind: "ok", text: done || `${label}: done` });
    } catch (err) {
      setNotice({ kind: "error", text: `${label} failed: ${(err as Error).message}` });
    } finally {
      setBusy(false);
    }
  }, []);
  return [busy, notice, run, setNotice];
}

export function Section({ title, id, children, actions }: { title: string; id: string;
                                                           children: ReactNode; actions?: ReactNode }) {
  return (
    <section className="card" aria-labelledby={id}>
      <div className="section-head">
        <h2 id={id}>{title}</h2>
        {actions}
      </div>
      {children}
    </section>
  );
}

export function fromUnix(seconds: number): string {
  return new Date(seconds * 1000).toLocaleString();
}

export function LiveBadge({ state }: { state: string }) {
  return (
    <span className={`live live-${state}`} role="status" aria-live="polite" data-live={state}>
      <span aria-hidden="true">●</span> {state === "live" ? "Live" : state === "connecting" ? "Connecting" : "Offline"}
    </span>
  );
}
