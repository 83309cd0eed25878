// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {MEDLEDGER} from "../system/SystemAddresses.sol";
import {
    ATTRIBUTE_VERIFIER,
    Groth16Proof,
    IMedLedgerAccounts,
    SNARK_SCALAR_FIELD,
    ZkRoles
} from "./ZkAddresses.sol";

/// @title AttributeRegistry
/// @notice Hospitals attest a patient's clinical value as a hiding commitment
///         Poseidon(value, salt); the patient (who receives value and salt with the record) later
///         proves a threshold predicate over it (value >= t or value < t,
///         circuits/attribute.circom) without revealing the value, e.g. age >= 18 or HbA1c < 7.0 %.
/// @dev Predeployed in genesis with empty storage. Append state variables only.
contract AttributeRegistry {
    uint8 public constant OP_GE = 0; // value >= threshold
    uint8 public constant OP_LT = 1; // value < threshold
    uint256 public constant MAX_VALUE = type(uint64).max; // values and thresholds are uint64

    uint256 internal constant HOSPITAL_SHIFT = 160;
    uint256 internal constant KIND_SHIFT = 192;
    uint256 internal constant REVOKED_BIT = 1 << 224;
    uint256 internal constant EXISTS_BIT = 1 << 225;

    /// @dev commitment => patient (bits 0-159) | hospital (160-191) | kind (192-223) | revoked | exists
    mapping(uint256 => uint256) internal _attestations; // slot 0

    error NotClinician(address caller);
    error NotPatient(address account);
    error InvalidCommitment();
    error AlreadyAttested(uint256 commitment);
    error UnknownCommitment(uint256 commitment);
    error Revoked(uint256 commitment);
    error NotAttestingHospital(address caller, uint32 hospital);
    error InvalidOp(uint8 op);
    error InvalidThreshold(uint256 threshold);
    error NotInField(uint256 value);
    error InvalidProof();

    event AttributeAttested(
        uint256 indexed commitment, address indexed patient, uint32 indexed hospital, uint32 kind, address attester
    );
    event AttestationRevoked(uint256 indexed commitment, address by);
    event AttributeProven(
        uint256 indexed commitment, address indexed patient, uint32 kind, uint8 op, uint256 threshold,
        uint256 context, address submitter
    );

    /// @notice An active doctor or nurse registers `commitment` to a value of attribute `kind`
    ///         (an application code, e.g. 1 = age in years) for an active patient.
    function attest(uint256 commitment, address patient, uint32 kind) external {
        IMedLedgerAccounts ml = IMedLedgerAccounts(MEDLEDGER);
        (uint8 role, uint32 hospital, ) = ml.accountInfo(msg.sender);
        if ((role != ZkRoles.DOCTOR && role != ZkRoles.NURSE) || !ml.isActiveAccount(msg.sender)) {
            revert NotClinician(msg.sender);
        }
        (uint8 patientRole, , bool active) = ml.accountInfo(patient);
        if (patientRole != ZkRoles.PATIENT || !active) revert NotPatient(patient);
        if (commitment == 0 || commitment >= SNARK_SCALAR_FIELD) revert InvalidCommitment();
        if (_attestations[commitment] != 0) revert AlreadyAttested(commitment);
        _attestations[commitment] = uint256(uint160(patient)) | (uint256(hospital) << HOSPITAL_SHIFT)
            | (uint256(kind) << KIND_SHIFT) | EXISTS_BIT;
        emit AttributeAttested(commitment, patient, hospital, kind, msg.sender);
    }

    /// @notice Withdraw an attestation (e.g. an erroneous lab value): staff of the attesting
    ///         hospital (doctor, nurse or admin). Proofs against it fail from then on.
    function revokeAttestation(uint256 commitment) external {
        uint256 word = _attestations[commitment];
        if (word == 0) revert UnknownCommitment(commitment);
        if (word & REVOKED_BIT != 0) revert Revoked(commitment);
        uint32 hospital = uint32(word >> HOSPITAL_SHIFT);
        IMedLedgerAccounts ml = IMedLedgerAccounts(MEDLEDGER);
        (uint8 role, uint32 callerHospital, ) = ml.accountInfo(msg.sender);
        bool staff = role == ZkRoles.DOCTOR || role == ZkRoles.NURSE || role == ZkRoles.ADMIN;
        if (!staff || callerHospital != hospital || !ml.isActiveAccount(msg.sender)) {
            revert NotAttestingHospital(msg.sender, hospital);
        }
        _attestations[commitment] = word | REVOKED_BIT;
        emit AttestationRevoked(commitment, msg.sender);
    }

    function attestation(uint256 commitment)
        external
        view
        returns (address patient, uint32 hospital, uint32 kind, bool revoked)
    {
        uint256 word = _attestations[commitment];
        if (word == 0) revert UnknownCommitment(commitment);
        return (address(uint160(word)), uint32(word >> HOSPITAL_SHIFT), uint32(word >> KIND_SHIFT), word & REVOKED_BIT != 0);
    }

    /// @notice Check a predicate proof as a view: reverts with the reason, true otherwise.
    function verifyAttribute(uint256 commitment, uint8 op, uint256 threshold, uint256 context, uint256[8] calldata proof)
        external
        view
        returns (bool)
    {
        _check(commitment, op, threshold, context, proof);
        return true;
    }

    /// @notice Record on chain that the committed value satisfies the predicate (for
    ///         eligibility checks other contracts or auditors can rely on).
    function proveAttribute(uint256 commitment, uint8 op, uint256 threshold, uint256 context, uint256[8] calldata proof)
        external
    {
        uint256 word = _check(commitment, op, threshold, context, proof);
        emit AttributeProven(commitment, address(uint160(word)), uint32(word >> KIND_SHIFT), op, threshold, context, msg.sender);
    }

    function _check(uint256 commitment, uint8 op, uint256 threshold, uint256 context, uint256[8] calldata proof)
        internal
        view
        returns (uint256 word)
    {
        word = _attestations[commitment];
        if (word == 0) revert UnknownCommitment(commitment);
        if (word & REVOKED_BIT != 0) revert Revoked(commitment);
        if (op > OP_LT) revert InvalidOp(op);
        if (threshold > MAX_VALUE) revert InvalidThreshold(threshold);
        if (context >= SNARK_SCALAR_FIELD) revert NotInField(context);
        if (!Groth16Proof.verify(ATTRIBUTE_VERIFIER, proof, [commitment, threshold, uint256(op), context])) {
            revert InvalidProof();
        }
    }
}
