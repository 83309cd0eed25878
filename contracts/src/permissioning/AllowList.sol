// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {CONSORTIUM_GOVERNANCE} from "../system/SystemAddresses.sol";

/// @title AllowList
/// @notice An enumerable set of addresses that only consortium governance may change. Base of
///         NodeAllowList and AccountAllowList.
/// @dev Predeployed in genesis: genesis/system.py writes the initial entries into slot 0 (the
///      array: length at slot 0, entry i at keccak256(0) + i) and slot 1 (position + 1 of each
///      entry, keyed by address). Keep this layout.
abstract contract AllowList {
    address[] internal _entries; // slot 0
    mapping(address => uint256) internal _positions; // slot 1: index + 1, 0 = absent

    error NotGovernance(address caller);
    error InvalidEntry(address entry);
    error AlreadyAllowed(address entry);
    error NotAllowed(address entry);
    error LastEntry(address entry);

    event EntryAdded(address indexed entry);
    event EntryRemoved(address indexed entry);

    modifier onlyGovernance() {
        if (msg.sender != CONSORTIUM_GOVERNANCE) revert NotGovernance(msg.sender);
        _;
    }

    function _add(address entry) internal {
        if (entry == address(0)) revert InvalidEntry(entry);
        if (_positions[entry] != 0) revert AlreadyAllowed(entry);
        _entries.push(entry);
        _positions[entry] = _entries.length;
        emit EntryAdded(entry);
    }

    function _remove(address entry) internal {
        uint256 position = _positions[entry];
        if (position == 0) revert NotAllowed(entry);
        uint256 last = _entries.length;
        address moved = _entries[last - 1];
        _entries[position - 1] = moved;
        _positions[moved] = position;
        _entries.pop();
        delete _positions[entry];
        emit EntryRemoved(entry);
    }

    function _contains(address entry) internal view returns (bool) {
        return _positions[entry] != 0;
    }
}
