// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {MEDLEDGER} from "../system/SystemAddresses.sol";
import {MerkleZeros} from "./MerkleZeros.sol";
import {
    Groth16Proof,
    IMedLedgerAccounts,
    IPoseidonT3,
    MEMBERSHIP_VERIFIER,
    POSEIDON_T3,
    SNARK_SCALAR_FIELD,
    ZkRoles
} from "./ZkAddresses.sol";

/// @title ResearchConsent
/// @notice Anonymous research enrolment. Patients who consent to research add an identity
///         commitment (Poseidon(secret)) to an incremental Poseidon Merkle tree of depth 20. A
///         researcher opens a study; a consenting patient enrols by proving in zero knowledge that
///         they know the secret of some leaf (circuits/membership.circom), with a nullifier
///         Poseidon(secret, studyId) that lets each patient count once per study while hiding
///         which leaf, and so which patient, it is.
/// @dev Predeployed in genesis with empty storage (an empty tree). Append state variables only.
contract ResearchConsent {
    uint256 public constant DEPTH = 20;
    /// @notice How long a replaced root stays acceptable, so proofs made against a slightly
    ///         older tree still verify while others join.
    uint256 public constant ROOT_VALIDITY = 1 hours;

    struct Study {
        address researcher;
        uint32 hospital;
        uint32 enrolled;
        bool open;
    }

    uint256 internal _leafCount; // slot 0
    uint256 internal _root; // slot 1: 0 while the tree is empty
    uint256[20] internal _filled; // slots 2-21: latest left node per level (insertion frontier)
    /// @dev slot 22: root => (time it stopped being current << 64) | its sequence number
    mapping(uint256 => uint256) internal _rootReplacedAt;
    mapping(address => uint256) internal _leafOf; // slot 23: patient => leaf index + 1
    mapping(uint256 => Study) internal _studies; // slot 24
    mapping(uint256 => bool) internal _nullifiers; // slot 25
    uint256 internal _rootSeq; // slot 26: sequence number of the current root (0 = empty tree)
    uint256 internal _minRootSeq; // slot 27: older roots were invalidated by a withdrawal
    mapping(address => bool) internal _left; // slot 28: patient withdrew (final for the account)

    error NotPatient(address account);
    error NotJoined(address patient);
    error AlreadyLeft(address patient);
    error StalePath();
    error NotPatientAgent(address caller, address patient);
    error AlreadyJoined(address patient, uint256 leafIndex);
    error InvalidCommitment();
    error TreeFull();
    error NotResearcher(address caller);
    error InvalidStudyId(uint256 studyId);
    error StudyExists(uint256 studyId);
    error UnknownStudy(uint256 studyId);
    error StudyClosed(uint256 studyId);
    error NotStudyOwner(address caller, uint256 studyId);
    error NotInField(uint256 value);
    error UnknownRoot(uint256 root);
    error NullifierUsed(uint256 nullifier);
    error InvalidProof();

    /// @notice A patient's identity commitment joined the research set as leaf `leafIndex`.
    ///         The set of consenting patients is public; which of them enrols in a study is not.
    event ResearchConsentGiven(
        address indexed patient, uint256 indexed leafIndex, uint256 commitment, uint256 root, address by
    );
    /// @notice The patient's leaf was emptied: no proof can use it from now on (older roots are
    ///         invalid at once).
    event ResearchConsentWithdrawn(address indexed patient, uint256 indexed leafIndex, uint256 root, address by);
    event StudyOpened(uint256 indexed studyId, address indexed researcher, uint32 indexed hospital, bytes32 protocolHash);
    event StudyEnded(uint256 indexed studyId, address by);
    /// @notice One (anonymous) consenting patient enrolled; `signalHash` is what the proof bound.
    event Enrolled(uint256 indexed studyId, uint256 indexed nullifier, uint256 signalHash, uint256 root);

    // ============================================================================ the tree

    /// @notice The caller (an active patient) joins the research set with `commitment` =
    ///         Poseidon(secret); the secret never leaves the patient's device. Once per patient.
    function joinResearch(uint256 commitment) external returns (uint256 leafIndex) {
        _requirePatient(msg.sender);
        return _insert(msg.sender, commitment);
    }

    /// @notice A patient's delegate or an admin of the patient's home hospital adds the
    ///         commitment the patient's app produced (patients without their own wallet).
    function joinResearchFor(address patient, uint256 commitment) external returns (uint256 leafIndex) {
        uint32 home = _requirePatient(patient);
        IMedLedgerAccounts ml = IMedLedgerAccounts(MEDLEDGER);
        if (!ml.isDelegate(patient, msg.sender) && (home == 0 || ml.memberAdminOf(msg.sender) != home)) {
            revert NotPatientAgent(msg.sender, patient);
        }
        return _insert(patient, commitment);
    }

    /// @notice Withdraw research consent: the caller's leaf becomes empty. `commitment` and
    ///         `siblings` (the leaf's current authentication path, bottom-up) come from the
    ///         patient's copy of the tree. Leaving is final for the account.
    function leaveResearch(uint256 commitment, uint256[20] calldata siblings) external {
        _remove(msg.sender, commitment, siblings);
    }

    /// @notice Withdraw for a patient: the patient's delegate or an admin of the home hospital.
    function leaveResearchFor(address patient, uint256 commitment, uint256[20] calldata siblings) external {
        IMedLedgerAccounts ml = IMedLedgerAccounts(MEDLEDGER);
        (, uint32 home, ) = ml.accountInfo(patient);
        if (!ml.isDelegate(patient, msg.sender) && (home == 0 || ml.memberAdminOf(msg.sender) != home)) {
            revert NotPatientAgent(msg.sender, patient);
        }
        _remove(patient, commitment, siblings);
    }

    function hasLeft(address patient) external view returns (bool) {
        return _left[patient];
    }

    function currentRoot() public view returns (uint256) {
        uint256 root = _root;
        return root == 0 ? MerkleZeros.EMPTY_ROOT : root;
    }

    function leafCount() external view returns (uint256) {
        return _leafCount;
    }

    /// @return leafIndex + 1 of the patient's commitment, 0 if the patient has not joined.
    function leafOf(address patient) external view returns (uint256) {
        return _leafOf[patient];
    }

    /// @notice The current root, or a root replaced less than ROOT_VALIDITY ago and not older
    ///         than the last withdrawal.
    function isKnownRoot(uint256 root) public view returns (bool) {
        if (root == 0) return false;
        if (root == currentRoot()) return true;
        uint256 entry = _rootReplacedAt[root];
        if (entry == 0 || uint64(entry) < _minRootSeq) return false;
        return block.timestamp < (entry >> 64) + ROOT_VALIDITY;
    }

    function _requirePatient(address patient) internal view returns (uint32 home) {
        (uint8 role, uint32 hospital, bool active) = IMedLedgerAccounts(MEDLEDGER).accountInfo(patient);
        if (role != ZkRoles.PATIENT || !active) revert NotPatient(patient);
        return hospital;
    }

    function _insert(address patient, uint256 commitment) internal returns (uint256 index) {
        if (commitment == 0 || commitment >= SNARK_SCALAR_FIELD) revert InvalidCommitment();
        uint256 existing = _leafOf[patient];
        if (existing != 0) revert AlreadyJoined(patient, existing - 1);
        index = _leafCount;
        if (index >= 1 << DEPTH) revert TreeFull();
        _leafCount = index + 1;
        _leafOf[patient] = index + 1;

        uint256[21] memory zeros = MerkleZeros.all();
        IPoseidonT3 poseidon = IPoseidonT3(POSEIDON_T3);
        uint256 node = commitment;
        uint256 path = index;
        for (uint256 level; level < DEPTH; ) {
            if (path & 1 == 0) {
                _filled[level] = node;
                node = poseidon.poseidon([node, zeros[level]]);
            } else {
                node = poseidon.poseidon([_filled[level], node]);
            }
            path >>= 1;
            unchecked {
                ++level;
            }
        }
        uint256 seq = _rootSeq;
        _rootReplacedAt[currentRoot()] = (block.timestamp << 64) | seq;
        _rootSeq = seq + 1;
        _root = node;
        emit ResearchConsentGiven(patient, index, commitment, node, msg.sender);
    }

    /// @dev Empty the patient's leaf: check its path against the current root, recompute the
    ///      path with an empty leaf, and update the frontier node a later insert will read where
    ///      it lies on this path (_filled[level] is node ((leafCount - 1) >> level) & ~1).
    function _remove(address patient, uint256 commitment, uint256[20] calldata siblings) internal {
        uint256 stored = _leafOf[patient];
        if (stored == 0) revert NotJoined(patient);
        if (_left[patient]) revert AlreadyLeft(patient);
        uint256 index = stored - 1;
        uint256 last = _leafCount - 1;
        IPoseidonT3 poseidon = IPoseidonT3(POSEIDON_T3);
        uint256 oldNode = commitment;
        uint256 newNode = 0;
        for (uint256 level; level < DEPTH; ) {
            if (index >> level == (last >> level) & ~uint256(1)) _filled[level] = newNode;
            uint256 sibling = siblings[level];
            if ((index >> level) & 1 == 0) {
                oldNode = poseidon.poseidon([oldNode, sibling]);
                newNode = poseidon.poseidon([newNode, sibling]);
            } else {
                oldNode = poseidon.poseidon([sibling, oldNode]);
                newNode = poseidon.poseidon([sibling, newNode]);
            }
            unchecked {
                ++level;
            }
        }
        if (oldNode != currentRoot()) revert StalePath();
        _left[patient] = true;
        uint256 seq = _rootSeq + 1;
        _rootSeq = seq;
        _minRootSeq = seq; // every earlier root still holds the leaf
        _root = newNode;
        emit ResearchConsentWithdrawn(patient, index, newNode, msg.sender);
    }

    // ============================================================================ studies

    /// @notice An active researcher opens a study; `studyId` (a field element, e.g. a hash of
    ///         the protocol id) is what enrolment proofs and nullifiers are bound to.
    function openStudy(uint256 studyId, bytes32 protocolHash) external {
        if (studyId == 0 || studyId >= SNARK_SCALAR_FIELD) revert InvalidStudyId(studyId);
        IMedLedgerAccounts ml = IMedLedgerAccounts(MEDLEDGER);
        (uint8 role, uint32 hospital, ) = ml.accountInfo(msg.sender);
        if (role != ZkRoles.RESEARCHER || !ml.isActiveAccount(msg.sender)) revert NotResearcher(msg.sender);
        if (_studies[studyId].researcher != address(0)) revert StudyExists(studyId);
        _studies[studyId] = Study({researcher: msg.sender, hospital: hospital, enrolled: 0, open: true});
        emit StudyOpened(studyId, msg.sender, hospital, protocolHash);
    }

    /// @notice The study's researcher or an admin of its hospital stops enrolment.
    function closeStudy(uint256 studyId) external {
        Study storage s = _studies[studyId];
        if (s.researcher == address(0)) revert UnknownStudy(studyId);
        if (msg.sender != s.researcher && IMedLedgerAccounts(MEDLEDGER).memberAdminOf(msg.sender) != s.hospital) {
            revert NotStudyOwner(msg.sender, studyId);
        }
        if (!s.open) revert StudyClosed(studyId);
        s.open = false;
        emit StudyEnded(studyId, msg.sender);
    }

    function study(uint256 studyId)
        external
        view
        returns (address researcher, uint32 hospital, uint32 enrolled, bool open)
    {
        Study memory s = _studies[studyId];
        return (s.researcher, s.hospital, s.enrolled, s.open);
    }

    function nullifierUsed(uint256 nullifier) external view returns (bool) {
        return _nullifiers[nullifier];
    }

    // ============================================================================ enrolment

    /// @notice Enrol one anonymous consenting patient in an open study. Anyone may submit the
    ///         proof (a relayer keeps the patient's own account out of the transaction).
    /// @param proof Groth16 proof, see Groth16Proof in ZkAddresses.sol.
    function enroll(uint256 studyId, uint256 root, uint256 nullifier, uint256 signalHash, uint256[8] calldata proof)
        external
    {
        Study storage s = _studies[studyId];
        if (s.researcher == address(0)) revert UnknownStudy(studyId);
        if (!s.open) revert StudyClosed(studyId);
        _checkMembership(studyId, root, nullifier, signalHash, proof);
        _nullifiers[nullifier] = true;
        unchecked {
            s.enrolled += 1;
        }
        emit Enrolled(studyId, nullifier, signalHash, root);
    }

    /// @notice What enroll would check, as a view: reverts with the reason, true otherwise.
    function verifyMembership(
        uint256 studyId,
        uint256 root,
        uint256 nullifier,
        uint256 signalHash,
        uint256[8] calldata proof
    ) external view returns (bool) {
        _checkMembership(studyId, root, nullifier, signalHash, proof);
        return true;
    }

    function _checkMembership(
        uint256 studyId,
        uint256 root,
        uint256 nullifier,
        uint256 signalHash,
        uint256[8] calldata proof
    ) internal view {
        if (nullifier >= SNARK_SCALAR_FIELD) revert NotInField(nullifier);
        if (signalHash >= SNARK_SCALAR_FIELD) revert NotInField(signalHash);
        if (!isKnownRoot(root)) revert UnknownRoot(root);
        if (_nullifiers[nullifier]) revert NullifierUsed(nullifier);
        if (!Groth16Proof.verify(MEMBERSHIP_VERIFIER, proof, [root, studyId, nullifier, signalHash])) {
            revert InvalidProof();
        }
    }
}
