"""frequnlearn: how the pre-training frequency of knowledge decides whether a model can unlearn it."""

__version__ = "0.1.0"
