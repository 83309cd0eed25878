"""medledger contracts package."""
