"""Encrypted record store: AES-256-GCM envelopes, RSA-OAEP key wrapping, IPFS-compatible storage.

Entry point for callers: `RecordStore` (store.py) over a `Blockstore` (embedded.py, kubo.py,
cluster.py). Format and design: node/records/README.md.
"""
