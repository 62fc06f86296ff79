"""PyTorch eager peer (see common.py for the protocol)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_impl  # noqa: E402

if __name__ == "__main__":
    torch_impl.main(compiled=False)
