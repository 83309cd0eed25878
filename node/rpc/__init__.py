"""The node's Ethereum JSON-RPC: transport (HTTP, WebSocket), dispatch, subscriptions, filters."""
