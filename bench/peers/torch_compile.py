"""torch.compile peer (default inductor backend; see common.py for the protocol). The forward of
each workload is compiled; backward runs through AOTAutograd's compiled backward."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_impl  # noqa: E402

if __name__ == "__main__":
    torch_impl.main(compiled=True)
