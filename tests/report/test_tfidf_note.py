"""The report's sentence on the TF-IDF vocabulary: only where the cap on large data applied."""

from latent_reward.evaluation.baselines import TFIDF_TERMS, tfidf_terms
from latent_reward.report.html import _tfidf_note


def test_the_report_says_when_the_tfidf_baselines_kept_fewer_terms():
    capped = tfidf_terms(48458)
    assert capped < TFIDF_TERMS
    note = _tfidf_note(capped)
    assert "4,096 most frequent terms per column" in note and "more than 8,192 responses" in note
    assert _tfidf_note(tfidf_terms(2398)) == ""  # UltraFeedback's subset keeps every term
    assert _tfidf_note(None) == ""  # no text, no TF-IDF baselines
