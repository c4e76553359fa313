"""How permutation p-values are printed: at the floor 1 / (B + 1) as a bound, never as an exact value."""

from latent_reward.report.pvalue import p_text


def test_a_p_at_its_permutation_floor_is_printed_as_a_bound():
    assert p_text(1 / 101, 100) == "p <= 0.010"
    assert p_text(1 / 20, 19, "rank p") == "rank p <= 0.050"
    assert p_text(1 / 10000, 9999) == "p <= 0.0001"  # enough digits to show the floor
    assert p_text(3 / 101, 100) == "p = 0.030"
    assert p_text(0.2, None) == "p = 0.200" and p_text(None, 100) == "p n/a"
