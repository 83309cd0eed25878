"""medledger node package."""
