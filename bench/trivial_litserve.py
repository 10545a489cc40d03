"""The LitServe baseline for bench/sweep.py's trivial route: POST /predict {"text", "n"} calling the same function
as bench/throughput.py's servers, one request per call (no batching).

    python bench/trivial_litserve.py PORT
"""

import sys
from pathlib import Path

import litserve as ls

sys.path.insert(0, str(Path(__file__).parent / "model"))
from predict import predict  # noqa: E402


class Trivial(ls.LitAPI):
    def setup(self, device):
        pass

    def decode_request(self, request):
        return request["text"], request["n"]

    def predict(self, args):
        return predict(*args)

    def encode_response(self, output):
        return output


if __name__ == "__main__":
    ls.LitServer(Trivial(), accelerator="cpu", workers_per_device=1).run(port=int(sys.argv[1]), log_level="warning",
                                                                        generate_client_file=False)
