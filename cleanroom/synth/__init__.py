"""Synthesizers: graphical-model estimation from noisy marginals and the federated MST planner."""

from cleanroom.synth.centralised import synthesize, synthesize_dp
from cleanroom.synth.estimation import EstimationConfig, estimate
from cleanroom.synth.junction_tree import JunctionTree, build_junction_tree
from cleanroom.synth.model import GraphicalModel
from cleanroom.synth.mst import MSTPlanner, select_tree

__all__ = [
    "EstimationConfig",
    "GraphicalModel",
    "JunctionTree",
    "MSTPlanner",
    "build_junction_tree",
    "estimate",
    "select_tree",
    "synthesize",
    "synthesize_dp",
]
