"""Models: the normalising wrapper, built-in digits nets, and the name -> model registry."""

from sweep.models.registry import BUILTIN_MODELS, load_model
from sweep.models.wrapper import NormalizedModel, freeze

__all__ = ["BUILTIN_MODELS", "NormalizedModel", "freeze", "load_model"]
