import os
import subprocess
import sys
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def test_tune_and_evaluate_need_no_pytorch():
    # `agentops_train tune` / `evaluate` re-tune and judge committed ONNX files: numpy and
    # onnxruntime suffice. With torch made unimportable, everything they load must still import.
    code = ("import sys; sys.modules['torch'] = None; "
            "import agentops_train.cli, agentops_train.artifacts, agentops_train.evidence, agentops_train.data")
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_ROOT))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
