// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

// Fixed addresses of the system contracts. `medledger genesis new` predeploys each contract at
// its address (genesis/system.py holds the same values), so contracts can reach each other
// without any registry lookup or constructor argument.

/// @dev Identity, records, consent, break-glass and the access audit log.
address constant MEDLEDGER = 0x4D4C000000000000000000000000000000000001;
/// @dev Majority vote of the member hospitals; the only caller of governed functions.
address constant CONSORTIUM_GOVERNANCE = 0x4d4c000000000000000000000000000000000002;
/// @dev Nodes (secp256k1 node addresses) allowed to join the network.
address constant NODE_ALLOW_LIST = 0x4d4C000000000000000000000000000000000003;
/// @dev Accounts allowed to send transactions (plus every active registered account).
address constant ACCOUNT_ALLOW_LIST = 0x4d4C000000000000000000000000000000000004;

/// @dev What governance and the account allow-list need to know about the consortium.
interface IMedLedgerMembership {
    /// @return hospital the member id `admin` is an active admin of, or 0 if none.
    function memberAdminOf(address admin) external view returns (uint32 hospital);

    /// @return the number of active member hospitals (the electorate of a vote).
    function memberCount() external view returns (uint32);

    /// @return whether `account` is registered and active (staff also need an active hospital).
    function isActiveAccount(address account) external view returns (bool);
}
