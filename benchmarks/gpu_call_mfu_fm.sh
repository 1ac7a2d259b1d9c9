# One device call (2026-12-02, fourth session), nothing else on the machine: issue 16's 1.4B
# MFU step with the bf16 residual stream, Triton kernels and whole-model compile (the best
# variant of gpu_call_bf16res.sh, whose CPU jobs shared the host), then issue 19's Fashion-MNIST
# race on the GPU (fast recipe without Lookahead vs baseline, 3 repeats a side).
#   OUT=results bash benchmarks/gpu_call_mfu_fm.sh      (carry: .whl .gpu_data)
set -u; OUT=${OUT:?}; PY=python3
[ -d /tmp/site ] || $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>&1 | tail -1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
M="--sizes gpt-1b --steps 8 --warmup 2 --no-generation --no-hf"
B3=cudnn+fused-ce+batch3x+coordesc+triton+model
timeout -k 5 200 taskset -c 0-3 $PY benchmarks/gpu_llm_mfu.py $M --variants $B3+bf16res --out $OUT/mfu > $OUT/mfu.log 2>&1; echo "mfu exit $?"
grep -hE "^\| tessera" $OUT/mfu/mfu.md
timeout -k 5 370 $PY benchmarks/vision_race.py race --parts gpu --repeats 3 --data .gpu_data/fashion-mnist \
  --gpu-time-limit 45 --deadline 360 --out $OUT/fm-gpu > $OUT/fm-gpu.log 2>&1; echo "fm exit $?"
rm -rf $OUT/fm-gpu/runs $OUT/fm-gpu/logs; grep -E "^\| (baseline|fast)|speed-up|^\| 9" $OUT/fm-gpu/race.md | cut -c1-300
