"""Replicate's official Python client (the `replicate` package) against the
built-in simulator, with its rate limits on: a run to the image, a create,
wait and list, and a create over the limit refused the way Replicate refuses
it. Run by `tests/api/clients.rs` with REPLICATE_API_TOKEN and
REPLICATE_BASE_URL pointing at a test app's /sim (the client adds /v1); exits non-zero on any
difference.
"""

import os
import sys
import urllib.request

import replicate
from replicate.exceptions import ReplicateError

MODEL = "darkroom/landscape"


def main() -> None:
    client = replicate.Client(api_token=os.environ["REPLICATE_API_TOKEN"], base_url=os.environ["REPLICATE_BASE_URL"])

    # run(): create, poll until done, the output. The client wraps https
    # outputs as files to read; the simulator's are plain http on loopback,
    # which it hands back as the URL.
    output = client.run(MODEL, input={"prompt": "a quiet bay at dawn", "num_outputs": 1})
    first = output[0] if isinstance(output, list) else output
    if isinstance(first, str):
        with urllib.request.urlopen(first) as response:
            png = response.read()
    else:
        png = first.read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n", f"not a PNG: {png[:16]!r}"

    # create(), wait(), and the same prediction in the list.
    prediction = client.models.predictions.create(model=MODEL, input={"prompt": "a quiet bay at noon", "seed": 7})
    prediction.wait()
    assert prediction.status == "succeeded", prediction.status
    assert "Using seed: 7" in (prediction.logs or ""), prediction.logs
    listed = client.predictions.list()
    assert prediction.id in [p.id for p in listed.results], "the list has the new prediction"

    # The third create within seconds is over the simulator's limit (two at
    # once, then one each 5 s): a 429 in Replicate's words, not retried (a
    # create is never safe to retry).
    try:
        client.models.predictions.create(model=MODEL, input={"prompt": "one too many"})
    except ReplicateError as e:
        assert e.status == 429, e.status
        assert "Request was throttled. Your rate limit resets in ~" in (e.detail or ""), e.detail
    else:
        raise AssertionError("a create over the limit was accepted")
    print("replicate client: ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"replicate client: {e}", file=sys.stderr)
        sys.exit(1)
