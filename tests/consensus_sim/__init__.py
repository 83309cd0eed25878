"""Deterministic simulator for the QBFT core: seeded network, simulated clock, real Qbft nodes."""

from tests.consensus_sim.scenario import Scenario, SimResult, check_properties, run_scenario

__all__ = ["Scenario", "SimResult", "check_properties", "run_scenario"]
