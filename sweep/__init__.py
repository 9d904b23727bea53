"""attack-sweep: distributed adversarial-attack sweeps (models x attacks x epsilons)."""

__version__ = "0.1.0"
