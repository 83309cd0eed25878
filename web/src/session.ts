// A signed-in user: the key stays in this tab's memory only (never stored, never sent).
// FHIR calls carry a bearer token bought with one EIP-191 signed request (node/fhir/auth.py);
// when it expires (automatic logoff on the node) the next call signs for a fresh one.
import { Wallet, sha256, toUtf8Bytes, hexlify, randomBytes } from "ethers";

export interface NodeInfo {
  hospital: number;
  serviceAccount: string;
  medledger: string;
}

export interface Me {
  address: string;
  role: "admin" | "doctor" | "nurse" | "researcher" | "auditor" | "patient" | "none";
  hospital: number;
  hospitalName: string;
  hospitalActive: boolean;
  node: NodeInfo;
  patientRefs?: string[];
  serviceDelegate?: boolean;
}

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The text the node verifies (request_message in node/fhir/auth.py). */
export function requestMessage(method: string, target: string, bodySha256: string,
                               timestamp: number, nonce: string): string {
  return ["medledger-fhir-request/v1", method.toUpperCase(), target, bodySha256,
          String(timestamp), nonce].join("\n");
}

export async function signedHeaders(wallet: Wallet, method: string, target: string,
                                    body: string): Promise<Record<string, string>> {
  const timestamp = Math.floor(Date.now() / 1000);
  const nonce = hexlify(randomBytes(16)).slice(2);
  const digest = sha256(toUtf8Bytes(body)).slice(2);
  const signature = await wallet.signMessage(requestMessage(method, target, digest, timestamp, nonce));
  return {
    "X-Medledger-Address": wallet.address,
    "X-Medledger-Timestamp": String(timestamp),
    "X-Medledger-Nonce": nonce,
    "X-Medledger-Signature": signature,
  };
}

function outcomeText(body: unknown, status: number): string {
  const issue = (body as { issue?: { diagnostics?: string }[] } | null)?.issue?.[0];
  return issue?.diagnostics ?? `HTTP ${status}`;
}

export class Session {
  private token: string | null = null;

  constructor(public readonly wallet: Wallet) {}

  get address(): string {
    return this.wallet.address;
  }

  async login(): Promise<string> {
    const headers = await signedHeaders(this.wallet, "POST", "/auth/token", "");
    const response = await fetch("/auth/token", { method: "POST", headers });
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, outcomeText(body, response.status));
    this.token = (body as { access_token: string }).access_token;
    return this.token;
  }

  async bearer(): Promise<string> {
    return this.token ?? (await this.login());
  }

  async logout(): Promise<void> {
    if (this.token) {
      await fetch("/auth/token", { method: "DELETE",
                                   headers: { Authorization: `Bearer ${this.token}` } });
    }
    this.token = null;
  }

  /** A FHIR API call (path below /fhir) with JSON in and out; 401 → sign in again once. */
  async fhir<T>(method: string, path: string, body?: unknown,
                extra: Record<string, string> = {}): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const headers: Record<string, string> = {
        Authorization: `Bearer ${await this.bearer()}`,
        Accept: "application/fhir+json",
        ...extra,
      };
      if (body !== undefined) headers["Content-Type"] = "application/fhir+json";
      const response = await fetch(`/fhir${path}`, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      });
      if (response.status === 401 && attempt === 0) {
        this.token = null;
        continue;
      }
      if (response.status === 204) return undefined as T;
      const payload = await response.json().catch(() => null);
      if (!response.ok) throw new ApiError(response.status, outcomeText(payload, response.status));
      return payload as T;
    }
  }

  me(): Promise<Me> {
    return this.fhir<Me>("GET", "/$me");
  }
}

export async function walletFromKey(text: string): Promise<Wallet> {
  const key = text.trim().startsWith("0x") ? text.trim() : `0x${text.trim()}`;
  if (!/^0x[0-9a-fA-F]{64}$/.test(key)) {
    throw new Error("a private key is 64 hex digits (optionally 0x-prefixed)");
  }
  return new Wallet(key);
}

export async function walletFromKeystore(json: string, password: string,
                                         progress?: (p: number) => void): Promise<Wallet> {
  const wallet = await Wallet.fromEncryptedJson(json, password, progress);
  return new Wallet(wallet.privateKey);
}
