#!/usr/bin/env node
// Groth16 proof for one circuit: reads the circuit input JSON on stdin, writes
// {"proof": ..., "publicSignals": [...]} (snarkjs formats) on stdout.
// Usage: node scripts/prove.mjs membership|attribute < input.json
// Called by node/zk/prover.py; a failed constraint (e.g. a non-member) exits 1 with the reason.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { groth16 } from "snarkjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const circuit = process.argv[2];
if (!["membership", "attribute"].includes(circuit)) {
  process.stderr.write("usage: prove.mjs membership|attribute < input.json\n");
  process.exit(2);
}
try {
  const input = JSON.parse(fs.readFileSync(0, "utf8"));
  const art = (ext) => path.join(ROOT, "artifacts", `${circuit}.${ext}`);
  const started = process.hrtime.bigint();
  const { proof, publicSignals } = await groth16.fullProve(input, art("wasm"), art("zkey"));
  const provingMs = Number(process.hrtime.bigint() - started) / 1e6;
  process.stdout.write(JSON.stringify({ proof, publicSignals, provingMs }) + "\n");
  process.exit(0);
} catch (err) {
  process.stderr.write(`proof failed: ${err && err.message ? err.message : err}\n`);
  process.exit(1);
}
