# One device call (2026-12-02): issue 16's rotary-layout A/B (this tree against the layers of
# the commit before, copied to tmp/ab/) and max-autotune at the 1.4B shape, then the GPU
# start-up (issue 19) and a GPU accuracy sweep of Fashion-MNIST fast-recipe variants, on cores
# 0-3; CPU runs of fast-recipe variants on cores 4-15 for the whole call.
#   OUT=results bash benchmarks/gpu_call_rope_sweep.sh      (carry: .whl .gpu_data tmp/ab)
# The rotary change was reverted (2217610), so to rerun the A/B check out 78734bc and fill tmp/ab/:
#   git show 00adc6b:src/tessera/models/gpt/layers.py > tmp/ab/layers.py   (and model.py alike)
set -u; OUT=${OUT:?}; PY=python3
[ -d /tmp/site ] || $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>&1 | tail -1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
FM=.gpu_data/fashion-mnist; CL="algorithms.channels_last={}"
( taskset -c 4-15 $PY benchmarks/vision_race.py race --parts cpu --recipes fast --repeats 1 --data $FM \
  --cpu-time-limit 430 --deadline 545 --out /tmp/fm-cpu \
  --variant "cl6=fast;$CL" --variant "cl9=fast;$CL;max_duration=9ep" \
  --variant "cl111x5=fast;$CL;model.blocks_per_stage=[1,1,1];max_duration=5ep" \
  --variant "cl9wd=fast;$CL;max_duration=9ep;optimizer.weight_decay=5e-4" \
  --variant "cl9lr4=fast;$CL;max_duration=9ep;optimizer.lr=0.4" > $OUT/fm-cpu.log 2>&1 ) &
rm -rf /tmp/old && mkdir -p /tmp/old && cp -r src benchmarks /tmp/old/
cp tmp/ab/layers.py tmp/ab/model.py /tmp/old/src/tessera/models/gpt/
M="--sizes gpt-1b --steps 5 --warmup 2 --no-generation --no-hf"
B3=cudnn+fused-ce+batch3x+coordesc; B2=cudnn+fused-ce+batch2x+coordesc
timeout -k 5 160 taskset -c 0-3 $PY benchmarks/gpu_llm_mfu.py $M --variants $B3 --profile $B3 --out $OUT/mfu-new > $OUT/mfu-new.log 2>&1; echo "new exit $?"
timeout -k 5 85 taskset -c 0-3 $PY /tmp/old/benchmarks/gpu_llm_mfu.py $M --variants $B3 --out $OUT/mfu-old > $OUT/mfu-old.log 2>&1; echo "old exit $?"
timeout -k 5 125 taskset -c 0-3 $PY benchmarks/gpu_llm_mfu.py $M --variants $B2+autotune --out $OUT/mfu-autotune > $OUT/mfu-autotune.log 2>&1; echo "autotune exit $?"
TESSERA_DATA_DIR=$PWD/.gpu_data timeout -k 5 50 taskset -c 0-3 $PY benchmarks/startup.py --gpu --cores 0-3 --repeats 3 --out $OUT/startup-gpu.json > $OUT/startup-gpu.log 2>&1; echo "startup exit $?"
G="fast;$CL"
timeout -k 5 120 taskset -c 0-3 $PY benchmarks/vision_race.py race --parts gpu --recipes fast --repeats 1 --data $FM \
  --gpu-parallel 4 --gpu-time-limit 25 --deadline 110 --out /tmp/fm-gpu \
  --variant "g9=$G;max_duration=9ep" --variant "g12=$G;max_duration=12ep" \
  --variant "g111x6=$G;model.blocks_per_stage=[1,1,1]" --variant "w24x9=$G;model.width=24;max_duration=9ep" \
  --variant "w32x6=$G;model.width=32" --variant "g9wd=$G;max_duration=9ep;optimizer.weight_decay=5e-4" \
  --variant "g9lr4=$G;max_duration=9ep;optimizer.lr=0.4" --variant "g9nolook=$G;max_duration=9ep;algorithms.lookahead=false" \
  --variant "g9ls2=$G;max_duration=9ep;algorithms.label_smoothing.smoothing=0.2" \
  --variant "g9b512=$G;max_duration=9ep;data.batch_size=512;optimizer.lr=0.4" \
  --variant "g111x9=$G;model.blocks_per_stage=[1,1,1];max_duration=9ep" > $OUT/fm-gpu.log 2>&1; echo "sweep exit $?"
wait
cp /tmp/fm-cpu/race.json $OUT/fm-cpu.json; cp /tmp/fm-gpu/race.json $OUT/fm-gpu.json
for d in mfu-new mfu-old mfu-autotune; do grep -E "^\| tessera" $OUT/$d/mfu.md; done
grep -E "tessera train|median" $OUT/startup-gpu.json | head -8
