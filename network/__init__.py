"""medledger network package."""
