"""MadNIS on a 4D two-channel toy (a narrow Breit-Wigner per channel): train, integrate, unweight.

Run: python examples/toy_4d.py
"""

import torch

from madnis import MadNIS, TrainingConfig
from madnis.toys import TwoResonances4D
from madnis.unweighting import madevent_efficiency

torch.set_num_threads(1)
integrand = TwoResonances4D(mapped=True)
madnis = MadNIS(integrand, TrainingConfig(steps=300, batch_size=1024, vegas_pretraining=True, seed=1))
madnis.train(callback=lambda p: p.step % 100 == 0 and print(f"step {p.step:4d}  loss {p.loss:.3e}  I {p.integral:.5f}"))
result = madnis.integrate(100_000)
print(result.format_table())
print(f"I = {result.integral:.6f} +- {result.error:.6f}   exact {integrand.exact:.6f}")
weights = madnis.sample_weighted(100_000).weight
efficiency = madevent_efficiency(weights)
print(f"unweighting efficiency {efficiency:.3f} (MadEvent's rule: 0.1 % of the weight above w_max)")
