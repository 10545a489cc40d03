"""The LitServe baseline for bench/streaming.py: `stream=True` over the same generator, each item written as an
SSE event by encode_response (LitServe sends what it yields as is).

    python bench/streaming_litserve.py PORT
"""

import json
import sys
from pathlib import Path

import litserve as ls

sys.path.insert(0, str(Path(__file__).parent / "streams"))
from predict import tokens  # noqa: E402


class Tokens(ls.LitAPI):
    def setup(self, device):
        pass

    def decode_request(self, request):
        return int(request.get("n", 1000))

    def predict(self, n):
        yield from tokens(n)

    def encode_response(self, outputs):
        for token in outputs:
            yield f"data: {json.dumps(token)}\n\n"


if __name__ == "__main__":
    api = Tokens(stream=True, api_path="/tokens")
    ls.LitServer(api, accelerator="cpu", workers_per_device=1).run(port=int(sys.argv[1]), log_level="warning",
                                                                  generate_client_file=False)
