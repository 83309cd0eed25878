// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title NaiveAccess
/// @notice The seed design, kept only as the gas baseline of bench/gas.py: one storage struct
///         (patient, doctor, timestamp, active) per record hash, and every record field in
///         storage. Not deployed on any chain; do not use.
contract NaiveAccess {
    struct AccessGrant {
        address patient;
        address doctor;
        uint256 timestamp;
        bool active;
    }

    struct RecordEntry {
        string cid;
        bytes32 contentHash;
        address author;
        uint256 hospital;
        uint256 timestamp;
        string resourceType;
    }

    mapping(bytes32 => AccessGrant) public grants;
    mapping(bytes32 => RecordEntry[]) public records;

    event AccessGranted(bytes32 recordHash, address patient, address doctor, uint256 timestamp);
    event AccessLogged(bytes32 recordHash, address accessor, uint256 timestamp);

    function grantAccess(bytes32 recordHash, address doctor) public {
        grants[recordHash] = AccessGrant(msg.sender, doctor, block.timestamp, true);
        emit AccessGranted(recordHash, msg.sender, doctor, block.timestamp);
    }

    function grantAccessBatch(bytes32[] memory recordHashes, address doctor) external {
        for (uint256 i = 0; i < recordHashes.length; i++) {
            grantAccess(recordHashes[i], doctor);
        }
    }

    function revokeAccess(bytes32 recordHash) external {
        require(grants[recordHash].patient == msg.sender, "not patient");
        grants[recordHash].active = false;
    }

    function checkAccess(bytes32 recordHash, address doctor) external view returns (bool) {
        AccessGrant memory g = grants[recordHash];
        return g.active && g.doctor == doctor;
    }

    function addRecord(
        bytes32 recordId,
        string memory cid,
        bytes32 contentHash,
        uint256 hospital,
        string memory resourceType
    ) external {
        records[recordId].push(RecordEntry(cid, contentHash, msg.sender, hospital, block.timestamp, resourceType));
    }

    function logAccess(bytes32 recordHash) external {
        emit AccessLogged(recordHash, msg.sender, block.timestamp);
    }
}
