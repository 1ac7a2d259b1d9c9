# One device call (2026-12-02, the second of the day's kernel calls): issue 16's Triton kernels
# with the SwiGLU forward left to torch.compile and the RoPE backward on 8 warps, alone
# (gpu_kernels.py) and in the 1.4B MFU step beside the step without them and with whole-model
# compile, on cores 0-3; issue 19's Fashion-MNIST race (fast recipe, now without Lookahead,
# against the baseline recipe, 3 repeats a side) as 2-core CPU runs on cores 4-15.
#   OUT=results bash benchmarks/gpu_call_kernels2.sh      (carry: .whl .gpu_data)
set -u; OUT=${OUT:?}; PY=python3
[ -d /tmp/site ] || $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>&1 | tail -1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
( taskset -c 4-15 $PY benchmarks/vision_race.py race --parts cpu --repeats 3 --data .gpu_data/fashion-mnist \
  --cpu-time-limit 520 --deadline 540 --out /tmp/fm-cpu > $OUT/fm-cpu.log 2>&1 ) &
timeout -k 5 130 taskset -c 0-3 $PY benchmarks/gpu_kernels.py --configs 4x1024w4,1x2048w8,8x512w4 \
  --rope-configs 32w4:32w8,32w4:32w4,16w4:32w8,32w4:64w8,64w4:32w8 --out $OUT/kernels.json > $OUT/kernels.log 2>&1; echo "kernels exit $?"
M="--sizes gpt-1b --steps 5 --warmup 2 --no-generation --no-hf"
B3=cudnn+fused-ce+batch3x+coordesc
timeout -k 5 190 taskset -c 0-3 $PY benchmarks/gpu_llm_mfu.py $M --variants $B3+triton,$B3 \
  --profile $B3+triton --out $OUT/mfu > $OUT/mfu.log 2>&1; echo "mfu exit $?"
timeout -k 5 200 taskset -c 0-3 $PY benchmarks/gpu_llm_mfu.py $M --variants $B3+triton+model \
  --out $OUT/mfu-model > $OUT/mfu-model.log 2>&1; echo "mfu-model exit $?"
wait
cp /tmp/fm-cpu/race.json $OUT/fm-cpu.json 2>/dev/null; cp /tmp/fm-cpu/race.md $OUT/fm-cpu.md 2>/dev/null
cat $OUT/kernels.json; grep -hE "^\| tessera|error" $OUT/mfu/mfu.md $OUT/mfu-model/mfu.md $OUT/mfu-model.log | head
grep -E "^\| (baseline|fast)|speed-up" $OUT/fm-cpu.md | cut -c1-300
