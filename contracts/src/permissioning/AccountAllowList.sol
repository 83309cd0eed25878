// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IMedLedgerMembership, MEDLEDGER} from "../system/SystemAddresses.sol";
import {AllowList} from "./AllowList.sol";

/// @title AccountAllowList
/// @notice Which accounts may send transactions: the explicit entries (service accounts,
///         validators; changed only by consortium vote) and every active account that a
///         member hospital registered in MedLedger (its admins manage those).
///         Nodes ask transactionAllowed() (Besu's account-rules signature) before admitting a
///         transaction to the pool and before including it in a block.
contract AccountAllowList is AllowList {
    function allowedAccounts() external view returns (address[] memory) {
        return _entries;
    }

    function isAccountAllowed(address account) public view returns (bool) {
        return _contains(account) || IMedLedgerMembership(MEDLEDGER).isActiveAccount(account);
    }

    /// @dev Besu AccountRules interface; only the sender matters here.
    function transactionAllowed(address sender, address, uint256, uint256, uint256, bytes calldata)
        external
        view
        returns (bool)
    {
        return isAccountAllowed(sender);
    }

    function addAccount(address account) external onlyGovernance {
        _add(account);
    }

    function removeAccount(address account) external onlyGovernance {
        _remove(account);
    }
}
