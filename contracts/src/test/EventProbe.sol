// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title EventProbe
/// @notice Minimal contract for end-to-end JSON-RPC tests: a storage slot, an event with
///         indexed topics, a revert with Error(string) and a revert with a custom error.
contract EventProbe {
    /// @notice Raised by failCustom so tests can check custom-error revert data.
    error Denied(uint256 code);

    /// @notice Emitted by set; `by` and `oldValue` are indexed topics, `newValue` is data.
    event ValueChanged(address indexed by, uint256 indexed oldValue, uint256 newValue);

    uint256 private value;

    constructor(uint256 initial) {
        value = initial;
    }

    function set(uint256 v) external {
        uint256 old = value;
        value = v;
        emit ValueChanged(msg.sender, old, v);
    }

    function get() external view returns (uint256) {
        return value;
    }

    function fail(string calldata reason) external pure {
        revert(reason);
    }

    function failCustom(uint256 code) external pure {
        revert Denied(code);
    }
}
