"""Judge client throughput: items rated per second against a local server that answers in 0.2 s, concurrency 1 vs 16.

Prints items/s for each and the ratio (target: >= 8x from concurrency).

    python benchmarks/judge_throughput.py [--items 48] [--delay 0.2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers import ChatServer, completion, rating_json  # noqa: E402  (the tests' local OpenAI-compatible server)
from latent_reward.config import DataSpec  # noqa: E402
from latent_reward.experiments.judge import JudgeConfig  # noqa: E402
from latent_reward.judging.client import Endpoint  # noqa: E402
from latent_reward.workflows.judge import JudgeJob, run_judge  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=48)
    parser.add_argument("--delay", type=float, default=0.2)
    args = parser.parse_args()
    server = ChatServer(lambda body, count: (200, completion(rating_json(5)), None, args.delay))
    rates = {}
    try:
        with tempfile.TemporaryDirectory() as folder:
            data = Path(folder) / "data.jsonl"
            data.write_text(
                "".join(
                    json.dumps({"question": f"q{i}", "answer": f"answer {i}", "score": 5}) + "\n"
                    for i in range(args.items)
                )
            )
            for concurrency in (1, 16):
                endpoint = Endpoint(base_url=server.url, model="judge", concurrency=concurrency)
                summary = run_judge(
                    JudgeJob(
                        data=DataSpec(source=str(data)),
                        endpoint=endpoint,
                        config=JudgeConfig(n_boot=100),
                        out=Path(folder) / f"out{concurrency}",
                    ),
                    progress=False,
                ).result
                rates[concurrency] = summary.items_per_second
                print(
                    f"concurrency {concurrency:>2}: {summary.rated} items in {summary.seconds:.2f} s = "
                    f"{summary.items_per_second:.1f} items/s"
                )
    finally:
        server.close()
    print(f"speed-up from concurrency: {rates[16] / rates[1]:.1f}x (target >= 8x; server answers in {args.delay} s)")


if __name__ == "__main__":
    main()
