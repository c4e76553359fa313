"""The reward lens's palette: a diverging scheme without red-green (orange low, white middle, purple high)."""

from latent_reward.report.lens import color, colored_tokens


def test_the_lens_runs_orange_through_white_to_purple_and_clips_outside_the_range():
    assert color(0.0, 0.0, 1.0) == (253, 184, 99)
    assert color(0.5, 0.0, 1.0) == (255, 255, 255)
    assert color(1.0, 0.0, 1.0) == (178, 171, 210)
    assert color(-5.0, 0.0, 1.0) == color(0.0, 0.0, 1.0) and color(5.0, 0.0, 1.0) == color(1.0, 0.0, 1.0)
    assert color(0.25, 0.0, 1.0) == (254, 220, 177)  # halfway from white to orange
    assert color(3.0, 2.0, 2.0) == (255, 255, 255)  # no spread: every token in the middle
    greens = [c for c in (color(v / 10, 0, 1) for v in range(11)) if c[1] > c[0] and c[1] > c[2]]
    assert not greens  # no green-dominant colour anywhere on the scale


def test_each_token_carries_its_css_colour_and_value():
    tokens = colored_tokens(["a", "b"], [0.0, 1.0], 0.0, 1.0)
    assert tokens == [
        {"text": "a", "rgb": "rgb(253,184,99)", "value": "0.00"},
        {"text": "b", "rgb": "rgb(178,171,210)", "value": "1.00"},
    ]
