// The chain as the browser sees it: the node's JSON-RPC through the same-origin /rpc proxy
// (node/fhir/rpcproxy.py). Transactions are signed here with the user's key.
import { Contract, JsonRpcProvider, Wallet, getAddress, zeroPadValue, decodeRlp, encodeRlp,
         keccak256, recoverAddress, toBeHex, type RlpStructuredData, type TransactionReceipt,
         Interface } from "ethers";
import artifact from "../../contracts/artifacts/MedLedger.json";

export const MEDLEDGER_ABI = artifact.abi;
export const medledgerInterface = new Interface(MEDLEDGER_ABI);

let provider: JsonRpcProvider | null = null;

export function rpc(): JsonRpcProvider {
  if (provider === null) {
    provider = new JsonRpcProvider(new URL("/rpc", window.location.href).href, undefined, {
      batchMaxCount: 1,
      polling: true,
      pollingInterval: 500,
    });
  }
  return provider;
}

export function medledger(address: string, wallet?: Wallet): Contract {
  return new Contract(address, MEDLEDGER_ABI, wallet ? wallet.connect(rpc()) : rpc());
}

/** Send one MedLedger transaction signed by `wallet` and wait until it is final. */
export async function transact(wallet: Wallet, address: string, fn: string,
                               ...args: unknown[]): Promise<TransactionReceipt> {
  const contract = medledger(address, wallet);
  try {
    const tx = await contract.getFunction(fn).send(...args);
    const receipt = await tx.wait(1, 120_000);
    if (receipt === null || receipt.status !== 1) throw new Error(`${fn} failed on chain`);
    return receipt;
  } catch (err) {
    throw new Error(explain(err));
  }
}

/** A readable message for an ethers error (custom MedLedger errors decoded by name). */
export function explain(err: unknown): string {
  const e = err as { revert?: { name?: string; args?: unknown[] }; shortMessage?: string;
                     info?: { error?: { message?: string } }; message?: string; data?: string };
  if (e.revert?.name) return `the chain refused: ${e.revert.name}`;
  if (typeof e.data === "string") {
    try {
      const parsed = medledgerInterface.parseError(e.data);
      if (parsed) return `the chain refused: ${parsed.name}`;
    } catch {
      /* not a MedLedger error */
    }
  }
  return e.info?.error?.message ?? e.shortMessage ?? e.message ?? String(err);
}

export const ROLES = { admin: 1, doctor: 2, nurse: 3, researcher: 4, auditor: 5, patient: 6 } as const;
export const ROLE_NAMES: Record<number, string> = {
  1: "admin", 2: "doctor", 3: "nurse", 4: "researcher", 5: "auditor", 6: "patient",
};
export const PURPOSES: Record<string, { bit: number; label: string }> = {
  TREAT: { bit: 1, label: "Treatment" },
  HPAYMT: { bit: 2, label: "Payment" },
  HOPERAT: { bit: 4, label: "Healthcare operations" },
  HRESCH: { bit: 8, label: "Research" },
};

export function topicOf(address: string): string {
  return zeroPadValue(getAddress(address), 32);
}

export function hospitalTopic(hospital: number): string {
  return zeroPadValue(`0x${hospital.toString(16).padStart(8, "0")}`, 32);
}

/** The patient's on-chain record ids (public: RecordVersionAdded is indexed by patient). */
export async function recordIdsOf(medledgerAddress: string, patient: string): Promise<string[]> {
  const logs = await rpc().getLogs({
    address: medledgerAddress, fromBlock: 0, toBlock: "latest",
    topics: [medledgerInterface.getEvent("RecordVersionAdded")!.topicHash, null, topicOf(patient)],
  });
  return [...new Set(logs.map((l) => l.topics[1]))];
}

export interface QbftExtra {
  validators: string[];
  round: number;
  seals: number;
}

/** Besu's QBFT extraData: RLP [vanity, validators, vote, round, commit seals]. */
export function decodeExtra(extraData: string): QbftExtra | null {
  try {
    const items = decodeRlp(extraData);
    if (!Array.isArray(items) || items.length < 5) return null;
    const validators = (items[1] as string[]).map((v) => getAddress(v));
    const roundHex = items[3] as string;
    return {
      validators,
      round: roundHex === "0x" ? 0 : Number(BigInt(roundHex)),
      seals: (items[4] as string[]).length,
    };
  } catch {
    return null;
  }
}

/** A JSON-RPC block (hex strings) as eth_getBlockByNumber returns it. */
export type RpcBlock = Record<string, string> & { transactions: string[] };

function quantity(hex: string): string {
  const n = BigInt(hex);
  return n === 0n ? "0x" : toBeHex(n);
}

function headerRlp(b: RpcBlock, extraData: string): string {
  const fields = [b.parentHash, b.sha3Uncles, b.miner, b.stateRoot, b.transactionsRoot,
    b.receiptsRoot, b.logsBloom, quantity(b.difficulty), quantity(b.number), quantity(b.gasLimit),
    quantity(b.gasUsed), quantity(b.timestamp), extraData, b.mixHash, b.nonce,
    quantity(b.baseFeePerGas), b.withdrawalsRoot, quantity(b.blobGasUsed),
    quantity(b.excessBlobGas), b.parentBeaconBlockRoot, b.requestsHash];
  return encodeRlp(fields);
}

/** Who signed a block's commit seals (consensus/seals.py): each seal signs keccak(RLP(header))
 *  with the seals left out of extraData (round kept). The header is rebuilt from the RPC
 *  fields and checked first against the block hash (Besu's: round 0, no seals), so a field
 *  this code does not know yields null instead of wrong signers. */
export function sealSigners(b: RpcBlock): string[] | null {
  try {
    const items = decodeRlp(b.extraData) as RlpStructuredData[];
    if (!Array.isArray(items) || items.length !== 5) return null;
    const [vanity, validators, vote, round, seals] = items;
    const forHash = encodeRlp([vanity, validators, vote, "0x00000000", []]);
    if (keccak256(headerRlp(b, forHash)) !== b.hash) return null;
    const digest = keccak256(headerRlp(b, encodeRlp([vanity, validators, vote, round, []])));
    return (seals as string[]).map((seal) => recoverAddress(digest, seal));
  } catch {
    return null;
  }
}

export function quorum(n: number): number {
  return Math.ceil((2 * n) / 3);
}

export function short(value: string, size = 6): string {
  return value.length > 2 * size + 2 ? `${value.slice(0, size + 2)}…${value.slice(-size)}` : value;
}
