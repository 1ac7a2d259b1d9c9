# One device call (2026-12-02): issue 19's GPU start-up and the char race with the GPU recipe
# at 1,300 batches (x3 a side as the budget allows) on cores 0-3; a CPU sweep of Fashion-MNIST
# fast-recipe variants (channels_last, learning rate, label smoothing, batch) on cores 4-15.
#   OUT=results bash benchmarks/gpu_call_race_sweep.sh      (carry: .whl .gpu_data .peers)
set -u; OUT=${OUT:?}; PY=python3
[ -d /tmp/site ] || $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>&1 | tail -1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
FM=.gpu_data/fashion-mnist; F="fast;algorithms.channels_last={}"
( taskset -c 4-15 $PY benchmarks/vision_race.py race --parts cpu --recipes --repeats 1 --data $FM \
  --cpu-time-limit 440 --deadline 540 --out /tmp/fm-cpu \
  --variant "lr4x12=$F;optimizer.lr=0.4;max_duration=12ep" --variant "lr6x10=$F;optimizer.lr=0.6;max_duration=10ep" \
  --variant "lr8x10=$F;optimizer.lr=0.8;max_duration=10ep" \
  --variant "lr4x10ls2=$F;optimizer.lr=0.4;max_duration=10ep;algorithms.label_smoothing.smoothing=0.2" \
  --variant "b512x10=$F;optimizer.lr=0.8;max_duration=10ep;data.batch_size=512" \
  --variant "lr4x10nolook=$F;optimizer.lr=0.4;max_duration=10ep;algorithms.lookahead=false" > $OUT/fm-cpu.log 2>&1 ) &
TESSERA_DATA_DIR=$PWD/.gpu_data timeout -k 5 50 taskset -c 0-3 $PY benchmarks/startup.py --gpu --cores 0-3 --repeats 3 --out $OUT/startup-gpu.json > $OUT/startup-gpu.log 2>&1; echo "startup exit $?"
taskset -c 0-3 timeout -k 5 420 $PY benchmarks/llm_shakespeare_race.py gpu --nanogpt .peers/nanoGPT --text .peers/input.txt \
  --repeats 3 --budget 330 --limit 150 --out /tmp/race-gpu > $OUT/race-gpu.log 2>&1; echo "gpu race exit $?"
cp /tmp/race-gpu/race.json $OUT/race-gpu.json; cp /tmp/race-gpu/race.md $OUT/race-gpu.md; cp /tmp/race-gpu/race-unscored.json $OUT/ 2>/dev/null
wait
cp /tmp/fm-cpu/race.json $OUT/fm-cpu.json
grep -E "median" $OUT/startup-gpu.json | head -8; tail -25 $OUT/race-gpu.md
$PY -c "
import json; d=json.load(open('$OUT/fm-cpu.json'))
for r in d['runs']: print(r['name'], r['train_seconds'], [round(p['accuracy']*100,2) for p in r['curve']])"
