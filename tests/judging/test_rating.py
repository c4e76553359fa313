"""judging/rating.py: the judge's overall rating of unrated replies (steer's replies, online training's completions),
asked as the judge command asks, so the two share cached answers."""

import re

import numpy as np

from helpers import ChatServer, completion, rating_json
from latent_reward.data.schema import make_example
from latent_reward.experiments.judge import JudgeConfig, judge_examples
from latent_reward.judging.cache import JudgeCache
from latent_reward.judging.client import Endpoint
from latent_reward.judging.rating import overall_ratings

CONVERSATIONS = [
    [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"answer {i}"}] for i in range(4)
]


def reply(body, count):
    n = int(re.search(r"answer (\d+)", body["messages"][-1]["content"]).group(1))
    return 200, completion("no score here" if n == 2 else rating_json(n + 5)), None, 0  # answer 2: malformed always


def test_overall_ratings_are_the_judges_and_nan_where_it_gave_none_and_share_the_judge_commands_cache(tmp_path):
    server = ChatServer(reply)
    endpoint = Endpoint(base_url=server.url, model="judge", max_retries=0)
    cache = JudgeCache(tmp_path / "cache.sqlite")
    try:
        examples = [make_example("data", i, c[:-1], c[-1]["content"], 1.0) for i, c in enumerate(CONVERSATIONS[:2])]
        judge_examples(examples, endpoint, cache, JudgeConfig(n_boot=10), progress=False)
        asked = len(server.requests)
        ratings = overall_ratings(CONVERSATIONS, endpoint, cache, progress=False)
        new = server.requests[asked:]
    finally:
        cache.close()
        server.close()
    np.testing.assert_array_equal(ratings, [5.0, 6.0, np.nan, 8.0])
    # the two replies the judge command rated came from the cache: only answers 2 (asked twice: malformed) and 3
    assert sorted(re.search(r"answer (\d)", r["messages"][-1]["content"]).group(1) for r in new) == ["2", "2", "3"]
