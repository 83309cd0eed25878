// Rebuild the web UI and compare it with the committed web/dist (CI: the committed build the
// node serves must match the sources and the lock file). Exit 1 on any difference.
//   node web/check-build.mjs            type-check, build to a temp dir, compare with dist/
//   node web/check-build.mjs --write    type-check and rebuild dist/ in place
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
const write = process.argv.includes("--write");

function files(root) {
  const out = new Map();
  const walk = (dir) => {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else out.set(relative(root, path).split("\\").join("/"), readFileSync(path));
    }
  };
  walk(root);
  return out;
}

let committed;
if (!write) {
  try {
    committed = files(dist);
  } catch {
    console.error("web/dist is missing: run `node web/check-build.mjs --write` and commit it");
    process.exit(1);
  }
}
execFileSync(join(here, "node_modules", ".bin", "tsc"), ["--noEmit", "-p", here], { stdio: "inherit" });
const { build } = await import("vite");
const outDir = write ? dist : mkdtempSync(join(tmpdir(), "medledger-web-"));
try {
  await build({ root: here, configFile: join(here, "vite.config.ts"), logLevel: "warn",
                build: { outDir, emptyOutDir: true } });
  if (write) {
    console.log(`web/dist rebuilt (${files(dist).size} files)`);
    process.exit(0);
  }
  const fresh = files(outDir);
  const problems = [];
  for (const [name, data] of fresh) {
    const old = committed.get(name);
    if (old === undefined) problems.push(`missing from web/dist: ${name}`);
    else if (!old.equals(data)) problems.push(`differs: web/dist/${name}`);
  }
  for (const name of committed.keys()) {
    if (!fresh.has(name)) problems.push(`stale (no longer built): web/dist/${name}`);
  }
  if (problems.length) {
    console.error(problems.join("\n"));
    console.error("web/dist does not match the sources: run `node web/check-build.mjs --write` and commit it");
    process.exit(1);
  }
  console.log(`web/dist matches the sources (${fresh.size} files)`);
} finally {
  if (!write) rmSync(outDir, { recursive: true, force: true });
}
