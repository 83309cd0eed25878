#!/usr/bin/env node
// Compiles contracts/src/**/*.sol with the pinned solc-js and writes one reproducible
// artifact per contract to contracts/artifacts/<ContractName>.json.
//
// Usage:
//   node contracts/compile.mjs           write artifacts (removes stale ones)
//   node contracts/compile.mjs --check   compile in memory, exit 1 if committed artifacts differ
//
// Artifacts are JSON with recursively sorted keys, 2-space indent and a trailing newline, and
// the metadata hash is disabled, so the same sources and compiler give byte-identical files.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import solc from "solc";

const ROOT = path.dirname(fileURLToPath(import.meta.url));
const SRC_DIR = path.join(ROOT, "src");
const ARTIFACTS_DIR = path.join(ROOT, "artifacts");

const EVM_VERSION = "prague";
const OPTIMIZER = { enabled: true, runs: 200 };

/** Every .sol file under dir, as sorted POSIX paths relative to ROOT (the source unit names). */
function findSources(dir) {
  const found = [];
  const walk = (current) => {
    for (const entry of fs.readdirSync(current, { withFileTypes: true })) {
      const full = path.join(current, entry.name);
      if (entry.isDirectory()) {
        walk(full);
      } else if (entry.isFile() && entry.name.endsWith(".sol")) {
        found.push(path.relative(ROOT, full).split(path.sep).join("/"));
      }
    }
  };
  if (fs.existsSync(dir)) {
    walk(dir);
  }
  return found.sort();
}

/** Resolves imports that are not among the sources: only files inside contracts/ (incl. node_modules). */
function findImports(importPath) {
  const candidates = [path.resolve(ROOT, importPath), path.resolve(ROOT, "node_modules", importPath)];
  for (const candidate of candidates) {
    if (!candidate.startsWith(ROOT + path.sep)) {
      continue;
    }
    if (fs.existsSync(candidate) && fs.statSync(candidate).isFile()) {
      return { contents: fs.readFileSync(candidate, "utf8") };
    }
  }
  return { error: `import not found inside ${ROOT}: ${importPath}` };
}

/** JSON with object keys sorted at every depth; arrays keep their order. */
function canonicalize(value) {
  if (Array.isArray(value)) {
    return value.map(canonicalize);
  }
  if (value !== null && typeof value === "object") {
    const out = {};
    for (const key of Object.keys(value).sort()) {
      out[key] = canonicalize(value[key]);
    }
    return out;
  }
  return value;
}

function serialize(artifact) {
  return JSON.stringify(canonicalize(artifact), null, 2) + "\n";
}

function hexPrefixed(object) {
  return "0x" + (object ?? "");
}

/** Compiles all sources; returns a Map of artifact file name -> serialized artifact text. */
function compileAll() {
  const sourceNames = findSources(SRC_DIR);
  if (sourceNames.length === 0) {
    throw new Error(`no Solidity sources found under ${SRC_DIR}`);
  }
  const sources = {};
  for (const name of sourceNames) {
    sources[name] = { content: fs.readFileSync(path.join(ROOT, name), "utf8") };
  }
  const input = {
    language: "Solidity",
    sources,
    settings: {
      evmVersion: EVM_VERSION,
      optimizer: OPTIMIZER,
      metadata: { bytecodeHash: "none" },
      outputSelection: {
        "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] },
      },
    },
  };

  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
  const diagnostics = output.errors ?? [];
  const errors = diagnostics.filter((d) => d.severity === "error");
  for (const d of diagnostics.filter((d) => d.severity !== "error")) {
    process.stderr.write(d.formattedMessage ?? `${d.severity}: ${d.message}\n`);
  }
  if (errors.length > 0) {
    for (const d of errors) {
      process.stderr.write(d.formattedMessage ?? `error: ${d.message}\n`);
    }
    const err = new Error(`solc reported ${errors.length} error(s)`);
    err.compilationFailed = true;
    throw err;
  }

  const compiler = {
    name: "solc-js",
    version: solc.version(),
    evmVersion: EVM_VERSION,
    optimizer: OPTIMIZER,
  };
  const artifacts = new Map();
  const owners = new Map();
  for (const sourceName of sourceNames) {
    const contracts = output.contracts?.[sourceName] ?? {};
    for (const contractName of Object.keys(contracts).sort()) {
      const fileName = `${contractName}.json`;
      if (owners.has(fileName)) {
        const err = new Error(
          `contract name ${contractName} is defined in both ${owners.get(fileName)} and ` +
            `${sourceName}; artifact names must be unique`,
        );
        err.compilationFailed = true;
        throw err;
      }
      owners.set(fileName, sourceName);
      const contract = contracts[contractName];
      artifacts.set(
        fileName,
        serialize({
          contractName,
          sourceName,
          abi: contract.abi,
          bytecode: hexPrefixed(contract.evm?.bytecode?.object),
          deployedBytecode: hexPrefixed(contract.evm?.deployedBytecode?.object),
          compiler,
        }),
      );
    }
  }
  return artifacts;
}

function existingArtifactNames() {
  if (!fs.existsSync(ARTIFACTS_DIR)) {
    return [];
  }
  return fs
    .readdirSync(ARTIFACTS_DIR)
    .filter((name) => name.endsWith(".json"))
    .sort();
}

function check(artifacts) {
  const problems = [];
  for (const [fileName, text] of [...artifacts.entries()].sort()) {
    const target = path.join(ARTIFACTS_DIR, fileName);
    if (!fs.existsSync(target)) {
      problems.push(`missing: artifacts/${fileName}`);
    } else if (fs.readFileSync(target, "utf8") !== text) {
      problems.push(`differs: artifacts/${fileName}`);
    }
  }
  for (const fileName of existingArtifactNames()) {
    if (!artifacts.has(fileName)) {
      problems.push(`stale (no matching contract): artifacts/${fileName}`);
    }
  }
  if (problems.length > 0) {
    process.stderr.write(
      "committed artifacts do not match the sources; run `node contracts/compile.mjs`:\n",
    );
    for (const problem of problems) {
      process.stderr.write(`  ${problem}\n`);
    }
    return 1;
  }
  process.stdout.write(`${artifacts.size} artifact(s) up to date (solc ${solc.version()})\n`);
  return 0;
}

function write(artifacts) {
  fs.mkdirSync(ARTIFACTS_DIR, { recursive: true });
  for (const fileName of existingArtifactNames()) {
    if (!artifacts.has(fileName)) {
      fs.unlinkSync(path.join(ARTIFACTS_DIR, fileName));
      process.stdout.write(`removed stale artifacts/${fileName}\n`);
    }
  }
  for (const [fileName, text] of [...artifacts.entries()].sort()) {
    fs.writeFileSync(path.join(ARTIFACTS_DIR, fileName), text);
    process.stdout.write(`wrote artifacts/${fileName}\n`);
  }
  return 0;
}

function main(argv) {
  const args = argv.slice(2);
  const unknown = args.filter((arg) => arg !== "--check");
  if (unknown.length > 0) {
    process.stderr.write(`unknown argument(s): ${unknown.join(" ")}\nusage: compile.mjs [--check]\n`);
    return 2;
  }
  let artifacts;
  try {
    artifacts = compileAll();
  } catch (err) {
    process.stderr.write(`${err.message}\n`);
    return 1;
  }
  return args.includes("--check") ? check(artifacts) : write(artifacts);
}

process.exitCode = main(process.argv);
