"""Property test: any JSON record, of any shape, gives examples or one clear UserError; nothing else escapes."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latent_reward.data import load_dataset
from latent_reward.data.formats import FORMAT_NAMES
from latent_reward.errors import UserError

FIELDS = [
    "prompt",
    "chosen",
    "rejected",
    "score_chosen",
    "score_rejected",
    "question",
    "answer",
    "score",
    "instruction",
    "output",
    "completions",
    "response",
    "helpfulness",
    "preference",
    "split",
    "annotations",
    "overall_score",
    "model",
    "subset",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["Human: hi\n\nAssistant: yo", "inf", "NaN", "3", ""]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(FIELDS + ["role", "content", "Rating"]), inner, max_size=4),
    ),
    max_leaves=8,
)
records = st.lists(st.dictionaries(st.sampled_from(FIELDS), values, min_size=1, max_size=7), min_size=1, max_size=4)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=records, format=st.one_of(st.none(), st.sampled_from([f for f in FORMAT_NAMES if f != "generic"])))
def test_any_record_gives_examples_or_a_one_line_error(tmp_path, rows, format):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    try:
        dataset = load_dataset(str(path), format=format)
    except UserError as error:
        assert "\n" not in str(error) and str(error)
        return
    for example in dataset.examples:
        assert (
            isinstance(example.rating, float)
            and example.rating == example.rating
            and abs(example.rating) != float("inf")
        )
        assert example.response.strip() and all(isinstance(m["content"], str) for m in example.messages)
