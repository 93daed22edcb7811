"""Random weights for the alignment tests' tiny priors."""

import torch


def randomised(model: torch.nn.Module, seed: int = 0, scale: float = 0.3) -> torch.nn.Module:
    """Every parameter N(0, scale) from a seeded generator (the zero-initialised cross-attention projections too),
    so that outputs depend on every weight; returns the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model.eval()
