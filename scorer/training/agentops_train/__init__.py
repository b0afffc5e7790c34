"""Training, export, calibration and evaluation of the scorer's anomaly models.

The models are two autoencoders (LSTM and Transformer) over sequences of 15-minute KPI windows of
one series (tenant, agent). The Rust scorer (`scorer/src`) runs the exported ONNX files and
implements the scoring contract in :mod:`agentops_train.scoring` exactly.
"""

import os

# Spinning OpenMP workers collapse (20x slower) when the 2 cores are shared with other jobs
# (cargo builds); passive waiting costs nothing when they are not. Must be set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["config"]
