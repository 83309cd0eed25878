// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {CONSORTIUM_GOVERNANCE, IMedLedgerMembership} from "./system/SystemAddresses.sol";

/// @title MedLedger
/// @notice Who may read which patient's record: member hospitals and their accounts, the record
///         registry, patient consent (grants), break-glass emergency access and the access audit
///         log. One contract so that `canAccess` reads everything it needs without external
///         calls. No PHI is ever stored: people are pseudonymous ids (hashes), records are ids
///         plus content commitments; the clinical data stays encrypted off chain.
/// @dev Predeployed in genesis (no constructor runs): genesis/system.py writes the initial
///      members directly into the storage slots declared below, so their order is part of the
///      genesis format. Append new state variables at the end only.
///      Audit facts (who, what, why) live in events; storage keeps only what decisions need.
///      The "when" of every event is the timestamp of the block that holds it.
contract MedLedger is IMedLedgerMembership {
    // ----------------------------------------------------------------------------- constants

    uint8 internal constant ROLE_ADMIN = 1;
    uint8 internal constant ROLE_DOCTOR = 2;
    uint8 internal constant ROLE_NURSE = 3;
    uint8 internal constant ROLE_RESEARCHER = 4;
    uint8 internal constant ROLE_AUDITOR = 5;
    uint8 internal constant ROLE_PATIENT = 6;

    uint8 internal constant PURPOSE_TREATMENT = 0;
    uint8 internal constant PURPOSE_RESEARCH = 3; // 1 = payment, 2 = operations
    uint8 internal constant ALL_PURPOSES = 0x0f;

    uint8 internal constant SCOPE_RECORD = 1;
    uint8 internal constant SCOPE_RESOURCE_TYPE = 2;
    /// @dev A resource-type grant for type 0 covers all of the patient's records.
    uint16 internal constant ALL_RESOURCE_TYPES = 0;

    uint8 internal constant REASON_OTHER = 4; // 1 life-threatening, 2 unable to consent, 3 urgent
    uint8 internal constant REVIEW_PENDING = 1;
    uint8 internal constant REVIEW_JUSTIFIED = 2;
    uint8 internal constant REVIEW_UNJUSTIFIED = 3;
    uint8 internal constant MAX_ACTION = 4; // 0 read, 1 create, 2 update, 3 delete, 4 execute
    uint8 internal constant MAX_OUTCOME = 3; // 0 success, 1 minor, 2 serious, 3 major failure

    /// @notice Length of a break-glass window; fixed so that no one can open a long one.
    uint256 public constant BREAK_GLASS_WINDOW = 1 hours;

    // Account word: role | active << 8 | hospital << 16 | flags << 48 | breakGlassUntil << 56
    // | bloom << 128. Patients only use the flags, breakGlassUntil and the bloom filter.
    uint256 internal constant ACTIVE_BIT = 1 << 8;
    uint256 internal constant HOSPITAL_SHIFT = 16;
    uint256 internal constant FLAGS_SHIFT = 48;
    uint256 internal constant BREAK_GLASS_SHIFT = 56;
    uint256 internal constant BLOOM_SHIFT = 128;
    // Patient hints, so that canAccess skips lookups that cannot succeed. Flags say which kinds
    // of patient-level permission the patient ever gave (delegates, resource-type grants,
    // all-records grants, grants to whole hospitals); the 128-bit Bloom filter holds every
    // account or hospital key that ever got one (or opened break-glass on the patient). Hints
    // are only ever set, never cleared: a stale hint costs a lookup, never a wrong answer.
    uint256 internal constant FLAG_DELEGATES = 1;
    uint256 internal constant FLAG_TYPE_GRANTS = 2;
    uint256 internal constant FLAG_ALL_GRANTS = 4;
    uint256 internal constant FLAG_HOSPITAL_GRANTS = 8;

    // Record word: patient | hospital << 160 | resourceType << 192 | versions << 208.
    uint256 internal constant REC_HOSPITAL_SHIFT = 160;
    uint256 internal constant REC_TYPE_SHIFT = 192;
    uint256 internal constant REC_VERSIONS_SHIFT = 208;

    // Grant word: purposes | expiry << 8.
    // Break-glass case word: clinician | openedAt << 160 | reason << 200 | status << 208.

    /// @dev Hospital grantee keys: "hosp" in the top 4 bytes, the member id in the low 4.
    uint256 internal constant HOSPITAL_KEY_TAG = 0x00686f737000000000000000000000000000000000;

    // Storage slots of the mappings canAccess reads in assembly (checked against solc's
    // storage layout by tests/test_contracts_genesis.py).
    uint256 internal constant SLOT_HOSPITALS = 1;
    uint256 internal constant SLOT_ACCOUNTS = 3;
    uint256 internal constant SLOT_RECORDS = 5;
    uint256 internal constant SLOT_RECORD_GRANTS = 7;
    uint256 internal constant SLOT_TYPE_GRANTS = 8;
    uint256 internal constant SLOT_DELEGATES = 9;
    uint256 internal constant SLOT_EMERGENCY_UNTIL = 10;

    uint256 internal constant MAX_CID_LENGTH = 128;

    // ----------------------------------------------------------------------------- storage
    // Slots 0-4 are written by genesis/system.py; keep this order.

    uint32 public hospitalCount; // slot 0, bytes 0-3: ids are 1..hospitalCount
    uint32 public override memberCount; // slot 0, bytes 4-7: active members
    mapping(uint32 => uint256) internal _hospitals; // slot 1: bit 0 = active member
    mapping(uint32 => bytes32) internal _hospitalNames; // slot 2
    mapping(address => uint256) internal _accounts; // slot 3: account word
    mapping(bytes32 => address) internal _personAccounts; // slot 4: person id -> its one account
    mapping(bytes32 => uint256) internal _records; // slot 5: record word
    mapping(bytes32 => mapping(uint256 => bytes32)) internal _versionDigests; // slot 6
    mapping(address => mapping(bytes32 => uint256)) internal _recordGrants; // slot 7
    mapping(address => mapping(bytes32 => uint256)) internal _typeGrants; // slot 8
    mapping(address => mapping(address => bool)) internal _delegates; // slot 9: patient => who
    mapping(address => mapping(address => uint256)) internal _emergencyUntil; // slot 10
    mapping(uint256 => uint256) internal _breakGlassCases; // slot 11: case word
    mapping(uint256 => address) internal _breakGlassPatients; // slot 12
    uint256 public breakGlassCount; // slot 13

    // ----------------------------------------------------------------------------- errors

    error NotGovernance(address caller);
    error NotAdmin(address caller);
    error NotClinician(address caller);
    error NotPatient(address account);
    error NotPatientOrDelegate(address caller, address patient);
    error NotRecordHospital(address caller, uint32 hospital);
    error NotReviewer(address caller, uint256 caseId);
    error UnknownHospital(uint32 hospital);
    error InvalidName();
    error InvalidAccount(address account);
    error AccountExists(address account);
    error PersonExists(bytes32 personId, address account);
    error InvalidPersonId();
    error InvalidRole(uint8 role);
    error UnknownAccount(address account);
    error CannotDeactivateSelf();
    error InvalidRecordId();
    error UnknownRecord(bytes32 recordId);
    error RecordExists(bytes32 recordId);
    error InvalidResourceType();
    error InvalidCid();
    error InvalidContentHash();
    error InvalidPurpose(uint8 purpose);
    error InvalidPurposes(uint8 purposes);
    error InvalidExpiry(uint40 expiry);
    error InvalidGrantee(address grantee);
    error GrantNotFound(address grantee, bytes32 scope);
    error EmptyBatch();
    error InvalidDelegate(address delegate);
    error ReasonRequired();
    error InvalidReason(uint8 reason);
    error DetailRequired();
    error UnknownBreakGlass(uint256 caseId);
    error AlreadyReviewed(uint256 caseId);
    error InvalidAction(uint8 action);
    error InvalidOutcome(uint8 outcome);

    // ----------------------------------------------------------------------------- events

    event MemberAdded(uint32 indexed hospital, address indexed admin, bytes32 name);
    event MemberStatusChanged(uint32 indexed hospital, bool active);
    event AccountRegistered(
        address indexed account, uint32 indexed hospital, bytes32 indexed personId, uint8 role,
        address by
    );
    event AccountStatusChanged(address indexed account, uint32 indexed hospital, bool active, address by);
    event DelegateChanged(address indexed patient, address indexed delegate, bool enabled);
    /// @notice Version 1 is the creation. `cid` and `contentHash` (SHA3-256 of the plaintext)
    ///         are committed to by versionDigest(recordId, version).
    event RecordVersionAdded(
        bytes32 indexed recordId, address indexed patient, address indexed author, uint32 hospital,
        uint32 version, uint16 resourceType, bytes32 contentHash, bytes cid
    );
    /// @notice scope = the record id (scopeKind 1) or the resource type code (scopeKind 2).
    event AccessGranted(
        address indexed patient, address indexed grantee, bytes32 indexed scope, uint8 scopeKind,
        uint8 purposes, uint40 expiry, address by
    );
    event AccessRevoked(
        address indexed patient, address indexed grantee, bytes32 indexed scope, uint8 scopeKind,
        address by
    );
    event AccessRequested(
        address indexed patient, address indexed requester, bytes32 indexed recordId,
        uint8 purpose, uint32 hospital
    );
    event AccessLogged(
        bytes32 indexed recordId, address indexed accessor, uint8 purpose, uint8 action, uint8 outcome
    );
    event BreakGlassOpened(
        address indexed patient, uint32 indexed patientHospital, address indexed clinician,
        uint256 caseId, uint32 clinicianHospital, uint8 reason, bytes32 detailHash, uint40 until
    );
    event BreakGlassReviewed(
        uint256 indexed caseId, address indexed patient, address indexed reviewer, bool justified,
        bytes32 noteHash
    );

    // ============================================================================ members

    /// @notice Admit a hospital with its first admin. Only by consortium vote.
    function addMember(bytes32 name, address admin, bytes32 adminPersonId)
        external
        returns (uint32 hospital)
    {
        if (msg.sender != CONSORTIUM_GOVERNANCE) revert NotGovernance(msg.sender);
        if (name == bytes32(0)) revert InvalidName();
        unchecked {
            hospital = hospitalCount + 1;
            hospitalCount = hospital;
            memberCount += 1;
        }
        _hospitals[hospital] = 1;
        _hospitalNames[hospital] = name;
        emit MemberAdded(hospital, admin, name);
        _register(admin, adminPersonId, ROLE_ADMIN, hospital);
    }

    /// @notice Suspend (remove) or reinstate a member. Only by consortium vote. A suspended
    ///         member's admins cannot vote or register, and its staff lose all access.
    function setMemberActive(uint32 hospital, bool active) external {
        if (msg.sender != CONSORTIUM_GOVERNANCE) revert NotGovernance(msg.sender);
        uint256 word = _hospitals[hospital];
        if (hospital == 0 || hospital > hospitalCount) revert UnknownHospital(hospital);
        if ((word & 1 == 1) == active) return;
        _hospitals[hospital] = active ? 1 : 0;
        unchecked {
            memberCount = active ? memberCount + 1 : memberCount - 1;
        }
        emit MemberStatusChanged(hospital, active);
    }

    function member(uint32 id) external view returns (bytes32 name, bool active) {
        return (_hospitalNames[id], _hospitals[id] & 1 == 1);
    }

    function memberAdminOf(address admin) external view override returns (uint32) {
        uint256 word = _accounts[admin];
        if (word & 0xff != ROLE_ADMIN || word & ACTIVE_BIT == 0) return 0;
        uint32 id = uint32(word >> HOSPITAL_SHIFT);
        return _hospitals[id] & 1 == 1 ? id : 0;
    }

    /// @notice The address that stands for a whole hospital as a grantee.
    function hospitalGrantee(uint32 id) public pure returns (address) {
        return address(uint160(HOSPITAL_KEY_TAG | id));
    }

    // ============================================================================ accounts

    /// @notice Register a staff account (admin, doctor, nurse, researcher or auditor) of the
    ///         caller's hospital. `personId` is a pseudonymous hash; one account per person.
    function registerStaff(address account, bytes32 personId, uint8 role) external {
        if (role < ROLE_ADMIN || role > ROLE_AUDITOR) revert InvalidRole(role);
        _register(account, personId, role, _adminHospital());
    }

    /// @notice Register a patient whose home hospital is the caller's; `personId` is a
    ///         pseudonymous hash (never a name, MRN or other identifier in clear).
    function registerPatient(address account, bytes32 personId) external {
        _register(account, personId, ROLE_PATIENT, _adminHospital());
    }

    /// @notice Deactivate (or reactivate) an account of the caller's hospital: a deactivated
    ///         account loses all access; its person id stays bound to it.
    function setAccountActive(address account, bool active) external {
        uint32 id = _adminHospital();
        uint256 word = _accounts[account];
        if (word == 0) revert UnknownAccount(account);
        if (uint32(word >> HOSPITAL_SHIFT) != id) revert NotAdmin(msg.sender);
        if (account == msg.sender) revert CannotDeactivateSelf();
        _accounts[account] = active ? word | ACTIVE_BIT : word & ~ACTIVE_BIT;
        emit AccountStatusChanged(account, id, active, msg.sender);
    }

    /// @notice Let `delegate` (a registered account: guardian, representative) manage the
    ///         caller's consent and read the caller's records, or stop it.
    function setDelegate(address delegate, bool enabled) external {
        uint256 word = _accounts[msg.sender];
        if (word & 0xff != ROLE_PATIENT || word & ACTIVE_BIT == 0) revert NotPatient(msg.sender);
        if (delegate == msg.sender || _accounts[delegate] & ACTIVE_BIT == 0) {
            revert InvalidDelegate(delegate);
        }
        _delegates[msg.sender][delegate] = enabled;
        if (enabled) _hint(msg.sender, FLAG_DELEGATES, delegate);
        emit DelegateChanged(msg.sender, delegate, enabled);
    }

    function accountInfo(address who) external view returns (uint8 role, uint32 hospitalId, bool active) {
        uint256 word = _accounts[who];
        return (uint8(word), uint32(word >> HOSPITAL_SHIFT), word & ACTIVE_BIT != 0);
    }

    function accountOfPerson(bytes32 personId) external view returns (address) {
        return _personAccounts[personId];
    }

    function isDelegate(address patient, address delegate) external view returns (bool) {
        return _delegates[patient][delegate];
    }

    function isActiveAccount(address who) external view override returns (bool) {
        uint256 word = _accounts[who];
        if (word & ACTIVE_BIT == 0) return false;
        return word & 0xff == ROLE_PATIENT || _hospitals[uint32(word >> HOSPITAL_SHIFT)] & 1 == 1;
    }

    function _register(address who, bytes32 personId, uint8 role, uint32 id) internal {
        if (who == address(0) || uint160(who) >> 32 == HOSPITAL_KEY_TAG >> 32) {
            revert InvalidAccount(who);
        }
        if (personId == bytes32(0)) revert InvalidPersonId();
        if (_accounts[who] != 0) revert AccountExists(who);
        address existing = _personAccounts[personId];
        if (existing != address(0)) revert PersonExists(personId, existing);
        _accounts[who] = uint256(role) | ACTIVE_BIT | (uint256(id) << HOSPITAL_SHIFT);
        _personAccounts[personId] = who;
        emit AccountRegistered(who, id, personId, role, msg.sender);
    }

    /// @dev The hospital the caller administers; reverts unless an active admin of an active member.
    function _adminHospital() internal view returns (uint32 id) {
        uint256 word = _accounts[msg.sender];
        if (word & 0xff != ROLE_ADMIN || word & ACTIVE_BIT == 0) revert NotAdmin(msg.sender);
        id = uint32(word >> HOSPITAL_SHIFT);
        if (_hospitals[id] & 1 == 0) revert NotAdmin(msg.sender);
    }

    // ============================================================================ records

    /// @notice Register a new record with its first version. Only active doctors and nurses;
    ///         the author's hospital becomes the record's hospital, the only one that may add
    ///         versions. `contentHash` is the SHA3-256 of the plaintext, `cid` the IPFS CID of
    ///         the ciphertext (binary form).
    function createRecord(
        bytes32 recordId,
        address patient,
        uint16 resourceType,
        bytes calldata cid,
        bytes32 contentHash
    ) external {
        uint256 author = _accounts[msg.sender];
        if (!_isClinician(author)) revert NotClinician(msg.sender);
        if (recordId == bytes32(0)) revert InvalidRecordId();
        if (resourceType == ALL_RESOURCE_TYPES) revert InvalidResourceType();
        uint256 patientWord = _accounts[patient];
        if (patientWord & 0xff != ROLE_PATIENT || patientWord & ACTIVE_BIT == 0) {
            revert NotPatient(patient);
        }
        if (_records[recordId] != 0) revert RecordExists(recordId);
        uint32 id = uint32(author >> HOSPITAL_SHIFT);
        _records[recordId] = uint256(uint160(patient)) | (uint256(id) << REC_HOSPITAL_SHIFT)
            | (uint256(resourceType) << REC_TYPE_SHIFT) | (uint256(1) << REC_VERSIONS_SHIFT);
        _addVersion(recordId, patient, id, 1, resourceType, cid, contentHash);
    }

    /// @notice Append a version to a record; only clinicians of the record's hospital.
    function addVersion(bytes32 recordId, bytes calldata cid, bytes32 contentHash)
        external
        returns (uint32 version)
    {
        uint256 rec = _records[recordId];
        if (rec == 0) revert UnknownRecord(recordId);
        uint256 author = _accounts[msg.sender];
        if (!_isClinician(author)) revert NotClinician(msg.sender);
        uint32 id = uint32(rec >> REC_HOSPITAL_SHIFT);
        if (uint32(author >> HOSPITAL_SHIFT) != id) revert NotRecordHospital(msg.sender, id);
        unchecked {
            version = uint32(rec >> REC_VERSIONS_SHIFT) + 1;
        }
        _records[recordId] =
            (rec & ~(uint256(type(uint32).max) << REC_VERSIONS_SHIFT)) | (uint256(version) << REC_VERSIONS_SHIFT);
        _addVersion(recordId, address(uint160(rec)), id, version, uint16(rec >> REC_TYPE_SHIFT), cid, contentHash);
    }

    function record(bytes32 recordId)
        external
        view
        returns (address patient, uint32 hospitalId, uint16 resourceType, uint32 versions)
    {
        uint256 rec = _records[recordId];
        return (
            address(uint160(rec)),
            uint32(rec >> REC_HOSPITAL_SHIFT),
            uint16(rec >> REC_TYPE_SHIFT),
            uint32(rec >> REC_VERSIONS_SHIFT)
        );
    }

    /// @notice keccak256(abi.encode(recordId, version, keccak256(cid), contentHash, author,
    ///         timestamp)) of a registered version, or zero: proves a RecordVersionAdded event.
    function versionDigest(bytes32 recordId, uint32 version) external view returns (bytes32) {
        return _versionDigests[recordId][version];
    }

    function _addVersion(
        bytes32 recordId,
        address patient,
        uint32 id,
        uint32 version,
        uint16 resourceType,
        bytes calldata cid,
        bytes32 contentHash
    ) internal {
        if (cid.length < 2 || cid.length > MAX_CID_LENGTH) revert InvalidCid();
        if (contentHash == bytes32(0)) revert InvalidContentHash();
        _versionDigests[recordId][version] = keccak256(
            abi.encode(recordId, version, keccak256(cid), contentHash, msg.sender, block.timestamp)
        );
        emit RecordVersionAdded(recordId, patient, msg.sender, id, version, resourceType, contentHash, cid);
    }

    function _isClinician(uint256 word) internal pure returns (bool) {
        uint256 role = word & 0xff;
        return (role == ROLE_DOCTOR || role == ROLE_NURSE) && word & ACTIVE_BIT != 0;
    }

    // ============================================================================ consent

    /// @notice Grant `grantee` (a staff account, or hospitalGrantee(id) for a whole hospital)
    ///         access to one record for `purposes` (bitmap: 1 treatment, 2 payment,
    ///         4 operations, 8 research) until `expiry` (exclusive, unix seconds).
    ///         By the record's patient or one of the patient's delegates.
    function grant(address grantee, bytes32 recordId, uint8 purposes, uint40 expiry) external {
        bool toHospital = _checkGrant(grantee, purposes, expiry);
        address patient = _patientOf(recordId);
        _authorize(patient);
        if (toHospital) _hint(patient, FLAG_HOSPITAL_GRANTS, grantee);
        _recordGrants[grantee][recordId] = uint256(purposes) | (uint256(expiry) << 8);
        emit AccessGranted(patient, grantee, recordId, SCOPE_RECORD, purposes, expiry, msg.sender);
    }

    /// @notice grant() for a set of records, same grantee and terms, in one transaction.
    function grantRecords(address grantee, bytes32[] calldata recordIds, uint8 purposes, uint40 expiry)
        external
    {
        uint256 n = recordIds.length;
        if (n == 0) revert EmptyBatch();
        bool toHospital = _checkGrant(grantee, purposes, expiry);
        uint256 value = uint256(purposes) | (uint256(expiry) << 8);
        mapping(bytes32 => uint256) storage grants = _recordGrants[grantee];
        address authorized;
        for (uint256 i; i < n;) {
            bytes32 recordId = recordIds[i];
            address patient = _patientOf(recordId);
            if (patient != authorized) {
                _authorize(patient);
                if (toHospital) _hint(patient, FLAG_HOSPITAL_GRANTS, grantee);
                authorized = patient;
            }
            grants[recordId] = value;
            emit AccessGranted(patient, grantee, recordId, SCOPE_RECORD, purposes, expiry, msg.sender);
            unchecked {
                ++i;
            }
        }
    }

    /// @notice Grant access to all of `patient`'s records of one FHIR resource type (code from
    ///         the table in contracts/resource_types.py), or to all records with type 0.
    function grantResourceType(
        address patient,
        address grantee,
        uint16 resourceType,
        uint8 purposes,
        uint40 expiry
    ) external {
        bool toHospital = _checkGrant(grantee, purposes, expiry);
        if (_accounts[patient] & 0xff != ROLE_PATIENT) revert NotPatient(patient);
        _authorize(patient);
        uint256 flags = resourceType == ALL_RESOURCE_TYPES ? FLAG_ALL_GRANTS : FLAG_TYPE_GRANTS;
        _hint(patient, toHospital ? flags | FLAG_HOSPITAL_GRANTS : flags, grantee);
        _typeGrants[grantee][_typeKey(patient, resourceType)] = uint256(purposes) | (uint256(expiry) << 8);
        emit AccessGranted(
            patient, grantee, bytes32(uint256(resourceType)), SCOPE_RESOURCE_TYPE, purposes, expiry, msg.sender
        );
    }

    function revoke(address grantee, bytes32 recordId) external {
        address patient = _patientOf(recordId);
        _authorize(patient);
        _revokeRecord(patient, grantee, recordId);
    }

    function revokeRecords(address grantee, bytes32[] calldata recordIds) external {
        uint256 n = recordIds.length;
        if (n == 0) revert EmptyBatch();
        address authorized;
        for (uint256 i; i < n;) {
            bytes32 recordId = recordIds[i];
            address patient = _patientOf(recordId);
            if (patient != authorized) {
                _authorize(patient);
                authorized = patient;
            }
            _revokeRecord(patient, grantee, recordId);
            unchecked {
                ++i;
            }
        }
    }

    function revokeResourceType(address patient, address grantee, uint16 resourceType) external {
        _authorize(patient);
        bytes32 key = _typeKey(patient, resourceType);
        if (_typeGrants[grantee][key] == 0) revert GrantNotFound(grantee, bytes32(uint256(resourceType)));
        delete _typeGrants[grantee][key];
        emit AccessRevoked(patient, grantee, bytes32(uint256(resourceType)), SCOPE_RESOURCE_TYPE, msg.sender);
    }

    function recordGrant(address grantee, bytes32 recordId) external view returns (uint8 purposes, uint40 expiry) {
        uint256 g = _recordGrants[grantee][recordId];
        return (uint8(g), uint40(g >> 8));
    }

    function resourceTypeGrant(address grantee, address patient, uint16 resourceType)
        external
        view
        returns (uint8 purposes, uint40 expiry)
    {
        uint256 g = _typeGrants[grantee][_typeKey(patient, resourceType)];
        return (uint8(g), uint40(g >> 8));
    }

    /// @notice May `grantee` read `recordId` for `purpose` (0 treatment, 1 payment,
    ///         2 operations, 3 research) now? True for: the record's patient; the patient's
    ///         delegates; doctors and nurses of the record's hospital, for treatment; the holder
    ///         of an unexpired grant covering the record and purpose (to the account itself or
    ///         to its whole hospital; for the record or its resource type or all the patient's
    ///         records); a doctor or nurse inside a break-glass window on the patient, for
    ///         treatment. A staff account must be active and its hospital an active member.
    /// @dev The node calls this before serving every read, so it is written in assembly: the
    ///      same decision in Solidity cost ~650 more gas of stack shuffling. Checks run cheapest
    ///      first and stop at the first answer; the patient hints skip every lookup the patient
    ///      never made possible, so a typical answer costs 3-4 cold SLOADs.
    function canAccess(address grantee, bytes32 recordId, uint8 purpose) external view returns (bool allowed) {
        if (purpose > PURPOSE_RESEARCH) revert InvalidPurpose(purpose);
        assembly ("memory-safe") {
            function at(key, base) -> s {
                mstore(0x00, key)
                mstore(0x20, base)
                s := keccak256(0x00, 0x40)
            }
            // A grant word (purposes | expiry << 8) covers `bit` and has not expired.
            function allows(g, bit) -> ok {
                ok := and(iszero(iszero(and(g, bit))), gt(shr(8, g), timestamp()))
            }
            function isDelegate(patient, delegate) -> ok {
                ok := and(sload(at(delegate, at(patient, SLOT_DELEGATES))), 0xff)
            }
            function typeAllows(who, patient, rtype, flags, bit) -> ok {
                let grants := at(who, SLOT_TYPE_GRANTS)
                if and(flags, FLAG_TYPE_GRANTS) {
                    mstore(0x00, patient)
                    mstore(0x20, rtype)
                    if allows(sload(at(keccak256(0x00, 0x40), grants)), bit) {
                        ok := 1
                        leave
                    }
                }
                if and(flags, FLAG_ALL_GRANTS) {
                    mstore(0x00, patient)
                    mstore(0x20, 0)
                    ok := allows(sload(at(keccak256(0x00, 0x40), grants)), bit)
                }
            }
            // Whether the patient word's Bloom filter may contain the key whose account slot
            // is `slot` (keccak256(key . SLOT_ACCOUNTS)); false means it certainly does not.
            function inBloom(pat, slot) -> yes {
                let bits := or(shl(and(slot, 127), 1), shl(and(shr(7, slot), 127), 1))
                yes := eq(and(shr(BLOOM_SHIFT, pat), bits), bits)
            }
            function decide(who, rid, why) -> ok {
                let rec := sload(at(rid, SLOT_RECORDS))
                let patient := shr(96, shl(96, rec))
                if iszero(patient) { leave }
                if eq(who, patient) {
                    ok := 1
                    leave
                }
                let whoSlot := at(who, SLOT_ACCOUNTS)
                let hospital, clinicalTreatment
                {
                    let acct := sload(whoSlot)
                    if iszero(and(acct, ACTIVE_BIT)) { leave }
                    let role := and(acct, 0xff)
                    if or(lt(role, ROLE_DOCTOR), gt(role, ROLE_AUDITOR)) {
                        // Not staff: only as one of the patient's delegates.
                        let pat := sload(at(patient, SLOT_ACCOUNTS))
                        if and(and(shr(FLAGS_SHIFT, pat), FLAG_DELEGATES), inBloom(pat, whoSlot)) {
                            ok := isDelegate(patient, who)
                        }
                        leave
                    }
                    // Staff from here on; any yes also needs the staff's hospital to be a member.
                    hospital := and(shr(HOSPITAL_SHIFT, acct), 0xffffffff)
                    clinicalTreatment := and(iszero(why), lt(role, ROLE_RESEARCHER))
                }
                for {} 1 {} {
                    if and(clinicalTreatment, eq(hospital, and(shr(REC_HOSPITAL_SHIFT, rec), 0xffffffff))) {
                        ok := 1
                        break
                    }
                    let bit := shl(why, 1)
                    ok := allows(sload(at(rid, at(who, SLOT_RECORD_GRANTS))), bit)
                    if ok { break }
                    let pat := sload(at(patient, SLOT_ACCOUNTS))
                    let flags := shr(FLAGS_SHIFT, pat)
                    if inBloom(pat, whoSlot) {
                        if and(flags, FLAG_DELEGATES) {
                            ok := isDelegate(patient, who)
                            if ok { break }
                        }
                        if and(flags, or(FLAG_TYPE_GRANTS, FLAG_ALL_GRANTS)) {
                            ok := typeAllows(who, patient, and(shr(REC_TYPE_SHIFT, rec), 0xffff), flags, bit)
                            if ok { break }
                        }
                        if and(clinicalTreatment, gt(and(shr(BREAK_GLASS_SHIFT, pat), 0xffffffffff), timestamp())) {
                            ok := gt(sload(at(patient, at(who, SLOT_EMERGENCY_UNTIL))), timestamp())
                            if ok { break }
                        }
                    }
                    if and(flags, FLAG_HOSPITAL_GRANTS) {
                        let key := or(HOSPITAL_KEY_TAG, hospital)
                        if inBloom(pat, at(key, SLOT_ACCOUNTS)) {
                            ok := allows(sload(at(rid, at(key, SLOT_RECORD_GRANTS))), bit)
                            if ok { break }
                            if and(flags, or(FLAG_TYPE_GRANTS, FLAG_ALL_GRANTS)) {
                                ok := typeAllows(key, patient, and(shr(REC_TYPE_SHIFT, rec), 0xffff), flags, bit)
                            }
                        }
                    }
                    break
                }
                if ok { ok := and(sload(at(hospital, SLOT_HOSPITALS)), 1) }
            }
            allowed := decide(grantee, recordId, purpose)
        }
    }

    function _memberActive(uint32 id) internal view returns (bool) {
        return _hospitals[id] & 1 == 1;
    }

    function _typeKey(address patient, uint16 resourceType) internal pure returns (bytes32 key) {
        assembly ("memory-safe") {
            mstore(0x00, patient)
            mstore(0x20, resourceType)
            key := keccak256(0x00, 0x40)
        }
    }

    function _patientOf(bytes32 recordId) internal view returns (address patient) {
        patient = address(uint160(_records[recordId]));
        if (patient == address(0)) revert UnknownRecord(recordId);
    }

    /// @dev The caller must be `patient` or an active delegate of it.
    function _authorize(address patient) internal view {
        if (msg.sender == patient) return;
        if (!_delegates[patient][msg.sender] || _accounts[msg.sender] & ACTIVE_BIT == 0) {
            revert NotPatientOrDelegate(msg.sender, patient);
        }
    }

    /// @dev Validates grant terms; returns whether the grantee is a whole hospital.
    function _checkGrant(address grantee, uint8 purposes, uint40 expiry) internal view returns (bool toHospital) {
        if (purposes == 0 || purposes > ALL_PURPOSES) revert InvalidPurposes(purposes);
        if (expiry <= block.timestamp) revert InvalidExpiry(expiry);
        if (uint160(grantee) >> 32 == HOSPITAL_KEY_TAG >> 32) {
            if (_hospitals[uint32(uint160(grantee))] & 1 == 0) revert InvalidGrantee(grantee);
            return true;
        }
        uint256 word = _accounts[grantee];
        uint256 role = word & 0xff;
        if (role < ROLE_DOCTOR || role > ROLE_AUDITOR || word & ACTIVE_BIT == 0) revert InvalidGrantee(grantee);
        return false;
    }

    /// @dev Record in the patient's hints that `key` holds a patient-level permission of kind
    ///      `flags` (0: none, e.g. a break-glass opener, whose window canAccess reads anyway).
    function _hint(address patient, uint256 flags, address key) internal {
        uint256 word = _accounts[patient];
        uint256 updated = word | (flags << FLAGS_SHIFT) | _bloomBits(key);
        if (updated != word) _accounts[patient] = updated;
    }

    /// @dev Two bits of the Bloom filter for `key`, taken from keccak256(key . SLOT_ACCOUNTS):
    ///      the hash canAccess already computes to find the key's own account word.
    function _bloomBits(address key) internal pure returns (uint256) {
        uint256 h;
        assembly ("memory-safe") {
            mstore(0x00, key)
            mstore(0x20, SLOT_ACCOUNTS)
            h := keccak256(0x00, 0x40)
        }
        return (1 << (BLOOM_SHIFT + (h & 127))) | (1 << (BLOOM_SHIFT + ((h >> 7) & 127)));
    }

    function _revokeRecord(address patient, address grantee, bytes32 recordId) internal {
        if (_recordGrants[grantee][recordId] == 0) revert GrantNotFound(grantee, recordId);
        delete _recordGrants[grantee][recordId];
        emit AccessRevoked(patient, grantee, recordId, SCOPE_RECORD, msg.sender);
    }

    // ============================================================================ break-glass

    /// @notice Emergency access without consent: opens BREAK_GLASS_WINDOW of treatment access
    ///         to all of `patient`'s records for the calling doctor or nurse. A reason code
    ///         (1 life-threatening, 2 patient unable to consent, 3 urgent and consent
    ///         unobtainable, 4 other: needs `detailHash`) is mandatory. Always logged and
    ///         queued for review by an auditor of the patient's or the clinician's hospital.
    function openBreakGlass(address patient, uint8 reason, bytes32 detailHash) external returns (uint256 caseId) {
        uint256 clinician = _accounts[msg.sender];
        if (!_isClinician(clinician)) revert NotClinician(msg.sender);
        uint32 clinicianHospital = uint32(clinician >> HOSPITAL_SHIFT);
        if (!_memberActive(clinicianHospital)) revert NotClinician(msg.sender);
        if (reason == 0) revert ReasonRequired();
        if (reason > REASON_OTHER) revert InvalidReason(reason);
        if (reason == REASON_OTHER && detailHash == bytes32(0)) revert DetailRequired();
        uint256 pat = _accounts[patient];
        if (pat & 0xff != ROLE_PATIENT) revert NotPatient(patient);
        uint256 until = block.timestamp + BREAK_GLASS_WINDOW;
        _emergencyUntil[msg.sender][patient] = until;
        uint256 updated = pat | _bloomBits(msg.sender);
        if (uint40(pat >> BREAK_GLASS_SHIFT) < until) {
            updated = (updated & ~(uint256(type(uint40).max) << BREAK_GLASS_SHIFT)) | (until << BREAK_GLASS_SHIFT);
        }
        if (updated != pat) _accounts[patient] = updated;
        unchecked {
            caseId = ++breakGlassCount;
        }
        _breakGlassCases[caseId] = uint256(uint160(msg.sender)) | (block.timestamp << 160)
            | (uint256(reason) << 200) | (uint256(REVIEW_PENDING) << 208);
        _breakGlassPatients[caseId] = patient;
        emit BreakGlassOpened(
            patient,
            uint32(pat >> HOSPITAL_SHIFT),
            msg.sender,
            caseId,
            clinicianHospital,
            reason,
            detailHash,
            uint40(until)
        );
    }

    /// @notice Mark a break-glass case justified or not; once, by an active auditor of the
    ///         patient's hospital or of the clinician's hospital.
    function reviewBreakGlass(uint256 caseId, bool justified, bytes32 noteHash) external {
        uint256 c = _breakGlassCases[caseId];
        if (c == 0) revert UnknownBreakGlass(caseId);
        if (uint8(c >> 208) != REVIEW_PENDING) revert AlreadyReviewed(caseId);
        address patient = _breakGlassPatients[caseId];
        uint256 reviewer = _accounts[msg.sender];
        uint32 id = uint32(reviewer >> HOSPITAL_SHIFT);
        if (
            reviewer & 0xff != ROLE_AUDITOR || reviewer & ACTIVE_BIT == 0 || !_memberActive(id)
                || (
                    id != uint32(_accounts[patient] >> HOSPITAL_SHIFT)
                        && id != uint32(_accounts[address(uint160(c))] >> HOSPITAL_SHIFT)
                )
        ) revert NotReviewer(msg.sender, caseId);
        uint256 status = justified ? REVIEW_JUSTIFIED : REVIEW_UNJUSTIFIED;
        _breakGlassCases[caseId] = (c & ~(uint256(0xff) << 208)) | (status << 208);
        emit BreakGlassReviewed(caseId, patient, msg.sender, justified, noteHash);
    }

    function breakGlassCase(uint256 caseId)
        external
        view
        returns (address clinician, address patient, uint40 openedAt, uint40 until, uint8 reason, uint8 status)
    {
        uint256 c = _breakGlassCases[caseId];
        if (c == 0) revert UnknownBreakGlass(caseId);
        openedAt = uint40(c >> 160);
        return (
            address(uint160(c)),
            _breakGlassPatients[caseId],
            openedAt,
            uint40(openedAt + BREAK_GLASS_WINDOW),
            uint8(c >> 200),
            uint8(c >> 208)
        );
    }

    function emergencyAccessUntil(address clinician, address patient) external view returns (uint40) {
        return uint40(_emergencyUntil[clinician][patient]);
    }

    // ============================================================================ audit log

    /// @notice Audit-only: the caller records that it accessed (or tried to access) a record,
    ///         with purpose, FHIR AuditEvent action (0 R, 1 C, 2 U, 3 D, 4 E) and outcome
    ///         (0 success, 1 minor failure, 2 serious failure, 3 major failure). No decision
    ///         is made here: the node checks canAccess, serves or refuses, then logs.
    function logAccess(bytes32 recordId, uint8 purpose, uint8 action, uint8 outcome) external {
        if (purpose > PURPOSE_RESEARCH) revert InvalidPurpose(purpose);
        if (action > MAX_ACTION) revert InvalidAction(action);
        if (outcome > MAX_OUTCOME) revert InvalidOutcome(outcome);
        emit AccessLogged(recordId, msg.sender, purpose, action, outcome);
    }

    /// @notice Ask the record's patient for access (the patient's app watches this event).
    function requestAccess(bytes32 recordId, uint8 purpose) external {
        if (purpose > PURPOSE_RESEARCH) revert InvalidPurpose(purpose);
        address patient = _patientOf(recordId);
        uint256 word = _accounts[msg.sender];
        uint256 role = word & 0xff;
        if (role < ROLE_DOCTOR || role > ROLE_AUDITOR || word & ACTIVE_BIT == 0) revert InvalidGrantee(msg.sender);
        emit AccessRequested(patient, msg.sender, recordId, purpose, uint32(word >> HOSPITAL_SHIFT));
    }
}
