#!/usr/bin/env node
// Writes artifacts/build-info.json: tool versions, circuit sizes and SHA-256 of every committed
// artifact, so a reader (and tests) can tell which keys belong together.
// Usage: node scripts/build_info.mjs <build dir> <circuit>...

import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { r1cs } from "snarkjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const [buildDir, ...circuits] = process.argv.slice(2);
const version = (pkg) =>
  JSON.parse(fs.readFileSync(path.join(ROOT, "node_modules", pkg, "package.json"), "utf8")).version;
const sha256 = (file) => crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");

const info = {
  tools: Object.fromEntries(["circom2", "circomlib", "circomlibjs", "snarkjs"].map((p) => [p, version(p)])),
  ptau: { file: "ptau/pot13_phase1.ptau", power: 13, sha256: sha256(path.join(ROOT, "ptau", "pot13_phase1.ptau")) },
  setup: "local single-party development setup; production needs a multi-party ceremony",
  circuits: {},
};
for (const name of circuits) {
  const r = await r1cs.info(path.join(buildDir, `${name}.r1cs`));
  info.circuits[name] = {
    constraints: r.nConstraints,
    wires: r.nVars,
    publicInputs: r.nPubInputs,
    privateInputs: r.nPrvInputs,
    files: Object.fromEntries(
      [`${name}.wasm`, `${name}.zkey`, `${name}.vkey.json`].map((f) => [f, sha256(path.join(ROOT, "artifacts", f))]),
    ),
  };
}
fs.writeFileSync(path.join(ROOT, "artifacts", "build-info.json"), JSON.stringify(info, null, 2) + "\n");
process.exit(0);
