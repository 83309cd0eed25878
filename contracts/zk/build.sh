#!/usr/bin/env bash
# Regenerates every ZK artifact from the circuits: compiled circuits (wasm), Groth16 proving and
# verification keys, the Solidity verifiers, the Poseidon contract and constants, and the solc
# artifacts of contracts/src. Needs `npm ci` in contracts/zk and contracts/.
#
#   bash contracts/zk/build.sh             reuse the committed phase-1 powers of tau (ptau/)
#   bash contracts/zk/build.sh --new-ptau  also run a fresh local powers-of-tau (2^13)
#
# Every run draws fresh random entropy for the circuit-specific (phase 2) contribution, so the keys
# and verifier contracts change: commit them together. This is a LOCAL, single-party setup for
# development and tests; production needs keys from a multi-party ceremony (see README.md).
set -euo pipefail

ZK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONTRACTS="$(dirname "$ZK")"
SNARKJS="$ZK/node_modules/.bin/snarkjs"
CIRCOM="$ZK/node_modules/.bin/circom2"
POWER=13
PTAU_PHASE1="$ZK/ptau/pot${POWER}_phase1.ptau"
BUILD="$ZK/build"
ART="$ZK/artifacts"
CIRCUITS=(membership attribute)

entropy() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

[ -x "$SNARKJS" ] && [ -x "$CIRCOM" ] || { echo "run: npm ci --prefix contracts/zk" >&2; exit 1; }
mkdir -p "$BUILD" "$ART" "$ZK/ptau" "$CONTRACTS/src/zk"

if [ "${1:-}" = "--new-ptau" ] || [ ! -f "$PTAU_PHASE1" ]; then
  echo "== powers of tau 2^$POWER (phase 1, one local contribution)"
  "$SNARKJS" powersoftau new bn128 "$POWER" "$BUILD/pot_0000.ptau"
  "$SNARKJS" powersoftau contribute "$BUILD/pot_0000.ptau" "$PTAU_PHASE1" \
    --name="medledger local development contribution (NOT a ceremony)" -e="$(entropy)"
  rm -f "$BUILD/pot_final.ptau"
fi
"$SNARKJS" powersoftau verify "$PTAU_PHASE1" > /dev/null
if [ ! -f "$BUILD/pot_final.ptau" ] || [ "$PTAU_PHASE1" -nt "$BUILD/pot_final.ptau" ]; then
  echo "== prepare phase 2"
  "$SNARKJS" powersoftau prepare phase2 "$PTAU_PHASE1" "$BUILD/pot_final.ptau"
fi

for c in "${CIRCUITS[@]}"; do
  echo "== $c: compile"
  (cd "$ZK" && "$CIRCOM" "circuits/$c.circom" --O2 --r1cs --wasm -o "$BUILD")
  cp "$BUILD/${c}_js/$c.wasm" "$ART/$c.wasm"
  echo "== $c: groth16 setup + local phase-2 contribution"
  "$SNARKJS" groth16 setup "$BUILD/$c.r1cs" "$BUILD/pot_final.ptau" "$BUILD/${c}_0000.zkey"
  "$SNARKJS" zkey contribute "$BUILD/${c}_0000.zkey" "$ART/$c.zkey" \
    --name="medledger local development contribution (NOT a ceremony)" -e="$(entropy)"
  "$SNARKJS" zkey verify "$BUILD/$c.r1cs" "$BUILD/pot_final.ptau" "$ART/$c.zkey" > /dev/null
  "$SNARKJS" zkey export verificationkey "$ART/$c.zkey" "$ART/$c.vkey.json"
  name="$(tr '[:lower:]' '[:upper:]' <<< "${c:0:1}")${c:1}Verifier"
  "$SNARKJS" zkey export solidityverifier "$ART/$c.zkey" "$BUILD/$c.verifier.sol"
  # Unique contract names for compile.mjs; the rest is snarkjs' template unchanged.
  sed -e "s/contract Groth16Verifier/contract $name/" "$BUILD/$c.verifier.sol" \
    > "$CONTRACTS/src/zk/$name.sol"
done

echo "== Poseidon contract, constants, Merkle zeros"
(cd "$ZK" && node scripts/gen_poseidon.mjs)
echo "== build info"
(cd "$ZK" && node scripts/build_info.mjs "$BUILD" "${CIRCUITS[@]}")
echo "== solc artifacts"
node "$CONTRACTS/compile.mjs"
