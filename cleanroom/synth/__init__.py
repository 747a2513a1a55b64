"""Synthesizers: graphical-model estimation from noisy marginals, the federated planners (MST, adaptive)."""

from cleanroom.feasibility import DEFAULT_SYNTHESIZER
from cleanroom.synth.adaptive import AdaptivePlanner
from cleanroom.synth.centralised import synthesize, synthesize_dp
from cleanroom.synth.compression import CompressedModel, Compression
from cleanroom.synth.estimation import EstimationConfig, estimate
from cleanroom.synth.junction_tree import JunctionTree, build_junction_tree
from cleanroom.synth.model import GraphicalModel
from cleanroom.synth.mst import MSTPlanner, select_tree
from cleanroom.synth.planners import PLANNERS, Planner, make_planner

__all__ = [
    "DEFAULT_SYNTHESIZER",
    "PLANNERS",
    "AdaptivePlanner",
    "CompressedModel",
    "Compression",
    "EstimationConfig",
    "GraphicalModel",
    "JunctionTree",
    "MSTPlanner",
    "Planner",
    "build_junction_tree",
    "estimate",
    "make_planner",
    "select_tree",
    "synthesize",
    "synthesize_dp",
]
