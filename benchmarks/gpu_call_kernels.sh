# One device call (2026-12-02): issue 16's Triton kernels (SwiGLU, RoPE head split) against
# torch.compile's kernels, alone (gpu_kernels.py) and in the 1.4B MFU step, on cores 0-3;
# issue 19's Fashion-MNIST fast-recipe variants (Lookahead off; 10, 11, 12 epochs; seeds 0, 1) as 2-core
# CPU runs on cores 4-15 for the whole call.
#   OUT=results bash benchmarks/gpu_call_kernels.sh      (carry: .whl .gpu_data)
set -u; OUT=${OUT:?}; PY=python3
[ -d /tmp/site ] || $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>&1 | tail -1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
$PY -c "import torch, triton; print(torch.__version__, triton.__version__)"
FM=.gpu_data/fashion-mnist; NL="algorithms.lookahead=false"
( taskset -c 4-15 $PY benchmarks/vision_race.py race --parts cpu --recipes --repeats 2 --data $FM \
  --cpu-time-limit 480 --deadline 540 --out /tmp/fm-cpu --variant "nl10=fast;$NL" \
  --variant "nl11=fast;$NL;max_duration=11ep" --variant "nl12=fast;$NL;max_duration=12ep" \
  > $OUT/fm-cpu.log 2>&1 ) &
timeout -k 5 150 taskset -c 0-3 $PY benchmarks/gpu_kernels.py --out $OUT/kernels.json > $OUT/kernels.log 2>&1; echo "kernels exit $?"
M="--sizes gpt-1b --steps 5 --warmup 2 --no-generation --no-hf"
B3=cudnn+fused-ce+batch3x+coordesc
timeout -k 5 320 taskset -c 0-3 $PY benchmarks/gpu_llm_mfu.py $M --variants $B3+triton,$B3 \
  --profile $B3+triton --out $OUT/mfu > $OUT/mfu.log 2>&1; echo "mfu exit $?"
wait
cp /tmp/fm-cpu/race.json $OUT/fm-cpu.json 2>/dev/null; cp /tmp/fm-cpu/race.md $OUT/fm-cpu.md 2>/dev/null
cat $OUT/kernels.json; grep -E "^\| tessera|error" $OUT/mfu/mfu.md $OUT/mfu.log | head; grep -E "^\| (nl|la)" $OUT/fm-cpu.md | cut -c1-300
