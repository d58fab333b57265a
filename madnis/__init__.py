"""MadNIS: neural multi-channel importance sampling (arXiv:2212.06172, arXiv:2311.01548).

Pure torch; knows nothing of MG5aMC. See README.md for the map of modules.
"""

from .integrand import Integrand, IntegrandResult

__all__ = ["Integrand", "IntegrandResult"]
