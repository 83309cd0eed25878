"""medledger consensus package."""
