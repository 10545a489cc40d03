"""The batching benchmark's LitServe baseline: LitServe's own batching (max_batch_size 32) on bench/mlp/predict.py.

    python bench/mlp_litserve.py PORT [MAX_BATCH_SIZE] [BATCH_TIMEOUT_S]
"""

import sys
from pathlib import Path

import litserve as ls
import numpy as np

sys.path.insert(0, str(Path(__file__).parent / "mlp"))
from predict import answers, forward  # noqa: E402


class MLP(ls.LitAPI):
    def setup(self, device):
        pass

    def decode_request(self, request):
        return np.asarray(request["x"], dtype=np.float32)

    def predict(self, x):  # LitServe stacks the decoded arrays: x is (n, 256)
        return answers(forward(x))

    def encode_response(self, output):
        return output


if __name__ == "__main__":
    port = int(sys.argv[1])
    max_batch_size = int(sys.argv[2]) if len(sys.argv) > 2 else 32
    batch_timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 0.005
    api = MLP(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
    ls.LitServer(api, accelerator="cpu", workers_per_device=1).run(port=port, log_level="warning",
                                                                  generate_client_file=False)
