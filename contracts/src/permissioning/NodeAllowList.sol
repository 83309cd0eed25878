// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AllowList} from "./AllowList.sol";

/// @title NodeAllowList
/// @notice The nodes allowed in the network, by node address (keccak256 of the node's
///         secp256k1 public key, last 20 bytes; a validator's node address is its validator
///         address). Nodes read allowedNodes() at every new head and connect only to those.
///         Changed only by consortium vote.
contract NodeAllowList is AllowList {
    function allowedNodes() external view returns (address[] memory) {
        return _entries;
    }

    function isNodeAllowed(address node) external view returns (bool) {
        return _contains(node);
    }

    /// @notice Whether `source` and `destination` may be connected (both allowed).
    function connectionAllowed(address source, address destination) external view returns (bool) {
        return _contains(source) && _contains(destination);
    }

    function addNode(address node) external onlyGovernance {
        _add(node);
    }

    /// @notice Remove a node; the last node cannot be removed (the network would stop).
    function removeNode(address node) external onlyGovernance {
        if (_entries.length == 1 && _contains(node)) revert LastEntry(node);
        _remove(node);
    }
}
