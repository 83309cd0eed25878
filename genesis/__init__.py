"""medledger genesis package."""
