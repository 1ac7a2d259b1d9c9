# One device call (2026-12-02, the third of the day's kernel calls): the 1.4B MFU step with the
# Triton kernels as they landed (SwiGLU backward kernel, forward compiled; RoPE head split with
# 4-warp tiles both ways), with and without whole-model compile, beside the step without them;
# then the Fashion-MNIST race on the GPU (fast recipe without Lookahead vs baseline, 2 repeats).
#   OUT=results bash benchmarks/gpu_call_kernels3.sh      (carry: .whl .gpu_data)
set -u; OUT=${OUT:?}; PY=python3
[ -d /tmp/site ] || $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>&1 | tail -1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
M="--sizes gpt-1b --steps 5 --warmup 2 --no-generation --no-hf"
B3=cudnn+fused-ce+batch3x+coordesc
timeout -k 5 300 taskset -c 0-3 $PY benchmarks/gpu_llm_mfu.py $M --variants $B3+triton+model,$B3+triton,$B3 \
  --profile $B3+triton+model --out $OUT/mfu > $OUT/mfu.log 2>&1; echo "mfu exit $?"
grep -hE "^\| tessera" $OUT/mfu/mfu.md
timeout -k 5 110 $PY benchmarks/vision_race.py race --parts gpu --repeats 2 --data .gpu_data/fashion-mnist \
  --gpu-time-limit 40 --deadline 100 --out $OUT/fm-gpu > $OUT/fm-gpu.log 2>&1; echo "fm exit $?"
rm -rf $OUT/fm-gpu/runs $OUT/fm-gpu/logs; grep -E "^\| (baseline|fast)|speed-up" $OUT/fm-gpu/race.md | cut -c1-300
