"""The positions table: a position reads one token or a range, and asking it for the other kind is an error."""

import pytest

from latent_reward.models.chat import TokenSpans
from latent_reward.positions import BY_NAME, TABLE

SPANS = TokenSpans(user_end=3, assistant_start=5, response_start=6, response_end=10, eot=11)


def test_each_position_reads_its_token_or_its_range_and_refuses_the_other():
    assert BY_NAME["eot"].token(SPANS) == 11 and BY_NAME["response_last"].token(SPANS) == 9
    assert BY_NAME["response_mean"].span(SPANS) == (6, 10)
    for position in TABLE:
        if position.reduce == "token":
            with pytest.raises(TypeError, match="reads one token"):
                position.span(SPANS)
        else:
            with pytest.raises(TypeError, match="reads a range"):
                position.token(SPANS)
