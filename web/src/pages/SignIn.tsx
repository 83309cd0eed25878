import { useState, type FormEvent } from "react";
import { Session, walletFromKey, walletFromKeystore, type Me } from "../session";
import { Status, useAction } from "../ui";

export function SignIn({ onSignedIn }: { onSignedIn: (s: Session, me: Me) => void }) {
  const [mode, setMode] = useState<"key" | "keystore">("key");
  const [key, setKey] = useState("");
  const [file, setFile] = useState<string | null>(null);
  const [password, setPassword] = useState("");
  const [progress, setProgress] = useState<number | null>(null);
  const [busy, notice, run] = useAction();

  const submit = (event: FormEvent) => {
    event.preventDefault();
    void run("Signing in", async () => {
      let wallet;
      if (mode === "key") {
        wallet = await walletFromKey(key);
      } else {
        if (!file) throw new Error("choose a keystore file");
        wallet = await walletFromKeystore(file, password, (p) => setProgress(Math.round(p * 100)));
      }
      setKey("");
      setPassword("");
      const session = new Session(wallet);
      await session.login();
      const me = await session.me();
      onSignedIn(session, me);
    });
  };

  return (
    <div className="signin card">
      <h1>Sign in</h1>
      <p>
        Sign in with your medledger account key. The key is used in this browser tab only to sign
        requests: it is never sent to the server and is forgotten when you close the tab or sign out.
      </p>
      <form onSubmit={submit}>
        <fieldset>
          <legend>Key source</legend>
          <label className="inline">
            <input type="radio" name="mode" value="key" checked={mode === "key"}
                   onChange={() => setMode("key")} /> Private key
          </label>
          <label className="inline">
            <input type="radio" name="mode" value="keystore" checked={mode === "keystore"}
                   onChange={() => setMode("keystore")} /> Keystore file (v3 JSON)
          </label>
        </fieldset>
        {mode === "key" ? (
          <div className="field">
            <label htmlFor="private-key">Private key (hex)</label>
            <input id="private-key" type="password" autoComplete="off" spellCheck={false}
                   value={key} onChange={(e) => setKey(e.target.value)} required />
          </div>
        ) : (
          <>
            <div className="field">
              <label htmlFor="keystore-file">Keystore file</label>
              <input id="keystore-file" type="file" accept=".json,application/json"
                     onChange={async (e) => setFile(await e.target.files?.[0]?.text() ?? null)} required />
            </div>
            <div className="field">
              <label htmlFor="keystore-password">Keystore password</label>
              <input id="keystore-password" type="password" autoComplete="current-password"
                     value={password} onChange={(e) => setPassword(e.target.value)} />
            </div>
            {progress !== null && busy && (
              <progress max={100} value={progress} aria-label="Decrypting keystore">{progress}%</progress>
            )}
          </>
        )}
        <button type="submit" disabled={busy}>Sign in</button>
      </form>
      <Status notice={notice} />
    </div>
  );
}
