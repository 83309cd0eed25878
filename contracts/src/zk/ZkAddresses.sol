// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

// Fixed genesis addresses of the zero-knowledge contracts (genesis/system.py holds the same values).

/// @dev circomlibjs' Poseidon (2 inputs) EVM code: poseidon(uint256[2]) -> uint256.
address constant POSEIDON_T3 = 0x4d4c000000000000000000000000000000000010;
/// @dev snarkjs Groth16 verifier of circuits/membership.circom.
address constant MEMBERSHIP_VERIFIER = 0x4d4C000000000000000000000000000000000011;
/// @dev snarkjs Groth16 verifier of circuits/attribute.circom.
address constant ATTRIBUTE_VERIFIER = 0x4D4C000000000000000000000000000000000012;
/// @dev Research-consent tree, studies and nullifiers.
address constant RESEARCH_CONSENT = 0x4d4c000000000000000000000000000000000013;
/// @dev Attribute commitments and predicate proofs.
address constant ATTRIBUTE_REGISTRY = 0x4D4C000000000000000000000000000000000014;

/// @dev Order of the BN254 scalar field: every circuit input and Poseidon value is below it.
uint256 constant SNARK_SCALAR_FIELD =
    21888242871839275222246405745257275088548364400416034343698204186575808495617;

interface IPoseidonT3 {
    function poseidon(uint256[2] calldata input) external pure returns (uint256);
}

interface IGroth16Verifier4 {
    function verifyProof(
        uint256[2] calldata pA,
        uint256[2][2] calldata pB,
        uint256[2] calldata pC,
        uint256[4] calldata pubSignals
    ) external view returns (bool);
}

/// @dev The part of MedLedger the ZK contracts consult for identities and roles.
interface IMedLedgerAccounts {
    function accountInfo(address who) external view returns (uint8 role, uint32 hospitalId, bool active);
    function isActiveAccount(address who) external view returns (bool);
    function isDelegate(address patient, address delegate) external view returns (bool);
    function memberAdminOf(address admin) external view returns (uint32);
}

library ZkRoles {
    uint8 internal constant ADMIN = 1;
    uint8 internal constant DOCTOR = 2;
    uint8 internal constant NURSE = 3;
    uint8 internal constant RESEARCHER = 4;
    uint8 internal constant PATIENT = 6;
}

/// @dev Groth16 proof as the contracts take it: [a.x, a.y, b.x1, b.x0, b.y1, b.y0, c.x, c.y]
///      (b's coordinates in the EIP-197 order snarkjs' Solidity calldata uses).
library Groth16Proof {
    function verify(address verifier, uint256[8] calldata proof, uint256[4] memory inputs)
        internal
        view
        returns (bool)
    {
        return IGroth16Verifier4(verifier).verifyProof(
            [proof[0], proof[1]],
            [[proof[2], proof[3]], [proof[4], proof[5]]],
            [proof[6], proof[7]],
            inputs
        );
    }
}
