#!/usr/bin/env bash
# Every GPU benchmark of benchmarks/results/{llm,time_to_accuracy}.md in a few device calls.
#
#   OUT=results-dir bash benchmarks/gpu_session.sh llm      # MFU vs transformers, generation, 2:4
#   OUT=results-dir bash benchmarks/gpu_session.sh llm16    # issue 16: MFU variants, 8k-32k, FP8, fine-tuning
#   OUT=results-dir bash benchmarks/gpu_session.sh race     # GPU only: nanoGPT vs Tessera to 1.47
#   OUT=results-dir bash benchmarks/gpu_session.sh speedrace  # the GPU race x3 and, meanwhile,
#                   # the CPU races x3 (Tiny Shakespeare, then kjv.txt), one evaluator (~400 s)
#   OUT=results-dir bash benchmarks/gpu_session.sh gen      # generation speed of the 125M shape
#   OUT=results-dir bash benchmarks/gpu_session.sh vision   # Fashion-MNIST ladder + ablation
#   OUT=results-dir bash benchmarks/gpu_session.sh vision-race  # fast vs baseline recipe to 93%
#       in <= 300 s: GPU 3 repeats each in turn, CPU 3 repeats each at once (6 x 2 pinned cores);
#       VISION_RACE_DEADLINE (260 s) bounds it, VISION_RACE_ARGS adds options (e.g.
#       "--parts gpu --recipes fast --drop-each --repeats 2" for the ablation)
#   OUT=results-dir bash benchmarks/gpu_session.sh serve    # serving: HTTP server vs transformers
#   OUT=results-dir bash benchmarks/gpu_session.sh eval     # ICL harness vs lm-eval (eval.md)
#
# Expects beside the repository root (ignored by git, carried to the GPU machine):
#   .whl/        wheels the GPU image lacks (pydantic, pydantic-core, annotated-types,
#                typing-inspection, zstandard), installed with --no-deps; for `llm16` also
#                torchao-0.17.0-cp310-abi3-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl
#                (needs torch >= 2.11; without it the FP8 rows say why they are missing); for `serve` also
#                fastapi, starlette, uvicorn, opentelemetry-api (and httptools, optional:
#                uvicorn's faster HTTP parser)
#   .peers/      an unmodified copy of ../shared/peers/nanoGPT and tinyshakespeare's input.txt;
#                for speedrace also kjv.txt, the second text: the King James Bible (public
#                domain; Debian package bible-kjv-text 4.38), its first 1,115,394 characters
#                (as many as Tiny Shakespeare): bible -l9999 gen1:1-rev22:21 | head -c 1115394
#   .gpu_data/fashion-mnist/   the four Fashion-MNIST IDX files
#   .gpu_data/eval/            ../shared/data/eval/*.jsonl (eval part; with lm-eval's wheels
#                in .whl/: lm_eval datasets dill multiprocess requests urllib3 certifi idna
#                charset_normalizer sacrebleu portalocker tabulate colorama lxml)
# Each part bounds its pieces with `timeout`, so a slow piece cannot take the others' time.
set -u
part=${1:?usage: gpu_session.sh llm|llm16|race|speedrace|gen|vision|vision-race|serve|eval|estimate}
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
# Wheels go to their own folder first on the path, leaving the image's packages untouched.
if [ ! -d /tmp/site ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
        .whl/*.whl $(ls .whl-eval/*.whl 2>/dev/null) 2>&1 | tail -2
elif [ "$part" = llm16 ] && [ ! -d /tmp/site/torchao ] && ls .whl/torchao-*.whl >/dev/null 2>&1; then
    # a machine still warm from another part: add torchao beside what is there
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
        .whl/torchao-*.whl 2>&1 | tail -2
fi
export PYTHONPATH=/tmp/site:$PYTHONPATH
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw,temperature.gpu \
    --format=csv | tee "$OUT/gpu-$part.txt"
$PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
    | tee -a "$OUT/gpu-$part.txt"

case $part in
llm)
    timeout 360 $PY benchmarks/gpu_llm_mfu.py --steps 8 --variants base --out "$OUT" >"$OUT/mfu.log" 2>&1
    echo "mfu exit $?"; grep -E '^\||error' "$OUT/mfu.log"; grep kv_cache "$OUT/mfu.log"
    timeout 90 $PY benchmarks/sparsity_2to4.py --output "$OUT/sparsity_2to4.json" >"$OUT/sparsity.log" 2>&1
    echo "sparsity exit $?"; tail -12 "$OUT/sparsity.log"
    ;;
llm16)
    # One device call of at most ~540 s; each phase has its own cap (LLM16_CAPS: seconds for
    # mfu-1b, mfu-small, long, fp8, finetune; 0 skips a phase), its scripts rewrite their JSON after every row,
    # and each phase's JSON is copied into $OUT and its table appended to llm16.md as it ends,
    # so a slow phase loses only its own last rows. 8 files come back: gpu-llm16.txt, llm16.log,
    # llm16.md, mfu-1b.json, mfu-small.json, long.json, fp8_loss.json, finetune.json.
    read -r cap_1b cap_small cap_long cap_fp8 cap_ft <<<"${LLM16_CAPS:-185 60 105 75 100}"
    best=${MFU_BEST:-cudnn+fused-ce+batch2x}
    work=/tmp/llm16
    export PYTHONUNBUFFERED=1
    : >"$OUT/llm16.md"
    phase() {  # phase NAME CAP JSON-STEM COMMAND...: run it capped, then keep what it wrote
        local name=$1 cap=$2 stem=$3 start=$SECONDS
        shift 3
        if [ "$cap" -le 0 ]; then echo "$name skipped (cap 0)" | tee -a "$OUT/llm16.log"; return; fi
        echo "== $name (cap ${cap}s)" >>"$OUT/llm16.log"
        timeout -k 10 "$cap" "$@" --out "$work/$name" >>"$OUT/llm16.log" 2>&1
        local code=$?
        echo "$name exit $code after $((SECONDS - start))s" | tee -a "$OUT/llm16.log"
        cp "$work/$name/$stem.json" "$OUT/$name.json" 2>/dev/null
        { echo "## $name (exit $code, $((SECONDS - start)) s)"; echo
          tail -n +3 "$work/$name/$stem.md" 2>/dev/null; echo; } >>"$OUT/llm16.md"
    }
    phase mfu-1b "$cap_1b" mfu $PY benchmarks/gpu_llm_mfu.py --sizes gpt-1b --steps 5 --warmup 2 \
        --variants "${MFU_VARIANTS:-base,$best,cudnn+fused-ce,fused-ce}" --fp8 "$best" --no-generation \
        --profile "${MFU_PROFILE:-}"
    phase mfu-small "$cap_small" mfu $PY benchmarks/gpu_llm_mfu.py --sizes gpt-125m,gpt-350m \
        --steps 5 --warmup 2 --variants "$best" --fp8 "$best" --no-hf --no-generation
    phase long "$cap_long" long $PY benchmarks/gpu_llm_long.py --steps 3 --warmup 1 \
        --runs "${LONG_RUNS:-32768:selective,16384:selective,8192:selective,32768:full}"
    phase fp8_loss "$cap_fp8" fp8_loss $PY benchmarks/gpu_llm_fp8_loss.py --text .peers/input.txt \
        --steps "${FP8_STEPS:-200}"
    phase finetune "$cap_ft" finetune $PY benchmarks/gpu_llm_finetune.py --steps 4
    cat "$OUT/llm16.md"
    ;;
race)
    timeout "${RACE_TIMEOUT:-380}" $PY benchmarks/llm_shakespeare_race.py gpu --nanogpt .peers/nanoGPT \
        --text .peers/input.txt --repeats "${RACE_REPEATS:-3}" --budget "${RACE_BUDGET:-330}" \
        --out /tmp/race-gpu >"$OUT/race-gpu.log" 2>&1
    echo "race exit $?"; cp /tmp/race-gpu/race.json /tmp/race-gpu/race.md "$OUT/" 2>/dev/null
    cat "$OUT/race.md"; grep -E 'skipped|note' "$OUT/race-gpu.log"
    ;;
gen)
    timeout 120 $PY benchmarks/llm_generation.py --preset gpt-125m --vocab 50304 --new 128 --bf16 \
        --profile >"$OUT/generation.log" 2>&1
    echo "generation exit $?"; tail -40 "$OUT/generation.log" | cut -c1-160
    ;;
vision)
    timeout "${VISION_LIMIT:-540}" $PY benchmarks/time_to_accuracy.py run --device cuda --target 0.93 \
        --eval-interval 117ba --set model.width=32 "data.path=$PWD/.gpu_data/fashion-mnist" \
        --seeds ${VISION_SEEDS:-0 1} --ablation ${VISION_ABLATION:-} \
        --output "$OUT/time_to_accuracy_gpu.json" >"$OUT/vision.log" 2>&1
    echo "vision exit $?"; grep -E 'seed [0-9]+:' "$OUT/vision.log" | tail -30
    ;;
vision-race)
    # runs/ and logs/ stay on the machine; race.json holds every run's curve, logs go as one tar
    deadline=${VISION_RACE_DEADLINE:-260}
    timeout $((deadline + 20)) $PY benchmarks/vision_race.py race --deadline "$deadline" \
        --data "$PWD/.gpu_data/fashion-mnist" --out /tmp/vision-race ${VISION_RACE_ARGS:-} \
        >"$OUT/vision-race.log" 2>&1
    echo "vision-race exit $?"; grep -E ': (ok|failed|killed|skipped)' "$OUT/vision-race.log"
    cp /tmp/vision-race/race.json /tmp/vision-race/race.md "$OUT/" 2>/dev/null
    tar -czf "$OUT/vision-race-logs.tar.gz" -C /tmp/vision-race logs 2>/dev/null
    cat /tmp/vision-race/race.md
    ;;
serve)
    timeout 330 $PY benchmarks/serve_benchmark.py --out "$OUT" >"$OUT/serve.log" 2>&1
    echo "serve exit $?"; grep -vE '^\{' "$OUT/serve.log" | tail -40 | cut -c1-220
    ;;
eval)
    # the run folder and exported model stay on the machine; the JSON and table come back
    TESSERA_DATA_DIR=$PWD/.gpu_data timeout "${EVAL_LIMIT:-570}" $PY benchmarks/eval_benchmark.py \
        --text .peers/input.txt --out /tmp/eval ${EVAL_ARGS:-} >"$OUT/eval.log" 2>&1
    echo "eval exit $?"; cp /tmp/eval/eval_benchmark.json /tmp/eval/eval_benchmark.md "$OUT/" 2>/dev/null
    grep -E '^\{|^\||Speed-up|Training' "$OUT/eval.log" | cut -c1-400 | tail -40
    ;;
estimate)
    timeout "${ESTIMATE_LIMIT:-570}" $PY benchmarks/estimate_accuracy.py --data "$PWD/.gpu_data" \
        --out /tmp/estimate ${ESTIMATE_ARGS:-} >"$OUT/estimate.log" 2>&1
    echo "estimate exit $?"; cp /tmp/estimate/*.md /tmp/estimate/*.json "$OUT/" 2>/dev/null
    tail -30 "$OUT/estimate.log" | cut -c1-300
    ;;
speedrace)
    # The GPU race (x3, alternating sides, runs that no longer fit in RACE_BUDGET seconds
    # skipped) on cores 12-15; meanwhile the CPU races on cores 0-11, each run on its own 2
    # cores with no GPU visible: Tiny Shakespeare x3, then the second text x3. Every checkpoint
    # of both sides is scored by benchmarks/lm_scoring.py on the whole validation split.
    R=benchmarks/llm_shakespeare_race.py; N=.peers/nanoGPT; REPEATS=${RACE_REPEATS:-3}
    $PY -c "import xxhash" || echo "xxhash missing (the text cache needs it): carry its wheel in .whl/"
    (
        taskset -c 0-11 timeout "${RACE_CPU_TIMEOUT:-230}" $PY $R cpu --nanogpt $N --text .peers/input.txt \
            --repeats "$REPEATS" --limit 150 --out /tmp/race-cpu >"$OUT/race-cpu.log" 2>&1
        echo "cpu race exit $?" | tee -a "$OUT/race-cpu.log"
        if [ -f .peers/kjv.txt ]; then
            taskset -c 0-11 timeout "${RACE_CPU_TIMEOUT:-230}" $PY $R cpu --nanogpt $N --text .peers/kjv.txt \
                --reported none --repeats "$REPEATS" --limit 150 --out /tmp/race-kjv \
                >>"$OUT/race-cpu.log" 2>&1
            echo "kjv race exit $?" | tee -a "$OUT/race-cpu.log"
        else
            echo "kjv race skipped: no .peers/kjv.txt" | tee -a "$OUT/race-cpu.log"
        fi
    ) &
    taskset -c 12-15 timeout "${RACE_GPU_TIMEOUT:-470}" $PY $R gpu --nanogpt $N --text .peers/input.txt \
        --repeats "$REPEATS" --budget "${RACE_BUDGET:-400}" --limit 150 --out /tmp/race-gpu \
        >"$OUT/race-gpu.log" 2>&1
    echo "gpu race exit $?"
    wait
    : >"$OUT/race.md"
    for name in gpu cpu kjv; do
        cp /tmp/race-$name/race.json "$OUT/race-$name.json" 2>/dev/null
        cat /tmp/race-$name/race.md >>"$OUT/race.md" 2>/dev/null && echo >>"$OUT/race.md"
    done
    cat "$OUT/race.md"; grep -hE 'exit|skipped|note' "$OUT/race-gpu.log" "$OUT/race-cpu.log"
    ;;
*)
    echo "unknown part: $part (llm, llm16, race, speedrace, gen, vision, vision-race, serve, eval or estimate)" >&2
    exit 2
    ;;
esac
