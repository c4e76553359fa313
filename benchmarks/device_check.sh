#!/usr/bin/env bash
# The GPU checks, for a lent GPU machine that has PyTorch but no internet and no room for the bundled weights.
#
#   benchmarks/device_check.sh prepare   # here: fills .gpu/ (keep it out of git) with what the machine lacks
#   benchmarks/device_check.sh run       # there: CUDA tests, extraction and generation benchmarks in bfloat16, and the
#                                        # analysis with its fits on the GPU; STEPS="tests analysis_7b" runs only those
#
# prepare writes SmolLM2's config and tokenizer without its weights (the benchmarks give that shape random
# weights), the two data files the extraction benchmark reads, and wheels for the Python packages the
# machine's image lacks (for Python 3.12). run writes its logs to $OUT (or /tmp/device-check). prepare also writes
# Mistral 7B's config (no weights) for a 7B-shaped extraction; that step has not yet run on a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
GPU=.gpu
PYTHON=${PYTHON:-python3}

prepare() {
    local shared=../shared/data
    mkdir -p "$GPU/data" "$GPU/whl" "$GPU/smollm2-shape"
    cp "$shared/ultrafeedback_binarized_subset_1200.jsonl" "$shared/arena_bench_v1_gpt4_scores.jsonl.gz" "$GPU/data/"
    .venv/bin/python - "$GPU/smollm2-shape" <<'EOF'
import sys
from latent_reward.models.loading import bundled_folder
from transformers import AutoConfig, AutoTokenizer
source = bundled_folder("smollm2-135m-instruct")
AutoConfig.from_pretrained(source).save_pretrained(sys.argv[1])
AutoTokenizer.from_pretrained(source).save_pretrained(sys.argv[1])
EOF
    # Mistral 7B's shape (zephyr-7b-beta's base) with SmolLM2's tokenizer (its vocabulary size), for random weights there
    .venv/bin/python - "$GPU/mistral-7b-shape" "$GPU/smollm2-shape" <<'EOF'
import sys
from transformers import AutoTokenizer, MistralConfig
tokenizer = AutoTokenizer.from_pretrained(sys.argv[2])
MistralConfig(vocab_size=len(tokenizer), hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
              num_key_value_heads=8, max_position_embeddings=32768, rope_theta=10000.0, tie_word_embeddings=False,
              bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id).save_pretrained(sys.argv[1])
tokenizer.save_pretrained(sys.argv[1])
EOF
    .venv/bin/pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$GPU/whl" \
        transformers==5.24.0 pydantic==2.14.4 pydantic_core==2.50.5 typing-inspection==0.4.5 annotated-types \
        typing_extensions datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 trl==1.16.0
    du -sh "$GPU"
}

ALL_STEPS="tests extract generation call_cost profile extract_7b analysis_7b"

# One step of `run`: runs the function of that name, unless $STEPS names others (every step by default).
step() {
    [[ -z "${STEPS:-}" || " $STEPS " == *" $1 "* ]] || return 0
    echo "== $1"
    "$1"
}

# The steps: each has its own limit, so one that hangs leaves the others their time.
tests() {
    timeout 150 $PYTHON -m pytest -q -p no:cacheprovider tests/test_devices.py 2>&1 | tee "$out/tests.log" | tail -3
}
extract() {
    timeout 240 $PYTHON benchmarks/extract_throughput.py "${shape[@]}" --data-dir "$GPU/data" --n 600 --batch-tokens 8192 \
        --repeats 3 2>&1 | tee "$out/extract_8192.log"
}
generation() {
    timeout 120 $PYTHON benchmarks/generation_throughput.py "${shape[@]}" --data-dir "$GPU/data" --n 16 --max-new-tokens 64 \
        2>&1 | tee "$out/generation.log"
}
call_cost() {
    timeout 200 $PYTHON benchmarks/forward_call_cost.py "${shape[@]}" --data-dir "$GPU/data" --n 100 2>&1 | tee "$out/call_cost.log"
}
profile() {
    timeout 90 $PYTHON benchmarks/extract_throughput.py "${shape[@]}" --data-dir "$GPU/data" --n 24 --batch-tokens 8192 \
        --profile >"$out/profile.log" 2>&1
    local status=$?
    grep -v '^ *$' "$out/profile.log" | head -30
    return $status
}
# A 7B-shaped model (random weights, bfloat16, about 15 GB): extraction against a plain forward, fraction of the bound
extract_7b() {
    timeout 300 $PYTHON benchmarks/extract_throughput.py --model "$GPU/mistral-7b-shape" --random-init 0 --device cuda \
        --dtype bfloat16 --data-dir "$GPU/data" --n 120 --batch-tokens 4096 --repeats 1 --memory-n 24 2>&1 \
        | tee "$out/extract_7b.log"
}
# The analysis of a 7B-shaped store (10,000 responses, 4,096 wide, 33 layers, 2 positions) with its ridge fits on the
# GPU: time per stage (2 CPU cores: 771.6 s), and the recovered r beside a float64 CPU fit at the cells chosen. Its
# limit is a guess (writing the store took 89 s here; the sketch, the TF-IDF kernels and that reference stay on the CPU).
analysis_7b() {
    timeout 480 $PYTHON benchmarks/analysis_scaling.py --n 10000 --d 4096 --layers 33 --positions 2 --analysis-device cuda \
        2>&1 | tee "$out/analysis_7b.log"
}

run() {
    local status=0 name
    for name in ${STEPS:-}; do
        [[ " $ALL_STEPS " == *" $name "* ]] || { echo "unknown step $name; the steps: $ALL_STEPS" >&2; exit 2; }
    done
    out=${OUT:-/tmp/device-check}
    shape=(--model "$GPU/smollm2-shape" --random-init 0 --device cuda --dtype bfloat16)
    mkdir -p "$out"
    $PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$GPU"/whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    $PYTHON -c "import torch, transformers, trl, datasets, pyarrow; print('torch', torch.__version__, 'transformers', \
transformers.__version__, 'trl', trl.__version__, 'datasets', datasets.__version__, 'pyarrow', pyarrow.__version__)"
    # All the steps together can take longer than one lease of the device: name the ones to run in STEPS
    for name in $ALL_STEPS; do
        step "$name" || status=1
    done
    return $status
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: $0 prepare|run" >&2; exit 2 ;;
esac
