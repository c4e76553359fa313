"""The judge client against a local OpenAI-compatible server: answers, retries, malformed replies, cache, resume,
errors."""

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import ChatServer, cli, completion, rating_json, write_jsonl
from latent_reward.config import DataSpec
from latent_reward.data import load_dataset
from latent_reward.experiments.judge import JudgeConfig
from latent_reward.judging.client import Endpoint
from latent_reward.judging.rubric import SCORE_FIELDS, RatingReply, parse_rating
from latent_reward.workflows.judge import JudgeJob, run_judge


def item_number(body) -> int:
    """The canned data's answers are 'answer N': the server keys its behaviour on N."""
    return int(re.search(r"answer (\d+)", body["messages"][-1]["content"]).group(1))


@pytest.fixture
def data(tmp_path):
    return write_jsonl(
        tmp_path / "arena.jsonl",
        [{"question": f"question {i // 2}", "answer": f"answer {i}", "score": i % 10 + 1} for i in range(8)],
    )


def job(data, url, out, **endpoint):
    return JudgeJob(
        data=DataSpec(source=str(data)),
        endpoint=Endpoint(base_url=url, model="judge", **{"max_retries": 3, **endpoint}),
        config=JudgeConfig(n_boot=100),
        out=out,
    )


def test_parse_rating_reads_json_or_a_fenced_block_and_never_guesses():
    assert parse_rating(rating_json(7))["overall"] == 7
    assert parse_rating("Sure!\n```json\n" + rating_json(3) + "\n```")["overall"] == 3
    assert parse_rating("The reply deserves an 8 out of 10.") is None
    assert parse_rating(rating_json(11)) is None and parse_rating('{"overall": 5}') is None


def test_ratings_retries_malformed_replies_and_the_cache(data, tmp_path):
    def reply(body, count):
        n = item_number(body)
        if n == 3:
            return 200, completion("I think it is fine."), None, 0  # malformed, every time
        if n == 5 and count <= 8:
            return 429, {"error": {"message": "slow down"}}, {"Retry-After": "0.05"}, 0
        if n == 6 and count <= 8:
            return 500, {"error": {"message": "boom"}}, None, 0
        return 200, completion(rating_json(n % 10 + 1, aspects=4)), None, 0

    server = ChatServer(reply)
    try:
        summary = run_judge(job(data, server.url, tmp_path / "out"), progress=False).result
        by_item = {}
        for body in server.requests:
            by_item[item_number(body)] = by_item.get(item_number(body), 0) + 1
        assert by_item[3] == 2  # a malformed reply is asked once more, then recorded as missing
        assert by_item[5] >= 2 and by_item[6] >= 2  # 429 and 500 are retried
        assert summary.rated == 7 and summary.missing == 1 and summary.items == 8
        assert summary.prompt_tokens == 50 * summary.requests and summary.completion_tokens == 20 * summary.requests
        rated = load_dataset(str(tmp_path / "out" / "rated.jsonl"))
        assert rated.format == "latent-reward" and len(rated.examples) == 7
        example = next(e for e in rated.examples if e.response == "answer 4")
        assert example.rating == 5.0 and example.aspects == {
            "instruction_following": 4.0,
            "honesty": 4.0,
            "truthfulness": 4.0,
            "helpfulness": 4.0,
        }
        assert example.meta["original_rating"] == 5.0 and example.meta["judge"]["rationale"] == "canned"
        assert summary.with_original.spearman.value == pytest.approx(
            1.0
        )  # the canned judge agrees with the data exactly
        before = len(server.requests)
        again = run_judge(job(data, server.url, tmp_path / "out"), progress=False).result
        assert len(server.requests) == before and again.cached == 8 and again.requests == 0  # all from the cache
    finally:
        server.close()


def test_a_slow_reply_times_out_and_is_retried(data, tmp_path):
    def reply(body, count):
        return 200, completion(rating_json(5)), None, (2.0 if count == 1 else 0)

    server = ChatServer(reply)
    try:
        summary = run_judge(job(data, server.url, tmp_path / "out", timeout=0.5, concurrency=1), progress=False).result
        assert summary.rated == 8 and len(server.requests) == 9
    finally:
        server.close()


@pytest.mark.slow
def test_a_killed_job_resumes_asking_only_for_unrated_items(data, tmp_path):
    server = ChatServer(lambda body, count: (200, completion(rating_json(5)), None, 0.3))
    try:
        command = [
            str(Path(sys.executable).with_name("latent-reward")),
            "judge",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "o"),
            "--base-url",
            server.url,
            "--concurrency",
            "1",
        ]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline and len(server.requests) < 4:
            time.sleep(0.05)
        time.sleep(0.35)  # the fourth answer arrives and is committed
        process.send_signal(signal.SIGKILL)
        process.wait()
        first = len(server.requests)
        assert 3 <= first < 8
        done = cli(*command[1:])
        assert done.returncode == 0, done.stderr
        asked_again = {item_number(body) for body in server.requests[first:]}
        answered_first = {item_number(body) for body in server.requests[: first - 1]}
        assert len(server.requests) - first == 8 - len(answered_first) and not (asked_again & answered_first)
        assert len(load_dataset(str(tmp_path / "o" / "rated.jsonl")).examples) == 8
    finally:
        server.close()


@pytest.mark.parametrize("status, message", [(401, "refused the API key"), (404, "does not serve model 'judge'")])
def test_endpoint_errors_are_one_line(data, tmp_path, status, message):
    server = ChatServer(lambda body, count: (status, {"error": {"message": "no"}}, None, 0))
    try:
        result = cli(
            "judge", "--data", data, "--out", tmp_path / "o", "--base-url", server.url, "--endpoint-model", "judge"
        )
        assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    finally:
        server.close()


def test_unreachable_endpoint_and_missing_key_are_one_line(data, tmp_path):
    result = cli(
        "judge", "--data", data, "--out", tmp_path / "o", "--base-url", "http://127.0.0.1:9/v1", "--retries", "0"
    )
    assert result.returncode == 2 and "cannot reach http://127.0.0.1:9/v1" in result.stderr
    result = cli(
        "judge",
        "--data",
        data,
        "--out",
        tmp_path / "o",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--api-key-env",
        "LATENT_REWARD_NO_SUCH_KEY",
    )
    assert result.returncode == 2 and "LATENT_REWARD_NO_SUCH_KEY" in result.stderr
    empty = write_jsonl(tmp_path / "empty.jsonl", [{"question": "q", "answer": "", "score": 3}])
    result = cli("judge", "--data", empty, "--out", tmp_path / "o2", "--base-url", "http://127.0.0.1:9/v1")
    assert result.returncode == 2 and "no usable rated responses" in result.stderr


def test_self_consistency_and_pairwise(tmp_path):
    pairs = write_jsonl(
        tmp_path / "pairs.jsonl",
        [{"prompt": f"question {i}", "chosen": f"answer {2 * i}", "rejected": f"answer {2 * i + 1}"} for i in range(6)],
    )

    def reply(body, count):
        text = body["messages"][-1]["content"]
        if "Reply A" in text:  # prefers the even answer, whichever side it is on
            a = int(re.search(r"<reply_a>\nanswer (\d+)", text).group(1))
            return 200, completion(json.dumps({"preferred": "A" if a % 2 == 0 else "B", "rationale": "r"})), None, 0
        return 200, completion(rating_json(1 + (item_number(body) + count) % 10)), None, 0

    server = ChatServer(reply)
    try:
        pairwise = run_judge(
            job(pairs, server.url, tmp_path / "p").model_copy(
                update={"config": JudgeConfig(mode="pairwise", n_boot=100)}
            ),
            progress=False,
        ).result
        assert pairwise.rated == 6 and pairwise.with_original.within_prompt.value == 1.0
        repeated = run_judge(
            job(pairs, server.url, tmp_path / "r").model_copy(update={"config": JudgeConfig(repeats=2, n_boot=100)}),
            progress=False,
        ).result
        assert repeated.self_consistency is not None and repeated.self_consistency.items == 12
    finally:
        server.close()


def form(body) -> str:
    """Which structured-output form a request asked for (judging.structured.FORMATS)."""
    kind = (body.get("response_format") or {}).get("type")
    return {"json_schema": "json_schema", "json_object": "json_object+schema", None: "text"}[kind]


def test_requests_carry_the_rubric_schema_in_the_openai_form(tmp_path):
    pairs = write_jsonl(
        tmp_path / "pairs.jsonl",
        [{"prompt": f"question {i}", "chosen": f"answer {2 * i}", "rejected": f"answer {2 * i + 1}"} for i in range(3)],
    )

    def reply(body, count):
        if "Reply A" in body["messages"][-1]["content"]:
            return 200, completion(json.dumps({"preferred": "A", "rationale": "r"})), None, 0
        return 200, completion(rating_json(6)), None, 0

    server = ChatServer(reply)
    try:
        summary = run_judge(job(pairs, server.url, tmp_path / "rating"), progress=False).result
        pairwise = job(pairs, server.url, tmp_path / "pairwise").model_copy(
            update={"config": JudgeConfig(mode="pairwise", n_boot=100)}
        )
        run_judge(pairwise, progress=False)
    finally:
        server.close()
    assert summary.rated == 6 and summary.response_format == "json_schema"
    rating = [b["response_format"] for b in server.requests if "Reply A" not in b["messages"][-1]["content"]]
    preference = [b["response_format"] for b in server.requests if "Reply A" in b["messages"][-1]["content"]]
    assert len(rating) == 6 and len(preference) == 6
    assert all(
        f
        == {
            "type": "json_schema",
            "json_schema": {"name": "rating", "schema": RatingReply.model_json_schema(), "strict": True},
        }
        for f in rating
    )
    schema = rating[0]["json_schema"]["schema"]
    assert schema["required"] == [*SCORE_FIELDS, "rationale"] and schema["additionalProperties"] is False
    assert all(schema["properties"][name]["enum"] == list(range(1, 11)) for name in SCORE_FIELDS)
    assert schema["properties"]["rationale"]["maxLength"] == 300  # a small model under a grammar stops in time
    assert all(f["json_schema"]["name"] == "preference" for f in preference)
    assert all(f["json_schema"]["schema"]["properties"]["preferred"]["enum"] == ["A", "B"] for f in preference)
    shaped = RatingReply(**json.loads(rating_json(6))).model_dump()
    assert parse_rating(json.dumps(shaped))["overall"] == 6  # a reply in the schema's shape parses


FASTAPI_REFUSAL = {
    "detail": [
        {
            "type": "literal_error",
            "loc": ["body", "response_format", "type"],
            "msg": "Input should be 'text' or 'json_object'",
        }
    ]
}
# what llama-cpp-python 0.3.36's server sends (its route handler wraps the validation error as a 500)
LLAMA_CPP_REFUSAL = {
    "error": {
        "message": "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', 'type'), "
        "'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}",
        "type": "internal_server_error",
    }
}


@pytest.mark.parametrize("status, refusal", [(422, FASTAPI_REFUSAL), (500, LLAMA_CPP_REFUSAL)])
def test_a_server_refusing_json_schema_is_asked_in_llama_cpp_pythons_form_once(data, tmp_path, status, refusal):
    def reply(body, count):  # a server whose request model lacks the json_schema response format
        if form(body) == "json_schema":
            return status, refusal, None, 0
        return 200, completion(rating_json(item_number(body) % 10 + 1)), None, 0

    server = ChatServer(reply)
    try:
        summary = run_judge(job(data, server.url, tmp_path / "first", concurrency=8), progress=False).result
        kinds = [form(b) for b in server.requests]
        again = run_judge(job(data, server.url, tmp_path / "second"), progress=False).result  # a new cache: asked again
    finally:
        server.close()
    asked = 1 if status < 500 else 1 + 3  # the client retries a 500 (max_retries 3) before it reads the refusal
    assert kinds.count("json_schema") == asked and kinds.count("json_object+schema") == 8  # though 8 are in flight
    assert server.requests[asked]["response_format"]["schema"] == RatingReply.model_json_schema()
    assert summary.rated == 8 and summary.missing == 0 and summary.response_format == "json_object+schema"
    assert again.rated == 8
    assert [form(b) for b in server.requests[len(kinds) :]] == ["json_object+schema"] * 8  # remembered


def test_a_server_refusing_every_response_format_gets_free_text_parsed_as_before(data, tmp_path):
    def reply(body, count):
        if "response_format" in body:
            refusal = {"message": "response_format is not supported by this server", "type": "invalid_request_error"}
            return 400, {"error": refusal}, None, 0
        return 200, completion("Here you go:\n```json\n" + rating_json(item_number(body) % 10 + 1) + "\n```"), None, 0

    server = ChatServer(reply)
    try:
        summary = run_judge(job(data, server.url, tmp_path / "o", concurrency=8), progress=False).result
    finally:
        server.close()
    assert [form(b) for b in server.requests] == ["json_schema", "json_object+schema"] + ["text"] * 8
    assert summary.rated == 8 and summary.response_format == "text"
    assert summary.with_original.spearman.value == pytest.approx(1.0)


def test_a_bad_request_about_something_else_is_one_line_not_a_fallback(data, tmp_path):
    server = ChatServer(lambda body, count: (400, {"error": {"message": "maximum context length exceeded"}}, None, 0))
    try:
        result = cli("judge", "--data", data, "--out", tmp_path / "o", "--base-url", server.url)
    finally:
        server.close()
    assert result.returncode == 2 and "maximum context length exceeded" in result.stderr
    assert len(server.requests) == 1 and form(server.requests[0]) == "json_schema"


def test_no_structured_output_sends_no_response_format(data, tmp_path):
    server = ChatServer(lambda body, count: (200, completion(rating_json(5)), None, 0))
    try:
        summary = run_judge(job(data, server.url, tmp_path / "o", structured=False), progress=False).result
    finally:
        server.close()
    assert summary.rated == 8 and all("response_format" not in b for b in server.requests)
