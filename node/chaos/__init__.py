"""Fault injection for medledger devnets: crash, partition and Byzantine campaigns.

`medledger chaos` runs a campaign (node/chaos/campaign.py) and prints a FaultReport.
"""

# The Byzantine validator's attacks (node/chaos/byzantine.py), in the order it runs them.
SCENARIOS = (
    "equivocate", "bad_state_root", "bad_seal", "oversized", "unpermitted_tx", "replay", "flood",
)
