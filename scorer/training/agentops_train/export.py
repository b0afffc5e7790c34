"""ONNX export (opset 17, legacy TorchScript exporter) and the PyTorch-vs-onnxruntime check."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import config
from .scoring import OnnxModel

if TYPE_CHECKING:  # torch only where a model is exported: `tune` runs without it
    import torch


def export(model: torch.nn.Module, path: Path) -> None:
    import torch

    model.eval()
    example = torch.zeros(2, config.SEQUENCE_LENGTH, config.N_FEATURES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[config.INPUT_NAME],
            output_names=[config.OUTPUT_NAME],
            dynamic_axes={config.INPUT_NAME: {0: "batch"}, config.OUTPUT_NAME: {0: "batch"}},
            opset_version=config.ONNX_OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    import onnx

    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def max_abs_diff(model: torch.nn.Module, path: Path, z: np.ndarray) -> float:
    """Largest |PyTorch - onnxruntime| over the reconstructions of `z` (several batch sizes)."""
    import torch

    ort_model = OnnxModel(path)
    worst = 0.0
    for b in (1, 7, len(z)):
        x = z[:b].astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        got = ort_model.reconstruct(x)
        worst = max(worst, float(np.abs(ref - got).max()))
    return worst


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def model_set_id(paths: list[Path], extra: bytes = b"") -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    h.update(extra)
    return h.hexdigest()[:8]
