"""Constants of the scoring contract and of the training run (one place, used everywhere)."""

from __future__ import annotations

# --- the contract shared with the Rust scorer (scorer/models/manifest.json) ---
WINDOW_SECS = 900
WINDOW_MS = WINDOW_SECS * 1000
SEQUENCE_LENGTH = 16  # L: 16 windows = 4 h of history
SCORE_POSITIONS = 4  # P: the last 4 positions (1 h) are scored
FEATURES = [
    "success_rate",
    "intervention_rate",
    "log_p95_latency_ms",
    "log_cost_per_task_micros",
    "log_tasks",
]
N_FEATURES = len(FEATURES)
# Features 0..3 are undefined in an empty window; log_tasks is always defined.
RATE_FEATURES = 4
CLIP = 10.0
CALIBRATION_EPS = 1e-6
MIN_SCALE = 1e-3  # normalization scale when the IQR is 0
ONNX_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "reconstruction"
LSTM_FILE = "lstm_ae.onnx"
TRANSFORMER_FILE = "transformer_ae.onnx"

# --- the data sets: every seed is used for exactly one purpose ---
DAYS = 30
TRAIN_SEEDS = [1001, 1002, 1003]  # --no-incidents: model fitting
VAL_SEEDS = [1004]  # --no-incidents: early stopping and score calibration
TUNING_SEED = 2001  # incidents: ensemble weights and thresholds
EVAL_SEEDS = [3001, 3002, 3003]  # incidents: the reported numbers

# --- training ---
SEED = 20261123
THREADS = 2
