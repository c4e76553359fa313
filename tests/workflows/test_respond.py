"""`respond` against the scripted OpenAI-compatible server and the tiny model: the records it writes, its cache, and the
offline respond -> judge pipeline that rates them."""

import json

import pytest

import latent_reward as lr
from helpers import ChatServer, completion, rating_json, write_jsonl
from latent_reward.config import ModelSpec
from latent_reward.data.schema import group_key
from latent_reward.errors import UserError
from latent_reward.generation import GenerationConfig, generate_chat
from latent_reward.judging.client import Endpoint

PROMPTS = ["what is two plus two?", "how do I cook pasta?", "name the capital of France"]


def answer(body, count):
    """The server's reply: the user's question echoed, so each record can be traced to its request."""
    return 200, completion(f"answer to: {body['messages'][-1]['content']}"), None, 0


def test_respond_writes_unrated_records_from_an_endpoint_and_a_local_model_and_judge_rates_them(
    tiny_model_dir, tmp_path
):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in PROMPTS])
    local = ModelSpec(name=str(tiny_model_dir), dtype="float32")
    generation = GenerationConfig(max_new_tokens=4, temperature=0.0)
    server = ChatServer(answer)
    try:
        endpoint = Endpoint(base_url=server.url, model="api-a")
        options = dict(models=[local], endpoint_models=("api-a",), endpoint=endpoint, samples=2, generation=generation)
        result = lr.respond(prompts, tmp_path / "out", progress=False, **options)
        assert len(server.requests) == 6 and {r["model"] for r in server.requests} == {"api-a"}
        assert not any("response_format" in r for r in server.requests)  # replies, not JSON ratings
        records = [json.loads(line) for line in result.file.read_text().splitlines()]
        again = lr.respond(prompts, tmp_path / "out", progress=False, **options)  # the cache answers: no new request
        assert len(server.requests) == 6 and again.file.read_text() == result.file.read_text()
    finally:
        server.close()
    assert result.prompts == 3 and result.responses == len(records) == sum(result.per_source.values())
    remote = [r for r in records if r["meta"]["generator"] == "api-a"]
    assert len(remote) == result.per_source["api-a"] == 6
    for record in remote:
        question = record["messages"][0]["content"]
        assert record["messages"][-1] == {"role": "assistant", "content": f"answer to: {question}"}
        assert record["rating"] is None and record["group"] == group_key(record["messages"][:-1])
    asked = sorted((r["meta"]["prompt_index"], r["meta"]["sample_index"]) for r in remote)
    assert asked == [(p, s) for p in range(3) for s in (0, 1)]
    assert len({r["id"] for r in records}) == len(records)
    own = [r for r in records if r["meta"]["generator"] == local.name]
    twice = [[{"role": "user", "content": p}] for p in PROMPTS for _ in range(2)]
    expected = generate_chat(local.load(), twice, generation)
    assert [r["messages"][-1]["content"] for r in own] == [e.text.strip() for e in expected if e.text.strip()]

    def rate(body, count):  # the judge rates longer replies higher
        return 200, completion(rating_json(min(10, len(body["messages"][-1]["content"]) // 20 + 1))), None, 0

    judge = ChatServer(rate)
    try:
        summary = lr.judge(result.file, Endpoint(base_url=judge.url, model="judge"), tmp_path / "rated", progress=False)
    finally:
        judge.close()
    rated = [json.loads(line) for line in (tmp_path / "rated" / "rated.jsonl").read_text().splitlines()]
    assert summary.items == summary.rated == len(records) == len(rated) and summary.missing == 0
    assert all(1 <= r["rating"] <= 10 for r in rated)


def test_respond_needs_a_source(tmp_path):
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "hi"}])
    with pytest.raises(UserError, match="name at least one source"):
        lr.respond(prompts, tmp_path / "out")
    with pytest.raises(UserError, match="needs --base-url"):
        lr.respond(prompts, tmp_path / "out", endpoint_models=("m",))
