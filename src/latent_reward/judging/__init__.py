"""Rating responses with a judge model behind any OpenAI-compatible endpoint: the rubric, the client, the cache."""
