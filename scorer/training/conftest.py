# Lets `python -m pytest scorer/training` import agentops_train from this folder.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
